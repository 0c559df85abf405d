"""Audit events: indexes for "events about these keys" (member visibility, key filter).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_audit_events_workspace_id_actor_key",
                              ["workspace_id", "actor_key"], unique=False)
        batch_op.create_index("ix_audit_events_workspace_id_target_id",
                              ["workspace_id", "target_id"], unique=False)


def downgrade():
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_workspace_id_target_id")
        batch_op.drop_index("ix_audit_events_workspace_id_actor_key")
