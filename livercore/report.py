"""Text and JSON reports of a study directory beside the paper's published figures."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from livercore import evaluate
from livercore.vocab import PHASE_MODELS

SENSITIVITY_ROWS = ("A", "B", "C", "C_hypervascular", "C_hypovascular", "D", "E")


def load_study(study_dir: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    d = Path(study_dir)
    return pd.read_csv(d / "predictions_test.csv"), json.loads((d / "metrics.json").read_text())


def report_json(study_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Per model: test accuracy median/min/max, AUC median, per-category sensitivity medians."""
    _, metrics = load_study(study_dir)
    out: dict[str, Any] = {}
    for name, m in metrics["summary"]["models"].items():
        out[name] = {
            "test_accuracy": {k: m["accuracy"][k] for k in ("median", "low", "high")},
            "train_accuracy": metrics["train_accuracy"].get(name),
            "auc_median": m["auc_clinical"]["median"],
            "auc_probability_median": m["auc_probability"]["median"],
            "sensitivity_median": {row: m["sensitivity"][row]["median"] for row in SENSITIVITY_ROWS},
            "steel_p_vs_triphasic": m["steel"]["p"] if m["steel"] else None,
        }
    return {
        "models": out,
        "kruskal_wallis_p": metrics["summary"]["kruskal_wallis"]["p"],
        "shortcut_audit": metrics.get("shortcut_audit"),
    }


def _range(median: float, low: float, high: float) -> str:
    return f"{median:.2f} ({low:.2f}-{high:.2f})"


def _cirrhosis_rule(audit: dict) -> str:
    rule = audit.get("cirrhosis_rule_accuracy")
    return f", cirrhosis-only rule {rule:.2f}" if rule is not None else ""


def study_report(study_dir: str | os.PathLike[str], *, as_json: bool = False) -> str:
    if as_json:
        return json.dumps(report_json(study_dir), indent=1)
    _, metrics = load_study(study_dir)
    summary = metrics["summary"]
    side = evaluate.compare_with_paper(summary)
    paper_train = pd.read_csv(evaluate.REFERENCE_DIR / "yasaka2018_accuracy.csv").query("split == 'train'")
    lines = ["Table 2. Accuracy, median (range) over sessions: ours | paper", ""]
    lines.append(
        f"{'model':<20}{'training ours':>20}{'paper':>20}{'test ours':>20}{'paper':>20}{'Steel P ours':>14}{'paper':>8}"
    )
    for name, m in summary["models"].items():
        tr = metrics["train_accuracy"].get(name) or {}
        ptr = paper_train[paper_train.model == name].iloc[0]
        pte = side["accuracy"].query("model == @name").iloc[0]
        steel = f"{m['steel']['p']:.3f}" if m["steel"] else "-"
        paper_p = (
            f"{pte['paper_steel_p_vs_triphasic']:.3f}" if pd.notna(pte["paper_steel_p_vs_triphasic"]) else "-"
        )
        lines.append(
            f"{PHASE_MODELS[name].label:<20}"
            f"{_range(tr.get('median', float('nan')), tr.get('low', float('nan')), tr.get('high', float('nan'))):>20}"
            f"{_range(ptr['median'], ptr['low'], ptr['high']):>20}"
            f"{_range(m['accuracy']['median'], m['accuracy']['low'], m['accuracy']['high']):>20}"
            f"{_range(pte['paper_median'], pte['paper_low'], pte['paper_high']):>20}{steel:>14}{paper_p:>8}"
        )
    kw = summary["kruskal_wallis"]
    ours = f"{kw['p']:.4g}" if kw else "- (needs two or more models)"
    lines += [f"Kruskal-Wallis P across the models: ours {ours} | paper < .001 (five models)", ""]
    lines.append("AUC, A-B vs C-E from the clinical score, median (range): ours | paper")
    for _, row in side["auc"].iterrows():
        lines.append(
            f"{PHASE_MODELS[row['model']].label:<20}{_range(row['ours_median'], row['ours_low'], row['ours_high']):>20}"
            f"{_range(row['paper_median'], row['paper_low'], row['paper_high']):>20}"
        )
    lines += ["", "Table 3. Test sensitivity, median [n/N of the median session]: ours | paper"]
    sens = side["sensitivity"]
    header = f"{'category':<18}" + "".join(f"{PHASE_MODELS[m].label:>26}" for m in summary["models"])
    lines.append(header)
    for row in SENSITIVITY_ROWS:
        cells = []
        for name in summary["models"]:
            r = sens[(sens.model == name) & (sens.category == row)].iloc[0]
            cells.append(
                f"{r['ours_median']:.2f} [{int(r['ours_n_correct'])}/{int(r['ours_n_total'])}] | {r['paper_median']:.2f}"
            )
        lines.append(f"{row:<18}" + "".join(f"{c:>26}" for c in cells))
    audit = metrics.get("shortcut_audit")
    if audit:
        lines += [
            "",
            f"Shortcut audit (lesion painted over by liver, triphasic): accuracy "
            f"{audit['accuracy_without_lesion']:.2f} vs largest-class share {audit['largest_class_share']:.2f}"
            f"{_cirrhosis_rule(audit)} ({audit['n_test']} cases{'; ' + audit['test'] if audit.get('test') else ''})",
        ]
        for name, other in (audit.get("other_tests") or {}).items():
            lines.append(
                f"  on {name}: {other['accuracy_without_lesion']:.2f} vs {other['largest_class_share']:.2f}"
                f"{_cirrhosis_rule(other)} ({other['n_test']} cases)"
            )
    return "\n".join(lines)
