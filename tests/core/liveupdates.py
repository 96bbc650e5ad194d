"""Hand-built live updates for the live protocol tests."""

from __future__ import annotations

from camcount.stream.livefeed import Update


def upd(seq: int, kind: str = "crossing", camera: str = "cam", counter: str = "line") -> Update:
    return Update(seq, kind, camera, {"counter_id": counter, "event_time": float(seq)})


def seqs(items: list) -> list[int]:
    return [i[0] for i in items if i[0] >= 0]
