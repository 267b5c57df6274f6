"""Home: what livercore is, who it is for, and which models are loaded (with their cards)."""

from __future__ import annotations

import streamlit as st

from livercore.app import state, ui
from livercore.teaching import catalogue
from livercore.vocab import MODEL_NAMES, PHASE_MODELS

ui.require_router()
st.title("livercore")
st.markdown(
    "**Teach and review how a convolutional neural network tells liver masses apart on triphasic CT.** "
    "livercore reproduces Yasaka K, Akai H, Abe O, Kiryu S. *Deep learning with convolutional neural "
    "network for differentiation of liver masses at dynamic contrast-enhanced CT: a preliminary study.* "
    "Radiology 2018;286(3):887-896 (doi:10.1148/radiol.2017170706). The network sorts a liver mass into "
    "five categories from 70 x 70 crops of the unenhanced, arterial and delayed phases:"
)
st.markdown(
    "- **A** classic HCC · **B** other malignant (cholangiocarcinoma, metastases) · **C** indeterminate "
    "or rare benign (early HCC, dysplastic and arterially enhancing nodules) · **D** haemangioma · **E** cyst\n"
    "- five phase-models (triphasic, arterial + delayed, unenhanced, arterial, delayed) show what each "
    "phase contributes."
)
st.markdown(
    "**Who it is for.** Residents learning the enhancement patterns; radiologists checking the model's "
    "rationale (class activation maps) on their own cases; teaching demonstrations. Uploaded images stay "
    "in the server's memory for your session only: they are not stored or logged."
)
st.subheader("Where to start")
st.markdown(
    "**Residents:** start in the **Teaching library** (every category and subtype, phase by phase, with "
    "its findings), then test yourself in the **Quiz** (findings first, then the category; cases you miss "
    "come back sooner) and follow your **Progress** over the weeks. Open **Review a lesion** to see what "
    "the network makes of a case, and **Study results** for how the models did against the paper."
)
STARTS = (
    (
        "pages/library.py",
        "Teaching library",
        ":material/menu_book:",
        "Liver masses of every category and subtype in the three phases, with their time-attenuation "
        "curve, their findings and why they belong to their category.",
    ),
    (
        "pages/quiz.py",
        "Quiz",
        ":material/quiz:",
        "Mark the findings of each phase, then the category and how sure you are, or step through the "
        "phases; then the truth, the criteria and what the network said. Your answers are kept, and cases "
        "come back by spaced repetition.",
    ),
    (
        "pages/progress.py",
        "Progress",
        ":material/insights:",
        "Your accuracy per category and per finding over time, how sure you were, your streak, and when "
        "each case comes back; educators see the group's weak points.",
    ),
    (
        "pages/review.py",
        "Review a lesion",
        ":material/search:",
        "Open an example case in one click or upload your own three phases (DICOM slices, a DICOM "
        "series per phase, or screen captures); mark the lesion; see measurements, the five "
        "category probabilities and Grad-CAM maps; download a de-identified report.",
    ),
    (
        "pages/compare.py",
        "Compare phase-models",
        ":material/compare:",
        "The same lesion through all five phase-models, where they agree or disagree, and what "
        "the paper reported for each model.",
    ),
    (
        "pages/results.py",
        "Study results",
        ":material/analytics:",
        "The paper's tables beside ours (accuracy, sensitivity, ROC), the confusions the paper "
        "teaches and the cases behind each, and whether the network looks at the lesion.",
    ),
)
for column, (path, title, icon, what) in zip(st.columns(3) + st.columns(3), STARTS, strict=False):
    column.page_link(path, label=title, icon=icon)
    column.caption(what)

st.subheader("Models")
sets, problems = state.model_sets()
current = state.model_set()
st.caption(
    "Each model card says what the model was trained on (cohort, size, image sets per category), when, "
    "by which code version, how accurate it was on its test set, its calibration and the feature distance "
    "beyond which a case counts as unlike its training data; the paper's figures are beside them."
    + (" Choose the model set in the sidebar." if len(sets) > 1 else "")
)
st.markdown(
    "**Not the same test.** The rows *this model* are measured on the model's own data (rows "
    "*trained on* and *tested on*; the bundled models: synthetic CT from the livercore phantom), "
    "one training each. The rows *paper* are Yasaka et al.'s, on patients' CT: 100 test patients, "
    "median (range) of five trainings. The phantom follows the textbook patterns more closely than "
    "patients do, so a higher score here does not make a better network than the paper's."
)
for problem in problems:
    st.warning(problem, icon=":material/folder_off:")
for model_set in sets:
    in_use = " (in use)" if model_set.key == current.key else ""
    st.markdown(f"##### {model_set.label}{in_use}")
    cards = state.model_cards(model_set.folder)
    if not cards:
        if model_set.key == current.key:
            ui.no_models_message(state.refused_models())
        else:
            st.info("No phase-models in this set's folder.")
        continue
    study = (
        "its study is in its folder (Study results)" if model_set.has_study else "shipped without its study"
    )
    st.caption(f"{len(cards)} phase-models; {study}.")
    st.table(ui.model_cards_table(cards))
    missing = [m for m in MODEL_NAMES if m not in cards]
    if missing:
        st.warning("Missing phase-models: " + ", ".join(missing) + ".")
    # Drawn only while open: five JSON trees cost a browser on one core some 0.4 s even when hidden.
    full_cards = st.expander(
        f"Full model cards: {model_set.label}", key=f"model-cards-{model_set.key}", on_change="rerun"
    )
    if full_cards.open:
        for name, card in cards.items():
            full_cards.markdown(f"**{PHASE_MODELS[name].label}**")
            full_cards.json(card, expanded=False)

examples = catalogue.example_cases()
st.subheader("Example cases")
st.caption(
    f"{len(examples)} synthetic cases from the livercore phantom, two per category in no particular "
    "order; each opens on the Review page with its lesion marked, its reference standard hidden until you "
    "open it."
)
for column, entry in zip(st.columns(5) * 2, examples, strict=False):
    column.page_link(
        "pages/review.py",
        label=entry.label,
        icon=":material/radiology:",
        query_params={"case": entry.case_id},
    )
