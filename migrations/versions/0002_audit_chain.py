"""audit chain: per-event content hash, written by the sealer

Revision ID: 0002_audit_chain
Revises: 0001
Create Date: 2026-11-28

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002_audit_chain'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    # Nullable: the hot path inserts events without it; `keymint audit seal` fills it in
    # together with seal_id, so verify can name the exact event whose content changed.
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('event_hash', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_column('event_hash')
