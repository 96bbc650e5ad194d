"""``POST /events`` bodies and the Idempotency-Key header: what passes,
and a 422 naming the field for everything else."""

from __future__ import annotations

from typing import Any

import pytest

from camcount.errors import RequestError
from camcount.http.external import external_batch, idempotency_key

EVENT = {"device_id": "d1", "seq": 1, "event_time": 10.5, "counter_id": "main", "direction": "in"}


def test_a_good_batch_passes_as_events_of_its_source() -> None:
    source, events = external_batch({"source": "doors", "events": [EVENT, {**EVENT, "seq": 2}]})
    assert source == "doors" and [(e.source_id, e.seq) for e in events] == [
        ("doors", 1),
        ("doors", 2),
    ]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"events": [EVENT]}, ["body", "source"]),  # whose events?
        ({"source": "a/b", "events": [EVENT]}, ["body", "source"]),
        ({"source": "doors"}, ["body", "events"]),
        ({"source": "doors", "events": {"seq": 1}}, ["body", "events"]),  # not a list
        ({"source": "doors", "events": []}, ["body", "events"]),
        (
            {"source": "doors", "events": [EVENT, {**EVENT, "seq": "x"}]},
            ["body", "events", "1", "seq"],
        ),
        ({"source": "doors", "events": [EVENT], "sauce": 1}, ["body", "sauce"]),
        ([EVENT], None),  # a bare list: no source named
    ],
)
def test_a_bad_batch_is_a_422_naming_the_field(body: Any, loc: list[str] | None) -> None:
    with pytest.raises(RequestError) as err:
        external_batch(body)
    assert err.value.status == 422
    if loc is not None:
        detail = err.value.detail
        assert isinstance(detail, list) and loc in [d["loc"] for d in detail]


@pytest.mark.parametrize("key", ["", "has space", "x" * 201, "é"])
def test_a_bad_idempotency_key_is_refused(key: str) -> None:
    with pytest.raises(RequestError) as err:
        idempotency_key(key)
    assert err.value.status == 422 and "Idempotency-Key" in str(err.value)


def test_no_key_and_a_good_key_pass() -> None:
    assert idempotency_key(None) is None
    assert idempotency_key("batch-2026-03-01T10:15/7") == "batch-2026-03-01T10:15/7"
