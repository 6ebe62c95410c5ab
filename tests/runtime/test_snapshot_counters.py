"""The status snapshot carries every twin-link counter and every recommendation drop cause.

``LinkStatus`` copies ``LinkCounters`` field by field and ``RecommendationDrops`` has one field
per ``DropCause``: a counter added to the link or a cause added to the book without a field in
the snapshot would be counted but never shown (as 5,263 protocol-error closes were).
"""

from __future__ import annotations

import dataclasses

import pytest

from agent.core.recommend import DropCause
from agent.io.twin.settings import LinkCounters
from agent.model.status import LinkStatus, RecommendationDrops
from agent.runtime.snapshot import copy_fields

pytestmark = pytest.mark.timeout(10)


def names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_every_link_counter_has_a_status_field() -> None:
    assert names(LinkStatus) == names(LinkCounters)


def test_every_drop_cause_has_a_status_field() -> None:
    assert names(RecommendationDrops) == [c.value for c in DropCause]


def test_the_link_counters_are_copied_as_they_are() -> None:
    counters = LinkCounters()
    for i, name in enumerate(names(LinkCounters), start=1):
        setattr(counters, name, f"error {i}" if name == "last_error" else i)
    status = copy_fields(LinkStatus, counters)
    assert dataclasses.asdict(status) == dataclasses.asdict(counters)

