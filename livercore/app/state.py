"""Caches shared by every session (models, example cases, analyses) and per-session state.

Streamlit serves each browser session as a thread of one process: ``st.cache_resource``
objects (the models, the example cases) are shared and must be treated as read-only;
inference and CAMs go through :func:`livercore.analysis.analyse_crops`, which serialises them
under its lock. Per-session state (the case under review and its marks) lives in
``st.session_state`` under the keys below.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import numpy as np
import streamlit as st

from livercore.app.figures import display_u8, png_data_uri
from livercore.app.marks import Marks
from livercore.measure import Measurements, Point
from livercore.model_sets import ModelSet, configured_sets, find_set
from livercore.preprocess import CROP_SIZE
from livercore.review_case import ReviewCase
from livercore.teaching import catalogue
from livercore.vocab import MODEL_NAMES, PHASES, Phase, Window

if TYPE_CHECKING:  # torch and grad-cam take seconds to import, pydicom half a second: the home page
    from sqlalchemy import Engine  # must not wait for them

    from livercore.analysis import Analysis, LoadedModel
    from livercore.app.uploads import UploadPool
    from livercore.cohort_builder import BuilderStore, StudyFolder
    from livercore.dicom_study import ImagingStudy
    from livercore.identity import Identity
    from livercore.phases import PhaseCheck

CASE_KEY = "review_case"  # the ReviewCase under review, shared by the review and compare pages
MARKS_KEY = "review_marks"  # its Marks
POOL_KEY = "upload_pool"  # the review page's UploadPool: the uploads in memory and their phases
MODEL_SET_KEY = "model_set"  # the key of the model set picked in the sidebar (livercore.model_sets)
# Inference threads per process. One: the 70 x 70 networks are too small to gain from intra-op
# parallelism, and on the 2-core demo server five models + Grad-CAM took 0.09 s with one thread
# against 1.8 s with two (OpenMP threads contending with Streamlit's own).
TORCH_THREADS = int(os.environ.get("LIVERCORE_TORCH_THREADS", "1"))
# Caches shared by all sessions that hold renderings of uploaded images (viewer PNGs, crops and
# CAMs) are dropped this long after they were computed, so an upload does not outlive its
# session by much in the server's memory.
UPLOAD_CACHE_TTL_S = 900


@st.cache_resource(show_spinner=False)
def configure_torch() -> int:
    """Import torch and set its intra-op threads, once per process (before any inference)."""
    import torch

    torch.set_num_threads(TORCH_THREADS)  # process-wide: every session thread inherits it
    return TORCH_THREADS


@st.cache_resource(show_spinner=False)
def start_up() -> threading.Thread:
    """Once per process, called by the router after it has drawn the first page: in the
    background, set torch's threads and load and warm the models (torch and grad-cam take
    seconds to import), so neither the first page nor the first prediction waits for them."""
    thread = threading.Thread(target=get_models, name="livercore-warm-up", daemon=True)
    thread.start()
    return thread


def model_sets() -> tuple[list[ModelSet], list[str]]:
    """The model sets this server offers (livercore.model_sets: the bundled one, then those in
    $LIVERCORE_MODEL_SETS), and a sentence for each configured one it cannot offer."""
    return configured_sets()


def model_set() -> ModelSet:
    """The model set this session uses: the one picked in the sidebar, else the bundled one."""
    return find_set(st.session_state.get(MODEL_SET_KEY))


def models_dir() -> Path:
    """The folder of this session's model set (the bundled one: $LIVERCORE_MODELS, read at call
    time, else ``models/`` beside the package)."""
    return model_set().folder


def _stamp(folder: Path) -> tuple[tuple[str, int], ...]:
    """Names and modification times of the model files: new weights invalidate the cache."""
    return (
        tuple(sorted((f.name, f.stat().st_mtime_ns) for f in folder.glob("*.pt"))) if folder.is_dir() else ()
    )


@st.cache_resource(show_spinner=False, max_entries=2)
def _load_models(folder: str, stamp: tuple[tuple[str, int], ...]) -> tuple[dict[str, LoadedModel], list[str]]:
    """(the usable models, a sentence for each model file that was refused)."""
    configure_torch()
    from livercore.analysis import analyse_crops, load_models

    refused: list[str] = []
    models = load_models(folder, refused=refused)
    if models:  # one warm-up pass: the first grad-cam call pays for hooks and allocator set-up (~1.5 s)
        analyse_crops(np.zeros((len(PHASES), CROP_SIZE, CROP_SIZE), np.uint8), models, cam_method="GradCAM")
    return models, refused


def model_cards(folder: Path | None = None) -> dict[str, dict[str, Any]]:
    """The model cards of a model folder (default this session's), ``<name>.json`` beside
    ``<name>.pt``, read without loading torch; models without a JSON card fall back to the card
    inside the weights file."""
    folder = folder or models_dir()
    cards: dict[str, dict[str, Any]] = {}
    for name in MODEL_NAMES:
        if not (folder / f"{name}.pt").exists():
            continue
        try:
            cards[name] = json.loads((folder / f"{name}.json").read_text())
        except (OSError, ValueError):
            model = _load_models(str(folder), _stamp(folder))[0].get(name)
            cards[name] = dict(model.card) if model else {}
    return cards


def get_models() -> dict[str, LoadedModel]:
    """The shipped phase-models (shared, read-only); empty when none are installed."""
    folder = models_dir()
    stamp = _stamp(folder)
    if not stamp:
        return {}
    return _load_models(str(folder), stamp)[0]


def refused_models() -> list[str]:
    """Why each model file in the models folder that could not be used was refused."""
    folder = models_dir()
    stamp = _stamp(folder)
    return list(_load_models(str(folder), stamp)[1]) if stamp else []


def models_key(models: dict[str, LoadedModel]) -> str:
    """A cache key that changes when different models are loaded."""
    return str(models_dir()) + "|" + ",".join(models) + "|" + str(_stamp(models_dir()))


@st.cache_data(max_entries=512, ttl=UPLOAD_CACHE_TTL_S, show_spinner=False)
def analyse(
    crops: np.ndarray,
    cam_method: str | None,
    cam_target: str | None,
    key: str,
    explain: tuple[str, ...] | None = None,
) -> Analysis:
    """Probabilities of every loaded model for (3, 70, 70) uint8 crops, with the CAMs and phase
    contributions of the models in `explain` (None: all), cached."""
    from livercore.analysis import analyse_crops

    del key  # only part of the cache key
    return analyse_crops(crops, get_models(), cam_method=cam_method, cam_target=cam_target, explain=explain)


def with_image_checks(
    analysis: Analysis, case: ReviewCase, marks: Marks, measurements: Measurements | None = None
) -> Analysis:
    """The analysis with the image checks of a case in HU (livercore.ood.check_images: liver and
    aorta attenuation, noise, a box on air) added to each model's out-of-distribution result;
    from the page's `measurements` when it made them. Screen captures hold no HU: unchanged."""
    if not case.is_hu:
        return analysis
    from livercore.ood import check_images

    aorta = marks.aorta or None
    findings = check_images(case.images, marks.boxes, case.spacing_mm, measurements=measurements, aorta=aorta)
    return analysis.with_findings(findings)


def measurements(case: ReviewCase, marks: Marks, aorta: dict[Phase, Point]) -> Measurements:
    """Lesion, liver and aorta HU of a case under its marks (measure.measure_case), cached: a
    repeated view (another model, method or page) does not measure again."""
    key = repr((sorted(marks.boxes.items()), sorted(marks.liver.items()), sorted(aorta.items())))
    return _measurements(case.token, key, case, marks, aorta)


@st.cache_data(max_entries=256, ttl=UPLOAD_CACHE_TTL_S, show_spinner=False)
def _measurements(token: str, key: str, _case: ReviewCase, _marks: Marks, _aorta: dict) -> Measurements:
    from livercore.measure import measure_case

    del token, key  # only the cache key
    return measure_case(_case.images, _case.spacing_mm, _marks.boxes, _marks.liver, _aorta)


def open_teaching_case(case_id: str) -> ReviewCase:
    """A teaching case by id (livercore.teaching.catalogue.open_case), shared and read-only: a
    stored example is read once, a phantom case regenerated once, then reused. The case and
    site folders are part of the cache key."""
    site = catalogue.site_cases_dir()
    return _teaching_case(case_id, str(catalogue.cases_dir()), str(site) if site else "")


@st.cache_resource(max_entries=64, show_spinner=False)
def _teaching_case(case_id: str, root: str, site: str) -> ReviewCase:
    del site  # only part of the cache key
    return catalogue.open_case(case_id, Path(root))


@st.cache_data(max_entries=256, ttl=UPLOAD_CACHE_TTL_S, show_spinner=False)
def viewer_png(token: str, phase: Phase, level: float | None, width: float | None, _image: np.ndarray) -> str:
    """The viewer's PNG data URI of one phase in a window (keyed by the case's content token)."""
    window = Window(level, width) if level is not None and width is not None else None
    return png_data_uri(display_u8(_image, window))


def current_case() -> ReviewCase | None:
    return st.session_state.get(CASE_KEY)


def current_marks() -> Marks:
    return st.session_state.get(MARKS_KEY) or Marks()


def set_case(case: ReviewCase | None, marks: Marks | None = None) -> None:
    """Make `case` the case under review, with its preselected marks (or `marks`)."""
    st.session_state[CASE_KEY] = case
    if case is None:
        st.session_state[MARKS_KEY] = Marks()
        return
    if marks is None:
        aorta = dict(case.aorta_centres)
        centre, _ = phase_check(case)
        if not aorta and centre is not None:
            aorta = dict.fromkeys(PHASES, centre)
        marks = Marks(boxes=dict(case.lesion_boxes), liver=dict(case.liver_centres), aorta=aorta)
    st.session_state[MARKS_KEY] = marks


def set_marks(marks: Marks) -> None:
    st.session_state[MARKS_KEY] = marks


def upload_pool() -> UploadPool | None:
    """This session's uploads on the review page, if any."""
    return st.session_state.get(POOL_KEY)


def set_upload_pool(pool: UploadPool) -> None:
    st.session_state[POOL_KEY] = pool


@st.cache_data(max_entries=128, show_spinner=False)
def _phase_check(token: str, _case: ReviewCase) -> tuple[Point | None, PhaseCheck | None]:
    del token  # the cache key
    from livercore.phases import aorta_check

    return aorta_check(_case)


def phase_check(case: ReviewCase) -> tuple[Point | None, PhaseCheck | None]:
    """The aorta's centre and the phase plausibility check of a case (cached by content)."""
    return _phase_check(case.token, case)


def share_url(case_id: str) -> str:
    """The address that opens an example case on the review page: <app>/review?case=<id>."""
    url = st.context.url or ""
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    path = (
        parts.path.rsplit("/", 1)[0]
        if parts.path.endswith(("/review", "/compare"))
        else parts.path.rstrip("/")
    )
    return f"{base}{path}/review?{urlencode({'case': case_id})}"


# --- the cohort builder (pages/builder.py): its work lives in the store, not in session_state ---


@st.cache_resource(show_spinner=False)
def _builder_store(url: str) -> BuilderStore:
    from livercore.cohort_builder import BuilderStore

    return BuilderStore.open(url)


def builder_store() -> BuilderStore:
    """The cohort builder's store ($LIVERCORE_DATABASE_URL, else the default SQLite file),
    shared by every session; its schema upgraded on first use."""
    from livercore.store import database_url

    return _builder_store(database_url())


def _folder_stamp(folder: Path) -> tuple[int, int]:
    """(files, newest modification time in ns) of a folder: a changed study is read again."""
    times = [p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()]
    return len(times), max(times, default=0)


def builder_study(root: Path, folder: StudyFolder) -> ImagingStudy:
    """A study of the studies folder as volumes (livercore.cohort_builder.read_study), shared by
    the sessions annotating it and kept for a few studies only (volumes are large). Keyed by
    the study's salted key, never its folder name."""
    return _builder_study(folder.key, _folder_stamp(folder.path), root, folder)


@st.cache_resource(max_entries=3, ttl=UPLOAD_CACHE_TTL_S, show_spinner="Reading the study's series…")
def _builder_study(key: str, stamp: tuple[int, int], _root: Path, _folder: StudyFolder) -> ImagingStudy:
    from livercore.cohort_builder import read_study

    del key, stamp  # only the cache key
    return read_study(_root, _folder)


@st.cache_data(max_entries=96, ttl=UPLOAD_CACHE_TTL_S, show_spinner=False)
def builder_png(key: str, series: int, section: int, window: Window, _hu: np.ndarray) -> str:
    """The builder viewer's PNG data URI of one section (HU, (H, W)) in `window`, keyed by the
    study's key, the series and the section."""
    del key, series, section  # only the cache key
    return png_data_uri(display_u8(_hu, window))


# --- the learner (pages/quiz.py, pages/progress.py): who, and their row in the store -----------

DEMO_NAME_KEY = "learner_demo_name"  # the name typed in demo mode
LEARNER_KEY = "learner_row"  # ((subject, name, role), row id) of this session's learner


def login_configured() -> bool:
    """Whether Streamlit's OIDC login is set up (an [auth] section in secrets.toml)."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all: Streamlit raises its own not-found error
        return False


def current_learner() -> Identity | None:
    """This session's learner (livercore.identity.resolve on st.user, the request headers and
    the demo name), or None: nobody logged in, no proxy user, no demo name yet."""
    from livercore import identity

    user: dict[str, Any] | None = None
    if login_configured():
        user = {"is_logged_in": bool(st.user.is_logged_in)}
        if user["is_logged_in"]:
            user |= {k: st.user.get(k) for k in ("email", "sub", "name")}
    return identity.resolve(
        user=user, headers=dict(st.context.headers or {}), demo_name=st.session_state.get(DEMO_NAME_KEY)
    )


@st.cache_resource(show_spinner=False)
def _store_engine(url: str) -> Engine:
    from livercore import store

    return store.get_engine(url)


def learner_engine() -> Engine:
    """The store shared by every session ($LIVERCORE_DATABASE_URL, else the default SQLite
    file, created on first use)."""
    from livercore.store import database_url

    return _store_engine(database_url())


def learner_id(who: Identity) -> int:
    """The learner's row id (created on their first visit), cached for the session."""
    from livercore.teaching import record

    cached = st.session_state.get(LEARNER_KEY)
    if cached and cached[0] == (who.subject, who.display_name, who.role):
        return int(cached[1])
    row = record.learner_id(learner_engine(), who)
    st.session_state[LEARNER_KEY] = ((who.subject, who.display_name, who.role), row)
    return row
