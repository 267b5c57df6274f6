"""Review a lesion: choose a case, mark the lesion, see measurements, probabilities and CAMs."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import streamlit as st

from livercore import preprocess
from livercore.app import compare, inputs, profiling, state, ui, viewer
from livercore.app.marks import MarkMode, apply_selection, describe_box, resize_boxes
from livercore.app.report import report_json, report_png
from livercore.app.uploads import UploadPool
from livercore.captures import read_capture
from livercore.errors import InputError
from livercore.measure import ROI_DIAMETER_MM, Point
from livercore.review_case import ReviewCase
from livercore.teaching import catalogue
from livercore.vocab import LIVER_WINDOW, PHASE_MODELS, PHASES, SUBTYPE_LABELS, Phase, Window

if TYPE_CHECKING:
    from livercore.analysis import Analysis

WINDOW_CHOICES = ("Paper's windows (the network's input)", "Liver window", "Custom")

ui.require_router()
st.title("Review a lesion")
examples = catalogue.example_cases()


def open_example(case_id: str) -> None:
    try:
        state.set_case(state.open_teaching_case(case_id))
        st.query_params["case"] = case_id
    except InputError as err:
        st.error(str(err))
        st.query_params.clear()


# A shared link (?case=<id>) opens that example case with its lesion preselected.
linked = st.query_params.get("case")
current = state.current_case()
if linked and (current is None or current.case_id != linked):
    open_example(linked)
    st.session_state["review_source"] = inputs.SOURCES["library"]
    st.session_state["example_pick"] = linked

# --- 1. the case -------------------------------------------------------------------------------
st.subheader("1. Case")
source_label = st.radio("Source", list(inputs.SOURCES.values()), horizontal=True, key="review_source")
source = next(k for k, v in inputs.SOURCES.items() if v == source_label)


def use_pool(
    source: str,
    files: tuple,
    view: tuple,
    read: Callable[[], list],
    labels: list[str],
    pixel_mm: float | None = None,
) -> None:
    """Keep what was uploaded (in memory) and propose which item is which phase. `files`
    identifies the uploads, `view` the slices chosen from them (a new view keeps the marks);
    `read` reads the items, only when the pool does not hold them already (not every run)."""
    pool = state.upload_pool()
    if pool and pool.holds(source, files):
        pool.show(view, read, labels, pixel_mm)
        return
    state.set_upload_pool(UploadPool.start(source, files, view, read(), labels, pixel_mm))
    st.query_params.clear()


def reorder_phases(suggested: dict[Phase, Phase]) -> None:
    pool = state.upload_pool()
    if pool is not None:
        pool.reorder(suggested)


try:
    if source == "library":
        if not examples:
            st.info("No example cases are installed (cases/catalogue.csv); upload a case instead.")
        else:
            picked = st.pills(
                "Example cases (synthetic CT from the livercore phantom): one click opens a case",
                [e.case_id for e in examples],
                format_func=lambda cid: next(e.label for e in examples if e.case_id == cid),
                key="example_pick",
            )
            current = state.current_case()
            if picked and (current is None or current.case_id != picked):
                open_example(picked)
    elif source == "dicom":
        files = st.file_uploader(
            "Three single-slice CT DICOM files, one per phase (any file name; .dcm, .DCM or none)",
            type=None,
            accept_multiple_files=True,
            key="dicom_files",
        )
        if files:
            use_pool(
                "dicom",
                tuple(f.file_id for f in files),
                (),
                lambda: inputs.read_dicom_slices([(f.name, f.getvalue()) for f in files]),
                [f"file {i}: {f.name}" for i, f in enumerate(files, start=1)],
            )
    elif source == "series":
        st.caption("For each phase: the DICOM files of the series, or one zip of them; then pick the slice.")
        series = {}
        for column, p in zip(st.columns(3), PHASES, strict=True):
            up = column.file_uploader(
                f"{p.value} series", type=None, accept_multiple_files=True, key=f"series_{p}"
            )
            if up:
                series[p] = (tuple(f.file_id for f in up), [(f.name, f.getvalue()) for f in up])
        if len(series) == len(PHASES):
            cache = st.session_state.setdefault("series_cache", {})
            chosen, labels, view = [], [], []
            for column, p in zip(st.columns(3), PHASES, strict=True):
                sig, uploads = series[p]
                if cache.get(p, (None,))[0] != sig:
                    cache[p] = (sig, inputs.read_series_upload(uploads))
                slices = cache[p][1]
                k = (
                    column.slider(
                        f"{p.value} slice",
                        1,
                        len(slices),
                        (len(slices) + 1) // 2,
                        key=f"slice_{p}",
                        disabled=len(slices) == 1,
                    )
                    if len(slices) > 1
                    else 1
                )
                z = slices[k - 1].position_z_mm
                column.caption(f"slice {k} of {len(slices)}" + (f", z = {z:.1f} mm" if z is not None else ""))
                chosen.append(slices[k - 1])
                labels.append(f"{p.value} series, slice {k}")
                view.append(k)
            use_pool("series", tuple(s[0] for s in series.values()), tuple(view), lambda: chosen, labels)
        elif series:
            st.info("Upload a series for each of the three phases.")
    else:
        st.warning(
            "Screen captures often carry burned-in names, IDs and dates. Crop them away before "
            "uploading if you can; nothing you upload is stored or logged.",
            icon=":material/visibility:",
        )
        captures = {}
        for column, p in zip(st.columns(3), PHASES, strict=True):
            capture = column.file_uploader(f"{p.value} capture (PNG/JPEG)", type=None, key=f"capture_{p}")
            if capture:
                captures[p] = capture
        pixel_mm = st.number_input(
            "Pixel size of the captures in mm (leave 0 if unknown)", 0.0, 5.0, 0.0, 0.05
        )
        if len(captures) == len(PHASES):
            use_pool(
                "capture",
                tuple(f.file_id for f in captures.values()),
                (),
                lambda: [read_capture(f.getvalue()) for f in captures.values()],
                [f"{p.value} capture" for p in captures],
                pixel_mm or None,
            )
except InputError as err:
    st.error(str(err), icon=":material/error:")
    st.stop()

pool = state.upload_pool()
if source != "library" and pool and pool.source == source:
    with st.expander("Which image is which phase", expanded=False):
        st.caption("Proposed from acquisition times and series descriptions; correct it here if needed.")
        by_phase: dict[Phase, int] = {}
        for column, p in zip(st.columns(3), PHASES, strict=True):
            by_phase[p] = column.selectbox(
                p.value,
                range(3),
                index=pool.assignment[p],
                format_func=lambda i: pool.labels[i],
                key=f"assign_{p}_{pool.files}_{pool.version}",
            )
        if not pool.assign(by_phase):
            st.error("Each image must be used for exactly one phase.")
    if pool.stale:
        keep = pool.keeps_marks
        try:
            uploaded = pool.build()
        except InputError as err:
            st.error(str(err), icon=":material/error:")
            st.stop()
        state.set_case(uploaded, state.current_marks() if keep else None)

case = state.current_case()
if case is None or (source != "library" and case.source != source):
    st.info("Choose an example case, or upload the three phases of one lesion.")
    st.stop()

st.markdown(f"#### {case.title}")
for warning in case.warnings:
    st.warning(warning, icon=":material/warning:")
if case.metadata:
    with st.expander("Acquisition (allow-listed header values only)"):
        st.table(ui.metadata_table(case.metadata))
aorta_centre, check = state.phase_check(case)
if check is not None:
    if check.plausible:
        st.caption(f":material/check_circle: Phase check. {check.message}")
    else:
        correctable = pool is not None and case.source == pool.source
        hint = ""
        if correctable:
            hint = " Correct it under 'Which image is which phase' above" + (
                ", or:" if check.suggested else "."
            )
        st.warning(f"Phase check. {check.message}{hint}", icon=":material/swap_horiz:")
        if check.suggested and pool and case.source == pool.source:
            st.button("Use the order the aorta suggests", on_click=reorder_phases, args=(check.suggested,))
elif case.is_hu:
    st.caption(
        "Phase check: the aorta was not found automatically; mark it (Aorta ROI) to compare its attenuation."
    )

# --- 2. viewer ---------------------------------------------------------------------------------
st.subheader("2. Mark the lesion")
c1, c2, c3 = st.columns([2, 2, 1])
mode = MarkMode(
    c1.radio("A selection on an image sets", list(MarkMode), horizontal=True, key="mark_mode") or MarkMode.BOX
)
unit = "mm" if case.spacing_mm[Phase.ARTERIAL] else "pixels"
diameter = c2.number_input(f"Lesion diameter ({unit}) for a click", 3.0, 200.0, 20.0, 1.0, key="diameter")
c3.checkbox(  # read by mark(), when a selection is applied
    "Same position in all phases",
    value=True,
    key="link_phases",
    help="Off: mark each phase separately (the phases are separate breath-holds).",
)
zoom = c3.select_slider(
    "Zoom",
    (1.0, 1.5, 2.0, 3.0, 4.0),
    value=2.0,
    key="zoom",
    format_func=lambda z: f"{z:g}x",
    help="Centred on the lesion once it is marked.",
)
windows: dict[Phase, Window | None] = dict.fromkeys(PHASES)
if case.is_hu:
    w1, w2, w3 = st.columns([2, 1, 1])
    choice = w1.radio("Window", WINDOW_CHOICES, horizontal=True, key="window_choice")
    level = w2.slider("Level (HU)", -200, 400, int(LIVER_WINDOW.level), disabled=choice != "Custom")
    width = w3.slider("Width (HU)", 20, 2000, int(LIVER_WINDOW.width), disabled=choice != "Custom")
    for p in PHASES:
        windows[p] = (
            p.window
            if choice == WINDOW_CHOICES[0]
            else LIVER_WINDOW
            if choice == WINDOW_CHOICES[1]
            else Window(level, width)
        )
else:
    st.caption("Screen captures are shown as captured (already windowed by the viewer that made them).")


def mark(phase: Phase) -> None:
    """Apply the selection just made on `phase`'s viewer (before the run that draws it)."""
    current = state.current_case()
    if current is None:
        return
    state.set_marks(
        apply_selection(
            state.current_marks(),
            phase,
            ui.viewer_selection(f"viewer-{phase}"),
            MarkMode(st.session_state.get("mark_mode") or MarkMode.BOX),
            diameter_mm=float(st.session_state.get("diameter", 20.0)),
            spacing_mm=current.spacing_mm[phase],
            linked=bool(st.session_state.get("link_phases", True)),
        )
    )


@st.fragment
@profiling.profiled("review")  # a fragment's rerun does not pass through the router's
def lesion_and_prediction(
    case: ReviewCase,
    mode: MarkMode,
    diameter: float,
    zoom: float,
    windows: dict[Phase, Window | None],
    aorta_centre: Point | None,
) -> None:
    """The viewers and all that follows from the marks. A fragment: a mark (or a model or CAM
    choice) reruns this part only, so the browser redraws no more than it shows anew."""
    unit = "mm" if case.spacing_mm[Phase.ARTERIAL] else "pixels"
    models = state.get_models()
    marks = state.current_marks()
    for column, p in zip(st.columns(3), PHASES, strict=True):
        w, sp = windows[p], case.spacing_mm[p]
        with column:
            ui.lesion_viewer(
                viewer.viewer_data(
                    state.viewer_png(
                        case.token, p, w.level if w else None, w.width if w else None, case.images[p]
                    ),
                    case.images[p].shape,
                    title=p.value + (f" · L{w.level:.0f}/W{w.width:.0f}" if w else ""),
                    caption=describe_box(marks.boxes.get(p), sp),
                    box=marks.boxes.get(p),
                    liver=marks.liver.get(p),
                    aorta=marks.aorta.get(p),
                    roi_radius_px=ROI_DIAMETER_MM / 2 / sp if sp else None,
                    clickable=not mode.draws_box,
                    zoom=zoom,
                    centre=(marks.boxes[p].row, marks.boxes[p].col) if p in marks.boxes else None,
                ),
                key=f"viewer-{p}",
                on_select=partial(mark, p),
            )
    st.caption(
        ":yellow[■] lesion box  :blue[●] liver ROI  :orange[●] aorta ROI (1 cm circles). Draw a box around "
        "the lesion, or choose 'click its centre' and click. Scroll or use + and − to zoom, double-click to "
        "reset; in the click modes a drag pans."
    )
    if marks.boxes and st.button(f"Resize the lesion box to {diameter:.0f} {unit} (the diameter above)"):
        state.set_marks(resize_boxes(marks, diameter, case.spacing_mm))
        st.rerun()
    if not marks.complete:
        st.info("Mark the lesion on the images above to see what the network sees and what it predicts.")
        return

    try:
        crops = inputs.crops_for(case, marks.boxes)
    except InputError as err:
        st.error(str(err))
        return
    st.markdown(f"**What the network sees**: {preprocess.FIELD_OF_VIEW_TEXT}")
    ui.crops_row(crops)

    # --- 3. measurements ----------------------------------------------------------------------------
    measurements = None
    st.subheader("3. Attenuation")
    if case.is_hu:
        aorta = marks.aorta or ({p: aorta_centre for p in PHASES} if aorta_centre else {})
        measurements = state.measurements(case, marks, aorta)
        m1, m2 = st.columns([1, 1])
        m1.table(measurements.rows())
        m1.caption(
            "Mean ± SD in HU. Lesion: the central 70 % of its box. Liver: a 1 cm circle where you click "
            "'Liver ROI', otherwise a ring 3-11 mm outside the lesion (soft-tissue pixels, vessels and "
            "other outliers beyond 3 robust SDs of the ring's median left out)."
        )
        with m2:
            ui.attenuation_chart(measurements)
    else:
        st.caption("Screen captures hold display grey levels, not HU: no attenuation measurements.")

    # --- 4. prediction ------------------------------------------------------------------------------
    st.subheader("4. Prediction")
    if not models:
        ui.no_models_message(state.refused_models())
        return
    ui.refused_models_message(state.refused_models(), models)
    p1, p2, p3, p4 = st.columns(4)
    model_name = p1.selectbox(
        "Model", list(models), format_func=lambda n: models[n].phase_model.label, key="review_model"
    )
    cam = ui.cam_controls(
        (p2, p3, p4), keys=("cam_method", "cam_target", "cam_opacity"), top_label="the top category"
    )
    method, target, opacity = cam.method, cam.target, cam.opacity
    key, cam_for = state.models_key(models), target.value if target else None

    def analysed(explain: tuple[str, ...] | None) -> Analysis:
        """Every model's probabilities; the CAMs and contributions of the models in `explain`
        (None: all five, for the reports, made only when one is downloaded)."""
        found = state.analyse(crops, method, cam_for, key, explain=explain)
        return state.with_image_checks(found, case, marks, measurements)

    analysis = analysed((model_name,))
    result = analysis.results[model_name]
    others = [PHASE_MODELS[n].label.lower() for n in analysis.unlike_training if n != model_name]
    if others:
        st.caption(
            ":material/report: The case is also unlike the training data of the "
            + ", ".join(others)
            + " model(s): see Compare phase-models."
        )
    seen = models[model_name].phase_model.phases
    r1, r2 = st.columns([1, 1])
    with r1:
        ui.probability_headline(result)
        st.caption(compare.agreement(analysis).sentences[0])
        ui.probability_bars(result)
        st.markdown("**Which phase carries the decision**")
        ui.contribution_bars(result)
    with r2:
        leading = result.contribution.leading if result.contribution else seen[0]
        cam_phase = st.radio(
            "Draw the CAM over",
            seen,
            index=seen.index(leading),
            format_func=lambda p: (
                f"{p.value}" + (" (carries most)" if p is leading and len(seen) > 1 else "")
            ),
            horizontal=True,
            key=f"cam_phase_{model_name}",
        )
        st.markdown(f"**{method}** of the {models[model_name].phase_model.label.lower()} model")
        ui.cam_panel(crops, result, cam_phase or leading, opacity=opacity, method=method)
        ui.cam_legend()
    st.page_link(
        "pages/compare.py", label="Compare all five phase-models on this lesion", icon=":material/compare:"
    )

    # --- 5. report and link -------------------------------------------------------------------------
    st.subheader("5. Report and link")
    d1, d2, d3 = st.columns([1, 1, 2])
    d1.download_button(
        "Report (PNG)",
        lambda: report_png(case, analysed(None), marks=marks, measurements=measurements, opacity=opacity),
        "livercore-report.png",
        "image/png",
        on_click="ignore",
    )
    d2.download_button(
        "Report (JSON)",
        lambda: report_json(case, marks, analysed(None), models, measurements),
        "livercore-report.json",
        "application/json",
        on_click="ignore",
    )
    d3.caption("De-identified: images, probabilities and CAMs, with no names, IDs, dates or file names.")


lesion_and_prediction(case, mode, diameter, zoom, windows, aorta_centre)
# What does not change with the marks stays outside the fragment: a mark does not redraw it.
if case.case_id:
    st.markdown("Link that opens this example case with its lesion marked and its prediction shown:")
    st.code(state.share_url(case.case_id), language=None)
if case.reference is not None:
    with st.expander("Reference standard (residents: decide first, then open)"):
        ref = case.reference
        st.markdown(
            f"**{ref.category.value} — {ref.category.info.name}** ({SUBTYPE_LABELS.get(ref.subtype, ref.subtype)}), "
            f"{ref.diameter_mm:.0f} mm. {ref.findings}"
        )
