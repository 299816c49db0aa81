"""The records: responses, opt-out events and the opt-out state.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON()
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("response_id", sa.String(64), nullable=False),
        sa.Column("survey", sa.String(200), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("ended_at", TIME, nullable=False),
        sa.Column("messages_in", sa.Integer(), nullable=False),
        sa.Column("messages_out", sa.Integer(), nullable=False),
        sa.Column("segments_in", sa.Integer(), nullable=False),
        sa.Column("segments_out", sa.Integer(), nullable=False),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("answers", JSON, nullable=False),
        sa.Column("extra", JSON, nullable=False),
        sa.Column("archived_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("response_id", name=op.f("pk_responses")),
    )
    op.create_index(op.f("ix_responses_phone"), "responses", ["phone"])
    op.create_index(op.f("ix_responses_survey_ended_at"), "responses", ["survey", "ended_at"])
    op.create_index(op.f("ix_responses_survey_status_ended_at"), "responses",
                    ["survey", "status", "ended_at"])

    op.create_table(
        "opt_out_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("how", sa.String(32), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("archived_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_opt_out_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_opt_out_events_event_id")),
    )
    op.create_index(op.f("ix_opt_out_events_channel_phone_at"), "opt_out_events",
                    ["channel", "phone", "at"])

    op.create_table(
        "opt_outs",
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("how", sa.String(32), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("channel", "phone", name=op.f("pk_opt_outs")),
    )
    op.create_index(op.f("ix_opt_outs_opted_out"), "opt_outs", ["opted_out"])


def downgrade() -> None:
    op.drop_table("opt_outs")
    op.drop_table("opt_out_events")
    op.drop_table("responses")
