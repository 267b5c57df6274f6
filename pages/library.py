"""Teaching library: lesions of every category and subtype, their phases, attenuation and findings."""

from __future__ import annotations

import streamlit as st

from livercore.app import state, ui
from livercore.errors import InputError
from livercore.teaching import catalogue, views
from livercore.vocab import CATEGORIES, PHASES, SUBTYPE_LABELS, SUBTYPES

SOURCES = {"phantom": "Phantom library", "site": "This hospital's teaching cases"}

ui.require_router()
st.title("Teaching library")
st.caption(
    "Liver masses of every category and subtype of Yasaka et al. (Radiology 2018), each shown in the "
    "three phases in the paper's windows with its time-attenuation curve and its findings. Phantom "
    "cases are synthetic CT, regenerated from the livercore phantom on demand."
)

site_folder = catalogue.site_cases_dir()
site_entries: list[catalogue.TeachingCase] = []
site_error = None
if site_folder is not None:
    try:
        site_entries = catalogue.site_cases(site_folder)
    except InputError as err:
        site_error = str(err)
source = "phantom"
if site_entries:
    source = st.radio(
        "Cases", list(SOURCES), horizontal=True, format_func=SOURCES.__getitem__, key="library_source"
    )
with st.expander("Add your own teaching cases"):
    st.markdown(catalogue.SITE_LABELS_HELP)
    if site_error:
        st.warning(f"The site's teaching cases could not be read: {site_error}", icon=":material/warning:")
entries = site_entries if source == "site" else catalogue.library_cases()
if not entries:
    st.info(
        "No teaching cases are installed (cases/catalogue.csv): build them with `livercore teaching build`."
    )
    st.stop()

c1, c2 = st.columns(2)
category = c1.selectbox(
    "Category",
    [None, *CATEGORIES],
    format_func=lambda c: "all categories" if c is None else f"{c.value} {c.info.name}",
    key="library_category",
)
subtypes = list(SUBTYPES[category]) if category else [s for v in SUBTYPES.values() for s in v]
subtype = c2.selectbox(
    "Subtype",
    [None, *subtypes],
    format_func=lambda s: "all subtypes" if s is None else SUBTYPE_LABELS.get(s, s),
    key=f"library_subtype_{category}",
)
shown = [
    e
    for e in entries
    if (category is None or e.category is category) and (subtype is None or e.subtype == subtype)
]
if not shown:
    st.info("No case of this kind in the library.")
    st.stop()

table = {
    "case": [e.case_id for e in shown],
    "category": [f"{e.category.value} {e.category.info.name}" for e in shown],
    "subtype": [SUBTYPE_LABELS.get(e.subtype, e.subtype) for e in shown],
    "size (mm)": [round(e.diameter_mm) for e in shown],
}
st.caption(f"{len(shown)} case(s). Select a row to see the case.")
event = st.dataframe(
    table,
    hide_index=True,
    on_select="rerun",
    selection_mode="single-row",
    key=f"library_table_{source}_{category}_{subtype}",
    height=min(36 * len(shown) + 40, 300),
)
rows = event.selection.rows if event and event.selection else []
entry = shown[rows[0] if rows else 0]

try:
    case = state.open_teaching_case(entry.case_id)
except InputError as err:
    st.error(str(err), icon=":material/error:")
    st.stop()

st.subheader(
    f"{entry.category.value} {entry.category.info.name}: {SUBTYPE_LABELS.get(entry.subtype, entry.subtype)}"
)
st.caption(
    f"{entry.case_id} · lesion {entry.diameter_mm:.0f} mm · each view {views.view_field_mm(case):.0f} mm "
    "across, centred on the lesion"
    + (
        " · from the training cohort: the shipped models were trained on this case"
        if entry.seen_in_training
        else ""
    )
)
for column, phase in zip(st.columns(3), PHASES, strict=True):
    w = phase.window
    column.image(
        views.lesion_view(case, phase),
        caption=f"{phase.value} · L{w.level:.0f}/W{w.width:.0f}",
        width="stretch",
    )
left, right = st.columns([1, 1])
with left:
    st.markdown("**Findings**")
    st.info(entry.findings or "No findings were recorded for this case.", icon=":material/description:")
    st.markdown(
        f"**What defines {entry.category.value} {entry.category.info.name}**: {entry.category.info.description}."
    )
    ui.review_link(entry.case_id)
with right:
    measurements = views.time_attenuation(case)
    st.markdown("**Time-attenuation** (measured on these images)")
    ui.attenuation_chart(measurements, height=260)
    st.table(measurements.rows())
    st.caption(
        "Mean ± SD in HU. Lesion: the central 70 % of the lesion; liver: a 1 cm circle in homogeneous "
        "liver (or a ring around the lesion); aorta: a 1 cm circle."
    )
