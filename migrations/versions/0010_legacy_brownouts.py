"""Legacy brownouts stored in the database (`keymint legacy brownouts add|list|remove`).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "legacy_brownouts",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legacy_brownouts")),
    )
    op.create_index(op.f("ix_legacy_brownouts_ends_at"), "legacy_brownouts", ["ends_at"],
                    unique=False)


def downgrade():
    op.drop_index(op.f("ix_legacy_brownouts_ends_at"), table_name="legacy_brownouts")
    op.drop_table("legacy_brownouts")
