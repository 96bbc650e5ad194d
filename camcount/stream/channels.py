"""Ordered channels between actors: numbered batches applied strictly in order.

Ray keeps the order of calls from one caller to one actor only for a
synchronous, single-threaded actor without task retries; async and threaded
actors may interleave, and a retry may deliver a batch twice. So every batch
carries its sender's id and a per-channel sequence number, and the receiver:

1. applies batches strictly in sequence number order per sender,
2. holds a batch that arrives early until the ones before it have come,
3. drops a batch it has already applied (a retry or a replay).

Control messages (progress marks, end of stream, checkpoint barriers) travel
in the same numbered stream as events, so they stay in line with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from camcount.errors import StateError

STATE_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Progress:
    """The sender has processed every frame up to ``event_time``: the
    watermark may move even when no events were produced."""

    event_time: float


@dataclass(frozen=True, slots=True)
class Counted:
    """The sender counted its frames ``first`` to ``last`` (its own running
    number of frames counted, from 0) since its previous ``Counted``: the
    receiver's ledger of these proves no frame was counted twice or
    skipped, whatever failed in between."""

    first: int
    last: int


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The sender will send nothing more (a file source has ended)."""

    reason: str = "finished"


@dataclass(frozen=True, slots=True)
class Barrier:
    """Checkpoint ``checkpoint_id``: everything before it belongs to it.

    ``state`` is the sender's own snapshot, taken where the barrier was cut
    (between two frames), so the receiver stores it with its own: a state
    and the events it covers can never be split by a failure.
    """

    checkpoint_id: int
    state: object = None


Control = Progress | Counted | EndOfStream | Barrier


@dataclass(frozen=True, slots=True)
class Envelope:
    """One numbered batch on a channel: events first, then control messages.

    ``created`` is the sender's wall clock (``time.time()``) when it made
    the batch's events: what the live API's latency is measured from. It is
    no part of the batch's identity (a replay made again after a restore
    carries a new one and still equals the first), and nothing that is
    checkpointed, counted or written to storage reads it.
    """

    sender: str
    seq: int
    events: tuple[Any, ...] = ()
    controls: tuple[Control, ...] = ()
    created: float | None = field(default=None, compare=False)


@dataclass
class Sender:
    """Numbers a sender's batches; its counter is part of its snapshot."""

    sender_id: str
    next_seq: int = 0

    def envelope(
        self,
        events: Sequence[Any] = (),
        controls: Sequence[Control] = (),
        created: float | None = None,
    ) -> Envelope:
        env = Envelope(self.sender_id, self.next_seq, tuple(events), tuple(controls), created)
        self.next_seq += 1
        return env


@dataclass(frozen=True)
class ReceiverState:
    format_version: int
    expected: tuple[tuple[str, int], ...]


@dataclass
class Receiver:
    """Releases envelopes in sequence order per sender, at most once each."""

    max_held_per_sender: int = 1024
    _expected: dict[str, int] = field(default_factory=dict)
    _held: dict[str, dict[int, Envelope]] = field(default_factory=dict)
    duplicates: int = 0

    def accept(self, envelope: Envelope) -> list[Envelope]:
        """Take one envelope; return those now ready, in order (maybe none)."""
        sender = envelope.sender
        expected = self._expected.setdefault(sender, 0)
        held = self._held.setdefault(sender, {})
        if envelope.seq < expected or envelope.seq in held:
            self.duplicates += 1
            return []
        held[envelope.seq] = envelope
        if len(held) > self.max_held_per_sender:
            raise StateError(
                f"{len(held)} batches from {sender!r} held waiting for #{expected}: "
                "a batch was lost upstream"
            )
        ready = []
        while expected in held:
            ready.append(held.pop(expected))
            expected += 1
        self._expected[sender] = expected
        return ready

    def expected(self, sender: str) -> int:
        return self._expected.get(sender, 0)

    def held(self, sender: str) -> int:
        return len(self._held.get(sender, {}))

    def forget(self, sender: str) -> None:
        """A removed camera: its numbering may start over if it comes back."""
        self._expected.pop(sender, None)
        self._held.pop(sender, None)

    def snapshot(self) -> ReceiverState:
        return ReceiverState(STATE_FORMAT_VERSION, tuple(sorted(self._expected.items())))

    def restore(self, state: ReceiverState) -> None:
        if state.format_version != STATE_FORMAT_VERSION:
            raise StateError(
                f"receiver state v{state.format_version}, expected v{STATE_FORMAT_VERSION}"
            )
        self._expected = dict(state.expected)
        self._held = {}
