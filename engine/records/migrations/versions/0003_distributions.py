"""Distributions and their recipients; responses carry their distribution and a preview mark.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON()
TIME = sa.DateTime(timezone=True)
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "distributions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("survey", sa.String(200), nullable=False),
        sa.Column("list_id", SERIAL, nullable=True),
        sa.Column("list_name", sa.String(100), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("send_at", TIME, nullable=False),
        sa.Column("quiet_from", sa.String(5), nullable=True),
        sa.Column("quiet_to", sa.String(5), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("estimate", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("started_at", TIME, nullable=True),
        sa.Column("finished_at", TIME, nullable=True),
        sa.ForeignKeyConstraint(["list_id"], ["contact_lists.id"], ondelete="SET NULL",
                                name=op.f("fk_distributions_list_id_contact_lists")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_distributions")),
    )
    op.create_index(op.f("ix_distributions_status_send_at"), "distributions", ["status", "send_at"])
    op.create_table(
        "distribution_recipients",
        sa.Column("distribution_id", sa.String(32), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("sid", sa.String(64), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("not_before", TIME, nullable=True),
        sa.ForeignKeyConstraint(["distribution_id"], ["distributions.id"], ondelete="CASCADE",
                                name=op.f("fk_distribution_recipients_distribution_id_distributions")),
        sa.PrimaryKeyConstraint("distribution_id", "phone", name=op.f("pk_distribution_recipients")),
    )
    op.create_index(op.f("ix_distribution_recipients_distribution_id_state_phone"),
                    "distribution_recipients", ["distribution_id", "state", "phone"])
    op.create_index(op.f("ix_distribution_recipients_phone_updated_at"),
                    "distribution_recipients", ["phone", "updated_at"])
    with op.batch_alter_table("responses") as batch:  # SQLite alters a table by copying it
        batch.add_column(sa.Column("distribution", sa.String(32), nullable=True))
        batch.add_column(sa.Column("preview", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index(op.f("ix_responses_survey_distribution"), "responses", ["survey", "distribution"])


def downgrade() -> None:
    op.drop_index(op.f("ix_responses_survey_distribution"), table_name="responses")
    with op.batch_alter_table("responses") as batch:
        batch.drop_column("preview")
        batch.drop_column("distribution")
    op.drop_table("distribution_recipients")
    op.drop_table("distributions")
