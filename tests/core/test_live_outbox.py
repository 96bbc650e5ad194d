"""Per-client state: bounded outboxes in sequence order, named subscriptions."""

from __future__ import annotations

import pytest

from camcount.errors import RequestError
from camcount.http.live.outbox import Outbox, Subscriptions
from camcount.http.live.query import Filter
from tests.core.liveupdates import seqs


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


def test_subscriptions_are_named_and_bounded() -> None:
    subs = Subscriptions(limit=2)
    subs.add("a", Filter())
    subs.add("a", Filter(kinds=frozenset({"crossing"})))  # replaces
    subs.add("b", Filter())
    assert len(subs) == 2 and len(subs.key) == 2
    with pytest.raises(RequestError):
        subs.add("c", Filter())
    assert subs.remove("a") and not subs.remove("a")
