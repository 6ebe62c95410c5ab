"""pytest plugin of CI's aarch64 leg (``-p timeout_scale``, .ci/ on PYTHONPATH): every test's
pytest-timeout, from its marker or the ini default, times ``$TWINGUARD_TIMEOUT_SCALE``.

The timeouts are hang guards sized for the host; under qemu-user the same code runs 5 to 25
times slower (a Hypothesis test of 1.2 s on the host takes 29 s against its 30 s timeout).
Nothing a test asserts changes, its own deadlines included: only how long a hung test may
take to be stopped.
"""

from __future__ import annotations

import math
import os

import pytest
import pytest_timeout  # type: ignore[import-untyped]

VAR = "TWINGUARD_TIMEOUT_SCALE"


def _scale() -> float:
    raw = os.environ.get(VAR, "1")
    try:
        scale = float(raw)
    except ValueError:
        scale = math.nan
    if not (math.isfinite(scale) and scale > 0):
        raise pytest.UsageError(f"{VAR}={raw!r}: want a positive number")
    return scale


def pytest_configure(config: pytest.Config) -> None:
    _scale()  # a bad value stops the run before any test


def pytest_report_header(config: pytest.Config) -> str:
    return f"timeouts x{_scale():g} ({VAR})"


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: pytest_timeout.Settings) -> bool:
    """Start pytest-timeout's own timer, on the scaled timeout."""
    scaled = settings._replace(timeout=settings.timeout * _scale())
    return bool(pytest_timeout.pytest_timeout_set_timer(item, scaled))
