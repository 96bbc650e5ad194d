"""An external source: one more input of an aggregator shard, beside its
cameras, speaking the same channel protocol (stream/channels.py).

Devices send at least once (an MQTT client resends what the broker did
not acknowledge; an API client retries a request), so the source keeps
the last sequence number applied per device and drops anything at or
below it. What it keeps is small (one number per device) and travels in
the checkpoint with its barrier, exactly as a camera's state does:

1. ``accept`` checks a batch's events against the devices' sequences,
   drops the duplicates, and returns the rest as one numbered envelope
   (with a progress mark at their latest event time, so the shard's
   watermark moves);
2. ``barrier(n)`` returns the envelope that carries ``Barrier(n)`` and the
   source's snapshot, taken after every envelope before it;
3. a restore goes back to a snapshot: sequences applied after it are
   accepted again when the devices resend them, and since the shard rolls
   back to the same checkpoint, each is counted once.

A device's sequence must grow: an event with a lower number than one
already applied is taken as a duplicate (a device that restarts its
numbering needs a new ``device_id``). Gaps are allowed and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from camcount.errors import StateError
from camcount.events import DeadLetter
from camcount.external.events import ExternalCount
from camcount.stream.channels import Barrier, Envelope, Progress, Sender

STATE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ExternalSourceState:
    """A source's snapshot: each device's last applied sequence number."""

    format_version: int
    source_id: str
    devices: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Accepted:
    """What one batch did: the envelope to send (None when every event was
    a duplicate), and the events taken and dropped."""

    envelope: Envelope | None
    accepted: tuple[ExternalCount, ...]
    duplicates: tuple[ExternalCount, ...]


@dataclass
class ExternalSource:
    """One configured external source (many devices), as a channel sender."""

    source_id: str
    sender_id: str
    _last: dict[str, int] = field(default_factory=dict)
    _sender: Sender = field(init=False)
    duplicates: int = 0
    gaps: int = 0

    def __post_init__(self) -> None:
        self._sender = Sender(self.sender_id)

    def accept(self, events: Sequence[ExternalCount]) -> Accepted:
        """Step 1: the new events of a batch, as one envelope."""
        fresh: list[ExternalCount] = []
        dropped: list[ExternalCount] = []
        # Within a batch, too, a device's events apply in sequence order.
        for e in sorted(events, key=lambda e: (e.device_id, e.seq)):
            if e.source_id != self.source_id:
                raise ValueError(f"event of source {e.source_id!r} given to {self.source_id!r}")
            last = self._last.get(e.device_id, -1)
            if e.seq <= last:
                dropped.append(e)
                continue
            if last >= 0 and e.seq > last + 1:
                self.gaps += e.seq - last - 1
            self._last[e.device_id] = e.seq
            fresh.append(e)
        self.duplicates += len(dropped)
        if not fresh:
            return Accepted(None, (), tuple(dropped))
        progress = Progress(max(e.event_time for e in fresh))
        envelope = self._sender.envelope(fresh, [progress])
        return Accepted(envelope, tuple(fresh), tuple(dropped))

    def letter(self, letter: DeadLetter) -> Envelope:
        """A message that could not be read leaves with the shard's dead
        letters, in line with the events around it."""
        return self._sender.envelope([letter])

    def barrier(self, checkpoint_id: int) -> Envelope:
        """Step 2: the barrier, after everything accepted before it."""
        return self._sender.envelope([], [Barrier(checkpoint_id, self.snapshot())])

    def last_seq(self, device_id: str) -> int | None:
        return self._last.get(device_id)

    def snapshot(self) -> ExternalSourceState:
        return ExternalSourceState(
            STATE_FORMAT_VERSION, self.source_id, tuple(sorted(self._last.items()))
        )

    def restore(self, state: ExternalSourceState) -> None:
        """Step 3: back to a checkpoint's state. The channel numbering is not
        restored: a restored source registers with its shard as a new
        incarnation (a new ``sender_id``), whose numbers start at 0."""
        if state.format_version != STATE_FORMAT_VERSION:
            raise StateError(
                f"external source state v{state.format_version}, expected v{STATE_FORMAT_VERSION}"
            )
        if state.source_id != self.source_id:
            raise StateError(f"state of source {state.source_id!r} given to {self.source_id!r}")
        self._last = dict(state.devices)
