"""Fixtures of the legacy-key tests: counters that flush only when a test asks."""

from typing import Any

import pytest

from tests.support import QUIET_BUFFER


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, **QUIET_BUFFER}


@pytest.fixture(autouse=True)
def _drop_counts(app: Any) -> Any:
    """Buffered counts of one test never leak into the next."""
    yield
    app.extensions["keymint_legacy_usage"].discard()
