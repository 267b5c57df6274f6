"""The cohort builder: settings, annotators, studies (by salted hash), lesions and their phases.

Revision ID: 0001
Revises: (none: the first revision)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None

PHASES = "('unenhanced', 'arterial', 'delayed')"


def upgrade() -> None:
    op.create_table(
        "settings",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_settings"),
    )
    op.create_table(
        "annotators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_annotators"),
        sa.UniqueConstraint("name", name="uq_annotators_name"),
    )
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("series_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("series_unenhanced", sa.Integer(), nullable=True),
        sa.Column("series_arterial", sa.Integer(), nullable=True),
        sa.Column("series_delayed", sa.Integer(), nullable=True),
        sa.Column("late", sa.String(16), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.Integer(), nullable=True),
        sa.CheckConstraint("status IN ('in_progress', 'done')", name="ck_studies_status"),
        sa.ForeignKeyConstraint(["updated_by"], ["annotators.id"], name="fk_studies_updated_by_annotators"),
        sa.PrimaryKeyConstraint("id", name="pk_studies"),
        sa.UniqueConstraint("key", name="uq_studies_key"),
    )
    op.create_table(
        "lesions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("annotator_id", sa.Integer(), nullable=False),
        sa.Column("reference_phase", sa.String(16), nullable=False),
        sa.Column("diameter_mm", sa.Float(), nullable=False),
        sa.Column("category", sa.String(1), nullable=False),
        sa.Column("subtype", sa.String(40), nullable=False),
        sa.Column("review", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("category IN ('A', 'B', 'C', 'D', 'E')", name="ck_lesions_category"),
        sa.CheckConstraint("diameter_mm > 0", name="ck_lesions_diameter"),
        sa.CheckConstraint(f"reference_phase IN {PHASES}", name="ck_lesions_reference_phase"),
        sa.ForeignKeyConstraint(
            ["annotator_id"], ["annotators.id"], name="fk_lesions_annotator_id_annotators"
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name="fk_lesions_study_id_studies", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_lesions"),
    )
    op.create_index("ix_lesions_study_id", "lesions", ["study_id"])
    op.create_table(
        "lesion_phases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lesion_id", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("series", sa.Integer(), nullable=False),
        sa.Column("section", sa.Integer(), nullable=False),
        sa.Column("sections", sa.Integer(), nullable=False),
        sa.Column("row", sa.Float(), nullable=False),
        sa.Column("col", sa.Float(), nullable=False),
        sa.Column("shift_x_mm", sa.Float(), nullable=False),
        sa.Column("shift_y_mm", sa.Float(), nullable=False),
        sa.Column("shift_z_mm", sa.Float(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.CheckConstraint(f"phase IN {PHASES}", name="ck_lesion_phases_phase"),
        sa.CheckConstraint(
            "source IN ('clicked', 'propagated', 'refined', 'corrected')", name="ck_lesion_phases_source"
        ),
        sa.ForeignKeyConstraint(
            ["lesion_id"], ["lesions.id"], name="fk_lesion_phases_lesion_id_lesions", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_lesion_phases"),
        sa.UniqueConstraint("lesion_id", "phase", name="uq_lesion_phases_lesion_phase"),
    )


def downgrade() -> None:
    op.drop_table("lesion_phases")
    op.drop_index("ix_lesions_study_id", table_name="lesions")
    op.drop_table("lesions")
    op.drop_table("studies")
    op.drop_table("annotators")
    op.drop_table("settings")
