"""The study runner, its reports and the shipped models."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from livercore.cli import main
from livercore.dataset import Dataset
from livercore.study import (
    background_rule_accuracy,
    median_session,
    run_study,
    ship,
    shortcut_audit,
    write_metrics,
)
from livercore.train import TrainConfig
from livercore.vocab import CATEGORIES, MODEL_NAMES

MODELS = Path(__file__).resolve().parents[1] / "models"


def _toy(n: int, seed: int) -> Dataset:
    """Separable toy crops: the category sets the brightness of a central blob per phase."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 5
    x = rng.integers(90, 110, (n, 3, 70, 70)).astype(np.uint8)
    for i, k in enumerate(y):
        x[i, :, 25:45, 25:45] = 40 + 40 * k
    meta = pd.DataFrame(
        {
            "case_id": [f"t{seed}-{i}" for i in range(n)],
            "patient_id": [f"p{i}" for i in range(n)],
            "category": [CATEGORIES[k].value for k in y],
            "subtype": ["hypervascular" if k == 2 else "x" for k in y],
        }
    )
    return Dataset(x, y.astype(np.int64), meta)


@pytest.fixture(scope="module")
def toy_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study")
    config = replace(TrainConfig(), variants_per_image=3, batch_size=32)
    run_study(
        _toy(60, 0),
        _toy(25, 1),
        out,
        sessions=3,
        models=("triphasic", "arterial"),
        config=config,
        device="cpu",
        progress=False,
    )
    return out


def test_study_writes_predictions_metrics_cards_and_weights(toy_study: Path):
    test = pd.read_csv(toy_study / "predictions_test.csv")
    assert list(test.columns[:6]) == ["model", "session", "case_id", "category", "subtype", "predicted"]
    assert len(test) == 2 * 3 * 25
    np.testing.assert_allclose(test[[f"p_{c.value}" for c in CATEGORIES]].sum(axis=1), 1, atol=1e-4)
    assert len(pd.read_csv(toy_study / "predictions_train.csv")) == 2 * 3 * 60
    metrics = json.loads((toy_study / "metrics.json").read_text())
    assert set(metrics["summary"]["models"]) == {"triphasic", "arterial"}
    card = json.loads((toy_study / "cards" / "arterial_s2.json").read_text())
    for key in (
        "trained_on",
        "seed",
        "config",
        "code_version",
        "date",
        "device",
        "training_seconds",
        "test_accuracy",
    ):
        assert key in card
    assert (toy_study / "weights" / "triphasic_s3.pt").exists()


def test_a_stopped_study_resumes_without_retraining(toy_study: Path):
    before = (toy_study / "weights" / "triphasic_s1.pt").stat().st_mtime_ns
    config = replace(TrainConfig(), variants_per_image=3, batch_size=32)
    run_study(
        _toy(60, 0),
        _toy(25, 1),
        toy_study,
        sessions=3,
        models=("triphasic",),
        config=config,
        device="cpu",
        progress=False,
    )
    assert (toy_study / "weights" / "triphasic_s1.pt").stat().st_mtime_ns == before
    assert len(pd.read_csv(toy_study / "predictions_test.csv")) == 2 * 3 * 25


def test_ship_takes_the_median_accuracy_session(toy_study: Path, tmp_path: Path):
    test = pd.read_csv(toy_study / "predictions_test.csv")
    acc = (
        test[test.model == "arterial"]
        .assign(ok=lambda d: d.category == d.predicted)
        .groupby("session")
        .ok.mean()
    )
    chosen = median_session(toy_study, "arterial")
    assert acc[chosen] == sorted(acc)[1]
    shipped = ship(toy_study, tmp_path)
    assert shipped["arterial"] == chosen
    assert (tmp_path / "arterial.pt").read_bytes() == (
        toy_study / "weights" / f"arterial_s{chosen}.pt"
    ).read_bytes()
    assert (tmp_path / "study" / "predictions_test.csv").exists()


def test_report_json_and_text(toy_study: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["study", "report", str(toy_study), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    tri = report["models"]["triphasic"]
    assert set(tri["test_accuracy"]) == {"median", "low", "high"}
    assert 0 <= tri["auc_median"] <= 1
    assert set(tri["sensitivity_median"]) == {"A", "B", "C", "C_hypervascular", "C_hypovascular", "D", "E"}
    assert main(["study", "report", str(toy_study)]) == 0
    text = capsys.readouterr().out
    assert (
        "Table 2" in text and "Table 3" in text and "0.84 (0.82-0.90)" in text
    )  # the paper's triphasic test


# --- the shipped models ----------------------------------------------------------------------


def test_shipped_models_are_all_there_and_small():
    sizes = [(MODELS / f"{m}.pt").stat().st_size for m in MODEL_NAMES]
    assert sum(sizes) < 25 * 2**20
    for m in MODEL_NAMES:
        card = json.loads((MODELS / f"{m}.json").read_text())
        assert card["model"] == m and "trained_on" in card and 0 <= card["test_accuracy"] <= 1


def test_shipped_models_reproduce_their_study_predictions_on_a_regenerated_test_cohort():
    """The phantom is deterministic: regenerating test-2016 and running the shipped weights must
    give the predictions stored in the study. This fails when the phantom or the preprocessing
    changes without retraining, which is exactly when the shipped models stop being honest."""
    from livercore.analysis import load_models
    from livercore.dataset import from_phantom
    from livercore.model import predict_proba, select_channels

    data = from_phantom("test-2016", seed=0, workers=2)
    stored = pd.read_csv(MODELS / "study" / "predictions_test.csv")
    shipped = json.loads((MODELS / "study" / "shipped.json").read_text())
    for name, m in load_models(MODELS).items():
        ours = predict_proba(m.net, select_channels(data.x, m.phase_model))
        theirs = stored[(stored.model == name) & (stored.session == shipped[name])].set_index("case_id")
        theirs = theirs.loc[data.meta.case_id, [f"p_{c.value}" for c in CATEGORIES]].to_numpy()
        # weights are stored in float16 after the study predicted in float32
        assert np.abs(ours - theirs).max() < 0.05
        assert (ours.argmax(1) == theirs.argmax(1)).mean() >= 0.97


def test_predict_cli_prints_five_models_per_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from livercore.phantom.export import export_cohort

    export_cohort("predict-check", tmp_path, seed=2, size=3, workers=1)
    assert main(["predict", "--manifest", str(tmp_path / "manifest.csv"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 3
    for case in out:
        assert list(case["models"]) == list(MODEL_NAMES)
        for result in case["models"].values():
            assert abs(sum(result["probabilities"].values()) - 1) < 1e-4
            assert result["predicted"] == max(result["probabilities"], key=result["probabilities"].get)


def test_predict_cli_from_three_dicom_files_and_a_box(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from livercore.phantom.export import export_cohort

    m = export_cohort("predict-check", tmp_path, seed=2, size=1, workers=1).iloc[0]
    r, c = m["lesion_row_arterial"], m["lesion_col_arterial"]
    half = m["lesion_diameter_mm"] / m["pixel_spacing_mm"] / 2
    box = f"{r - half},{c - half},{r + half},{c + half}"
    args = ["predict", "--json", "--box", box] + [
        a for p in ("unenhanced", "arterial", "delayed") for a in (f"--{p}", str(tmp_path / m[p]))
    ]
    assert main(args) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["models"]) == 5
    assert main(["predict", "--unenhanced", "x.dcm"]) == 2  # a clear error, no traceback
    assert "error:" in capsys.readouterr().err


def test_study_cli_trains_on_a_sites_own_dicom_manifests(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """Bring your own cohort: DICOM files and a manifest with the phantom export's columns."""
    from livercore.phantom.export import export_cohort

    export_cohort("site-train", tmp_path / "train", seed=5, size=10, workers=1)
    export_cohort("site-test", tmp_path / "test", seed=6, size=4, workers=1)
    export_cohort("site-valid", tmp_path / "valid", seed=7, size=4, workers=1)
    out = tmp_path / "study"
    args = [
        "study",
        "run",
        "--train",
        str(tmp_path / "train" / "manifest.csv"),
        "--test",
        str(tmp_path / "test" / "manifest.csv"),
        "--sessions",
        "1",
        "--models",
        "triphasic,delayed",
        "--variants",
        "2",
        "--device",
        "cpu",
        "--validation",
        str(tmp_path / "valid"),
        "--filters",
        "8,8,16",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    predictions = pd.read_csv(out / "predictions_test.csv")
    assert sorted(predictions.model.unique()) == ["delayed", "triphasic"] and len(predictions) == 8
    card = json.loads((out / "cards" / "triphasic_s1.json").read_text())
    assert card["config"]["variants_per_image"] == 2 and card["net"]["filters"] == [8, 8, 16]
    # the validation cohort's accuracy of the final weights, in the card and in metrics.json
    from livercore.dataset import from_manifest
    from livercore.model import load_model, predict_proba, select_channels

    valid = from_manifest(tmp_path / "valid", sections="largest")
    saved = load_model(out / "weights" / "triphasic_s1.pt")
    expected = float(
        np.mean(predict_proba(saved.net, select_channels(valid.x, saved.phase_model)).argmax(1) == valid.y)
    )
    assert card["validation_accuracy"] == expected
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sessions"]["triphasic/s1"]["validation_accuracy"] == expected
    assert metrics["validation_accuracy"]["triphasic"] == round(expected, 4)
    assert main([*args[:-2], "--validation", str(tmp_path / "test"), "--out", str(tmp_path / "x")]) != 0


def test_a_manifest_with_missing_columns_is_refused_with_a_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    (tmp_path / "m.csv").write_text("case_id,category\nx,A\n")
    assert main(["study", "run", "--train", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "lacks the column" in capsys.readouterr().err


def test_shortcut_audit_scores_every_test_and_the_background_rule():
    """A toy where the category is in the background flag only: the lesion-free model is trained
    per seed, every test cohort is scored, and the rule that knows only the flag is computed."""
    train, test, other = _toy(60, 0), _toy(25, 1), _toy(30, 2)
    flags = {"train": train.y < 2, "test": test.y < 2, "other": other.y < 2}
    config = replace(TrainConfig(), variants_per_image=2, batch_size=32)
    audit = shortcut_audit(
        train, test, config=config, device="cpu", seeds=(1, 2), progress=False,
        test_note="toy", other_tests={"other": other}, cirrhosis=flags,
    )  # fmt: skip
    assert audit["seeds"] == [1, 2] and len(audit["accuracy_by_seed"]) == 2
    assert audit["accuracy_without_lesion"] == pytest.approx(np.median(audit["accuracy_by_seed"]))
    assert audit["largest_class_share"] == pytest.approx(5 / 25) and audit["n_test"] == 25
    # flag -> A (commonest of A, B in training: a tie, the first) and not flag -> C: 5 + 5 of 25 right
    assert audit["cirrhosis_rule_accuracy"] == pytest.approx(10 / 25)
    assert set(audit["other_tests"]) == {"other"} and audit["other_tests"]["other"]["n_test"] == 30


def test_background_rule_knows_only_the_flag():
    y = np.array([0, 0, 0, 1, 2, 2, 2, 2])
    flag = np.array([1, 1, 1, 1, 0, 0, 0, 1], bool)
    # cirrhotic -> 0 (3 of 5), normal -> 2; on the same cases 3 + 3 of 8 are right
    assert background_rule_accuracy(y, flag, y, flag) == pytest.approx(6 / 8)
    assert background_rule_accuracy(y, flag, np.array([2, 0]), np.array([False, False])) == pytest.approx(0.5)


def test_report_of_a_one_model_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    config = replace(TrainConfig(), variants_per_image=1, batch_size=32)
    run_study(_toy(30, 0), _toy(25, 1), tmp_path, sessions=2, models=("triphasic",), config=config,
              device="cpu", progress=False)  # fmt: skip
    audit = {"accuracy_without_lesion": 0.38, "largest_class_share": 0.35, "n_test": 500, "test": "big",
             "cirrhosis_rule_accuracy": 0.39,
             "other_tests": {"test-2016": {"accuracy_without_lesion": 0.32, "largest_class_share": 0.35,
                                           "n_test": 100}}}  # fmt: skip
    write_metrics(tmp_path, audit)
    assert main(["study", "report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "none in ours (it needs two or more models)" in out
    assert "accuracy 0.38 vs largest-class share 0.35, cirrhosis-only rule 0.39 (500 cases; big)" in out
    assert "  on test-2016: 0.32 vs 0.35 (100 cases)" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["study", "report", "/no/such/study"],
        ["study", "report", "/no/such/study", "--json"],
        ["study", "ship", "/no/such/study"],
        ["study", "run", "--train", "/no/such/train.csv", "--test", "/no/such/test.csv", "--out", "OUT"],
        ["predict", "--manifest", "/no/such/manifest.csv"],
        ["predict", "--models", "/no/such/models", "--manifest", "/no/such/manifest.csv"],
        [
            "predict",
            "--unenhanced",
            "/no/u.dcm",
            "--arterial",
            "/no/a.dcm",
            "--delayed",
            "/no/d.dcm",
            "--box",
            "1,1,9,9",
        ],
        ["phantom", "export", "--cohort", "test-2016", "--size", "1", "--out", "/proc/no/such/folder"],
        ["phantom", "montage", "--out", "/proc/no/such/atlas.png"],
        ["validate", "/no/such/file.dcm"],
        ["cohort", "scan", "/no/such/folder"],
    ],
)
def test_every_subcommand_answers_a_wrong_path_with_a_sentence(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert main(argv) in (1, 2)  # validate reports per file (1); the others exit 2
    captured = capsys.readouterr()
    text = captured.err + captured.out
    assert "Traceback" not in text and ("error:" in text or "ERROR" in text)
    named = [a for a in argv if a.startswith("/")]
    assert any(a in text for a in named) or "/proc/no" in text  # the path is named in the sentence


def test_report_on_the_models_folder_names_the_study_inside_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "report", str(MODELS)]) == 2
    assert f"Did you mean {MODELS / 'study'}?" in capsys.readouterr().err


def test_the_app_the_cli_and_the_report_print_the_same_tables(capsys: pytest.CaptureFixture[str]) -> None:
    """Tables 2 and 3 and the AUCs come from one code path (livercore.study_tables)."""
    from streamlit.testing.v1 import AppTest

    from livercore import study_tables
    from livercore.report import study_report
    from livercore.study_folder import load_study

    study = load_study(MODELS / "study")
    tables = [
        study_tables.accuracy_table(study),
        study_tables.sensitivity_table(study),
        study_tables.auc_table(study),
    ]
    at = AppTest.from_file(str(MODELS.parent / "pages" / "results.py"), default_timeout=60)
    at.run()
    shown = [t.value for t in at.table][:3]  # the fourth: the calibration table (tests/test_teaching.py)
    for ours, page in zip(tables, shown, strict=True):
        pd.testing.assert_frame_equal(
            ours.reset_index(drop=True), page.reset_index(drop=True), check_dtype=False
        )
    assert main(["study", "report", str(MODELS / "study")]) == 0
    printed = capsys.readouterr().out
    assert printed.strip() == study_report(MODELS / "study")
    for table in tables:
        for value in table.to_numpy().ravel():
            assert str(value) in printed
