from __future__ import annotations

import pytest

from camcount.events import Crossing, Direction
from camcount.stream.aggregation import Aggregator, GroupSpec, resplit, shard_key, shard_router
from camcount.stream.channels import Barrier, EndOfStream, Progress, Sender


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
        batches = [([crossing("a", t)], [Progress(t)]) for t in range(0, 100, 7)]
        rows = []
        for i, (events, controls) in enumerate(batches):
            if restore and i == 5:
                # A restored shard takes the camera back as a new incarnation.
                other = Aggregator([10, 60], allowed_lateness_s=1)
                other.restore(agg.snapshot())
                other.register("a", "a#1")
                agg, s = other, Sender("a#1")
            rows += agg.accept(s.envelope(events, controls)).rows
        return rows + agg.flush()

    assert run(True) == run(False)


def test_a_cameras_dead_letters_leave_with_the_shards():
    from camcount.events import DeadLetter

    agg = Aggregator([10], allowed_lateness_s=0)
    agg.register("a", "a#0")
    letter = DeadLetter("a", "source", "no such file", 1.0, "camera", 0)
    out = agg.accept(Sender("a#0").envelope([letter], [EndOfStream("failed")]))
    assert out.dead_letters == [letter] and out.events == [] and out.finished == ["a"]


# ----------------------------------------------------------- barrier alignment


def two_cameras() -> tuple[Aggregator, Sender, Sender]:
    agg = Aggregator([10], allowed_lateness_s=0)
    agg.register("a", "a#0")
    agg.register("b", "b#0")
    return agg, Sender("a#0"), Sender("b#0")


def test_a_checkpoint_waits_for_every_input_and_holds_what_follows_a_barrier():
    agg, sa, sb = two_cameras()
    agg.accept(sa.envelope([crossing("a", 1)], [Progress(1)]))
    out = agg.accept(sa.envelope([], [Barrier(1, "state-a")]))
    assert out.checkpoints == []
    # a's next batch waits behind its barrier: not in the totals yet.
    agg.accept(sa.envelope([crossing("a", 2)], [Progress(2)]))
    assert agg.totals == {("a", "door", "person", "in"): 1}
    agg.accept(sb.envelope([crossing("b", 1)], [Progress(1)]))
    out = agg.accept(sb.envelope([], [Barrier(1, "state-b")]))
    (cp,) = out.checkpoints
    assert cp.checkpoint_id == 1 and cp.cameras == {"a": "state-a", "b": "state-b"}
    # The snapshot holds a's first crossing and b's, not a's held one ...
    assert dict(cp.state.totals) == {
        ("a", "door", "person", "in"): 1,
        ("b", "door", "person", "in"): 1,
    }
    # ... which is applied right after it.
    assert agg.totals[("a", "door", "person", "in")] == 2
    assert agg.aligning is None


def test_batches_held_behind_a_barrier_may_carry_the_next_one():
    agg, sa, sb = two_cameras()
    agg.accept(sa.envelope([], [Barrier(1, 1)]))
    agg.accept(sa.envelope([crossing("a", 2)], []))
    agg.accept(sa.envelope([], [Barrier(2, 2)]))
    out = agg.accept(sb.envelope([], [Barrier(1, 1)]))
    assert [c.checkpoint_id for c in out.checkpoints] == [1]
    assert agg.aligning == 2  # a's second barrier is in, b's is not
    out = agg.accept(sb.envelope([], [Barrier(2, 2)]))
    assert [c.checkpoint_id for c in out.checkpoints] == [2]
    assert dict(out.checkpoints[0].state.totals) == {("a", "door", "person", "in"): 1}


def test_an_aborted_checkpoint_releases_what_it_held():
    agg, sa, _ = two_cameras()
    agg.accept(sa.envelope([], [Barrier(1)]))
    agg.accept(sa.envelope([crossing("a", 2)], []))
    assert agg.totals == {}
    out = agg.abort(1)
    assert out.checkpoints == [] and agg.totals == {("a", "door", "person", "in"): 1}


def test_a_removed_input_no_longer_holds_a_checkpoint_back():
    agg, sa, _ = two_cameras()
    agg.accept(sa.envelope([], [Barrier(4, "s")]))
    out = agg.remove("b")
    assert [c.checkpoint_id for c in out.checkpoints] == [4]


def test_an_earlier_incarnation_is_fenced_off():
    agg, sa, _ = two_cameras()
    agg.accept(sa.envelope([crossing("a", 1)], []))
    agg.register("a", "a#1")  # the camera was restarted
    out = agg.accept(sa.envelope([crossing("a", 2)], []))
    assert out.fenced == 1 and agg.totals == {("a", "door", "person", "in"): 1}
    agg.accept(Sender("a#1").envelope([crossing("a", 3)], []))
    assert agg.totals == {("a", "door", "person", "in"): 2}


# ----------------------------------------------------------- creation stamps


def test_an_output_carries_the_earliest_creation_time_of_the_batches_applied():
    agg, sa, sb = two_cameras()
    assert agg.accept(sa.envelope([], [Barrier(1)], created=100.0)).created == 100.0
    # held behind a's barrier: not applied, so not stamped yet
    assert agg.accept(sa.envelope([crossing("a", 2)], [], created=105.0)).created is None
    # b's barrier aligns and releases a's held batch: the output is as old as it
    out = agg.accept(sb.envelope([crossing("b", 1)], [Barrier(1)], created=107.0))
    assert [c.checkpoint_id for c in out.checkpoints] == [1]
    assert out.created == 105.0
    assert agg.accept(sb.envelope([crossing("b", 3)], [Progress(30)])).created is None
    assert agg.abort(9).created is None  # nothing came in: nothing to stamp


def test_a_replay_with_new_creation_stamps_makes_the_same_events_rows_and_state():
    def run(stamp) -> tuple:
        agg = Aggregator([10, 60], allowed_lateness_s=1)
        agg.register("a", "a#0")
        s = Sender("a#0")
        events, rows, envs = [], [], []
        for i, t in enumerate(range(0, 100, 7)):
            envs.append(s.envelope([crossing("a", t)], [Progress(t)], created=stamp(i)))
            out = agg.accept(envs[-1])
            events += out.events
            rows += out.rows
        return events, rows + agg.flush(), agg.snapshot(), envs

    first = run(lambda i: 1767225600.0 + i)
    replay = run(lambda i: 1767229200.5 + 2 * i)
    unstamped = run(lambda i: None)
    assert first == replay == unstamped  # envelopes too: the stamp is not their identity
    assert [e.created for e in first[3]] != [e.created for e in replay[3]]


def test_a_state_of_another_format_is_refused():
    from dataclasses import replace

    from camcount.errors import StateError

    agg, _, _ = two_cameras()
    with pytest.raises(StateError, match="aggregator state v1"):
        agg.restore(replace(agg.snapshot(), format_version=1))


# ----------------------------------------------------------- re-split shards


def feed(agg: Aggregator, cams: list[str], until: int) -> list:
    rows = []
    senders = {c: Sender(f"{c}#0") for c in cams}
    for c in cams:
        agg.register(c, f"{c}#0", site="north" if c in ("a", "b") else "")
    for t in range(until):
        for c in cams:
            rows += agg.accept(
                senders[c].envelope([crossing(c, t + 0.5)], [Progress(t + 0.5)])
            ).rows
    return rows


@pytest.mark.parametrize(("before", "after"), [(3, 1), (1, 3), (2, 5)])
def test_a_restore_may_use_another_number_of_shards(before: int, after: int):
    """Cameras a and b share a site (so a shard); c and d stand alone. The
    same events through `before` shards, re-split into `after`, then run to
    the end, give the rows of one shard that saw everything."""
    cams = ["a", "b", "c", "d"]
    sites = {"a": "north", "b": "north"}

    def shards_of(n: int) -> tuple[list[Aggregator], object]:
        route = shard_router(n, sites, ())
        return [Aggregator([10, 60], allowed_lateness_s=0) for _ in range(n)], route

    def run_split(aggs, route, cams_here, t0, t1, senders):
        rows = []
        for t in range(t0, t1):
            for c in cams_here:
                env = senders[c].envelope([crossing(c, t + 0.5)], [Progress(t + 0.5)])
                rows += aggs[route(c)].accept(env).rows
        return rows

    # The reference: one shard from start to end.
    ref = Aggregator([10, 60], allowed_lateness_s=0)
    rows_ref = feed(ref, cams, 95) + ref.flush()

    aggs, route = shards_of(before)
    senders = {c: Sender(f"{c}#0") for c in cams}
    for c in cams:
        aggs[route(c)].register(c, f"{c}#0", site=sites.get(c, ""))
    rows = run_split(aggs, route, cams, 0, 42, senders)
    states = [a.snapshot() for a in aggs]

    new_aggs, new_route = shards_of(after)
    for agg, state in zip(new_aggs, resplit(states, after, new_route), strict=True):
        agg.restore(state)
    senders = {c: Sender(f"{c}#1") for c in cams}
    for c in cams:
        new_aggs[new_route(c)].register(c, f"{c}#1", site=sites.get(c, ""))
    rows += run_split(new_aggs, new_route, cams, 42, 95, senders)
    for agg in new_aggs:
        rows += agg.flush()
    key = lambda r: (r.camera_id, r.counter_id, r.direction, r.window_size_s, r.window_start)  # noqa: E731
    assert sorted(rows, key=key) == sorted(rows_ref, key=key)
    totals: dict = {}
    for agg in new_aggs:
        for k, n in agg.totals.items():
            totals[k] = totals.get(k, 0) + n
    assert totals == ref.totals


# ----------------------------------------------------------- the frame ledger


def test_the_frame_ledger_shows_a_frame_applied_twice_or_skipped():
    from camcount.stream.channels import Counted

    agg = Aggregator([10], allowed_lateness_s=0)
    agg.register("a", "a#0")
    s = Sender("a#0")
    agg.accept(s.envelope([], [Counted(0, 9)]))
    agg.accept(s.envelope([], [Counted(10, 19)]))
    assert agg.ledgers["a"].runs == [(0, 19)] and agg.ledgers["a"].repeats == 0
    state = agg.snapshot()
    agg.accept(s.envelope([], [Counted(15, 24)]))  # 15-19 again
    assert agg.ledgers["a"].repeats == 5
    agg.accept(s.envelope([], [Counted(30, 31)]))  # 25-29 never came
    assert agg.ledgers["a"].runs == [(0, 24), (30, 31)]
    # A restore rolls the ledger back with the rest of the state.
    other = Aggregator([10], allowed_lateness_s=0)
    other.restore(state)
    other.register("a", "a#1")
    other.accept(Sender("a#1").envelope([], [Counted(20, 29)]))
    assert other.ledgers["a"].runs == [(0, 29)] and other.ledgers["a"].repeats == 0
