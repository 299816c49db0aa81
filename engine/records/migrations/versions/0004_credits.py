"""Credits: the operator's ledger and what messages used.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
CREDITS = sa.Numeric(18, 4)


def upgrade() -> None:
    op.create_table(
        "credit_ledger",
        sa.Column("id", SERIAL, autoincrement=True, nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("amount", CREDITS, nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("by", sa.String(100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_ledger")),
    )
    op.create_table(
        "credit_usage",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("survey", sa.String(200), nullable=False),
        sa.Column("distribution", sa.String(32), server_default="", nullable=False),
        sa.Column("country", sa.String(3), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("segments", sa.Integer(), nullable=False),
        sa.Column("credits", CREDITS, nullable=False),
        sa.PrimaryKeyConstraint("day", "survey", "distribution", "country", "direction",
                                name=op.f("pk_credit_usage")),
        sa.CheckConstraint("direction IN ('in', 'out')", name=op.f("ck_credit_usage_direction")),
    )


def downgrade() -> None:
    op.drop_table("credit_usage")
    op.drop_table("credit_ledger")
