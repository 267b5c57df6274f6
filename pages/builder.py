"""Cohort builder: turn the site's studies into a cohort, lesion by lesion (livercore.cohort_builder).

The work lives in the store (livercore.store), not in the session: a reload, another browser or
another annotator sees every saved lesion and the progress. Only the lesion being marked (its
clicks before it is saved) is the session's.
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

import streamlit as st

from livercore import cohort_builder as cb
from livercore.app import builder as view
from livercore.app import state, ui
from livercore.cohort import check_cohort
from livercore.dicom_study import LATE_PHASES
from livercore.errors import InputError
from livercore.vocab import CATEGORIES, LIVER_WINDOW, PHASES, SUBTYPE_LABELS, Phase

DRAFT_KEY = "builder_draft"  # (study key, series per phase, LesionDraft): the lesion being marked
NONCE_KEY = "builder_nonce"  # new viewer keys after a click, so the old selection is cleared
CLICK, BOX = "a click on the centre", "a box around the lesion"
# This session's last export: (cohort name, check lines, its folder on the server or None, the
# zip's bytes when it has no folder there)
EXPORT_KEY = "builder_export"

ui.require_router()
st.title("Cohort builder")
st.caption(
    "For research: turn this site's CT studies into a cohort the study trains and tests on (Yasaka et "
    "al., Radiology 2018): for each liver lesion, its centre in the unenhanced, arterial and delayed "
    "phases, its diameter and its category. For sites without lesion masks."
)

try:
    root = cb.studies_root()
except InputError as err:
    st.error(str(err), icon=":material/error:")
    st.stop()
if root is None:
    st.info(
        "No studies folder is configured. The server's administrator sets the environment variable "
        f"`{cb.STUDIES_VARIABLE}` to a folder on the server that holds one subfolder per study (as the "
        f"PACS exports it), and `{cb.COHORTS_VARIABLE}` to where exported cohorts are written; then "
        "restarts the app. Studies are never chosen by a path typed here.",
        icon=":material/settings:",
    )
    st.code(
        f"{cb.STUDIES_VARIABLE}=/srv/livercore/studies {cb.COHORTS_VARIABLE}=/srv/livercore/cohorts \\\n"
        "  streamlit run streamlit_app.py",
        language="bash",
    )
    st.stop()

builder = state.builder_store()
folders = cb.list_studies(root, builder.salt())
if not folders:
    st.info("The studies folder holds no study subfolders yet.")
    st.stop()

# --- who, and how far the cohort is --------------------------------------------------------------
name_column, progress_column = st.columns([1, 2])
typed = name_column.text_input(
    "Your name (saved with each lesion you mark)",
    value=st.query_params.get("annotator", ""),
    key="builder_annotator",
    max_chars=80,
)
try:
    annotator = cb.clean_name(typed)
    st.query_params["annotator"] = annotator
except InputError as err:
    annotator = ""
    name_column.caption(f":material/edit: {err}")
records = builder.records(f.key for f in folders)
progress = cb.progress(folders, records)
with progress_column:
    done, busy, waiting = st.columns(3)
    done.metric("Studies done", f"{progress.done} of {progress.total}")
    busy.metric("In progress", progress.in_progress)
    waiting.metric("Not started", progress.not_started)
with st.expander("All studies"):
    st.dataframe(
        view.progress_table(folders, records), hide_index=True, height=min(36 * len(folders) + 40, 320)
    )

# --- 1. the study and its phases -------------------------------------------------------------------
st.subheader("1. Study and phases")
linked = st.query_params.get("study", "1")
number = st.selectbox(
    "Study",
    range(1, len(folders) + 1),
    index=min(max(int(linked) - 1 if linked.isdigit() else 0, 0), len(folders) - 1),
    format_func=lambda n: (
        f"Study {n} — {view.STATUS_LABELS[records[folders[n - 1].key].status if folders[n - 1].key in records else None]}"
    ),
    key="builder_study",
)
st.query_params["study"] = str(number)
folder = folders[number - 1]
record = records.get(folder.key)
st.caption(
    f"{folder.label}: {view.STATUS_LABELS[record.status if record else None]}, "
    f"{record.lesions if record else 0} lesion(s) saved."
)
tag = folder.key[:16]  # widget keys of this study (never its folder name)
try:
    study = state.builder_study(root, folder)
    stored_late = record.choice.late if record and record.choice else cb.DELAYED
    late = st.radio(
        "The late phase that plays the paper's “delayed” phase",
        LATE_PHASES,
        index=LATE_PHASES.index(stored_late),
        horizontal=True,
        key=f"builder_late_{tag}",
        help="The paper's delayed phase is 3 minutes after injection; a portal-venous series can stand in for it.",
    )
    choice = cb.phase_choice(study, record, late)
except InputError as err:
    st.error(str(err), icon=":material/error:")
    if annotator and st.button("Mark this study done (no usable lesion)"):
        builder.set_status(folder.key, 0, cb.DONE, annotator)
        st.rerun()
    st.stop()

labels = [cb.series_label(v) for v in study.series]
picked = {}
for column, phase in zip(st.columns(3), PHASES, strict=True):
    picked[phase] = column.selectbox(
        f"{phase.value} phase",
        range(len(study.series)),
        index=choice.series[phase],
        format_func=labels.__getitem__,
        key=f"builder_series_{tag}_{late}_{phase.value}",
    )
    if not choice.confirmed and phase in choice.reasons:
        column.caption(f"Proposed: {choice.reasons[phase]}.")
chosen = cb.PhaseChoice(picked, late, confirmed=True)
if not chosen.distinct:
    st.error("Each phase needs its own series.", icon=":material/error:")
    st.stop()
if cb.changes_phases(record, choice, chosen) and annotator:
    builder.save_phases(folder.key, len(study.series), chosen, annotator)
choice = chosen
for note in study.notes:
    st.caption(f":material/info: Left out: {note}")
volumes = cb.volumes_of(study, choice)
series_tag = "-".join(str(choice.series[p]) for p in PHASES)

# --- 2. the lesion centre in the three phases --------------------------------------------------------
st.subheader("2. Mark the lesion")
st.caption(
    "Scroll to the lesion with a phase's section slider, then click its centre (or draw a box around "
    "it), usually in the arterial phase; the views then zoom on it, and a second click places the "
    "centre more exactly. The other phases get that centre through patient coordinates, corrected for "
    "the breath-hold shift: accept each, or click (or box) the right place there."
)
held = st.session_state.get(DRAFT_KEY)
draft: cb.LesionDraft | None = held[2] if held and held[:2] == (folder.key, series_tag) else None


def section_key(phase: Phase) -> str:
    """The session-state key of a phase's section slider (1-based, as a radiologist counts)."""
    return f"builder_section_{tag}_{series_tag}_{phase.value}"


def hold(new: cb.LesionDraft | None) -> None:
    st.session_state[DRAFT_KEY] = (folder.key, series_tag, new) if new else None


def accept(phase: Phase | None) -> None:
    """Accept one phase's proposed centre (None: every one), in the draft this session holds."""
    held = st.session_state.get(DRAFT_KEY)
    if held:
        hold(cb.accept_all(held[2]) if phase is None else cb.accept(held[2], phase))


# A selection made in the previous run (a click, or a box around the lesion that also sets the
# diameter): apply it, jump the other phases to their centres, and draw the viewers afresh (new
# keys clear the selection). Before the widgets, which it may set.
nonce = st.session_state.setdefault(NONCE_KEY, 0)
for phase in PHASES:
    event = (st.session_state.get(f"builder-view-{phase.value}-{nonce}") or {}).get("selection")
    picked_centre = view.selection_centre(event, volumes[phase].spacing_mm[1])
    if picked_centre is None:
        continue
    (row, col), boxed_mm = picked_centre
    if boxed_mm is not None:
        st.session_state["builder_diameter"] = boxed_mm
    radius_mm = st.session_state.get("builder_diameter", cb.DEFAULT_DIAMETER_MM) / 2
    section = st.session_state.get(section_key(phase), volumes[phase].hu.shape[0] // 2 + 1) - 1
    with st.spinner("Finding the lesion in the other phases…"):
        draft = cb.click(
            draft, volumes, phase, (section, row, col), radius_mm=radius_mm, refiner=cb.breath_hold_refiner()
        )
    hold(draft)
    if phase is draft.reference:
        for other in PHASES:
            st.session_state[section_key(other)] = draft.points[other].section + 1
    st.session_state[NONCE_KEY] = nonce = nonce + 1
    break

c0, c1, c2, c3 = st.columns([1.2, 1, 1, 1.4])
by_box = (
    c0.radio(
        "Mark the centre by",
        (CLICK, BOX),
        key="builder_mark_by",
        help="A box sets the lesion's diameter too (the mean of its sides).",
    )
    == BOX
)
diameter = c1.number_input(
    "Lesion diameter (mm)", 3.0, 200.0, cb.DEFAULT_DIAMETER_MM, 1.0, key="builder_diameter"
)
zoom = c2.select_slider(
    "Zoom on the lesion",
    (1.0, 1.5, 2.0, 3.0, 4.0),
    value=2.0,
    key="builder_zoom",
    format_func=lambda z: f"{z:g}x",
    help="Once a centre is clicked, each phase zooms on its centre; until then the whole section shows.",
)
c3.caption(
    ":orange[- - -] proposed centre (accept or correct) · :yellow[—] accepted centre · "
    ":blue[—] lesions saved before. The circle shows the diameter."
)


saved = builder.lesions(folder.key)
for column, phase in zip(st.columns(3), PHASES, strict=True):
    volume = volumes[phase]
    sections = volume.hu.shape[0]
    point = draft.points[phase] if draft else None
    column.markdown(f"**{phase.value}** · liver window L{LIVER_WINDOW.level:.0f}/W{LIVER_WINDOW.width:.0f}")
    st.session_state.setdefault(section_key(phase), sections // 2 + 1)
    section = (
        column.slider(f"Section (of {sections})", 1, sections, key=section_key(phase)) - 1
        if sections > 1
        else 0
    )
    uri = state.builder_png(folder.key, choice.series[phase], section, LIVER_WINDOW, volume.hu[section])
    circles = view.phase_circles(
        phase,
        section,
        volume.spacing_mm[1],
        point=point,
        diameter_mm=diameter,
        saved=saved,
        series=choice.series[phase],
    )
    column.plotly_chart(
        view.section_figure(
            uri,
            volume.hu.shape[1:],
            circles,
            zoom=zoom if point else 1.0,
            centre=(point.row, point.col) if point else None,
            clickable=not by_box,
        ),
        key=f"builder-view-{phase.value}-{nonce}",
        on_select="rerun",
        selection_mode="box" if by_box else "points",
        width="content",
        config={"displaylogo": False, "scrollZoom": True},
    )
    column.caption(
        f"Section {section + 1} of {sections}, {volume.spacing_mm[0]:.1f} mm apart. "
        + view.point_sentence(phase, point, draft.reference if draft else None, sections)
    )
    if point is not None and not point.accepted:
        column.button(
            f"Accept the {phase.value} centre",
            key=f"builder_accept_{phase.value}_{nonce}",
            on_click=accept,
            args=(phase,),
            type="primary",
        )
    if point is not None and point.section != section:
        column.caption(f":material/info: The centre is on section {point.section + 1}.")
if draft is not None:
    pending = [p for p in PHASES if not draft.points[p].accepted]
    b1, b2 = st.columns([1, 3])
    if len(pending) > 1:
        b1.button(
            "Accept every proposed centre",
            key=f"builder_accept_all_{nonce}",
            on_click=accept,
            args=(None,),
        )
    b2.button("Start this lesion again", on_click=hold, args=(None,), key="builder_restart")

# --- 3. the reading, and saving it ----------------------------------------------------------------------
st.subheader("3. Category and save")
r1, r2, r3 = st.columns([1, 1, 1], vertical_alignment="bottom")
category = r1.selectbox(
    "Category", CATEGORIES, format_func=lambda c: f"{c.value} {c.info.name}", key="builder_category"
)
subtype = r2.selectbox(
    "Subtype",
    ["", *cb.subtypes(category)],
    format_func=lambda s: SUBTYPE_LABELS.get(s, s) if s else "— not given —",
    key=f"builder_subtype_{category.value}",
)
ready = draft is not None and draft.ready and bool(annotator)
why_not = (
    "Type your name above first."
    if not annotator
    else "Click the lesion centre first."
    if draft is None
    else "Accept or correct the centre in every phase first."
    if not draft.ready
    else ""
)
if r3.button(
    "Save this lesion", type="primary", disabled=not ready, help=why_not or None, key="builder_save"
):
    assert draft is not None
    builder.add_lesion(
        folder.key,
        len(study.series),
        choice,
        draft,
        diameter_mm=diameter,
        category=category,
        subtype=subtype,
        annotator=annotator,
    )
    hold(None)
    st.session_state[NONCE_KEY] = nonce + 1
    st.toast(f"Lesion saved in {folder.label}.", icon=":material/check:")
    st.rerun()
if why_not:
    r3.caption(why_not)

st.markdown(f"**Lesions saved in {folder.label}**")
if saved:
    st.dataframe(view.lesions_table(saved), hide_index=True)
    d1, d2 = st.columns([1, 3], vertical_alignment="bottom")
    gone = d1.selectbox("Lesion", [lesion.number for lesion in saved], key=f"builder_delete_pick_{tag}")
    if d2.button("Delete this lesion", disabled=not annotator, key=f"builder_delete_{tag}"):
        builder.delete_lesion(folder.key, next(lesion.id for lesion in saved if lesion.number == gone))
        st.rerun()
else:
    st.caption("None yet. Several lesions per study are welcome: save each, then mark the study done.")
status = record.status if record else None
if status == cb.DONE:
    st.success(f"{folder.label} is marked done.", icon=":material/check_circle:")
    if st.button("Reopen this study", disabled=not annotator, key="builder_reopen"):
        builder.set_status(folder.key, len(study.series), cb.IN_PROGRESS, annotator)
        st.rerun()
else:

    def mark_done() -> None:
        builder.set_status(folder.key, len(study.series), cb.DONE, annotator)
        if number < len(folders):  # on to the next study
            st.session_state["builder_study"] = number + 1
            st.query_params["study"] = str(number + 1)

    st.button(
        f"Mark {folder.label} done",
        disabled=not annotator or draft is not None,
        key="builder_done",
        on_click=mark_done,
        help="Every lesion of this study saved (or none to annotate); the next study opens.",
    )

# --- 4. export ------------------------------------------------------------------------------------------
st.subheader("4. Export the cohort")
try:
    out_root = cb.cohorts_root()
except InputError as err:
    out_root = None
    st.warning(str(err), icon=":material/warning:")
st.caption(
    "Writes each saved lesion as three single-slice CT files with synthetic identifiers and a "
    "manifest.csv (livercore's cohort format: `livercore study run --train <cohort>/manifest.csv`), "
    + (
        f"into a new folder under the server's cohorts folder (`{cb.COHORTS_VARIABLE}`), "
        if out_root
        else f"as a zip download (set `{cb.COHORTS_VARIABLE}` to keep cohorts on the server), "
    )
    + "no names, IDs, dates or UIDs of the studies."
)
e1, e2, e3 = st.columns([1, 1, 1], vertical_alignment="bottom")
cohort_name = e1.text_input("Cohort name (letters, digits, - and _)", key="builder_cohort_name", max_chars=64)
only_done = e2.checkbox("Only studies marked done", value=True, key="builder_only_done")
if e3.button("Export the cohort", key="builder_export_button"):
    try:
        name = cb.check_cohort_name(cohort_name)
        with (
            st.spinner("Writing the cohort…"),
            tempfile.TemporaryDirectory(prefix="livercore-cohort-") as tmp,
        ):
            out = cb.cohort_folder(out_root, name) if out_root else Path(tmp) / name
            table = cb.export_cohort(builder, root, folders, out, cohort=name, only_done=only_done)
            lines = check_cohort(out).lines()[:-1]
            st.session_state[EXPORT_KEY] = (
                (name, lines, out, None) if out_root else (name, lines, None, cb.zip_folder(out))
            )
    except InputError as err:
        st.error(str(err), icon=":material/error:")
exported = st.session_state.get(EXPORT_KEY)
if exported:
    name, lines, on_server, data = exported
    st.success(
        f"Cohort {name} written"
        + (" under the cohorts folder" if on_server else "")
        + ": "
        + lines[0].split(": ", 1)[-1],
        icon=":material/check_circle:",
    )
    for line in lines[1:]:
        st.caption(line)
    st.download_button(
        f"Download {name}.zip",
        data if data is not None else partial(cb.zip_folder, on_server),  # zipped when asked for
        f"{name}.zip",
        "application/zip",
        on_click="ignore",
        key="builder_zip",
    )
