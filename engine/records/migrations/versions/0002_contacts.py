"""Contact lists and their contacts.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON()
TIME = sa.DateTime(timezone=True)
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "contact_lists",
        sa.Column("id", SERIAL, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_lists")),
        sa.UniqueConstraint("name", name=op.f("uq_contact_lists_name")),
    )
    op.create_table(
        "contacts",
        sa.Column("id", SERIAL, autoincrement=True, nullable=False),
        sa.Column("list_id", SERIAL, nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("line_warning", sa.String(32), nullable=True),
        sa.Column("import_id", sa.String(32), nullable=False),
        sa.Column("created_at", TIME, server_default=sa.func.current_timestamp(), nullable=False),
        sa.Column("updated_at", TIME, server_default=sa.func.current_timestamp(), nullable=False),
        sa.ForeignKeyConstraint(["list_id"], ["contact_lists.id"], ondelete="CASCADE",
                                name=op.f("fk_contacts_list_id_contact_lists")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
        sa.UniqueConstraint("list_id", "phone", name=op.f("uq_contacts_list_id_phone")),
    )
    op.create_index(op.f("ix_contacts_phone"), "contacts", ["phone"])


def downgrade() -> None:
    op.drop_table("contacts")
    op.drop_table("contact_lists")
