"""Streamlit pieces the pages share: the disclaimer, model cards, crops, CAMs, probabilities.

These draw what the package computed; they compute nothing themselves.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import streamlit as st

from livercore.app import figures, viewer
from livercore.paper import model_reference
from livercore.vocab import CAM_METHODS, CATEGORIES, DISCLAIMER, PHASE_MODELS, PHASES, Category, Phase

if TYPE_CHECKING:
    from livercore.analysis import ModelResult
    from livercore.identity import Identity
    from livercore.measure import Measurements

CROP_ZOOM = 3  # the 70 x 70 crops are shown at 210 x 210, nearest neighbour
# Model-card rows; "{data}" is what the model was measured on (model_cards_table fills it in).
CARD_FIELDS = {
    "phases": "phases",
    "categories": "categories it knows",
    "trained_on": "trained on",
    "training_mix": "training image sets per category",
    "tested_on": "tested on",
    "date": "trained (UTC)",
    "device": "device",
    "train_accuracy": "this model: training accuracy, {data}",
    "test_accuracy": "this model: test accuracy, {data}",
    "test_auc_clinical": "this model: test AUC (A-B vs C-E), {data}",
    "calibration": "calibration (temperature; ECE before -> after, on validation)",
    "ood": "unlike the training data beyond (feature distances)",
    "code_version": "code version",
}
# The paper's rows (paper.md: Table 1, Table 2; five training sessions per model).
PAPER_ROWS = {
    "paper test accuracy": "paper: test accuracy, 100 patients (CT of 2016), median (range) of 5 trainings",
    "paper training accuracy": "paper: training accuracy, 460 patients (CT of 2013), median (range)",
    "paper AUC (A-B vs C-E)": "paper: test AUC (A-B vs C-E), 100 patients, median (range)",
}


_RUN = threading.local()  # Streamlit runs the router and the page in one thread per script run


def disclaimer() -> None:
    """The teaching-and-research disclaimer, shown at the top of every page (by the router)."""
    st.warning(DISCLAIMER, icon=":material/school:")


@contextmanager
def routed() -> Iterator[None]:
    """The router runs the page inside this, so the page knows the router's frame is drawn."""
    _RUN.routed = True
    try:
        yield
    finally:
        _RUN.routed = False


def require_router() -> None:
    """Send a page run that bypassed the router back through it.

    Until some session has called ``st.navigation``, Streamlit treats ``pages/`` as a legacy
    multipage folder and runs a page requested by URL (``/review?case=...``) on its own: no
    page config, no disclaimer, no start-up. Such a run switches the legacy mode off and
    reruns, which goes through the router; should Streamlit's internals change, the page draws
    the disclaimer itself instead.
    """
    if getattr(_RUN, "routed", False):
        return
    try:
        from streamlit.runtime.pages_manager import PagesManager

        legacy = bool(PagesManager.uses_pages_directory)
    except (ImportError, AttributeError):
        legacy = False
    if legacy:
        PagesManager.uses_pages_directory = False
        st.rerun()
    disclaimer()


def _cell(key: str, value: Any) -> str:
    if value is None:
        return {"categories": "all five", "calibration": "none (the network's own probabilities)"}.get(
            key, "—"
        )
    if key == "training_mix" and isinstance(value, dict):
        return " · ".join(f"{c} {n}" for c, n in value.items())
    if key == "calibration" and isinstance(value, dict):
        if not value.get("fitted_on"):
            return "none (the network's own probabilities)"
        return (
            f"T = {value['temperature']:.2f}; ECE {value['ece_before']:.3f} -> {value['ece_after']:.3f} "
            f"({value['fitted_on']})"
        )
    if key == "ood" and isinstance(value, dict):
        spaces = value.get("spaces", {})
        limits = ", ".join(f"{k} {v['threshold']:.1f}" for k, v in spaces.items() if v.get("threshold"))
        rate = value.get("in_distribution_rate")
        return (
            f"{limits} (let {rate * 100:.0f} % of {value.get('threshold_on')} through)"
            if limits and rate
            else "not checked (no statistics in the file)"
        )
    if key == "date" and isinstance(value, str):
        return value[:16].replace("T", " ")
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict) and {"median", "low", "high"} <= value.keys():
        return f"{value['median']:.3f} ({value['low']:.3f}-{value['high']:.3f})"
    return str(value)


def model_cards_table(cards: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One column per installed model: its card's main fields, then the paper's figures; the row
    labels say which figures are the model's and on what data (synthetic phantom CT when every
    card says it was trained on the phantom), and which are the paper's, on patients."""
    reference = model_reference()
    phantom = bool(cards) and all(
        "phantom" in str(card.get("trained_on", "")).lower() for card in cards.values()
    )
    data = "synthetic phantom CT" if phantom else "its own data (trained on, tested on)"
    columns = {}
    for name, card in cards.items():
        column = {label.format(data=data): _cell(key, card.get(key)) for key, label in CARD_FIELDS.items()}
        if "ood" not in card:
            column[CARD_FIELDS["ood"]] = "not checked (no statistics in the file)"
        column |= {PAPER_ROWS.get(k, k): v for k, v in reference.loc[name].items()}
        columns[PHASE_MODELS[name].label] = column
    return pd.DataFrame(columns)


def model_set_picker() -> None:
    """In the sidebar, when the server offers more than one model set (livercore.model_sets):
    which one this session's pages use. Stored under state.MODEL_SET_KEY."""
    from livercore.app import state

    sets, _ = state.model_sets()
    if len(sets) < 2:
        return
    keys = [s.key for s in sets]
    if st.session_state.get(state.MODEL_SET_KEY) not in keys:
        st.session_state[state.MODEL_SET_KEY] = keys[0]
    st.sidebar.selectbox(
        "Models",
        keys,
        format_func=lambda k: next(s.label for s in sets if s.key == k),
        key=state.MODEL_SET_KEY,
        help="The model sets this server is configured with (LIVERCORE_MODEL_SETS); the home page "
        "shows each one's cards.",
    )


METADATA_LABELS = {
    "manufacturer": "manufacturer",
    "kvp": "kVp",
    "slice_thickness_mm": "slice thickness (mm)",
    "pixel_spacing_mm": "pixel spacing (mm)",
    "series_description": "series description",
    "contrast_agent": "contrast agent",
    "acquisition_time": "acquisition time",
    "phase_hint": "phase from the header",
}


def metadata_table(metadata: Mapping[Any, Mapping[str, Any]]) -> pd.DataFrame:
    """Phases as columns, the allow-listed header values (CTSlice.metadata) as rows."""
    columns = {}
    for phase, meta in metadata.items():
        column = {}
        for key, label in METADATA_LABELS.items():
            value = meta.get(key)
            if key == "pixel_spacing_mm" and value:
                value = " x ".join(f"{v:.3f}" for v in value)
            column[label] = "—" if value in (None, "") else str(value)
        columns[str(getattr(phase, "value", phase))] = column
    return pd.DataFrame(columns)


def no_models_message(refused: Sequence[str] = ()) -> None:
    """No usable models: where to put them, and why any files there were refused."""
    st.error(
        "No trained models were found. Put the five phase-models (triphasic.pt, art_del.pt, "
        "unenhanced.pt, arterial.pt, delayed.pt) in the models/ folder, or point the "
        "LIVERCORE_MODELS environment variable at the folder that holds them.",
        icon=":material/error:",
    )
    refused_models_message(refused)


def refused_models_message(refused: Sequence[str], models: Mapping[str, Any] | None = None) -> None:
    """One warning per model file that this livercore cannot use, with its reason; a caption per
    note of a loaded model (what its file lacks: a temperature, OOD statistics)."""
    for sentence in refused:
        st.warning(f"Model not loaded: {sentence}", icon=":material/block:")
    for model in (models or {}).values():
        for note in model.notes:
            st.caption(f":material/info: {note}")


def crops_row(crops: np.ndarray, *, caption: str = "network input") -> None:
    """The three 70 x 70 crops the network sees, enlarged."""
    for column, p, crop in zip(st.columns(len(PHASES)), PHASES, crops, strict=True):
        column.image(figures.enlarge(crop, CROP_ZOOM), caption=f"{p.value}: {caption}", width=70 * CROP_ZOOM)


def cam_panel(
    crops: np.ndarray,
    result: ModelResult,
    phase: Phase,
    *,
    opacity: float,
    method: str,
    width: int = 280,
    explain: bool = True,
) -> None:
    """One model's CAM, drawn once, over the crop of the phase chosen; with `explain`, what the
    map is in words (else only the phase it is drawn over)."""
    if result.cam is None:
        return
    crop = crops[PHASES.index(phase)]
    st.image(figures.enlarge(figures.cam_overlay(crop, result.cam, opacity), 4), width=width)
    if not explain:
        st.caption(f"over the {phase.value} crop")
        return
    target = f"{result.cam_target.value} {result.cam_target.info.name}" if result.cam_target else None
    seen = PHASE_MODELS[result.name].phases
    over = f"Drawn over the {phase.value} crop."
    if len(seen) > 1:
        over += (
            f" One map for all {len(seen)} phases: the network's last convolutional layer has "
            "already mixed them, so the map says where, not in which phase (see the bars)."
        )
    st.caption(f"{over} {cam_caption(method, target)}")


def cam_caption(method: str, target: str | None) -> str:
    """The caption of a CAM: what the method shows, and its category only when it has one."""
    info = CAM_METHODS.get(method)
    return info.caption(target) if info else f"{method} for {target or 'the category'}."


def cam_legend() -> None:
    """The CAM colour bar (blue low, red high)."""
    st.image(figures.cam_colourbar_png(), width=210)


def contribution_bars(result: ModelResult, *, explain: bool = True) -> None:
    """A multi-phase model's phase contributions as one bar per phase, with its sentence (and,
    with `explain`, what the bars are)."""
    if result.contribution is None:
        phase = PHASE_MODELS[result.name].phases[0]
        st.caption(f"This model sees one phase ({phase.value}): all its evidence comes from it.")
        return
    st.html(figures.contribution_bars_html(result.contribution))
    (st.markdown if explain else st.caption)(result.contribution.sentence())
    if explain:
        st.caption(CONTRIBUTION_CAPTION)


CONTRIBUTION_CAPTION = (
    "Shapley value of each phase: how much showing it, instead of a flat image of its mean "
    "brightness, raises the probability (percentage points), averaged over every order of "
    "revealing the phases. The bars add up to the probability with all phases minus the "
    "probability with none."
)


def ood_notice(result: ModelResult, *, model_label: bool = False) -> None:
    """The "unlike the training data" notice of a flagged model, its reasons as a list."""
    assert result.ood is not None
    who = f"{PHASE_MODELS[result.name].label} model: " if model_label else ""
    reasons = "\n".join(f"- {r[:1].upper()}{r[1:]}" for r in result.ood.reasons)
    st.warning(
        f"**{who}Unlike the training data.** The prediction rests on images unlike those this model "
        f"learnt from:\n{reasons}",
        icon=":material/report:",
    )


@functools.cache
def _viewer_component() -> Callable[..., Any]:
    js, css = viewer.assets()
    return st.components.v2.component("livercore.viewer", js=js, css=css)


def lesion_viewer(data: dict[str, Any], *, key: str, on_select: Callable[[], None]) -> None:
    """Draw one lesion viewer (`data` from viewer.viewer_data). A selection on it calls
    `on_select` before the next run, which reads it with viewer_selection(key) (a trigger: it
    holds for that run only)."""
    _viewer_component()(data=data, key=key, height="content", on_selection_change=on_select)


def viewer_selection(key: str) -> dict[str, Any] | None:
    """The selection the viewer under `key` has just reported (inside its on_select), or None."""
    value: Any = st.session_state.get(key)
    chosen = value.get(viewer.SELECTION) if isinstance(value, Mapping) else None
    return chosen if isinstance(chosen, dict) else None


def attenuation_chart(measurements: Measurements, *, height: int = 300) -> None:
    """The time-attenuation curves (figures.attenuation_svg). Through st.markdown: st.html's
    sanitiser keeps HTML only and would take the SVG out."""
    st.markdown(figures.attenuation_svg(measurements, height=height), unsafe_allow_html=True)


def probability_bars(result: ModelResult) -> None:
    """The model's calibrated probability of each category it knows, as bars."""
    st.html(figures.probability_bars_html(result.probabilities, categories=result.categories))


def probability_headline(result: ModelResult) -> None:
    """The model's top category, labelled as made on images unlike its training data when its
    out-of-distribution check fired (the notice with the reasons above it)."""
    top = result.predicted
    p = float(result.probabilities[top.output_index]) * 100
    if result.unlike_training:
        ood_notice(result)
    label = "Prediction on images unlike the training data" if result.unlike_training else "top category"
    st.markdown(
        f"**{PHASE_MODELS[result.name].label} model:** {label}: "
        f"**{top.value} — {top.info.name}** ({p:.0f} %, calibrated), clinical score {top.info.clinical_score} "
        f"({'malignant' if top.info.clinical_score == 4 else 'not malignant'} in the paper's ROC analysis)."
    )
    st.caption(top.info.description)
    if tuple(result.categories) != tuple(CATEGORIES):
        st.caption(
            "This model knows only categories "
            + ", ".join(c.value for c in result.categories)
            + ": its training cohort had no "
            + ", ".join(c.value for c in CATEGORIES if c not in result.categories)
            + "."
        )


def review_link(case_id: str, label: str = "Open on the Review page") -> None:
    """A link that opens `case_id` on the review page (``?case=<case_id>``)."""
    page_link("pages/review.py", label, ":material/search:", query={"case": case_id})


def page_link(
    path: str, label: str, icon: str, *, query: dict[str, str] | None = None, where: Any = None
) -> None:
    """A page link inside the app's router; a plain relative link when a page runs on its own
    (tests, previews), where Streamlit knows no other page."""
    from urllib.parse import urlencode

    from streamlit.errors import StreamlitAPIException

    target = where or st
    try:
        target.page_link(path, label=label, icon=icon, query_params=query)
    except StreamlitAPIException:
        name = path.removeprefix("pages/").removesuffix(".py")
        target.markdown(f"[{label}]({name}{'?' + urlencode(query) if query else ''})")


@dataclass(frozen=True)
class CamChoice:
    """What the CAM controls chose: the method, its target category (None: the top one) and
    the overlay's opacity."""

    method: str
    target: Category | None
    opacity: float


def cam_controls(columns: Sequence[Any], *, keys: tuple[str, str, str], top_label: str) -> CamChoice:
    """The CAM method, target and opacity widgets, in three of the page's columns; the target is
    disabled for a method without one (EigenCAM). `keys`: the widgets' session-state keys."""
    method_key, target_key, opacity_key = keys
    method = columns[0].selectbox("CAM method", list(CAM_METHODS), key=method_key)
    has_target = CAM_METHODS[method].has_target
    target = columns[1].selectbox(
        "CAM for",
        [None, *CATEGORIES],
        key=target_key,
        format_func=lambda c: top_label if c is None else f"{c.value} {c.info.name}",
        disabled=not has_target,
        help=None if has_target else f"{method} has no target category.",
    )
    opacity = columns[2].slider("CAM opacity", 0.0, 1.0, 0.45, 0.05, key=opacity_key)
    return CamChoice(method, target, opacity)


def sign_in() -> Identity | None:
    """Draw who is learning (the login button, or the demo-mode name box) and return them
    (livercore.identity; state.current_learner)."""
    from livercore import identity
    from livercore.app import state

    if state.login_configured() and not st.user.is_logged_in:
        st.info("Log in to keep your answers and see your progress.", icon=":material/login:")
        st.button("Log in", on_click=st.login, key="learner_login")
        return None
    if identity.demo_mode(login_configured=state.login_configured()):
        st.text_input(
            "Your name (demo mode)",
            key=state.DEMO_NAME_KEY,
            max_chars=identity.NAME_LENGTH,
            placeholder="e.g. Dr Tanaka",
            help="No sign-in is configured on this server: your answers are kept under this name, and "
            "anyone who types the same name shares its history.",
        )
    who = state.current_learner()
    if who is None:
        if identity.trusted_header() is not None:
            st.warning("This server expects the hospital's proxy to say who you are, and it did not.")
        else:
            st.caption("Type a name to keep your answers and see your progress across visits.")
        return None
    role = " · educator" if who.is_educator else ""
    st.caption(f":material/person: **{who.display_name}**{role} ({who.how})")
    return who
