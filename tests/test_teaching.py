"""The results browser, the teaching library and the quiz: their logic, and each page (AppTest)."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from livercore import study_folder, study_tables
from livercore.app import inputs, quiz, results
from livercore.errors import InputError
from livercore.paths import DEFAULT_MODELS_DIR
from livercore.teaching import build, catalogue, features, findings, views
from livercore.vocab import (
    CATEGORIES,
    DISCLAIMER,
    MODEL_NAMES,
    PHASE_MODELS,
    PHASES,
    SUBTYPES,
    Category,
    Phase,
)

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "pages"
STUDY = ROOT / "models" / "study"
U, A, D = PHASES


@pytest.fixture(scope="module")
def study() -> study_folder.Study:
    return study_folder.load_study(STUDY)


@pytest.fixture(scope="module")
def predictions() -> pd.DataFrame:
    return pd.read_csv(STUDY / "predictions_test.csv")


@pytest.fixture(scope="module")
def small_study(tmp_path_factory: pytest.TempPathFactory, predictions: pd.DataFrame) -> Path:
    """A study directory of two models x two sessions whose metrics.json has no summary,
    training accuracy, audit or pointing game (a site's own, or an older, study)."""
    folder = tmp_path_factory.mktemp("study")
    subset = predictions[predictions.model.isin(["triphasic", "arterial"]) & predictions.session.isin([1, 2])]
    subset.to_csv(folder / "predictions_test.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps({"sessions": {}}))
    return folder


@pytest.fixture(scope="module")
def site_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site's teaching-case folder: a tiny exported phantom cohort (its manifest, with findings)."""
    from livercore.phantom.export import export_cohort

    folder = tmp_path_factory.mktemp("site")
    manifest = export_cohort("site-check", folder, seed=5, size=6, workers=1)
    labels = manifest.drop(columns=[c for c in manifest.columns if c.startswith("aorta_")])
    labels["findings"] = ["A well-defined lesion."] + [""] * (len(labels) - 1)
    labels.to_csv(folder / catalogue.SITE_LABELS, index=False)
    return folder


@pytest.fixture()
def site_env(site_folder: Path) -> Iterator[Path]:
    before = os.environ.get(catalogue.SITE_ENV)
    os.environ[catalogue.SITE_ENV] = str(site_folder)
    yield site_folder
    if before is None:
        os.environ.pop(catalogue.SITE_ENV, None)
    else:
        os.environ[catalogue.SITE_ENV] = before


# --- results -------------------------------------------------------------------------------------


def test_confusion_cell_lists_exactly_the_cases_of_predictions_test(
    study: study_folder.Study, predictions: pd.DataFrame
) -> None:
    arterial = predictions[predictions.model == "arterial"]
    expected = arterial[(arterial.category == "A") & (arterial.predicted == "C")]
    pooled = results.cell_cases(study, "arterial", None, Category.A, Category.C)
    assert set(pooled.case_id) == set(expected.case_id)
    assert pooled["n sessions"].sum() == len(expected)
    first = pooled.iloc[0]
    assert first["n sessions"] == expected.case_id.value_counts().max()
    one = results.cell_cases(study, "arterial", 3, "A", "C")
    in_session = expected[expected.session == 3]
    assert list(one.case_id) == sorted(in_session.case_id)
    row = in_session.set_index("case_id").loc[one.case_id[0]]
    assert one["P(C) %"][0] == round(row.p_C * 100)
    assert results.cell_cases(study, "triphasic", None, "E", "A").empty


def test_pooled_confusion_is_the_sum_of_the_sessions(study: study_folder.Study) -> None:
    pooled = results.confusion_counts(study, "delayed")
    total = sum(results.confusion_counts(study, "delayed", s) for s in study.sessions("delayed"))
    assert (pooled == total).all().all()
    assert pooled.to_numpy().sum() == 5 * 100
    # the paper's arterial-phase teaching point: its largest confusion is classic HCC with category C
    largest = results.largest_confusion(results.confusion_counts(study, "arterial"))
    assert set(largest) == {Category.A, Category.C}


def test_teaching_point_evidence_is_counted_from_the_study(
    study: study_folder.Study, predictions: pd.DataFrame
) -> None:
    arterial = predictions[predictions.model == "arterial"]
    per_session = [
        int(((g.category == "C") & (g.subtype == "hypervascular") & (g.predicted == "A")).sum())
        for _, g in arterial.groupby("session")
    ]
    tally = results.misread(study, "arterial", "C", "A", subtype="hypervascular")
    assert tally.counts == tuple(per_session)
    assert tally.total == 21
    assert str(tally).startswith(f"{np.median(per_session):g}/21")
    points = results.teaching_points(study)
    assert points[0].title.startswith("The arterial phase alone")
    assert "9/21" in points[0].paper and "8/21" in points[0].paper  # the paper's figures
    assert str(tally) in points[0].ours  # ours, computed
    assert str(results.misread(study, "delayed", "C", "A", subtype="hypovascular")) in points[1].ours
    b = study.summary["models"]["unenhanced"]["sensitivity"]["B"]["median"]
    assert f"unenhanced {b:.2f}" in points[2].ours
    assert [p.shown for p in points][-1] is None  # the limitations are not a testable claim


def test_tables_put_ours_beside_the_paper(study: study_folder.Study) -> None:
    table2 = study_tables.accuracy_table(study)
    assert table2.loc["Triphasic", "test: paper"] == "0.84 (0.82-0.90)"
    acc = study.summary["models"]["triphasic"]["accuracy"]
    assert (
        table2.loc["Triphasic", "test: ours"] == f"{acc['median']:.2f} ({acc['low']:.2f}-{acc['high']:.2f})"
    )
    assert table2.loc["Unenhanced", "Steel P vs triphasic: paper"] == ".031"
    table3 = study_tables.sensitivity_table(study)
    assert len(table3) == 2 * len(study_tables.SENSITIVITY_ROWS)
    assert table3.loc["C hypervascular: paper", "Arterial"] == "0.57 [12/21] (0.52-0.76)"
    auc = study_tables.auc_table(study)
    assert auc.loc["Delayed", "paper (clinical score)"] == "0.81 (0.79-0.82)"
    assert "P < .001 (ours)" in study_tables.kruskal_wallis_text(study)


def test_roc_sessions_match_the_metrics_and_the_median_is_bold(study: study_folder.Study) -> None:
    rocs = results.session_rocs(study, "triphasic")
    stored = {
        int(k.split("/s")[1]): v["auc_clinical"]["auc"]
        for k, v in study.metrics["sessions"].items()
        if k.startswith("triphasic/")
    }
    assert {r.session: round(r.auc, 6) for r in rocs} == {s: round(a, 6) for s, a in stored.items()}
    best = results.median_roc(rocs)
    assert best is not None and best.auc == sorted(r.auc for r in rocs)[2]
    fig = results.roc_figure(study)
    assert sum(t.line.width == 3.5 for t in fig.data) == len(study.models)


def test_pointing_game_and_shortcut_audit(study: study_folder.Study) -> None:
    pointing = results.pointing_summary(study)
    assert pointing is not None
    energy, chance = pointing
    table = pd.read_csv(STUDY / "pointing_game.csv")
    e = table[(table.model == "delayed") & (table.category == "E")].energy_in_lesion.median()
    assert energy.loc["Delayed", "E"] == pytest.approx(e)
    assert (chance.loc["Triphasic"] < energy.loc["Triphasic"]).all()  # triphasic beats chance everywhere
    audit = study_tables.shortcut_audit(study)
    shipped = study.metrics["shortcut_audit"]
    assert audit is not None and audit.accuracy == pytest.approx(shipped["accuracy_without_lesion"])
    assert audit.passed == (audit.accuracy <= audit.largest_class_share + study_tables.AUDIT_MARGIN)
    assert f"{audit.accuracy:.2f}" in audit.explanation and "test-2016" in audit.explanation


@pytest.mark.parametrize(
    ("accuracy", "rule", "passed", "verdict", "words"),
    [
        (0.37, 0.39, True, "no shortcut", "leaves no shortcut"),
        (0.43, 0.40, True, "background only", "scores 0.40"),
        (0.48, 0.39, False, "above chance", "knowing only that scores 0.39"),
        (0.48, None, False, "above chance", "Part of what the models get right"),
    ],
)
def test_shortcut_audit_verdicts(
    study: study_folder.Study, accuracy: float, rule: float | None, passed: bool, verdict: str, words: str
) -> None:
    metrics = dict(study.metrics)
    metrics["shortcut_audit"] = {
        "accuracy_without_lesion": accuracy,
        "largest_class_share": 0.35,
        "n_test": 500,
        "cirrhosis_rule_accuracy": rule,
        "seeds": [1, 2, 3],
    }
    audit = study_tables.shortcut_audit(replace(study, metrics=metrics))
    assert audit is not None and audit.passed is passed and audit.verdict == verdict
    assert words in audit.explanation and "median of 3 models" in audit.explanation


def test_any_study_directory_is_validated(tmp_path: Path, small_study: Path) -> None:
    (tmp_path / "metrics.json").write_text("{}")  # one of the two files only
    for folder in (tmp_path, tmp_path / "missing", tmp_path / "metrics.json"):
        with pytest.raises(InputError, match="is not a study directory on this server"):
            study_folder.validate_study_dir(folder)
    with pytest.raises(InputError):
        study_folder.validate_study_dir("   ")
    small = study_folder.load_study(small_study)  # the summary is computed when metrics.json lacks it
    assert small.models == ["triphasic", "arterial"]
    assert study_tables.accuracy_table(small).loc["Arterial", "training: ours"] == "—"
    assert study_tables.shortcut_audit(small) is None and results.pointing_summary(small) is None
    assert len(results.teaching_points(small)) == 4  # no delayed model: no delayed-phase point


# --- the teaching library --------------------------------------------------------------------------


def test_library_covers_every_subtype_with_at_least_eight_per_category() -> None:
    catalogue_table = catalogue.read_catalogue()
    assert tuple(catalogue_table.columns[: len(catalogue.CATALOGUE_COLUMNS)]) == catalogue.CATALOGUE_COLUMNS
    assert set(catalogue_table.source) == {catalogue.STORED, catalogue.PHANTOM}
    table = catalogue_table[catalogue_table.source == catalogue.PHANTOM]
    counts = Counter(table.category)
    assert all(counts[c.value] >= 8 for c in CATEGORIES)
    assert {s for subs in SUBTYPES.values() for s in subs} <= set(table.subtype)
    assert table.case_id.is_unique
    assert (table.lesion_diameter_mm >= build.LIBRARY_DIAMETER_MM[0]).all()
    assert catalogue_table.findings.str.startswith("Unenhanced:").all()  # one generator for every row
    assert set(table.cohort) <= {catalogue.LIBRARY_COHORT, catalogue.FALLBACK_COHORT}


@pytest.mark.parametrize("row", [0, 12, 48])  # library cohort (A), train-2013 (B combined), a cyst
def test_library_rows_regenerate_the_cases_they_describe(row: int) -> None:
    from livercore.phantom import generate_case

    entry = catalogue.library_cases()[row]
    case = generate_case(entry.cohort, entry.seed, entry.index, entry.size)
    assert case.case_id == entry.case_id
    assert (case.category, case.subtype) == (entry.category, entry.subtype)
    assert round(case.lesion_diameter_mm, 1) == entry.diameter_mm
    assert findings.phantom_findings(case) == entry.findings


def test_findings_read_like_a_radiologist() -> None:
    flags = {"aphe": True, "washout": True, "capsule": True, "mosaic": True, "cirrhosis": True}
    hu_a = {U: 45.0, A: 120.0, D: 80.0}
    liver = {U: 55.0, A: 80.0, D: 100.0}
    assert findings.describe_findings(flags, "A", "imaging", lesion_hu=hu_a, liver_hu=liver) == (
        "Unenhanced: slightly hypo-attenuating to liver (-10 HU). Arterial: non-rim hyperenhancement with a "
        "mosaic pattern. Delayed: washout and an enhancing capsule. Cirrhotic liver. Attenuation words compare "
        "lesion and liver means. Iso-attenuating: under 5 HU apart in every phase, half the liver's pixel SD "
        "on these images kept within 5-10 HU; slightly hypo- or hyper-attenuating: under 15 HU; markedly: "
        "from 40 HU."
    )
    cyst = findings.describe_findings(
        {}, "E", "simple_cyst", lesion_hu={U: 8.0, A: 9.0, D: 9.0}, liver_hu=liver
    )
    assert cyst.startswith("Unenhanced: water attenuation (8 HU)") and cyst.endswith("Non-cirrhotic liver.")
    hyper_c = findings.describe_findings(
        {"aphe": True}, "C", "hypervascular", lesion_hu={U: 55.0, A: 110.0, D: 88.0}, liver_hu=liver
    )
    assert "Delayed: slightly hypo-attenuating to liver (-12 HU), no definite washout." in hyper_c
    assert "Why category C, not A: arterial hyperenhancement without washout or capsule" in hyper_c


@pytest.mark.parametrize(
    ("liver_sd", "threshold"),
    [(None, 5), (6.0, 5), (12.0, 6), (13.0, 7), (16.0, 8), (19.0, 10), (35.0, 10)],
)
def test_iso_threshold_is_half_the_liver_noise_within_5_to_10_hu(
    liver_sd: float | None, threshold: int
) -> None:
    assert findings.iso_threshold_hu(liver_sd) == threshold


def test_a_lesion_8_hu_below_the_liver_is_iso_only_where_the_noise_hides_it() -> None:
    liver = {U: 57.0, A: 80.0, D: 100.0}
    lesion = {U: 49.0, A: 72.0, D: 92.0}  # 8 HU below the liver in every phase

    def text(sd: float) -> str:
        return findings.describe_findings(
            {}, "C", "hypovascular", lesion_hu=lesion, liver_hu=liver, liver_sd_hu=dict.fromkeys(PHASES, sd)
        )

    typical = text(12.0)  # the phantom's (and real CT's) liver noise at 2.5-5 mm
    assert "Unenhanced: slightly hypo-attenuating to liver (-8 HU)." in typical
    assert "Delayed: slightly hypo-attenuating to liver (-8 HU)." in typical
    assert "iso-attenuating to liver" not in typical
    assert "Iso-attenuating: under 6 HU apart in every phase" in typical  # the threshold, stated
    noisy = text(20.0)
    assert "Unenhanced: iso-attenuating to liver (-8 HU)." in noisy
    assert "Iso-attenuating: under 10 HU apart in every phase" in noisy
    mixed = findings.describe_findings(
        {}, "C", "hypovascular", lesion_hu=lesion, liver_hu=liver, liver_sd_hu={U: 9.0, A: 14.0, D: 14.0}
    )
    assert "under 5 HU apart (unenhanced) and 7 HU (arterial, delayed)" in mixed


def _hcc(
    delayed_hu: float,
    *,
    subtype: str = "histology",
    washout: bool = False,
    necrosis: bool = False,
    large: bool = False,
) -> str:
    """describe_findings of a classic-HCC lesion whose delayed-phase mean is `delayed_hu` (liver 100 HU)."""
    flags = {"aphe": True, "capsule": True, "washout": washout, "necrosis": necrosis, "cirrhosis": True}
    return findings.describe_findings(
        flags,
        "A",
        subtype,
        lesion_hu={U: 45.0, A: 120.0, D: delayed_hu},
        liver_hu={U: 55.0, A: 80.0, D: 100.0},
        liver_sd_hu={U: 10.0, A: 13.0, D: 13.0},
        diameter_mm=60.0 if large else 30.0,
    )


def test_an_hcc_without_washout_says_why_it_is_still_category_a() -> None:
    classic = _hcc(82.0, washout=True)
    assert "Delayed: washout and an enhancing capsule." in classic and "Why category" not in classic
    atypical = _hcc(97.0)  # histology-proven, delayed 3 HU below the liver
    assert "Delayed: an enhancing capsule; iso-attenuating to liver (-3 HU), no washout." in atypical
    assert "Why category A without washout: histology proved this HCC." in atypical
    assert "lack objective washout (atypical HCC)" in atypical and "Large HCCs" not in atypical
    assert "Large HCCs (over 5 cm) often lack it" in _hcc(97.0, large=True)
    necrotic = _hcc(70.0, necrosis=True)  # the mean takes in the necrotic centre
    assert "hypo-attenuating to liver (-30 HU) on the mean of the lesion" in necrotic
    assert "the enhancing tumour itself shows no washout" in necrotic and "Why category A without" in necrotic
    imaging = _hcc(97.0, subtype="imaging")  # the study's imaging diagnosis needs washout: say so
    assert "Why category A without washout: the phantom labels this an HCC diagnosed on imaging" in imaging
    assert "ask for histology" in imaging


def _phase_sentence(findings: str, phase: Phase) -> str:
    start = findings.index(f"{phase.value.capitalize()}: ")
    return findings[start : findings.index(". ", start)]


def test_every_library_text_states_its_thresholds_and_keeps_to_them() -> None:
    word = re.compile(
        r"(iso|slightly hypo|slightly hyper|markedly hypo|markedly hyper|hypo|hyper)"
        r"-attenuating to liver \(([+-]?\d+) HU\)"
    )
    checked = 0
    for entry in catalogue.library_cases():
        text = entry.findings
        if entry.category is Category.E:
            assert "attenuating to liver" not in text
            continue
        rule = re.search(r"Iso-attenuating: under (.+?), half the liver's pixel SD", text)
        assert rule, entry.case_id
        if "in every phase" in rule[1]:
            threshold = dict.fromkeys(PHASES, int(rule[1].split()[0]))
        else:
            threshold = {
                Phase(name): int(t)
                for t, names in re.findall(r"(\d+) HU (?:apart )?\(([a-z, ]+)\)", rule[1])
                for name in names.split(", ")
            }
        assert set(threshold) == set(PHASES), entry.case_id
        for phase in PHASES:
            for words, number in word.findall(_phase_sentence(text, phase)):
                size = abs(int(number))
                expected = (
                    "iso"
                    if size < threshold[phase]
                    else (
                        "slightly "
                        if size < findings.SLIGHT_HU
                        else "markedly "
                        if size >= findings.MARKED_HU
                        else ""
                    )
                    + ("hyper" if int(number) > 0 else "hypo")
                )
                assert words == expected, (entry.case_id, phase, words, number, threshold[phase])
                checked += 1
        delayed = _phase_sentence(text, D)
        if entry.category is Category.A and ("no washout" in delayed or "no definite washout" in delayed):
            assert "Why category A without washout" in text, entry.case_id
    assert checked >= 60  # most library texts carry several measured attenuation words


def test_phantom_ids_are_parsed_from_the_right_and_checked() -> None:
    assert catalogue.parse_phantom_id("test-2016-0-0042") == ("test-2016", 0, 42)
    assert catalogue.parse_phantom_id("train-2013-0-1067") == ("train-2013", 0, 1067)
    for bad in ("", "test-2016-0-42", "../etc-0-0001", "Test-2016-0-0001", "x-0-0001", "test-2016-0-0001 "):
        with pytest.raises(InputError):
            catalogue.parse_phantom_id(bad)
    assert catalogue.can_regenerate("test-2016-1-0099")
    assert not catalogue.can_regenerate("test-2016-0-0100")  # past the cohort's end
    assert not catalogue.can_regenerate("my-cohort-0-0001")  # its size is unknown
    assert not catalogue.can_regenerate("test-2016-0042")  # cohort "test", seed 2016: not one we know
    with pytest.raises(InputError, match="no example case or teaching case"):
        catalogue.open_case("not-a-case")


def test_phantom_review_case_round_trips_a_test_2016_id(predictions: pd.DataFrame) -> None:
    from livercore.phantom import generate_case

    case = catalogue.phantom_review_case("test-2016-0-0042")
    truth = generate_case("test-2016", 0, 42)
    listed = predictions[predictions.case_id == "test-2016-0-0042"].iloc[0]
    assert case.case_id == "test-2016-0-0042" and case.source == "library"
    assert case.reference is not None
    assert (case.reference.category.value, case.reference.subtype) == (listed.category, listed.subtype)
    assert case.reference.findings.startswith("Unenhanced:")
    for p in PHASES:
        assert np.array_equal(case.images[p], truth.hu[p].astype(np.float32))
        assert (case.lesion_boxes[p].row, case.lesion_boxes[p].col) == truth.lesion_center[p]
        assert case.lesion_boxes[p].height * truth.spacing_mm == pytest.approx(truth.lesion_diameter_mm)
        assert case.spacing_mm[p] == truth.spacing_mm
    assert inputs.crops_for(case, case.lesion_boxes).shape == (3, 70, 70)
    assert catalogue.open_case("library-0-0009").reference.category is Category.A  # type: ignore[union-attr]


def test_lesion_view_and_time_attenuation_of_a_cyst() -> None:
    entry = next(e for e in catalogue.library_cases() if e.category is Category.E)
    case = catalogue.open_entry(entry)
    view = views.lesion_view(case, A)
    assert view.shape == (views.VIEW_PX, views.VIEW_PX) and view.dtype == np.uint8
    centre = view[
        views.VIEW_PX // 2 - 5 : views.VIEW_PX // 2 + 5,
        views.VIEW_PX // 2 - 5 : views.VIEW_PX // 2 + 5,
    ]
    assert centre.mean() < np.median(view)  # the cyst is darker than the liver around it
    m = views.time_attenuation(case)
    assert all(m.lesion[p] is not None and abs(m.lesion[p].mean_hu) < 25 for p in PHASES)  # type: ignore[union-attr]
    assert m.aorta[A].mean_hu > 200  # type: ignore[union-attr]


def test_site_folder_cases_load_from_labels(site_folder: Path, site_env: Path) -> None:
    from livercore.phantom import generate_case

    entries = catalogue.site_cases()
    labels = pd.read_csv(site_folder / catalogue.SITE_LABELS)
    assert [e.case_id for e in entries] == list(labels.case_id)
    assert entries[0].findings == "A well-defined lesion." and entries[1].findings == ""
    case = catalogue.open_case(entries[2].case_id)  # the review page's fallback finds it
    truth = generate_case("site-check", 5, 2, 6)
    assert np.array_equal(case.images[D], truth.hu[D].astype(np.float32))
    assert case.reference is not None and case.reference.category is truth.category
    assert case.aorta_centres == {} and case.liver_centres  # no aorta columns: found automatically
    assert views.time_attenuation(case).aorta[A].mean_hu > 200  # type: ignore[union-attr]


def test_bad_site_labels_are_refused(site_folder: Path, tmp_path: Path) -> None:
    labels = pd.read_csv(site_folder / catalogue.SITE_LABELS)
    bad = tmp_path / "bad"
    shutil.copytree(site_folder, bad)
    labels.drop(columns=["lesion_diameter_mm"]).to_csv(bad / catalogue.SITE_LABELS, index=False)
    with pytest.raises(InputError, match="lesion_diameter_mm"):
        catalogue.site_cases(bad)
    labels.assign(category="F").to_csv(bad / catalogue.SITE_LABELS, index=False)
    with pytest.raises(InputError, match="category 'F'; expected A, B, C, D or E"):
        catalogue.site_cases(bad)
    labels.assign(unenhanced="../outside.dcm").to_csv(bad / catalogue.SITE_LABELS, index=False)
    with pytest.raises(InputError, match="outside its folder"):
        catalogue.site_review_case(str(labels.case_id[0]), bad)
    with pytest.raises(InputError):
        catalogue.site_cases(tmp_path / "nowhere")


# --- the quiz ----------------------------------------------------------------------------------------


def _entries() -> list[catalogue.TeachingCase]:
    return catalogue.library_cases()


def _score_missing(category: Category, times: int) -> quiz.QuizScore:
    score = quiz.QuizScore()
    wrong = next(c for c in CATEGORIES if c is not category)
    for i in range(times):
        score = score.record(quiz.Answer(f"case-{i}", category, wrong, "triphasic"))
    return score.record(quiz.Answer("ok", Category.E, Category.E, "triphasic"))


def test_missed_categories_come_back_more_often() -> None:
    score = _score_missing(Category.D, 3)
    assert quiz.category_weights(score) == {c: 7.0 if c is Category.D else 1.0 for c in CATEGORIES}
    entries, rng = _entries(), quiz.new_rng(0)
    drawn = Counter(quiz.draw_case(entries, score, rng).category for _ in range(2000))
    assert drawn[Category.D] / 2000 == pytest.approx(7 / 11, abs=0.04)
    fresh = Counter(quiz.draw_case(entries, quiz.QuizScore(), rng).category for _ in range(2000))
    assert all(fresh[c] / 2000 == pytest.approx(0.2, abs=0.04) for c in CATEGORIES)


def test_draws_are_seeded_filtered_and_never_repeat_the_last_case() -> None:
    entries = _entries()
    seeded, same = quiz.new_rng(7), quiz.new_rng(7)
    first = [quiz.draw_case(entries, quiz.QuizScore(), seeded).case_id for _ in range(5)]
    again = [quiz.draw_case(entries, quiz.QuizScore(), same).case_id for _ in range(5)]
    assert first == again and len(set(first)) > 1
    rng = quiz.new_rng(3)
    only = {
        quiz.draw_case(entries, quiz.QuizScore(), rng, categories=[Category.B]).category for _ in range(50)
    }
    assert only == {Category.B}
    pair = entries[:2]
    assert all(
        quiz.draw_case(pair, quiz.QuizScore(), rng, exclude=pair[0].case_id) is pair[1] for _ in range(20)
    )
    with pytest.raises(ValueError):
        quiz.draw_case(entries[:1], quiz.QuizScore(), rng, categories=[Category.E])


def test_grading_score_and_most_missed() -> None:
    entry = next(e for e in _entries() if e.subtype == "flash_filling")
    right = quiz.grade(entry, "D")
    assert right.correct and right.headline.startswith("Correct: D haemangioma (haemangioma, flash-filling")
    assert right.criteria == Category.D.info.description and right.chosen_criteria == ""
    wrong = quiz.grade(entry, Category.A)
    assert not wrong.correct and "you chose A classic HCC; this is D haemangioma" in wrong.headline
    assert wrong.chosen_criteria == Category.A.info.description and wrong.findings == entry.findings
    score = _score_missing(Category.C, 2).record(quiz.Answer("x", Category.B, Category.C, "arterial"))
    assert (score.asked, score.correct) == (4, 1) and score.percent == 25.0
    assert [(r.category, r.missed, r.asked) for r in quiz.most_missed(score)] == [
        (Category.C, 2, 2),
        (Category.B, 1, 1),
    ]
    assert quiz.shown_phases("art_del") == (A, D) and quiz.model_for("delayed") == "delayed"
    sentence = quiz.model_sentence("arterial", np.array([0.81, 0.0, 0.19, 0.0, 0.0]), Category.C)
    assert (
        sentence == "The arterial model, which sees the same phases as you, said A classic HCC (81 %): wrong."
    )


# --- the pages ---------------------------------------------------------------------------------------


def page(name: str):
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=60)


def all_text(at) -> str:
    kinds = ("markdown", "caption", "info", "warning", "error", "success", "title", "subheader")
    return "\n".join(str(e.value) for kind in kinds for e in getattr(at, kind))


def test_results_page_tables_teaching_points_and_cell_cases(study: study_folder.Study) -> None:
    at = page("results")
    at.run()
    assert not at.exception
    assert DISCLAIMER in [w.value for w in at.warning]
    assert "0.84 (0.82-0.90)" in at.table[0].value.to_string()  # Table 2, the paper beside ours
    assert len(at.table) == 4  # Table 2, Table 3, AUC, calibration
    calibration = at.table[3].value
    assert list(calibration.index) == [PHASE_MODELS[m].label for m in MODEL_NAMES]
    assert "->" in calibration.iloc[0]["ECE, test: network's own -> calibrated"]
    assert "results_reliability" in [c.key for c in at.get("plotly_chart")]
    body = all_text(at)
    for point in results.teaching_points(study):
        assert point.title in body
    assert "The pointing game" in body and "What was tested" in body
    at.selectbox(key="results_cm_model").set_value("arterial").run()
    at.selectbox(key="results_cell_true_arterial_None").set_value(Category.A)
    at.selectbox(key="results_cell_pred_arterial_None").set_value(Category.C).run()
    assert not at.exception
    shown = at.dataframe[0].value
    assert list(shown.case_id) == list(results.cell_cases(study, "arterial", None, "A", "C").case_id)
    assert f"review?case={shown.case_id[0]}" in all_text(at)  # the link to the review page


def test_results_page_shows_the_study_of_the_model_set_in_use(
    tmp_path: Path, small_study: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A site's model folder, configured (LIVERCORE_MODEL_SETS) and picked: the results page shows
    the study shipped with it; a set shipped without its study says so."""
    site = tmp_path / "site-models"
    site.mkdir()
    for suffix in (".pt", ".json"):
        shutil.copy(DEFAULT_MODELS_DIR / f"triphasic{suffix}", site)
    shutil.copytree(small_study, site / "study")
    bare = tmp_path / "bare-models"
    bare.mkdir()
    shutil.copy(DEFAULT_MODELS_DIR / "arterial.pt", bare)
    monkeypatch.setenv("LIVERCORE_MODEL_SETS", f"Site 2025={site};Bare={bare};Gone={tmp_path / 'gone'}")
    at = page("results")
    at.session_state["model_set"] = "site-2025"
    at.run()
    assert not at.exception and not at.error
    assert list(at.table[0].value.index) == ["Triphasic", "Arterial"]
    assert "The study that produced the models in use (Site 2025)" in all_text(at)
    assert any("no shortcut audit" in i.value for i in at.info)
    at.session_state["model_set"] = "bare"
    at.run()
    assert not at.exception
    assert any("was shipped without the study that produced it" in i.value for i in at.info)


def test_library_page_shows_phases_curve_findings_and_link() -> None:
    at = page("library")
    at.run()
    assert not at.exception
    assert DISCLAIMER in [w.value for w in at.warning]
    first = catalogue.library_cases()[0]
    assert len(at.get("image")) == 3
    assert first.findings in [i.value for i in at.info]
    assert list(at.table[0].value["ROI"]) == ["Lesion", "Liver", "Aorta"]
    assert f"review?case={first.case_id}" in all_text(at)
    assert "LIVERCORE_SITE_CASES" in all_text(at)  # the site-folder format is documented on the page
    at.selectbox(key="library_category").set_value(Category.E).run()
    at.selectbox(key="library_subtype_E").set_value("simple_cyst").run()
    assert not at.exception
    assert len(at.dataframe[0].value["case"]) == sum(
        e.category is Category.E for e in catalogue.library_cases()
    )
    assert any("water attenuation" in i.value for i in at.info)


def test_library_page_offers_the_site_cases(site_env: Path) -> None:
    at = page("library")
    at.run()
    at.radio(key="library_source").set_value("site").run()
    assert not at.exception
    assert "A well-defined lesion." in [i.value for i in at.info]
    assert len(at.get("image")) == 3


def test_quiz_page_answer_feedback_score_and_next_case() -> None:
    at = page("quiz")
    at.session_state["quiz_rng"] = quiz.new_rng(0)
    at.run()
    assert not at.exception
    assert DISCLAIMER in [w.value for w in at.warning]
    assert len(at.get("image")) == 3
    entry = next(e for e in catalogue.library_cases() if e.case_id == at.session_state["quiz_current"][0])
    wrong = next(c for c in CATEGORIES if c is not entry.category)
    at.radio(key="quiz_answer_0_0").set_value(wrong)
    next(b for b in at.button if b.label == "Check my answer").click().run()
    assert not at.exception
    assert any(e.value.startswith("Not quite") for e in at.error)
    body = all_text(at)
    assert entry.category.info.description in body and entry.findings in body
    assert "What the network said" in body and "sees the same phases as you" in body
    assert len(at.get("image")) == 3 + 1 + 1  # phases, the triphasic model's one CAM, the colour bar
    assert f"{entry.category.value} {entry.category.info.name} (1 of 1)" in body  # missed most
    assert at.session_state["quiz_score"].asked == 1
    at.button(key="quiz_next").click().run()
    assert not at.exception
    assert at.session_state["quiz_feedback"] is None
    assert at.session_state["quiz_current"][0] != entry.case_id
    assert "Question 2" in all_text(at)


def test_quiz_page_single_phase_shows_only_that_phase() -> None:
    at = page("quiz")
    at.session_state["quiz_rng"] = quiz.new_rng(1)
    at.run()
    at.selectbox(key="quiz_phases").set_value("arterial").run()
    assert not at.exception
    assert len(at.get("image")) == 1
    hidden = [c.value for c in at.caption if "not shown in this quiz" in c.value]
    assert not at.exception and len(at.checkbox) == len(features.features_of([Phase.ARTERIAL]))
    assert hidden == [
        f"{Phase.UNENHANCED.value}: not shown in this quiz",
        f"{Phase.DELAYED.value}: not shown in this quiz",
    ]


def test_cell_cases_of_every_cell_have_unique_columns(study: study_folder.Study) -> None:
    for model in study.models:
        for session in [None, *study.sessions(model)]:
            for true in CATEGORIES:
                for predicted in CATEGORIES:
                    behind = results.cell_cases(study, model, session, true, predicted)
                    assert behind.columns.is_unique, (model, session, true, predicted)
                    assert f"P({true.value}) %" in behind.columns


def test_results_page_opens_every_confusion_cell_of_every_model(study: study_folder.Study) -> None:
    """A diagonal cell (A read as A) once crashed the page with duplicate column names."""
    at = page("results")
    at.run()
    for model in study.models:
        at.selectbox(key="results_cm_model").set_value(model).run()
        counts = results.confusion_counts(study, model)
        for true in CATEGORIES:
            for predicted in CATEGORIES:
                at.selectbox(key=f"results_cell_true_{model}_None").set_value(true)
                at.selectbox(key=f"results_cell_pred_{model}_None").set_value(predicted).run()
                assert not at.exception, (model, true, predicted)
                n = int(counts.loc[true.value, predicted.value])
                if n:
                    shown = at.dataframe[0].value
                    expected = results.cell_cases(study, model, None, true, predicted)
                    assert list(shown.case_id) == list(expected.case_id)
                else:
                    assert any("was read as" in i.value for i in at.info)
