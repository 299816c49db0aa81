"""Individual links to a survey's web pages.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_links",
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("survey", sa.String(200), nullable=False),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("respondent", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_web_links")),
        sa.UniqueConstraint("respondent", name=op.f("uq_web_links_respondent")),
    )


def downgrade() -> None:
    op.drop_table("web_links")
