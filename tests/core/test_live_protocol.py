"""The live API's pure logic: filters, client messages, outboxes, fan-out."""

from __future__ import annotations

import json

import pytest

from camcount.errors import RequestError
from camcount.live_protocol import (
    AckMsg,
    AuthMsg,
    Fanout,
    Filter,
    Mirror,
    Outbox,
    PingMsg,
    SubscribeMsg,
    Subscriber,
    Subscriptions,
    UnsubscribeMsg,
    dumps,
    encode_update,
    filter_from_query,
    frames,
    parse_client_message,
    poll_body,
    poll_query,
    resume_point,
    sse_frame,
)
from camcount.livefeed import Update


def upd(seq: int, kind: str = "crossing", camera: str = "cam", counter: str = "line") -> Update:
    return Update(seq, kind, camera, {"counter_id": counter, "event_time": float(seq)})


def seqs(items: list) -> list[int]:
    return [i[0] for i in items if i[0] >= 0]


# ----------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("flt", "update", "matches"),
    [
        (Filter(), upd(1), True),  # empty filter: everything
        (Filter(kinds=frozenset({"crossing"})), upd(1), True),
        (Filter(kinds=frozenset({"window_row"})), upd(1), False),
        (Filter(cameras=frozenset({"cam"})), upd(1), True),
        (Filter(cameras=frozenset({"other"})), upd(1), False),
        (Filter(counters=frozenset({"line"})), upd(1), True),
        # zone updates name their zone as zone_id
        (Filter(counters=frozenset({"z"})), Update(1, "zone_visit", "cam", {"zone_id": "z"}), True),
        # a dead letter has no counter: a counter filter leaves it out
        (Filter(counters=frozenset({"line"})), Update(1, "dead_letter", "", {}), False),
    ],
)
def test_filter_matching(flt: Filter, update: Update, matches: bool) -> None:
    assert flt.matches(update) is matches


def test_filters_from_query_strings_split_commas_and_refuse_unknown_kinds() -> None:
    f = filter_from_query({"cameras": ["a,b", "c"], "kinds": ["crossing"]})
    assert f.cameras == {"a", "b", "c"} and f.kinds == {"crossing"}
    with pytest.raises(RequestError) as exc:
        filter_from_query({"kinds": ["crosing"]})
    assert exc.value.code == "bad_filter" and exc.value.status == 422
    with pytest.raises(RequestError):
        filter_from_query({"cameras": ["bad id!"]})


# ----------------------------------------------------------------- client messages


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type":"auth","token":"t"}', AuthMsg),
        ('{"type":"subscribe","kinds":["crossing"],"after":3}', SubscribeMsg),
        ('{"type":"unsubscribe","id":"x"}', UnsubscribeMsg),
        ('{"type":"ack","seq":7}', AckMsg),
        ('{"type":"ping"}', PingMsg),
    ],
)
def test_valid_client_messages(text: str, expected: type) -> None:
    assert isinstance(parse_client_message(text), expected)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_message"),  # not an object
        ('{"kinds": []}', "unknown_type"),  # no type
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "ack"}', "bad_message"),  # seq missing
        ('{"type": "ack", "seq": -1}', "bad_message"),
        ('{"type": "ack", "seq": NaN}', "bad_json"),  # NaN is not JSON
        ('{"type": "subscribe", "zoom": 2}', "bad_message"),  # unknown field
        ('{"type": "subscribe", "kinds": "crossing"}', "bad_message"),  # not a list
        ('{"type": "subscribe", "kinds": ["nope"]}', "bad_filter"),
        ('{"type": "subscribe", "id": "' + "x" * 200 + '"}', "bad_message"),
        ("x" * 20_000, "too_large"),
        ("[" * 100_000, "too_large"),
    ],
)
def test_malformed_client_messages_are_request_errors(text: str, code: str) -> None:
    with pytest.raises(RequestError) as exc:
        msg = parse_client_message(text)
        if isinstance(msg, SubscribeMsg):
            msg.filter()
    assert exc.value.code == code


def test_an_auth_message_never_shows_its_token() -> None:
    msg = parse_client_message('{"type":"auth","token":"s3cret"}')
    assert "s3cret" not in repr(msg)


# ----------------------------------------------------------------- outbox


def test_outbox_sends_in_order_once_and_controls_first() -> None:
    box = Outbox(capacity=10)
    box.push([(1, "update", "a"), (2, "update", "b")])
    box.push([(2, "update", "dup"), (3, "update", "c")])  # 2 again: dropped
    box.push_control("heartbeat", "h")
    assert [t for _, _, t in box.take()] == ["h", "a", "b", "c"]
    assert box.last_sent_seq == 3 and not box.changed.is_set()


def test_outbox_ack_window_holds_updates_until_acknowledged() -> None:
    box = Outbox(capacity=10, window=2)
    box.push([(i, "update", str(i)) for i in range(1, 6)])
    assert seqs(box.take()) == [1, 2]
    assert box.take() == [] and not box.changed.is_set()
    box.ack(1)
    assert box.changed.is_set()
    assert seqs(box.take()) == [3]
    box.ack(5)
    assert seqs(box.take()) == [4, 5]


def test_outbox_overflow_marks_the_client_and_drops_its_queue() -> None:
    box = Outbox(capacity=3, window=1)
    # one may go out now, three may wait: a burst of four fits
    assert box.push([(i, "update", str(i)) for i in range(1, 5)])
    assert seqs(box.take()) == [1]
    assert not box.push([(5, "update", "5")])  # the window is full: four would wait
    assert box.overflowed and box.queued == 0 and box.changed.is_set()


# ----------------------------------------------------------------- mirror and fan-out


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


def test_subscriptions_are_named_and_bounded() -> None:
    subs = Subscriptions(limit=2)
    subs.add("a", Filter())
    subs.add("a", Filter(kinds=frozenset({"crossing"})))  # replaces
    subs.add("b", Filter())
    assert len(subs) == 2 and len(subs.key) == 2
    with pytest.raises(RequestError):
        subs.add("c", Filter())
    assert subs.remove("a") and not subs.remove("a")


# ----------------------------------------------------------------- small formats


def test_query_parameters_are_checked_with_clear_errors() -> None:
    q = poll_query({"after": ["5"], "timeout": ["1.5"], "kinds": ["crossing"]})
    assert (q.after, q.timeout_s, q.limit) == (5, 1.5, 1000)
    for bad in ({"after": ["-1"]}, {"after": ["x"]}, {"timeout": ["nan"]}, {"limit": ["0"]}):
        with pytest.raises(RequestError) as exc:
            poll_query(bad)
        assert exc.value.status == 422
    assert resume_point("12", {"after": ["3"]}) == 12  # Last-Event-ID wins
    assert resume_point(None, {"after": ["3"]}) == 3


def test_sse_frames_carry_an_id_only_for_updates() -> None:
    assert sse_frame("update", "{}", 7) == "id: 7\nevent: update\ndata: {}\n\n"
    assert sse_frame("heartbeat", "{}", -1) == "event: heartbeat\ndata: {}\n\n"


def test_json_without_nan() -> None:
    assert dumps({"a": float("nan"), "b": [float("inf"), 1.0]}) == '{"a":null,"b":[null,1.0]}'


def test_batched_frames_join_consecutive_updates_and_keep_notices_in_place() -> None:
    items = [
        (-1, "heartbeat", '{"type":"heartbeat"}'),
        (1, "update", '{"seq":1}'),
        (2, "update", '{"seq":2}'),
        (-1, "gap", '{"type":"gap"}'),
        (9, "update", '{"seq":9}'),
    ]
    assert frames(items, batch=False) == [t for _, _, t in items]
    out = frames(items, batch=True)
    assert out[0] == '{"type":"heartbeat"}' and out[2] == '{"type":"gap"}'
    assert json.loads(out[1]) == {"type": "updates", "updates": [{"seq": 1}, {"seq": 2}]}
    assert out[3] == '{"seq":9}'  # a lone update stays a plain update frame
