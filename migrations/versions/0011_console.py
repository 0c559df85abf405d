"""Web console: server-side console sessions and one-time sign-in links.

Revision ID: 0011_console
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_console"
down_revision = "0010"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "console_sessions",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("id_digest", sa.String(length=64), nullable=False),
        sa.Column("user_id", BIG_ID, nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_console_sessions_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_sessions")),
        sa.UniqueConstraint("id_digest", name=op.f("uq_console_sessions_id_digest")),
    )
    op.create_index(op.f("ix_console_sessions_user_id"), "console_sessions", ["user_id"],
                    unique=False)
    op.create_table(
        "console_login_links",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("user_id", BIG_ID, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_console_login_links_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_login_links")),
        sa.UniqueConstraint("token_digest", name=op.f("uq_console_login_links_token_digest")),
    )
    op.create_index(op.f("ix_console_login_links_user_id"), "console_login_links", ["user_id"],
                    unique=False)


def downgrade():
    op.drop_index(op.f("ix_console_login_links_user_id"), table_name="console_login_links")
    op.drop_table("console_login_links")
    op.drop_index(op.f("ix_console_sessions_user_id"), table_name="console_sessions")
    op.drop_table("console_sessions")
