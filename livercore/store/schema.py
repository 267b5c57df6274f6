"""The store's tables (SQLAlchemy 2 declarative). Each change here comes with a migration in
``migrations/versions`` (tests/test_store.py checks that the migrated database and these
classes agree).

No column holds a patient identifier: a study is its salted hash (livercore.cohort_builder),
a lesion its voxel position and reading; times are when a person did the work, not when a
patient was scanned.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from livercore.vocab import CATEGORIES, PHASES

# Constraint names fixed by convention, so migrations can refer to them on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
NAME_LENGTH = 80  # an annotator's display name, in characters
STUDY_STATUSES = ("in_progress", "done")  # a study without a row has not been started
PHASE_NAMES = tuple(p.value for p in PHASES)
CATEGORY_VALUES = tuple(c.value for c in CATEGORIES)
LESION_SOURCES = ("clicked", "propagated", "refined", "corrected")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    """SQL of a CHECK that `column` holds one of `values` (constants of this module)."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def utc_now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Setting(Base):
    """Key-value settings of the installation (e.g. the study-key salt when no secret is
    configured)."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Annotator(Base):
    """A person who annotates, by the display name they give (data, never SQL or a path)."""

    __tablename__ = "annotators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class Study(Base):
    """One study of the configured studies folder, known only by its salted hash."""

    __tablename__ = "studies"
    __table_args__ = (CheckConstraint(_one_of("status", STUDY_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)  # HMAC-SHA256 hex of its folder
    series_count: Mapped[int] = mapped_column(Integer)  # CT series that could be volumes
    status: Mapped[str] = mapped_column(String(16), default="in_progress")
    # The series (index into the study's series, in acquisition order) playing each phase, as
    # the annotator confirmed them; None until then (the proposal is used).
    series_unenhanced: Mapped[int | None] = mapped_column(Integer)
    series_arterial: Mapped[int | None] = mapped_column(Integer)
    series_delayed: Mapped[int | None] = mapped_column(Integer)
    late: Mapped[str | None] = mapped_column(String(16))  # "portal-venous" or "delayed" plays delayed
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, onupdate=utc_now)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("annotators.id"))

    lesions: Mapped[list[Lesion]] = relationship(
        back_populates="study", cascade="all, delete-orphan", order_by="Lesion.id"
    )


class Lesion(Base):
    """One annotated lesion: its reading (diameter, category, subtype) and, per phase, where
    its centre lies (LesionPhase)."""

    __tablename__ = "lesions"
    __table_args__ = (
        CheckConstraint(_one_of("category", CATEGORY_VALUES), name="category"),
        CheckConstraint("diameter_mm > 0", name="diameter"),
        CheckConstraint(_one_of("reference_phase", PHASE_NAMES), name="reference_phase"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    reference_phase: Mapped[str] = mapped_column(String(16))  # the phase whose click set the centre
    diameter_mm: Mapped[float] = mapped_column(Float)
    category: Mapped[str] = mapped_column(String(1))
    subtype: Mapped[str] = mapped_column(String(40), default="")
    review: Mapped[str] = mapped_column(Text, default="")  # why a person should look again; "" if not
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    study: Mapped[Study] = relationship(back_populates="lesions")
    annotator: Mapped[Annotator] = relationship(lazy="joined")
    phases: Mapped[list[LesionPhase]] = relationship(
        back_populates="lesion", cascade="all, delete-orphan", lazy="selectin"
    )


class LesionPhase(Base):
    """Where a lesion's centre lies in one phase: the series, its section and (row, col) in
    pixels, the breath-hold shift against the reference phase (LPS mm) and how it was found."""

    __tablename__ = "lesion_phases"
    __table_args__ = (
        UniqueConstraint("lesion_id", "phase", name="uq_lesion_phases_lesion_phase"),
        CheckConstraint(_one_of("phase", PHASE_NAMES), name="phase"),
        CheckConstraint(_one_of("source", LESION_SOURCES), name="source"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lesion_id: Mapped[int] = mapped_column(ForeignKey("lesions.id", ondelete="CASCADE"))
    phase: Mapped[str] = mapped_column(String(16))
    series: Mapped[int] = mapped_column(Integer)  # index into the study's series
    section: Mapped[int] = mapped_column(Integer)  # index into the series' sections (sorted along the normal)
    sections: Mapped[int] = mapped_column(Integer)  # the series' sections then: a changed series is noticed
    row: Mapped[float] = mapped_column(Float)
    col: Mapped[float] = mapped_column(Float)
    shift_x_mm: Mapped[float] = mapped_column(Float, default=0.0)
    shift_y_mm: Mapped[float] = mapped_column(Float, default=0.0)
    shift_z_mm: Mapped[float] = mapped_column(Float, default=0.0)
    source: Mapped[str] = mapped_column(String(16))  # clicked, propagated, refined or corrected

    lesion: Mapped[Lesion] = relationship(back_populates="phases")


# --- the teaching platform (revision 0002): learners, their attempts and review cards ----------

LEARNER_SOURCES = ("oidc", "proxy", "demo")  # how the learner was identified (livercore.identity)
ROLES = ("resident", "educator")
QUIZ_MODES = ("features", "stepwise")  # features first, then the category; phase by phase
SUBJECT_LENGTH = 200


class Learner(Base):
    """A person learning: the identity the app was given (an OIDC subject or e-mail, a trusted
    proxy's user header, or a demo-mode display name, prefixed by its source) and the name shown.
    Staff, not patients: no patient identifier is ever stored with them."""

    __tablename__ = "learners"
    __table_args__ = (
        CheckConstraint(_one_of("source", LEARNER_SOURCES), name="source"),
        CheckConstraint(_one_of("role", ROLES), name="role"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(SUBJECT_LENGTH), unique=True)  # "<source>:<identity>"
    display_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    source: Mapped[str] = mapped_column(String(8))
    role: Mapped[str] = mapped_column(String(16), default="resident")  # as configured at the last visit
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class Attempt(Base):
    """One answer to one quiz case: the findings marked per phase, the category and how sure
    the learner was, graded against the case's ground truth. `client_key` makes a write
    idempotent: a rerun that sends the same answer again does not count it twice."""

    __tablename__ = "attempts"
    __table_args__ = (
        CheckConstraint(_one_of("mode", QUIZ_MODES), name="mode"),
        CheckConstraint(_one_of("answer", CATEGORY_VALUES), name="answer"),
        CheckConstraint(_one_of("truth", CATEGORY_VALUES), name="truth"),
        CheckConstraint("confidence BETWEEN 1 AND 3", name="confidence"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_key: Mapped[str] = mapped_column(String(40), unique=True)
    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[str] = mapped_column(String(64))  # a teaching case's id, never a patient's
    mode: Mapped[str] = mapped_column(String(16))
    phase_set: Mapped[str] = mapped_column(String(16))  # the phases shown (a PHASE_MODELS name)
    answer: Mapped[str] = mapped_column(String(1))
    truth: Mapped[str] = mapped_column(String(1))
    correct: Mapped[bool] = mapped_column(Boolean)
    confidence: Mapped[int] = mapped_column(Integer)  # 1 unsure, 2 fairly sure, 3 sure
    features_marked: Mapped[str] = mapped_column(Text, default="")  # feature keys, comma-separated
    features_truth: Mapped[str] = mapped_column(Text, default="")  # the case's, at the time
    features_asked: Mapped[str] = mapped_column(Text, default="")  # the features offered
    steps: Mapped[str] = mapped_column(Text, default="")  # stepwise: "U:C,A:A,D:A" (phase: answer)
    note: Mapped[str] = mapped_column(Text, default="")  # the learner's own free text: theirs only
    seconds: Mapped[float | None] = mapped_column(Float)
    answered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, index=True)


class ReviewCard(Base):
    """A learner's spaced-repetition card of one case (FSRS, the `fsrs` package): its state as
    the package's JSON, and when it is due again."""

    __tablename__ = "review_cards"
    __table_args__ = (UniqueConstraint("learner_id", "case_id", name="uq_review_cards_learner_case"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[str] = mapped_column(String(64))
    fsrs_card: Mapped[str] = mapped_column(Text)  # fsrs.Card.to_json()
    due: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reviews: Mapped[int] = mapped_column(Integer, default=0)
    lapses: Mapped[int] = mapped_column(Integer, default=0)  # wrong answers
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, onupdate=utc_now)
