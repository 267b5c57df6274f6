"""What a study shows beside the paper, computed once: Table 2, Table 3, the AUCs, the
Kruskal-Wallis sentence and the shortcut audit, as DataFrames and strings that the CLI prints
and the app draws. Torch-free; the paper's numbers come from livercore.paper."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from livercore import evaluate, paper
from livercore.study_folder import Study
from livercore.vocab import PHASE_MODELS

# Table 3's rows: the five categories, category C split by vascularity (evaluate.C_SUBTYPE_ROWS).
SENSITIVITY_ROWS: dict[str, str] = {
    "A": "A classic HCC",
    "B": "B other malignant",
    "C": "C indeterminate",
    "C_hypervascular": "C hypervascular",
    "C_hypovascular": "C hypovascular",
    "D": "D haemangioma",
    "E": "E cyst",
}
# Shortcut audit: accuracy within this of the largest class share counts as "at the prior".
AUDIT_MARGIN = 0.05


def _range(spread: dict[str, Any] | pd.Series | None) -> str:
    """Median (low-high) with two decimals, e.g. "0.84 (0.82-0.90)"; "—" when missing."""
    if spread is None:
        return "—"
    values = [spread.get(k) for k in ("median", "low", "high")]
    if any(v is None or pd.isna(v) for v in values):
        return "—"
    return f"{values[0]:.2f} ({values[1]:.2f}-{values[2]:.2f})"


def format_p(p: float | None) -> str:
    """A P value as the paper prints it: ".031", "< .001"; "—" when missing."""
    if p is None or pd.isna(p):
        return "—"
    return "< .001" if p < 0.001 else f"{p:.3f}".removeprefix("0")


def accuracy_table(study: Study) -> pd.DataFrame:
    """Table 2: per model, training and test accuracy median (range) and the Steel test's P
    against the triphasic model, ours beside the paper's."""
    theirs = paper.accuracy().set_index(["model", "split"])
    rows = {}
    for name in study.models:
        ours = study.summary["models"].get(name, {})
        steel = ours.get("steel")
        paper_p = (
            theirs.loc[(name, "test"), "steel_p_vs_triphasic"] if (name, "test") in theirs.index else None
        )
        rows[PHASE_MODELS[name].label] = {
            "training: ours": _range(study.train_accuracy.get(name)),
            "training: paper": _range(theirs.loc[(name, "train")])
            if (name, "train") in theirs.index
            else "—",
            "test: ours": _range(ours.get("accuracy")),
            "test: paper": _range(theirs.loc[(name, "test")]) if (name, "test") in theirs.index else "—",
            "Steel P vs triphasic: ours": format_p(steel["p"]) if steel else "—",
            "Steel P vs triphasic: paper": format_p(paper_p),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return table


def kruskal_wallis_text(study: Study) -> str:
    """The Kruskal-Wallis test across the models' session accuracies, ours and the paper's."""
    kw = study.summary.get("kruskal_wallis")
    ours = f"P {format_p(kw.get('p'))} (ours)" if kw else "none in ours (it needs two or more models)"
    return (
        f"Kruskal-Wallis test across the {len(study.models)} models' session accuracies: "
        f"{ours}, P {paper.KRUSKAL_WALLIS_P} (paper, five models). The Steel test compares "
        "each model with the triphasic model; P < .05 is significant."
    )


def sensitivity_table(study: Study) -> pd.DataFrame:
    """Table 3: test sensitivity per category (C also split by vascularity) and model, as
    "median [n/N] (low-high)" (n/N of the median session); our row above the paper's."""
    side = evaluate.compare_with_paper(study.summary)["sensitivity"].set_index(["model", "category"])
    rows: dict[str, dict[str, str]] = {}
    for key, label in SENSITIVITY_ROWS.items():
        for who in ("ours", "paper"):
            row = {}
            for name in study.models:
                if (name, key) not in side.index:
                    row[PHASE_MODELS[name].label] = "—"
                    continue
                r = side.loc[(name, key)]
                median, low, high = r[f"{who}_median"], r[f"{who}_low"], r[f"{who}_high"]
                n, total = r[f"{who}_n_correct"], r[f"{who}_n_total"]
                row[PHASE_MODELS[name].label] = (
                    "—" if pd.isna(median) else f"{median:.2f} [{int(n)}/{int(total)}] ({low:.2f}-{high:.2f})"
                )
            rows[f"{label}: {who}"] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "category"
    return table


def auc_table(study: Study) -> pd.DataFrame:
    """AUC of A-B (malignant) versus C-E, median (range) over sessions: ours from the clinical
    score (the paper's method) and from P(A) + P(B), beside the paper's."""
    theirs = paper.auc().set_index("model")
    rows = {}
    for name in study.models:
        ours = study.summary["models"].get(name, {})
        rows[PHASE_MODELS[name].label] = {
            "ours (clinical score)": _range(ours.get("auc_clinical")),
            "paper (clinical score)": _range(theirs.loc[name]) if name in theirs.index else "—",
            "ours (P(A) + P(B))": _range(ours.get("auc_probability")),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return table


# --- the shortcut audit ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Audit:
    accuracy: float  # the triphasic model trained and tested with every lesion painted over
    largest_class_share: float  # what always answering the commonest category scores
    n_test: int
    passed: bool  # at chance, or no better than knowing the background (cirrhosis) alone
    explanation: str
    cirrhosis_rule: float | None = None  # what knowing only cirrhotic / normal liver scores
    verdict: str = ""  # a few words for a metric tile


def shortcut_audit(study: Study) -> Audit | None:
    """The shortcut audit of metrics.json, with its explanation; None when the study has none."""
    audit = study.audit
    if not audit:
        return None
    acc, share = float(audit["accuracy_without_lesion"]), float(audit["largest_class_share"])
    rule = audit.get("cirrhosis_rule_accuracy")
    rule = float(rule) if rule is not None else None
    text = (
        "**What was tested.** A triphasic model was trained and tested on the same cases with every "
        "lesion painted over by liver: everything else (the crop position, the liver around it, "
        "noise, scanner, body size) stayed as it was. Such a model cannot see any lesion, so it "
        "should do no better than always answering the commonest category "
        f"({share:.2f} of the {int(audit.get('n_test', 0))} test cases{_audit_cohort(audit)}). "
    )
    background = (
        "In the phantom, as in real patients, a cirrhotic liver is common around classic HCC and "
        "category-C nodules and rare around metastases, haemangiomas and cysts, and the crop shows "
        "that liver"
    )
    if acc <= share + AUDIT_MARGIN:
        passed, verdict = True, "no shortcut"
        text += (
            f"**Result.** Accuracy without lesions {acc:.2f}: at that level. The generator leaves no "
            "shortcut: what the models get right, they get from the lesion."
        )
    elif rule is not None and acc <= max(rule, share) + AUDIT_MARGIN:
        passed, verdict = True, "background only"
        text += (
            f"**Result.** Accuracy without lesions {acc:.2f}, {acc - share:.2f} above that level. "
            f"{background}: a rule that knows only whether the liver is cirrhotic, and answers the "
            f"commonest category for a cirrhotic or a normal liver, scores {rule:.2f}. The "
            "lesion-free model does no better than that rule, so the surroundings tell it about the "
            "background, as they would tell a radiologist, and nothing else: no scanner, noise, size "
            "or position shortcut."
        )
    else:
        passed, verdict = False, "above chance"
        text += (
            f"**Result.** Accuracy without lesions {acc:.2f}, {acc - share:.2f} above that level: the "
            f"surroundings carry information about the category. {background}"
            + (f" (knowing only that scores {rule:.2f})" if rule is not None else "")
            + ". Part of what the models get right may come from outside the lesion; the pointing "
            "game shows how much of their attention is on the lesion."
        )
    for name, other in (audit.get("other_tests") or {}).items():
        text += (
            f" On {name} without lesions: {float(other['accuracy_without_lesion']):.2f} against "
            f"{float(other['largest_class_share']):.2f} ({int(other['n_test'])} cases"
            + (
                f"; cirrhosis alone {float(other['cirrhosis_rule_accuracy']):.2f}"
                if other.get("cirrhosis_rule_accuracy") is not None
                else ""
            )
            + ")."
        )
    return Audit(acc, share, int(audit.get("n_test", 0)), passed, text, rule, verdict)


def _audit_cohort(audit: dict) -> str:
    seeds = audit.get("seeds") or []
    parts = [str(audit["test"])] if audit.get("test") else []
    if len(seeds) > 1:
        parts.append(f"median of {len(seeds)} models")
    return f"; {', '.join(parts)}" if parts else ""
