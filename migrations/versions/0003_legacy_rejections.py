"""Legacy keys: count rejections (after sunset, in a brownout, disabled) per key.

Revision ID: 0003
Revises: 0002_audit_chain
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002_audit_chain"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("legacy_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            "rejected_count", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("last_rejected_at", sa.DateTime(timezone=True),
                                      nullable=True))


def downgrade():
    with op.batch_alter_table("legacy_keys", schema=None) as batch_op:
        batch_op.drop_column("last_rejected_at")
        batch_op.drop_column("rejected_count")
