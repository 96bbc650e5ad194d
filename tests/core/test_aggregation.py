from __future__ import annotations

from camcount.aggregation import Aggregator, GroupSpec, shard_key
from camcount.channels import EndOfStream, Progress, Sender
from camcount.events import Crossing, Direction


def crossing(
    cam: str, t: float, direction: Direction = Direction.IN, counter: str = "door"
) -> Crossing:
    return Crossing(cam, counter, 1, int(t * 10), t, "person", direction, 0.9, 0, 0)


def test_rows_close_on_progress_and_flush_at_end():
    agg = Aggregator([10], allowed_lateness_s=0)
    agg.register("a", "a#0")
    s = Sender("a#0")
    out = agg.accept(s.envelope([crossing("a", 1), crossing("a", 2)], [Progress(9)]))
    assert out.rows == []
    out = agg.accept(s.envelope([], [Progress(10)]))
    assert [(r.window_start, r.count) for r in out.rows] == [(0, 2)]
    out = agg.accept(s.envelope([crossing("a", 15)], [EndOfStream()]))
    assert out.finished == ["a"] and [(r.window_start, r.count) for r in out.rows] == [(10, 1)]
    assert agg.totals == {("a", "door", "person", "in"): 3}


def test_the_slowest_camera_holds_the_watermark():
    agg = Aggregator([10], allowed_lateness_s=0)
    for cam in ("a", "b"):
        agg.register(cam, f"{cam}#0")
    sa, sb = Sender("a#0"), Sender("b#0")
    assert agg.accept(sa.envelope([crossing("a", 1)], [Progress(30)])).rows == []
    out = agg.accept(sb.envelope([], [Progress(12)]))
    assert [r.camera_id for r in out.rows] == ["a"]


def test_group_rows_join_cameras_with_a_net_row():
    group = GroupSpec("entrances", frozenset({("a", "door"), ("b", "door")}))
    agg = Aggregator([60], allowed_lateness_s=0, groups=[group], sites={"a": "north", "b": "north"})
    agg.register("a", "a#0")
    agg.register("b", "b#0")
    sa, sb = Sender("a#0"), Sender("b#0")
    closed = agg.accept(sa.envelope([crossing("a", 1), crossing("a", 2)], [EndOfStream()])).rows
    assert closed == []  # b still holds the watermark
    closed = agg.accept(sb.envelope([crossing("b", 3, Direction.OUT)], [EndOfStream()])).rows
    rows = {(r.camera_id, r.direction): r.count for r in closed}
    assert rows[("group:entrances", "in")] == 2
    assert rows[("group:entrances", "out")] == 1
    assert rows[("group:entrances", "net")] == 1
    assert rows[("site:north", "in")] == 2


def test_late_events_become_dead_letters():
    agg = Aggregator([10], allowed_lateness_s=0)
    agg.register("a", "a#0")
    s = Sender("a#0")
    agg.accept(s.envelope([], [Progress(25)]))
    out = agg.accept(s.envelope([crossing("a", 3)]))
    assert [d.reason for d in out.dead_letters] == ["late"]
    assert "closed at watermark 25" in out.dead_letters[0].detail


def test_cameras_of_a_group_share_a_shard_key():
    group = GroupSpec("g", frozenset({("a", "x"), ("b", "x")}))
    assert shard_key("a", "", [group]) == shard_key("b", "site2", [group]) == "group:g"
    assert shard_key("c", "north", [group]) == "site:north"
    assert shard_key("d", "", []) == "camera:d"


def test_snapshot_restore_continues_identically():
    def run(restore: bool):
        agg = Aggregator([10, 60], allowed_lateness_s=1)
        agg.register("a", "a#0")
        s = Sender("a#0")
        envs = [s.envelope([crossing("a", t)], [Progress(t)]) for t in range(0, 100, 7)]
        rows = []
        for i, e in enumerate(envs):
            if restore and i == 5:
                other = Aggregator([10, 60], allowed_lateness_s=1)
                other.restore(agg.snapshot())
                agg = other
            rows += agg.accept(e).rows
        return rows + agg.flush()

    assert run(True) == run(False)


def test_a_cameras_dead_letters_leave_with_the_shards():
    from camcount.events import DeadLetter

    agg = Aggregator([10], allowed_lateness_s=0)
    agg.register("a", "a#0")
    letter = DeadLetter("a", "source", "no such file", 1.0, "camera", 0)
    out = agg.accept(Sender("a#0").envelope([letter], [EndOfStream("failed")]))
    assert out.dead_letters == [letter] and out.events == [] and out.finished == ["a"]
