"""Text and JSON reports of a study directory beside the paper's published figures.

The tables are livercore.study_tables', the same DataFrames the Study results page draws, so the
command line and the app print the same numbers from one code path.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pandas as pd

from livercore import study_tables
from livercore.study_folder import Study, load_study


def report_json(study: Study) -> dict[str, Any]:
    """Per model: test accuracy median/min/max, AUC median, per-category sensitivity medians."""
    out: dict[str, Any] = {}
    for name, m in study.summary["models"].items():
        out[name] = {
            "test_accuracy": {k: m["accuracy"][k] for k in ("median", "low", "high")},
            "train_accuracy": study.train_accuracy.get(name),
            "auc_median": m["auc_clinical"]["median"],
            "auc_probability_median": m["auc_probability"]["median"],
            "sensitivity_median": {
                row: m["sensitivity"][row]["median"] for row in study_tables.SENSITIVITY_ROWS
            },
            "steel_p_vs_triphasic": m["steel"]["p"] if m["steel"] else None,
        }
    kw = study.summary.get("kruskal_wallis")
    return {
        "models": out,
        "kruskal_wallis_p": kw["p"] if kw else None,
        "shortcut_audit": study.audit,
    }


def _table_text(title: str, table: pd.DataFrame) -> list[str]:
    return [title, "", table.to_string(), ""]


def _audit_lines(study: Study) -> list[str]:
    audit = study.audit
    if not audit:
        return []

    def rule(a: dict[str, Any]) -> str:
        r = a.get("cirrhosis_rule_accuracy")
        return f", cirrhosis-only rule {r:.2f}" if r is not None else ""

    lines = [
        f"Shortcut audit (lesion painted over by liver, triphasic): accuracy "
        f"{audit['accuracy_without_lesion']:.2f} vs largest-class share {audit['largest_class_share']:.2f}"
        f"{rule(audit)} ({audit['n_test']} cases{'; ' + audit['test'] if audit.get('test') else ''})"
    ]
    for name, other in (audit.get("other_tests") or {}).items():
        lines.append(
            f"  on {name}: {other['accuracy_without_lesion']:.2f} vs {other['largest_class_share']:.2f}"
            f"{rule(other)} ({other['n_test']} cases)"
        )
    verdict = study_tables.shortcut_audit(study)
    if verdict is not None:
        lines.append(f"  verdict: {verdict.verdict}")
    return lines


def study_report(study_dir: str | os.PathLike[str], *, as_json: bool = False) -> str:
    """Tables 2 and 3 and the AUCs beside the paper's (text), or report_json (JSON). InputError,
    a sentence, when `study_dir` is not a study directory."""
    study = load_study(study_dir, suggest=True)
    if as_json:
        return json.dumps(report_json(study), indent=1)
    lines = _table_text(
        "Table 2. Accuracy, median (range) over sessions, ours beside the paper's",
        study_tables.accuracy_table(study),
    )
    lines += [study_tables.kruskal_wallis_text(study), ""]
    lines += _table_text(
        "AUC, A-B vs C-E, median (range) over sessions, ours beside the paper's",
        study_tables.auc_table(study),
    )
    lines += _table_text(
        "Table 3. Test sensitivity, median [n/N of the median session] (range), ours above the paper's",
        study_tables.sensitivity_table(study),
    )
    return "\n".join(lines + _audit_lines(study)).rstrip()
