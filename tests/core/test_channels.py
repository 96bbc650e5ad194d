"""Ordered channels: any delivery order and any duplication gives one ordered
application of every batch."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camcount.errors import StateError
from camcount.stream.channels import EndOfStream, Envelope, Receiver, Sender


def test_early_batches_are_held_and_duplicates_dropped():
    s = Sender("cam1")
    a, b, c = s.envelope([1]), s.envelope([2]), s.envelope([3], [EndOfStream()])
    r = Receiver()
    assert r.accept(b) == []
    assert r.accept(a) == [a, b]
    assert r.accept(a) == []  # a retry
    assert r.accept(c) == [c]
    assert r.duplicates == 1


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_order_with_retries_applies_each_batch_once_in_order(data):
    senders = {name: Sender(name) for name in ("a", "b", "c")}
    sent = [senders[data.draw(st.sampled_from("abc"))].envelope([i]) for i in range(30)]
    deliveries = sent + data.draw(st.lists(st.sampled_from(sent), max_size=15))
    deliveries = data.draw(st.permutations(deliveries))
    r = Receiver()
    applied: list[Envelope] = []
    for env in deliveries:
        applied.extend(r.accept(env))
    assert sorted(applied, key=lambda e: e.events) == sent
    for name in "abc":
        seqs = [e.seq for e in applied if e.sender == name]
        assert seqs == list(range(len(seqs)))


def test_restore_keeps_dropping_what_was_applied():
    s = Sender("cam")
    envs = [s.envelope([i]) for i in range(4)]
    r = Receiver()
    for e in envs[:2]:
        r.accept(e)
    r2 = Receiver()
    r2.restore(r.snapshot())
    assert r2.accept(envs[1]) == []
    assert r2.accept(envs[2]) == [envs[2]]


def test_a_lost_batch_is_reported_not_waited_for_forever():
    s = Sender("cam")
    envs = [s.envelope([i]) for i in range(10)]
    r = Receiver(max_held_per_sender=3)
    with pytest.raises(StateError, match="waiting for #0"):
        for e in envs[1:]:
            r.accept(e)
