"""Shared helpers for the legacy-key tests: seeding keys, flushing counters, reading rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

SUNSET = datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC)  # the default, announced date
DEPRECATED_AT = datetime(2025, 1, 1, tzinfo=UTC)
# Counters are flushed only when a test says so (no timer, no threshold in the way).
QUIET_BUFFER = {"KEYMINT_LEGACY_FLUSH_INTERVAL": 3600,
                "KEYMINT_LEGACY_FLUSH_THRESHOLD": 1_000_000}


def add_legacy_key(app: Any, slug: str, key: str, label: str = "old integration") -> int:
    from app.extensions import db
    from app.models import LegacyKey
    from app.services import legacy_import
    from app.services.audit import Actor

    with app.app_context():
        legacy_import.import_keys(db.session, [legacy_import.ImportRow(2, slug, key, label)],
                                  Actor.cli())
        db.session.commit()
        from app import credentials

        return db.session.query(LegacyKey.id).filter_by(digest=credentials.digest(key)).scalar()


def flush(app: Any) -> int:
    return app.extensions["keymint_legacy_usage"].flush()


def legacy_row(app: Any, legacy_id: int) -> dict[str, Any]:
    from app.extensions import db
    from app.models import LegacyKey

    with app.app_context():
        row = db.session.get(LegacyKey, legacy_id)
        data = {c.name: getattr(row, c.key) for c in LegacyKey.__table__.columns}
        db.session.rollback()
        return data


def audit_events(app: Any, action: str) -> list[dict[str, Any]]:
    from app.extensions import db
    from app.models import AuditEvent

    with app.app_context():
        rows = db.session.query(AuditEvent).filter_by(action=action).order_by(AuditEvent.id)
        events = [{"actor_type": e.actor_type, "actor_id": e.actor_id, "target_id": e.target_id,
                   "workspace_id": e.workspace_id, "occurred_at": e.occurred_at, "ip": e.ip,
                   "details": e.details} for e in rows]
        db.session.rollback()
        return events


def set_disabled(app: Any, legacy_id: int) -> None:
    from app.extensions import db
    from app.services import legacy
    from app.services.audit import Actor

    with app.app_context():
        legacy.disable_key(db.session, legacy.get_key(db.session, legacy_id), Actor.cli())
        db.session.commit()


def me(client: Any, key: str, **kwargs: Any) -> Any:
    return client.get("/api/v1/me", headers={"X-API-Key": key, **kwargs.pop("headers", {})},
                      **kwargs)
