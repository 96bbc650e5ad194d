"""A replica's mirror of the hub and the fan-out to its clients."""

from __future__ import annotations

import json

from camcount.http.live.encoding import encode_update, poll_body
from camcount.http.live.fanout import Fanout, Mirror
from camcount.http.live.outbox import Outbox, Subscriber
from camcount.http.live.query import Filter
from tests.core.liveupdates import seqs, upd


def test_mirror_reports_a_gap_only_for_what_it_no_longer_holds() -> None:
    m = Mirror(capacity=3)
    m.extend([(upd(i), str(i)) for i in range(1, 6)])  # holds 3, 4, 5
    assert m.since(2) == ([(upd(3), "3"), (upd(4), "4"), (upd(5), "5")], False)
    items, gap = m.since(1)
    assert gap and [u.seq for u, _ in items] == [3, 4, 5]
    assert m.since(5) == ([], False)
    m.extend([(upd(10), "10")], gap=True)  # the hub lost 6..9 for this replica
    assert m.since(5)[1] and not m.since(9)[1]


def test_a_resumed_subscriber_gets_exactly_what_it_missed_then_the_live_stream() -> None:
    fan = Fanout(capacity=100)
    fan.publish([upd(i, camera="a" if i % 2 else "b") for i in range(1, 11)])
    sub = Subscriber(Outbox(100), frozenset({Filter(cameras=frozenset({"a"}))}))
    fan.attach(sub, after=4)
    fan.publish([upd(i, camera="a") for i in range(11, 13)])
    assert seqs(sub.outbox.take()) == [5, 7, 9, 11, 12]


def test_resuming_from_before_the_buffer_gets_a_gap_notice_first() -> None:
    fan = Fanout(capacity=5)
    fan.publish([upd(i) for i in range(1, 21)])  # keeps 16..20
    sub = Subscriber(Outbox(100), frozenset({Filter()}))
    fan.attach(sub, after=3)
    items = sub.outbox.take()
    assert items[0][1] == "gap"
    assert json.loads(items[0][2]) == {
        "type": "gap",
        "after": 3,
        "resume_after": 15,
        "reason": "expired",
    }
    assert seqs(items) == [16, 17, 18, 19, 20]


def test_a_resume_point_from_a_previous_hub_is_a_reset() -> None:
    fan = Fanout()
    fan.publish([upd(1), upd(2)])
    sub = Subscriber(Outbox(100), frozenset({Filter()}))
    fan.attach(sub, after=5000)
    items = sub.outbox.take()
    assert json.loads(items[0][2])["reason"] == "reset" and seqs(items) == [1, 2]


def test_a_slow_subscriber_overflows_alone() -> None:
    fan = Fanout()
    slow = Subscriber(Outbox(capacity=5, window=1), frozenset({Filter()}))
    fast = Subscriber(Outbox(capacity=5, window=None), frozenset({Filter()}))
    fan.attach(slow, None)
    fan.attach(fast, None)
    for start in range(1, 31, 3):
        overflowed = fan.publish([upd(i) for i in range(start, start + 3)])
        assert fast not in overflowed
        fast.outbox.take()  # the fast one keeps reading; the slow one never acks
    assert slow.outbox.overflowed and fast.outbox.last_sent_seq == 30
    assert fan.subscribers == 1


def test_subscribers_with_the_same_filters_share_one_encoding() -> None:
    fan = Fanout()
    subs = [Subscriber(Outbox(10), frozenset({Filter()})) for _ in range(3)]
    for s in subs:
        fan.attach(s, None)
    fan.publish([upd(1)])
    texts = [s.outbox.take()[0][2] for s in subs]
    assert texts[0] is texts[1] is texts[2]
    assert json.loads(texts[0]) == json.loads(encode_update(upd(1)))


def test_poll_returns_matching_updates_and_where_to_continue() -> None:
    fan = Fanout()
    fan.publish([upd(i, kind="crossing" if i % 3 == 0 else "zone_sample") for i in range(1, 11)])
    flt = Filter(kinds=frozenset({"crossing"}))
    items, scanned, gap = fan.poll(0, flt, limit=2)
    assert [u.seq for u, _ in items] == [3, 6] and scanned == 6 and not gap
    items, scanned, _ = fan.poll(6, flt, limit=10)
    assert [u.seq for u, _ in items] == [9] and scanned == 10
    body = json.loads(poll_body(items, scanned, False))
    assert body["last_seq"] == 10 and body["updates"][0]["seq"] == 9
