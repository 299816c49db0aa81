"""Link distributions: a distribution's mode, invitation message and sender; a recipient's
invitation digest (duplicate suppression); a web link's distribution and opt-out token.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("distributions") as batch:
        batch.add_column(sa.Column("mode", sa.String(8), nullable=False, server_default="2way"))
        batch.add_column(sa.Column("message", sa.Text(), nullable=True))
        batch.add_column(sa.Column("sender", sa.String(40), nullable=True))
    with op.batch_alter_table("distribution_recipients") as batch:
        batch.add_column(sa.Column("digest", sa.String(64), nullable=True))
    with op.batch_alter_table("web_links") as batch:
        batch.add_column(sa.Column("distribution", sa.String(32), nullable=True))
        batch.add_column(sa.Column("opt_out", sa.String(64), nullable=True))
    op.create_index(op.f("ix_web_links_distribution_phone"), "web_links", ["distribution", "phone"], unique=True)
    op.create_index(op.f("ix_web_links_opt_out"), "web_links", ["opt_out"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_web_links_opt_out"), table_name="web_links")
    op.drop_index(op.f("ix_web_links_distribution_phone"), table_name="web_links")
    with op.batch_alter_table("web_links") as batch:
        batch.drop_column("opt_out")
        batch.drop_column("distribution")
    with op.batch_alter_table("distribution_recipients") as batch:
        batch.drop_column("digest")
    with op.batch_alter_table("distributions") as batch:
        batch.drop_column("sender")
        batch.drop_column("message")
        batch.drop_column("mode")
