"""The cohort builder: a research radiologist turns a site's studies into a cohort, lesion by
lesion, in the browser (pages/builder.py draws it; this module is its logic, Streamlit-free).

Configuration (environment variables, read at call time; nothing a user types becomes a path):

- ``LIVERCORE_STUDIES``: the server folder of studies, one subfolder per case as a PACS export
  holds it (read with livercore.dicom_study.read_studies). Every folder and file read is
  resolved (symlinks included) and must stay inside it.
- ``LIVERCORE_COHORTS``: where exported cohorts are written, one subfolder per cohort name
  (a simple name, never a path). Without it the export is offered as a zip download only.
- ``LIVERCORE_SECRET``: the salt of the study keys. Without it a random salt is generated
  once and kept in the store's settings table (row ``study_key_salt``); then anyone holding
  the database file holds the salt too, so a site that wants the keys unguessable from the
  file alone sets the secret (and keeps it: another secret gives other keys, and the saved
  work no longer matches its studies).
- ``LIVERCORE_DATABASE_URL``: the store (livercore.store).

Study folder names may be patient names or IDs: they are never shown and never stored. The
page shows "Study 1..N" (the folders in sorted order); the store keys a study by
HMAC-SHA256(salt, folder name). Nothing read from a DICOM header reaches the store: a lesion
is its series and section indices, its pixel position, the breath-hold shift in mm and the
annotator's reading.

Propagation: a click on one phase's section gives (section, row, col) in that series; its
patient coordinates (SeriesVolume.to_patient, DICOM LPS mm) are the lesion centre. In every
other phase the centre is that point moved by the breath-hold shift found by
livercore.registration.refine_shift (when the module is there; else no shift), brought into
that series' voxels with SeriesVolume.to_voxel: the section through it and the (row, col)
there, whatever the series' origin, spacing or section interval. The annotator accepts each
propagated centre or clicks the right place (a correction).
"""

from __future__ import annotations

import hmac
import io
import os
import re
import shutil
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from livercore import store
from livercore.cohort import CohortWriter, Section
from livercore.dicom_study import DELAYED, ImagingStudy, SeriesVolume, propose_phases, read_studies
from livercore.errors import InputError
from livercore.store.schema import NAME_LENGTH, Annotator, Lesion, LesionPhase, Study
from livercore.vocab import PHASES, SUBTYPES, Category, Phase

STUDIES_VARIABLE = "LIVERCORE_STUDIES"
COHORTS_VARIABLE = "LIVERCORE_COHORTS"
SECRET_VARIABLE = "LIVERCORE_SECRET"
SALT_SETTING = "study_key_salt"
COHORT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # a folder name, never a path
IN_PROGRESS, DONE = "in_progress", "done"
CLICKED, PROPAGATED, REFINED, CORRECTED = "clicked", "propagated", "refined", "corrected"
DEFAULT_DIAMETER_MM = 20.0


# --- configuration and the studies folder -------------------------------------------------------


def configured_folder(variable: str, *, create: bool = False) -> Path | None:
    """The folder an environment variable names, resolved; None when unset. InputError when
    it is not a folder (created first with `create`)."""
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    folder = Path(value).expanduser()
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()
    if not folder.is_dir():
        raise InputError(f"{variable} does not name a folder on the server.")
    return folder


def studies_root() -> Path | None:
    """$LIVERCORE_STUDIES, resolved; None when unset."""
    return configured_folder(STUDIES_VARIABLE)


def cohorts_root() -> Path | None:
    """$LIVERCORE_COHORTS, resolved (created when missing); None when unset."""
    return configured_folder(COHORTS_VARIABLE, create=True)


def inside(root: Path, path: Path) -> Path:
    """`path` resolved (symlinks followed), refused (InputError) unless it lies inside `root`."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise InputError("A path leads outside the configured folder; it is not read.")
    return resolved


def study_key(name: str, salt: str) -> str:
    """HMAC-SHA256(salt, folder name) as 64 hex digits: how the store knows a study."""
    return hmac.new(salt.encode(), name.encode("utf-8", "surrogateescape"), sha256).hexdigest()


@dataclass(frozen=True)
class StudyFolder:
    """One study of the studies folder: shown as "Study <number>", stored as `key`."""

    number: int  # 1-based, the folders in sorted order
    key: str  # study_key of its folder name
    path: Path = field(repr=False)  # resolved, inside the root; never shown, never stored

    @property
    def label(self) -> str:
        return f"Study {self.number}"


def list_studies(root: Path, salt: str) -> list[StudyFolder]:
    """The study folders of `root` (its subfolders, sorted by name; hidden ones and any that
    lead outside the root are left out), numbered from 1."""
    root = root.resolve()
    folders = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        try:
            folders.append((entry.name, inside(root, entry)))
        except InputError:
            continue
    return [StudyFolder(n, study_key(name, salt), path) for n, (name, path) in enumerate(folders, start=1)]


def read_study(root: Path, folder: StudyFolder) -> ImagingStudy:
    """The one CT study of a study folder (livercore.dicom_study.read_studies). Every file is
    checked to lie inside the root first; InputError (a sentence without the folder's name)
    for a file outside it, a folder of several studies or none."""
    path = inside(root, folder.path)
    for file in path.rglob("*"):
        inside(root, file)
    try:
        studies = read_studies(path)
    except InputError as err:
        raise InputError(f"{folder.label}: {err}") from None
    if len(studies) != 1:
        raise InputError(f"{folder.label} holds {len(studies)} studies; one is expected per folder.")
    return studies[0]


def series_label(volume: SeriesVolume) -> str:
    """A series as the page lists it: number, description, sections and what it looks like."""
    return volume.label().replace("series", "Series", 1)


# --- the three phases ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseChoice:
    """Which series (index into study.series) plays each of the paper's phases."""

    series: dict[Phase, int]
    late: str = DELAYED  # the late kind ("portal-venous" or "delayed") that plays "delayed"
    reasons: dict[Phase, str] = field(default_factory=dict)  # why, for a proposal
    confirmed: bool = False  # the annotator's choice (stored), not only the proposal

    @property
    def distinct(self) -> bool:
        return len(set(self.series.values())) == len(PHASES)


def proposed_choice(study: ImagingStudy, late: str = DELAYED) -> PhaseChoice:
    """livercore.dicom_study.propose_phases as a PhaseChoice (InputError under three series)."""
    proposal = propose_phases(study, late=late)
    return PhaseChoice(dict(proposal.series), late, dict(proposal.reasons))


def volumes_of(study: ImagingStudy, choice: PhaseChoice) -> dict[Phase, SeriesVolume]:
    """The series volume of each phase; InputError when the choice does not fit the study."""
    if any(not 0 <= i < len(study.series) for i in choice.series.values()) or set(choice.series) != set(
        PHASES
    ):
        raise InputError("The saved phase assignment does not fit this study's series any more.")
    return {p: study.series[choice.series[p]] for p in PHASES}


# --- one lesion's centre in the three phases ----------------------------------------------------


@dataclass(frozen=True)
class PhasePoint:
    """The lesion centre in one phase: the section (index into the series) and (row, col)
    there in pixels, the shift against the reference phase in LPS mm, and how it was found."""

    section: int
    sections: int  # in the series (an export checks that the series still has them)
    row: float
    col: float
    source: str  # clicked, propagated, refined (breath-hold refinement) or corrected
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    review: str = ""  # why a person should look again ("" when nothing to say)
    accepted: bool = False


@dataclass(frozen=True)
class LesionDraft:
    """A lesion being marked: the phase clicked first, its centre (LPS mm) and each phase's
    point."""

    reference: Phase
    centre_mm: tuple[float, float, float]
    points: dict[Phase, PhasePoint]

    @property
    def ready(self) -> bool:
        """Every phase's centre accepted (the reference's by its click)."""
        return all(self.points[p].accepted for p in PHASES)

    @property
    def review(self) -> str:
        """The review sentences of the phases whose propagated centre was accepted as found."""
        return " ".join(
            f"{p.value}: {pt.review}"
            for p in PHASES
            if (pt := self.points[p]).review and pt.source != CORRECTED
        )


Refiner = Callable[[SeriesVolume, SeriesVolume, Sequence[float], float], Any]


def breath_hold_refiner() -> Refiner | None:
    """livercore.registration.refine_shift when that module is installed, else None (plain
    propagation through patient coordinates)."""
    try:
        from livercore.registration import refine_shift
    except ImportError:
        return None
    return refine_shift


def propagate(
    reference: SeriesVolume,
    voxel: Sequence[float],
    moving: SeriesVolume,
    *,
    radius_mm: float,
    refiner: Refiner | None = None,
) -> PhasePoint:
    """The centre clicked at `voxel` (section, row, col) of `reference`, in `moving`: through
    patient coordinates (to_patient, then to_voxel), moved by the refiner's breath-hold offset
    when it has one. A centre beyond the moving series is clamped into it and flagged."""
    centre = np.asarray(reference.to_patient(voxel))
    offset = np.zeros(3)
    source, review = PROPAGATED, ""
    if refiner is not None:
        try:
            found = refiner(reference, moving, tuple(centre), radius_mm)
        except InputError as err:
            review = f"no breath-hold refinement ({str(err).rstrip('.')})."
        else:
            offset = np.asarray(found.offset_mm, float)
            source = REFINED
            if not found.plausible:
                review = f"check the centre: {found.reason}."
    k, r, c = moving.to_voxel(tuple(centre + offset))
    n, h, w = moving.hu.shape
    if not (-0.5 <= k <= n - 0.5 and 0 <= r <= h - 1 and 0 <= c <= w - 1):
        review = f"the centre falls outside this series (section {k + 1:.0f} of {n}); find the lesion and click it."
    section = int(np.clip(round(k), 0, n - 1))
    return PhasePoint(
        section,
        n,
        float(np.clip(r, 0, h - 1)),
        float(np.clip(c, 0, w - 1)),
        source,
        (float(offset[0]), float(offset[1]), float(offset[2])),
        review,
    )


def start_draft(
    volumes: Mapping[Phase, SeriesVolume],
    phase: Phase,
    voxel: Sequence[float],
    *,
    radius_mm: float,
    refiner: Refiner | None = None,
    keep: LesionDraft | None = None,
) -> LesionDraft:
    """A lesion whose centre was clicked at `voxel` of `phase`: that phase accepted, the others
    propagated (`propagate`) for the annotator to accept or correct. Phases corrected in
    `keep` stay as corrected."""
    reference = volumes[phase]
    section, row, col = round(float(voxel[0])), float(voxel[1]), float(voxel[2])
    centre = reference.to_patient((section, row, col))
    points = {phase: PhasePoint(section, reference.hu.shape[0], row, col, CLICKED, accepted=True)}
    for other in PHASES:
        if other is phase:
            continue
        if keep is not None and keep.points[other].source == CORRECTED:
            points[other] = _corrected(volumes[other], centre, keep.points[other])
            continue
        points[other] = propagate(
            reference, (section, row, col), volumes[other], radius_mm=radius_mm, refiner=refiner
        )
    return LesionDraft(phase, centre, points)


def _corrected(volume: SeriesVolume, centre_mm: Sequence[float], point: PhasePoint) -> PhasePoint:
    at = np.asarray(volume.to_patient((point.section, point.row, point.col)))
    shift = at - np.asarray(centre_mm)
    return replace(
        point,
        source=CORRECTED,
        shift_mm=(float(shift[0]), float(shift[1]), float(shift[2])),
        review="",
        accepted=True,
    )


def click(
    draft: LesionDraft | None,
    volumes: Mapping[Phase, SeriesVolume],
    phase: Phase,
    voxel: Sequence[float],
    *,
    radius_mm: float,
    refiner: Refiner | None = None,
) -> LesionDraft:
    """A click at `voxel` (section, row, col) of `phase`'s viewer: the first click, or one on
    the reference phase, sets the centre (start_draft); a click on another phase corrects it
    there (accepted, its shift the difference to the centre)."""
    if draft is None or phase is draft.reference:
        return start_draft(volumes, phase, voxel, radius_mm=radius_mm, refiner=refiner, keep=draft)
    sections = volumes[phase].hu.shape[0]
    point = PhasePoint(round(float(voxel[0])), sections, float(voxel[1]), float(voxel[2]), CORRECTED)
    return replace(draft, points={**draft.points, phase: _corrected(volumes[phase], draft.centre_mm, point)})


def accept(draft: LesionDraft, phase: Phase) -> LesionDraft:
    """The draft with `phase`'s propagated centre accepted as it is."""
    return replace(draft, points={**draft.points, phase: replace(draft.points[phase], accepted=True)})


def accept_all(draft: LesionDraft) -> LesionDraft:
    """The draft with every phase's centre accepted as it is."""
    return replace(draft, points={p: replace(pt, accepted=True) for p, pt in draft.points.items()})


def subtypes(category: Category | str) -> tuple[str, ...]:
    """The subtypes the vocabulary has for a category."""
    return SUBTYPES[Category(str(category))]


# --- the store ----------------------------------------------------------------------------------


def clean_name(name: str) -> str:
    """An annotator's display name, whitespace collapsed; InputError for an empty one, one over
    NAME_LENGTH characters or one with control characters. It is only ever data."""
    text = " ".join(str(name).split())
    if not text:
        raise InputError("Type your name (as you want it recorded with your annotations).")
    if len(text) > NAME_LENGTH:
        raise InputError(f"A name of at most {NAME_LENGTH} characters, please.")
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise InputError("The name holds control characters.")
    return text


@dataclass(frozen=True)
class StudyRecord:
    """What the store holds about a study."""

    status: str  # in_progress or done
    series_count: int
    choice: PhaseChoice | None  # the confirmed phase assignment, if any
    lesions: int


@dataclass(frozen=True)
class SavedPoint:
    series: int
    section: int
    sections: int  # in its series when it was saved
    row: float
    col: float
    shift_mm: tuple[float, float, float]
    source: str


@dataclass(frozen=True)
class SavedLesion:
    """A saved lesion as the page lists it and the export writes it."""

    id: int
    number: int  # 1-based within its study, in the order saved
    reference: Phase
    diameter_mm: float
    category: Category
    subtype: str
    review: str
    annotator: str
    created_at: datetime
    points: dict[Phase, SavedPoint]


@dataclass(frozen=True)
class Progress:
    done: int
    in_progress: int
    not_started: int

    @property
    def total(self) -> int:
        return self.done + self.in_progress + self.not_started


def progress(folders: Iterable[StudyFolder], records: Mapping[str, StudyRecord]) -> Progress:
    """How many studies are done, in progress (a row in the store, not done) and not started."""
    statuses = [records[f.key].status if f.key in records else None for f in folders]
    return Progress(statuses.count(DONE), statuses.count(IN_PROGRESS), statuses.count(None))


class BuilderStore:
    """The builder's reads and writes, each one transaction on the store (livercore.store).
    Thread-safe: it holds only the engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str | None = None) -> BuilderStore:
        """The store at `url` (default: livercore.store.database_url()), upgraded on first use."""
        return cls(store.get_engine(url))

    def salt(self) -> str:
        """$LIVERCORE_SECRET, else the random salt kept in the settings table (made once)."""
        secret = os.environ.get(SECRET_VARIABLE, "")
        if secret:
            return secret
        return store.setting_once(self.engine, SALT_SETTING, store.random_secret)

    # get-or-create under concurrency: the insert runs in a savepoint; losing a race to
    # another writer (a unique key) reads the winner's row instead.
    def _annotator(self, s: Session, name: str) -> Annotator:
        name = clean_name(name)
        found = s.scalar(select(Annotator).where(Annotator.name == name))
        if found is not None:
            return found
        try:
            with s.begin_nested():
                created = Annotator(name=name)
                s.add(created)
            return created
        except IntegrityError:
            return s.scalars(select(Annotator).where(Annotator.name == name)).one()

    def _study(self, s: Session, key: str, series_count: int) -> Study:
        found = s.scalar(select(Study).where(Study.key == key))
        if found is not None:
            return found
        try:
            with s.begin_nested():
                created = Study(key=key, series_count=series_count, status=IN_PROGRESS)
                s.add(created)
            return created
        except IntegrityError:
            return s.scalars(select(Study).where(Study.key == key)).one()

    def annotator_id(self, name: str) -> int:
        """The annotator of that display name, added on first use."""
        with store.session(self.engine) as s:
            return self._annotator(s, name).id

    def records(self, keys: Iterable[str] | None = None) -> dict[str, StudyRecord]:
        """What the store holds about each study of `keys` (every study without), by key."""
        wanted = list(keys) if keys is not None else None
        count = select(Lesion.study_id, func.count(Lesion.id).label("n")).group_by(Lesion.study_id).subquery()
        query = select(Study, func.coalesce(count.c.n, 0)).outerjoin(count, count.c.study_id == Study.id)
        if wanted is not None:
            query = query.where(Study.key.in_(wanted))
        with store.session(self.engine) as s:
            rows = s.execute(query).all()
        return {
            study.key: StudyRecord(study.status, study.series_count, _choice(study), int(n))
            for study, n in rows
        }

    def save_phases(self, key: str, series_count: int, choice: PhaseChoice, annotator: str) -> None:
        """Keep the annotator's phase assignment of a study (the study is then in progress)."""
        if not choice.distinct:
            raise InputError("Each phase needs its own series.")
        with store.session(self.engine) as s:
            who = self._annotator(s, annotator)
            study = self._study(s, key, series_count)
            study.series_count = series_count
            study.series_unenhanced = choice.series[Phase.UNENHANCED]
            study.series_arterial = choice.series[Phase.ARTERIAL]
            study.series_delayed = choice.series[Phase.DELAYED]
            study.late = choice.late
            study.updated_by = who.id

    def add_lesion(
        self,
        key: str,
        series_count: int,
        choice: PhaseChoice,
        draft: LesionDraft,
        *,
        diameter_mm: float,
        category: Category | str,
        subtype: str,
        annotator: str,
    ) -> int:
        """Save a lesion whose three centres are accepted; returns its id. The study is then in
        progress (unless already done) and keeps this phase assignment."""
        if not draft.ready:
            raise InputError("Accept or correct the lesion centre in every phase before saving.")
        if not diameter_mm > 0:
            raise InputError("The lesion diameter must be more than 0 mm.")
        category = Category(str(getattr(category, "value", category)).upper())
        if subtype and subtype not in SUBTYPES[category]:
            raise InputError(f"{subtype!r} is not a subtype of category {category.value}.")
        with store.session(self.engine) as s:
            who = self._annotator(s, annotator)
            study = self._study(s, key, series_count)
            study.updated_by = who.id
            study.series_unenhanced = choice.series[Phase.UNENHANCED]  # the assignment last used
            study.series_arterial = choice.series[Phase.ARTERIAL]
            study.series_delayed = choice.series[Phase.DELAYED]
            study.late = choice.late
            lesion = Lesion(
                study_id=study.id,
                annotator_id=who.id,
                reference_phase=draft.reference.value,
                diameter_mm=float(diameter_mm),
                category=category.value,
                subtype=subtype,
                review=draft.review,
                phases=[
                    LesionPhase(
                        phase=p.value,
                        series=choice.series[p],
                        section=pt.section,
                        sections=pt.sections,
                        row=pt.row,
                        col=pt.col,
                        shift_x_mm=pt.shift_mm[0],
                        shift_y_mm=pt.shift_mm[1],
                        shift_z_mm=pt.shift_mm[2],
                        source=pt.source,
                    )
                    for p, pt in draft.points.items()
                ],
            )
            s.add(lesion)
            s.flush()
            return lesion.id

    def lesions(self, key: str) -> list[SavedLesion]:
        """The saved lesions of a study, in the order saved."""
        with store.session(self.engine) as s:
            study = s.scalar(select(Study).where(Study.key == key))
            if study is None:
                return []
            return [_saved(lesion, n) for n, lesion in enumerate(study.lesions, start=1)]

    def delete_lesion(self, key: str, lesion_id: int) -> None:
        """Remove one saved lesion of a study (nothing when it is not that study's)."""
        with store.session(self.engine) as s:
            lesion = s.get(Lesion, lesion_id)
            if lesion is not None and lesion.study.key == key:
                s.delete(lesion)

    def set_status(self, key: str, series_count: int, status: str, annotator: str) -> None:
        """Mark a study done, or in progress again."""
        if status not in (IN_PROGRESS, DONE):
            raise ValueError(f"status must be {IN_PROGRESS!r} or {DONE!r}")
        with store.session(self.engine) as s:
            who = self._annotator(s, annotator)
            study = self._study(s, key, series_count)
            study.status = status
            study.updated_by = who.id


def _choice(study: Study) -> PhaseChoice | None:
    series = (study.series_unenhanced, study.series_arterial, study.series_delayed)
    if any(v is None for v in series):
        return None
    return PhaseChoice(
        {p: int(v) for p, v in zip(PHASES, series, strict=True)},  # type: ignore[arg-type]
        study.late or DELAYED,
        confirmed=True,
    )


def _saved(lesion: Lesion, number: int) -> SavedLesion:
    points = {
        Phase(p.phase): SavedPoint(
            p.series,
            p.section,
            p.sections,
            p.row,
            p.col,
            (p.shift_x_mm, p.shift_y_mm, p.shift_z_mm),
            p.source,
        )
        for p in lesion.phases
    }
    return SavedLesion(
        lesion.id,
        number,
        Phase(lesion.reference_phase),
        lesion.diameter_mm,
        Category(lesion.category),
        lesion.subtype,
        lesion.review,
        lesion.annotator.name,
        lesion.created_at,
        points,
    )


def changes_phases(record: StudyRecord | None, shown: PhaseChoice, chosen: PhaseChoice) -> bool:
    """Whether the annotator's phase assignment (`chosen`, from the widgets showing `shown`)
    differs from what the store holds (the stored assignment, else the proposal shown)."""
    stored = record.choice if record is not None else None
    if stored is None:
        return chosen.series != shown.series
    return (chosen.series, chosen.late) != (stored.series, stored.late)


def phase_choice(study: ImagingStudy, record: StudyRecord | None, late: str | None = None) -> PhaseChoice:
    """The study's stored phase assignment when it has one (and `late` asks for no other),
    else the proposal for `late` (default the stored one, else "delayed")."""
    stored = record.choice if record is not None else None
    if stored is not None and (late is None or late == stored.late):
        return stored
    return proposed_choice(study, late or (stored.late if stored else DELAYED))


# --- export -------------------------------------------------------------------------------------


def check_cohort_name(name: str) -> str:
    """A cohort name: letters, digits, '-' and '_', at most 64, starting with a letter or digit;
    InputError otherwise (it names a folder, so it is never a path)."""
    name = str(name).strip()
    if not COHORT_NAME.fullmatch(name):
        raise InputError(
            "A cohort name is letters, digits, '-' and '_' (at most 64, starting with a letter or digit)."
        )
    return name


def cohort_folder(root: Path, name: str) -> Path:
    """root/<name> for a new cohort; InputError for a bad name or one already used."""
    folder = root.resolve() / check_cohort_name(name)
    inside(root, folder)
    if folder.exists():
        raise InputError(f"A cohort named {name} already exists; choose another name.")
    return folder


def case_id(folder: StudyFolder, lesion: SavedLesion) -> str:
    """A lesion's synthetic case id: S<study number>-L<lesion number>."""
    return f"S{folder.number:03d}-L{lesion.number:02d}"


def lesion_sections(study: ImagingStudy, lesion: SavedLesion) -> dict[Phase, Section]:
    """Each phase's section of a saved lesion, ready for CohortWriter; InputError when the
    study's series no longer match what was annotated."""
    sections = {}
    for phase in PHASES:
        point = lesion.points[phase]
        if not 0 <= point.series < len(study.series):
            raise InputError("its series are not the ones annotated (the folder changed)")
        volume = study.series[point.series]
        if volume.hu.shape[0] != point.sections or not 0 <= point.section < point.sections:
            raise InputError("its sections are not the ones annotated (the folder changed)")
        sections[phase] = Section(
            hu=volume.hu[point.section],
            pixel_spacing_mm=volume.spacing_mm[1],
            thickness_mm=volume.slice_thickness_mm,
            centre=(point.row, point.col),
            manufacturer=volume.manufacturer,
        )
    return sections


def export_cohort(
    builder: BuilderStore,
    root: Path,
    folders: Sequence[StudyFolder],
    out: Path,
    *,
    cohort: str,
    only_done: bool = True,
) -> pd.DataFrame:
    """Write every saved lesion (of the studies marked done, or of all with `only_done` off)
    as a cohort in `out` (livercore.cohort.CohortWriter: three single-slice CT files per
    lesion with synthetic identifiers, manifest.csv); one study read at a time. Returns the
    manifest; InputError when there is nothing to export or a study no longer fits."""
    cohort = check_cohort_name(cohort)
    records = builder.records(f.key for f in folders)
    fresh = not out.exists()
    try:
        return _write_cohort(builder, root, folders, records, out, cohort=cohort, only_done=only_done)
    except BaseException:
        if fresh:  # no half-written cohort is left behind
            shutil.rmtree(out, ignore_errors=True)
        raise


def _write_cohort(
    builder: BuilderStore,
    root: Path,
    folders: Sequence[StudyFolder],
    records: Mapping[str, StudyRecord],
    out: Path,
    *,
    cohort: str,
    only_done: bool,
) -> pd.DataFrame:
    writer = CohortWriter(out, cohort)
    for folder in folders:
        record = records.get(folder.key)
        if record is None or not record.lesions or (only_done and record.status != DONE):
            continue
        study = read_study(root, folder)
        for lesion in builder.lesions(folder.key):
            try:
                sections = lesion_sections(study, lesion)
            except InputError as err:
                raise InputError(f"{folder.label}, lesion {lesion.number}: {err}.") from None
            extra: dict[str, Any] = {
                f"shift_{axis}_mm_{p.value}": round(lesion.points[p].shift_mm[i], 2)
                for p in PHASES
                for i, axis in enumerate("xyz")
            }
            writer.add(
                case_id(folder, lesion),
                patient_key=folder.key,
                category=lesion.category,
                sections=sections,
                diameter_mm=lesion.diameter_mm,
                subtype=lesion.subtype,
                lesion_id=case_id(folder, lesion),
                review=lesion.review,
                **extra,
            )
    if not writer.rows:
        raise InputError(
            "No saved lesion to export"
            + (" in a study marked done: mark the finished studies done." if only_done else ".")
        )
    return writer.close()


def zip_folder(folder: Path) -> bytes:
    """A folder's files as a zip archive in memory, its names relative to the folder's parent
    (so it unpacks into one folder of the cohort's name)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(folder.parent).as_posix())
    return buffer.getvalue()
