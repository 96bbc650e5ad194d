"""External events: the wire format, dedupe by device sequence, and their
counts in the same windows, groups and checkpoints as a camera's."""

from __future__ import annotations

from typing import Any

import pytest

from camcount.events import Crossing, Direction
from camcount.external import ExternalCount, ExternalEventError, ExternalSource, parse_events
from camcount.stream.aggregation import Aggregator, GroupSpec
from camcount.stream.channels import Barrier, EndOfStream, Progress, Sender


def ev(seq: int, t: float, n: int = 1, direction: str = "in", device: str = "d1") -> dict[str, Any]:
    return {
        "device_id": device,
        "seq": seq,
        "event_time": t,
        "counter_id": "main",
        "direction": direction,
        "count": n,
    }


def crossing(t: float, direction: Direction = Direction.IN, frame: int | None = None) -> Crossing:
    f = int(t * 10) if frame is None else frame
    return Crossing("cam", "door", 1, f, t, "person", direction, 0.9, 0, 0)


# ------------------------------------------------------------ the wire format


def test_one_event_or_a_list_with_defaults_and_iso_times() -> None:
    one = parse_events(
        b'{"device_id": "d1", "seq": 4, "event_time": "1970-01-01T00:00:12Z",'
        b' "counter_id": "main", "direction": "out"}',
        "doors",
    )
    assert one == [ExternalCount("doors", "d1", 4, "main", "person", Direction.OUT, 1, 12.0)]
    many = parse_events([ev(1, 3.5, 3), {**ev(2, 4), "class": "car"}], "doors")
    assert [(e.seq, e.count, e.class_name, e.event_time) for e in many] == [
        (1, 3, "person", 3.5),
        (2, 1, "car", 4.0),
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([{**ev(1, 3), "seq": -1}], "events[0].seq"),  # sequences count from 0
        ([ev(1, 3), {**ev(2, 3), "direction": "up"}], "events[1].direction"),
        ([{**ev(1, 3), "count": 0}], "events[0].count"),  # a count of nothing
        ([{**ev(1, 3), "event_time": "2026-03-01T10:15:02"}], "events[0].event_time"),  # no zone
        ([{k: v for k, v in ev(1, 3).items() if k != "device_id"}], "events[0].device_id"),
        ([{**ev(1, 3), "colour": "red"}], "events[0].colour"),  # unknown fields are typos
        ({**ev(1, 3), "device_id": "a/b"}, "events.device_id"),  # would break a topic
        ([], "events"),  # an empty batch
    ],
)
def test_a_bad_field_is_named(body: Any, field: str) -> None:
    with pytest.raises(ExternalEventError) as err:
        parse_events(body, "doors")
    assert any(p.startswith(f"{field}:") for p in err.value.problems), err.value.problems


def test_not_json_and_unknown_counters_are_refused() -> None:
    with pytest.raises(ExternalEventError, match="not valid JSON"):
        parse_events(b"{nope", "doors")
    with pytest.raises(
        ExternalEventError, match=r"events\[0\].counter_id: 'main' is not a counter"
    ):
        parse_events([ev(1, 3)], "doors", counters=("side",))


# ------------------------------------------------------------ dedupe


def test_duplicates_are_dropped_by_device_sequence() -> None:
    src = ExternalSource("doors", "doors#0")
    batch = parse_events([ev(1, 1), ev(2, 2), ev(1, 5, device="d2")], "doors")
    first = src.accept(batch)
    assert first.envelope is not None and len(first.accepted) == 3
    assert first.envelope.controls == (Progress(5),)
    again = src.accept(batch)  # the same batch, resent
    assert again.envelope is None and len(again.duplicates) == 3
    later = src.accept(parse_events([ev(2, 2), ev(5, 6)], "doors"))
    assert [e.seq for e in later.accepted] == [5] and src.gaps == 2
    assert src.last_seq("d1") == 5 and src.last_seq("d2") == 1


# ------------------------------------------------------------ in the windows


def shard(groups: list[GroupSpec] | None = None) -> Aggregator:
    agg = Aggregator([10], allowed_lateness_s=0, groups=groups or [])
    agg.register("cam", "cam#0")
    agg.register("doors", "doors#0")
    return agg


def test_external_counts_share_windows_and_groups_with_cameras() -> None:
    group = GroupSpec("site", frozenset({("cam", "door"), ("doors", "main")}))
    agg = shard([group])
    cam, src = Sender("cam#0"), ExternalSource("doors", "doors#0")
    rows = []
    rows += agg.accept(cam.envelope([crossing(1), crossing(2, Direction.OUT)])).rows
    accepted = src.accept(parse_events([ev(1, 3, n=3), ev(2, 4, n=1, direction="out")], "doors"))
    assert accepted.envelope is not None
    out = agg.accept(accepted.envelope)
    assert out.events == []  # external counts leave as rows, not raw events
    rows += out.rows
    rows += agg.accept(cam.envelope([], [EndOfStream()])).rows
    rows += agg.accept(src.barrier(1)).rows  # barriers of one side only
    rows += agg.flush()
    got = {(r.camera_id, r.direction): r.count for r in rows if r.window_start == 0}
    assert got[("doors", "in")] == 3 and got[("doors", "out")] == 1
    assert got[("group:site", "in")] == 1 + 3
    assert got[("group:site", "out")] == 1 + 1
    assert got[("group:site", "net")] == 2
    assert agg.totals[("doors", "main", "person", "in")] == 3


def test_a_late_external_event_is_a_dead_letter_and_changes_no_row() -> None:
    agg = Aggregator([10], allowed_lateness_s=0)
    agg.register("doors", "doors#0")
    src = ExternalSource("doors", "doors#0")
    first = src.accept(parse_events([ev(1, 25)], "doors"))
    assert first.envelope is not None
    agg.accept(first.envelope)
    late = src.accept(parse_events([ev(2, 3, n=4)], "doors"))
    assert late.envelope is not None
    out = agg.accept(late.envelope)
    assert [d.reason for d in out.dead_letters] == ["late"]
    assert out.dead_letters[0].payload_id == late.accepted[0].event_id
    assert all(r.window_start != 0 for r in agg.flush())


def test_a_restore_counts_a_resent_batch_once() -> None:
    agg = shard()
    src = ExternalSource("doors", "doors#0")
    cam = Sender("cam#0")
    before = src.accept(parse_events([ev(1, 1, n=2)], "doors")).envelope
    assert before is not None
    agg.accept(before)
    agg.accept(src.barrier(7))
    out = agg.accept(cam.envelope([], [Barrier(7, "cam-state")]))
    (cp,) = out.checkpoints
    saved = cp.cameras["doors"]
    after = parse_events([ev(2, 2, n=5)], "doors")
    sent = src.accept(after).envelope
    assert sent is not None
    agg.accept(sent)  # counted, then everything fails before checkpoint 8
    assert agg.totals[("doors", "main", "person", "in")] == 7

    restored_agg = shard()
    restored_agg.restore(cp.state)
    restored_agg.register("cam", "cam#1")
    restored_agg.register("doors", "doors#1")
    restored = ExternalSource("doors", "doors#1")
    restored.restore(saved)  # type: ignore[arg-type]
    # The device resends what it had not seen acknowledged, and more.
    for batch in (after, after + parse_events([ev(1, 1, n=2)], "doors")):
        env = restored.accept(batch).envelope
        if env is not None:
            restored_agg.accept(env)
    assert restored_agg.totals[("doors", "main", "person", "in")] == 7


def test_a_refusal_crosses_processes_with_its_problems() -> None:
    import pickle

    err = ExternalEventError(["events[0].seq: bad", "events[1].count: bad"])
    again = pickle.loads(pickle.dumps(err))
    assert again.problems == err.problems and str(again) == str(err)
