"""Resources (issue #17): registered APIs, keys restricted to them, token audiences.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "resources",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("uri", sa.String(length=400), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("policy", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resources")),
        sa.UniqueConstraint("uri", name=op.f("uq_resources_uri")),
    )
    op.create_table(
        "resource_catalog",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resource_catalog")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resources", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("introspects_for", sa.String(length=400), nullable=True))
    with op.batch_alter_table("access_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("audience", sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("access_tokens", schema=None) as batch_op:
        batch_op.drop_column("audience")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("introspects_for")
        batch_op.drop_column("resources")
    op.drop_table("resource_catalog")
    op.drop_table("resources")
