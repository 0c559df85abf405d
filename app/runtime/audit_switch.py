"""KEYMINT_AUDIT_ENABLED: the switch the audit service asks before it writes an event."""

from __future__ import annotations

from flask import Flask, current_app, has_app_context

from app.services import audit


def _enabled() -> bool:
    # Per app, not per process: tests (and the benchmark) run apps with either setting.
    return not has_app_context() or current_app.config.get("KEYMINT_AUDIT_ENABLED", True)


def init_app(_app: Flask) -> None:
    audit.use_switch(_enabled)
