"""The teaching platform: learners, their quiz attempts and their spaced-repetition cards.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None

CATEGORIES = "('A', 'B', 'C', 'D', 'E')"


def upgrade() -> None:
    op.create_table(
        "learners",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("display_name", sa.String(80), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("source IN ('oidc', 'proxy', 'demo')", name="ck_learners_source"),
        sa.CheckConstraint("role IN ('resident', 'educator')", name="ck_learners_role"),
        sa.PrimaryKeyConstraint("id", name="pk_learners"),
        sa.UniqueConstraint("subject", name="uq_learners_subject"),
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_key", sa.String(40), nullable=False),
        sa.Column("learner_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("phase_set", sa.String(16), nullable=False),
        sa.Column("answer", sa.String(1), nullable=False),
        sa.Column("truth", sa.String(1), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("confidence", sa.Integer(), nullable=False),
        sa.Column("features_marked", sa.Text(), nullable=False),
        sa.Column("features_truth", sa.Text(), nullable=False),
        sa.Column("features_asked", sa.Text(), nullable=False),
        sa.Column("steps", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("mode IN ('features', 'stepwise')", name="ck_attempts_mode"),
        sa.CheckConstraint(f"answer IN {CATEGORIES}", name="ck_attempts_answer"),
        sa.CheckConstraint(f"truth IN {CATEGORIES}", name="ck_attempts_truth"),
        sa.CheckConstraint("confidence BETWEEN 1 AND 3", name="ck_attempts_confidence"),
        sa.ForeignKeyConstraint(
            ["learner_id"], ["learners.id"], name="fk_attempts_learner_id_learners", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_attempts"),
        sa.UniqueConstraint("client_key", name="uq_attempts_client_key"),
    )
    op.create_index("ix_attempts_learner_id", "attempts", ["learner_id"])
    op.create_index("ix_attempts_answered_at", "attempts", ["answered_at"])
    op.create_table(
        "review_cards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("learner_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.String(64), nullable=False),
        sa.Column("fsrs_card", sa.Text(), nullable=False),
        sa.Column("due", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviews", sa.Integer(), nullable=False),
        sa.Column("lapses", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["learner_id"], ["learners.id"], name="fk_review_cards_learner_id_learners", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_review_cards"),
        sa.UniqueConstraint("learner_id", "case_id", name="uq_review_cards_learner_case"),
    )
    op.create_index("ix_review_cards_learner_id", "review_cards", ["learner_id"])


def downgrade() -> None:
    op.drop_table("review_cards")
    op.drop_table("attempts")
    op.drop_table("learners")
