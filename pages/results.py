"""Study results: Tables 2 and 3, ROC curves, confusion matrices and the paper's teaching points,
ours beside the paper's (Yasaka et al., Radiology 2018)."""

from __future__ import annotations

import streamlit as st

from livercore import study_folder, study_tables
from livercore.app import results, state, ui
from livercore.calibration import study_calibration
from livercore.errors import InputError
from livercore.teaching import catalogue
from livercore.vocab import CATEGORIES, PHASE_MODELS, Category


@st.cache_resource(max_entries=4, show_spinner="Reading the study…")
def load(folder: str, stamp: tuple) -> study_folder.Study:
    del stamp  # part of the cache key: new files, new study
    return study_folder.load_study(folder)


ui.require_router()
st.title("Study results")
st.caption(
    "Five phase-models x five training sessions on the 100-case test cohort, beside what Yasaka et al. "
    "(Radiology 2018) reported for their patients. Our models were trained and tested on synthetic CT from "
    "the livercore phantom: compare the patterns, not the exact numbers."
)

model_set = state.model_set()
if not model_set.has_study:
    st.info(
        f"The model set in use, {model_set.label}, was shipped without the study that produced it "
        "(a study/ folder beside its models, written by `livercore study ship`)."
        + (" Choose another model set in the sidebar." if len(state.model_sets()[0]) > 1 else "")
    )
    st.stop()
try:
    folder = study_folder.validate_study_dir(model_set.study_dir)
    study = load(str(folder), study_folder.study_stamp(folder))
except InputError as err:
    st.error(str(err), icon=":material/error:")
    st.stop()
st.caption(
    f"The study that produced the models in use ({model_set.label}) · {len(study.models)} models · "
    f"{study.n_cases} test cases"
)

tabs = st.tabs(
    [
        "Teaching points",
        "Accuracy (Table 2)",
        "Sensitivity (Table 3) and AUC",
        "ROC curves",
        "Confusion matrices",
        "Where the models look",
        "Shortcut audit",
        "Calibration",
    ]
)

with tabs[0]:
    st.markdown(
        "What the paper teaches about the phases, in plain words, and whether our own study shows it. "
        "Every number on the right is computed from the study above."
    )
    for point in results.teaching_points(study):
        st.markdown(f"##### {point.title}")
        left, right = st.columns(2)
        left.markdown(f"**The paper.** {point.paper}")
        box = right.success if point.shown else right.info if point.shown is None else right.warning
        box(f"**Our study.** {point.ours}", icon=":material/science:")

with tabs[1]:
    st.markdown("**Table 2.** Accuracy, median (range) over the training sessions of each model.")
    st.table(study_tables.accuracy_table(study))
    st.caption(study_tables.kruskal_wallis_text(study))

with tabs[2]:
    st.markdown(
        "**Table 3.** Test sensitivity: median [correct/total in the median session] (range over sessions). "
        "Category C is also split into its hypervascular and hypovascular lesions."
    )
    st.table(study_tables.sensitivity_table(study))
    st.markdown("**AUC** for malignant (A-B) versus the rest (C-E), median (range) over sessions.")
    st.table(study_tables.auc_table(study))
    st.caption(
        "Clinical score: each case rated by its predicted category (A and B 4, C 3, D 2, E 1), the "
        "paper's method. P(A) + P(B): the network's probability of malignancy, a finer rating."
    )

with tabs[3]:
    rating = st.radio(
        "Rate each case by",
        ("clinical", "probability"),
        horizontal=True,
        key="results_roc_score",
        format_func=lambda s: "its clinical score (the paper's method)" if s == "clinical" else "P(A) + P(B)",
    )
    score: results.Score = "probability" if rating == "probability" else "clinical"
    st.plotly_chart(results.roc_figure(study, score=score), key="results_roc")
    st.caption(
        "Malignant (A-B) versus the rest (C-E). Thin lines: each training session; bold: the session "
        "with the median AUC. Dotted: chance. Each panel's title gives our median-session AUC and the "
        "paper's median AUC. A clinical-score curve has only four steps, one per score."
    )

with tabs[4]:
    c1, c2, c3 = st.columns(3)
    model = c1.selectbox(
        "Model", study.models, format_func=lambda m: PHASE_MODELS[m].label, key="results_cm_model"
    )
    shipped = study.shipped.get(model)
    session = c2.selectbox(
        "Session",
        [None, *study.sessions(model)],
        format_func=lambda s: (
            "all sessions pooled"
            if s is None
            else f"session {s}" + (" (the shipped model)" if s == shipped else "")
        ),
        key="results_cm_session",
    )
    normalize = (
        c3.radio("Show", ("counts", "share of each row"), horizontal=True, key="results_cm_norm")
        == "share of each row"
    )
    counts = results.confusion_counts(study, model, session)
    st.plotly_chart(results.confusion_figure(counts, normalize=normalize), key="results_cm")
    st.caption(
        "Rows: the reference standard; columns: the model's prediction. Pooled: each test case counted once "
        "per session."
    )

    st.markdown("**The cases behind a cell**")
    default_true, default_pred = results.largest_confusion(counts)
    d1, d2 = st.columns(2)
    true = d1.selectbox(
        "Reference standard",
        CATEGORIES,
        index=CATEGORIES.index(default_true),
        format_func=lambda c: f"{c.value} {c.info.name}",
        key=f"results_cell_true_{model}_{session}",
    )
    predicted = d2.selectbox(
        "Predicted",
        CATEGORIES,
        index=CATEGORIES.index(default_pred),
        format_func=lambda c: f"{c.value} {c.info.name}",
        key=f"results_cell_pred_{model}_{session}",
    )
    behind = results.cell_cases(study, model, session, true, predicted)
    if behind.empty:
        st.info(f"No {Category(true).info.name} was read as {Category(predicted).info.name} here.")
    else:
        st.caption(
            f"{len(behind)} case(s): {Category(true).value} read as {Category(predicted).value} by the "
            f"{PHASE_MODELS[model].label.lower()} model; P(·): the model's probability (mean over those "
            "sessions). Select a row to open that case on the Review page."
        )
        event = st.dataframe(
            behind,
            hide_index=True,
            on_select="rerun",
            selection_mode="single-row",
            key=f"results_cell_table_{model}_{session}_{true}_{predicted}",
        )
        rows = event.selection.rows if event and event.selection else []
        case_id = str(behind.iloc[rows[0] if rows else 0]["case_id"])
        if catalogue.can_regenerate(case_id):
            ui.review_link(case_id, f"Open {case_id} on the Review page")
        else:
            st.caption(f"{case_id} is not a phantom case this app can regenerate for review.")

with tabs[5]:
    st.markdown(results.POINTING_TEXT)
    pointing = results.pointing_summary(study)
    if pointing is None:
        st.info("This study has no pointing game (pointing_game.csv).")
    else:
        energy, chance = pointing
        st.plotly_chart(results.pointing_figure(energy, chance), key="results_pointing")
        st.caption(
            "Median over the test cases of each category, shipped model of each phase-model, Grad-CAM for "
            "the predicted category. 'chance': the lesion's median share of the crop area."
        )
    st.markdown(results.CONTRIBUTION_TEXT)
    contributions = results.contribution_summary(study)
    if contributions is None:
        st.info("This study has no phase contributions (phase_contribution.csv).")
    else:
        st.plotly_chart(results.contribution_figure(contributions), key="results_contribution")
        st.caption(
            "Rows: the lesions' true category (count); in brackets, the mean Shapley value in "
            "percentage points of that category's probability (negative: the phase argues against it). "
            "Single-phase models have nothing to share out."
        )

with tabs[6]:
    audit = study_tables.shortcut_audit(study)
    if audit is None:
        st.info("This study has no shortcut audit (run `livercore study run --audit`).")
    else:
        tiles = st.columns(4 if audit.cirrhosis_rule is not None else 3)
        tiles[0].metric("Accuracy, lesions painted over", f"{audit.accuracy:.2f}")
        tiles[1].metric("Share of the commonest category", f"{audit.largest_class_share:.2f}")
        if audit.cirrhosis_rule is not None:
            tiles[2].metric("Knowing only cirrhosis", f"{audit.cirrhosis_rule:.2f}")
        tiles[-1].metric("Verdict", audit.verdict)
        st.markdown(audit.explanation)

with tabs[7]:
    st.markdown(results.CALIBRATION_TEXT)
    report = study_calibration(folder)
    if report is None:
        st.info("This study has no calibration report (calibration.json, written by `livercore study ship`).")
    else:
        st.table(results.calibration_table(report))
        st.caption(
            f"Validation: {report.get('validation_cohort', 'the validation cohort')}. The test ECE rests on "
            f"{study.n_cases} cases and moves by a few hundredths from one cohort of that size to another; "
            "the accuracy column is the same before and after (a temperature never changes the top category)."
        )
        model = st.selectbox(
            "Reliability diagram of",
            list(report["models"]),
            format_func=lambda m: PHASE_MODELS[m].label,
            key="results_calibration_model",
        )
        st.plotly_chart(results.reliability_figure(report["models"][model]), key="results_reliability")
        st.caption(
            "Test cohort, shipped session. Each point: one confidence bin (marker size: its cases); on the "
            "dotted diagonal the model is as often right as it is confident."
        )
