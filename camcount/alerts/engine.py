"""Alert rules evaluated in event time, with their state checkpointed.

The engine is fed what a shard produces, in its order: zone samples as they
come (occupancy), window rows and forecasts as windows close, and the
watermark after them. A window-valued rule (flow, a group's occupancy, the
forecast band) is decided when the watermark passes the window's end, so
every row of that window is in and a window with no row counts as zero.
Nothing reads a clock: a replay of the same events raises the same alerts
at the same event times with the same ids, and a restore from a snapshot
taken mid-alert neither raises it again nor loses it.

Camera states (stalled, failed, no detections) are the exception by
nature: the controller observes them, and the shard stamps each with the
camera's own event-time clock (``Aggregator.camera_state``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from camcount.alerts.rules import (
    AlertRule,
    CameraRule,
    FlowRule,
    ForecastRule,
    OccupancyRule,
)
from camcount.events import Alert, Forecast, WindowRow, ZoneSample, stable_id

FIRING = "firing"
RESOLVED = "resolved"


@dataclass(frozen=True)
class TrackState:
    """One rule on one target: ``since`` is when the condition that would
    change it (breach while quiet, clear while firing) began holding."""

    rule_id: str
    target: str
    firing: bool
    since: float | None
    opened_at: float
    value: float


@dataclass(frozen=True)
class AlertEngineState:
    tracks: tuple[TrackState, ...]
    occupancy: tuple[tuple[str, str, tuple[tuple[str, int], ...]], ...]
    group_occupancy: tuple[tuple[str, int, float], ...]
    #: (rule id, source, window start, value) of windows waiting for the
    #: watermark; the source (a camera or ``group:`` key) says which shard
    #: owns the entry when shards are re-split.
    pending: tuple[tuple[str, str, float, float], ...]
    next_window: tuple[tuple[str, str, float], ...]
    forecasts: tuple[tuple[str, str, float, float, float], ...]
    watermark: float


@dataclass
class _Track:
    firing: bool = False
    since: float | None = None
    opened_at: float = 0.0
    value: float = 0.0


@dataclass
class _Window:
    """A window-valued rule's windows still open to rows."""

    values: dict[float, float] = field(default_factory=dict)
    next_start: float | None = None


class AlertEngine:
    def __init__(self, rules: Sequence[AlertRule] = ()) -> None:
        self._rules: dict[str, AlertRule] = {}
        self._tracks: dict[tuple[str, str], _Track] = {}
        self._occupancy: dict[tuple[str, str], dict[str, int]] = {}
        self._group_occupancy: dict[tuple[str, int], float] = {}
        self._windows: dict[str, _Window] = {}
        self._forecasts: dict[tuple[str, float], tuple[float, float]] = {}
        self._watermark = -math.inf
        self.set_rules(rules)

    # ------------------------------------------------------------- rules

    @property
    def rules(self) -> list[AlertRule]:
        return list(self._rules.values())

    def set_rules(self, rules: Sequence[AlertRule], at: float | None = None) -> list[Alert]:
        """Replaces the rules; an open alert of a rule that is gone or was
        changed resolves (at ``at``, or where its rule last saw a value)."""
        new = {r.id: r for r in rules}
        out: list[Alert] = []
        for rid, old in list(self._rules.items()):
            if new.get(rid) == old:
                continue
            for (track_rule, target), track in list(self._tracks.items()):
                if track_rule != rid:
                    continue
                if track.firing:
                    when = track.since if at is None and track.since is not None else at
                    # Never before it opened: a camera alert is dated on its
                    # camera's clock, which may run ahead of ``at``.
                    when = max(when if when is not None else track.opened_at, track.opened_at)
                    out.append(self._change(old, target, track, RESOLVED, when))
                del self._tracks[(track_rule, target)]
            self._windows.pop(rid, None)
        self._rules = new
        return out

    # ------------------------------------------------------------- input

    def on_samples(self, samples: Iterable[ZoneSample]) -> list[Alert]:
        out: list[Alert] = []
        for s in samples:
            self._occupancy[(s.camera_id, s.zone_id)] = dict(
                zip(s.class_names, s.class_counts, strict=True)
            ) | {"": s.occupancy}
            for rule in self._rules.values():
                if not isinstance(rule, OccupancyRule) or rule.camera != s.camera_id:
                    continue
                if rule.zone is not None and rule.zone != s.zone_id:
                    continue
                value = self._camera_occupancy(rule)
                out.extend(self._evaluate(rule, rule.target, value, s.event_time))
        return out

    def _camera_occupancy(self, rule: OccupancyRule) -> float:
        cls = rule.class_name or ""
        return float(
            sum(
                counts.get(cls, 0)
                for (camera, zone), counts in self._occupancy.items()
                if camera == rule.camera and (rule.zone is None or zone == rule.zone)
            )
        )

    def on_rows(self, rows: Iterable[WindowRow]) -> None:
        """Closed window rows; decided at the next ``advance``."""
        for r in rows:
            for rule in self._rules.values():
                value = _row_value(rule, r)
                if value is None:
                    continue
                window = self._windows.setdefault(rule.id, _Window())
                if window.next_start is not None and r.window_start < window.next_start:
                    continue  # a window already decided
                window.values[r.window_start] = window.values.get(r.window_start, 0.0) + value

    def on_forecasts(self, forecasts: Iterable[Forecast]) -> None:
        """The band each forecast rule's windows are held to: the nearest
        forecast issued for a window replaces a farther one."""
        for f in forecasts:
            for rule in self._rules.values():
                if isinstance(rule, ForecastRule) and _is_series(rule, f):
                    self._forecasts[(rule.id, f.window_start)] = (f.value, f.upper - f.value)

    def advance(self, watermark: float) -> list[Alert]:
        """Decides every window-valued rule's windows that ended by
        ``watermark``, in window order."""
        if watermark <= self._watermark or not math.isfinite(watermark):
            return []  # an infinite watermark has no windows to decide
        self._watermark = watermark
        out: list[Alert] = []
        for rule in self._rules.values():
            if isinstance(rule, CameraRule) or (
                isinstance(rule, OccupancyRule) and rule.group is None
            ):
                continue
            size = rule.window_s
            window = self._windows.setdefault(rule.id, _Window())
            if window.next_start is None:
                seen = [*window.values, *(s for r, s in self._forecasts if r == rule.id)]
                if not seen:
                    continue  # nothing seen yet: no window to call empty
                window.next_start = min(seen)
            while window.next_start + size <= watermark:
                start = window.next_start
                value = window.values.pop(start, 0.0)
                out.extend(self._decide(rule, start, start + size, value))
                window.next_start = start + size
            for key in [k for k in self._forecasts if k[0] == rule.id]:
                if key[1] < window.next_start:
                    del self._forecasts[key]  # issued for a window already decided
        return out

    def _decide(self, rule: AlertRule, start: float, end: float, value: float) -> list[Alert]:
        if isinstance(rule, FlowRule):
            return self._evaluate(rule, rule.target, value, end)
        if isinstance(rule, OccupancyRule):
            key = (rule.target, rule.window_s)
            level = self._group_occupancy.get(key, 0.0) + value
            self._group_occupancy[key] = level
            return self._evaluate(rule, rule.target, level, end)
        assert isinstance(rule, ForecastRule)
        band = self._forecasts.pop((rule.id, start), None)
        if band is None:
            return []  # no forecast for this window: nothing to hold it to
        expected, half = band
        edge = rule.deviation * max(half, 1e-9)
        track = self._tracks.setdefault((rule.id, rule.target), _Track())
        outside = abs(value - expected) > edge
        threshold = expected + edge if value >= expected else max(0.0, expected - edge)
        return self._step(rule, rule.target, track, value, end, outside, not outside, threshold)

    def on_camera_state(self, camera_id: str, state: str, at: float) -> list[Alert]:
        """The camera's state at ``at`` (docs/alerts.md, "Camera states").

        A camera reported again in the same state is no change: it only
        lets time pass. An alert opens (or resolves) at the state's start
        plus ``hold_s``, not at the report that saw the hold elapse, so its
        id does not depend on how often the state is reported."""
        out: list[Alert] = []
        for rule in self._rules.values():
            if not isinstance(rule, CameraRule):
                continue
            if rule.camera is not None and rule.camera != camera_id:
                continue
            track = self._tracks.setdefault((rule.id, camera_id), _Track())
            match = state == rule.state
            when = at
            if track.since is not None and match != track.firing:
                when = min(at, track.since + rule.hold_s)
            out.extend(
                self._step(
                    rule, camera_id, track, 1.0 if match else 0.0, when, match, not match, 1.0
                )
            )
        return out

    # ------------------------------------------------------ state machine

    def _evaluate(
        self, rule: OccupancyRule | FlowRule, target: str, value: float, at: float
    ) -> list[Alert]:
        track = self._tracks.setdefault((rule.id, target), _Track())
        return self._step(
            rule,
            target,
            track,
            value,
            at,
            rule.breached(value),
            rule.cleared(value),
            rule.threshold,
        )

    def _step(
        self,
        rule: AlertRule,
        target: str,
        track: _Track,
        value: float,
        at: float,
        breached: bool,
        cleared: bool,
        threshold: float,
    ) -> list[Alert]:
        track.value = value
        changing = cleared if track.firing else breached
        if not changing:
            track.since = None
            return []
        if track.since is None:
            track.since = at
        if at - track.since < rule.hold_s:
            return []
        track.since = None
        if not track.firing:
            track.firing, track.opened_at = True, at
            return [self._change(rule, target, track, FIRING, at, threshold)]
        track.firing = False
        return [self._change(rule, target, track, RESOLVED, at, threshold)]

    def _change(
        self,
        rule: AlertRule,
        target: str,
        track: _Track,
        state: str,
        at: float,
        threshold: float = math.nan,
    ) -> Alert:
        if math.isnan(threshold):
            threshold = getattr(rule, "threshold", 0.0)
        return Alert(
            alert_id=stable_id("alert", rule.id, target, track.opened_at),
            rule_id=rule.id,
            target=target,
            camera_id=target.split("/", 1)[0],
            state=state,
            severity=rule.severity,
            value=track.value,
            threshold=threshold,
            opened_at=track.opened_at,
            event_time=at,
            message=_message(rule, target, state, track.value, threshold),
            labels=tuple(f"{k}={v}" for k, v in sorted(rule.labels.items())),
        )

    def open_alerts(self) -> list[tuple[str, str, float, float]]:
        """(rule id, target, opened at, last value) of every firing alert."""
        return [
            (rid, target, t.opened_at, t.value)
            for (rid, target), t in sorted(self._tracks.items())
            if t.firing
        ]

    # -------------------------------------------------------- checkpoints

    def snapshot(self) -> AlertEngineState:
        return AlertEngineState(
            tracks=tuple(
                TrackState(rid, target, t.firing, t.since, t.opened_at, t.value)
                for (rid, target), t in sorted(self._tracks.items())
            ),
            occupancy=tuple(
                (camera, zone, tuple(sorted(counts.items())))
                for (camera, zone), counts in sorted(self._occupancy.items())
            ),
            group_occupancy=tuple(
                (target, size, level)
                for (target, size), level in sorted(self._group_occupancy.items())
            ),
            pending=tuple(
                (rid, self._source(rid), start, value)
                for rid, w in sorted(self._windows.items())
                for start, value in sorted(w.values.items())
            ),
            next_window=tuple(
                (rid, self._source(rid), w.next_start)
                for rid, w in sorted(self._windows.items())
                if w.next_start is not None
            ),
            forecasts=tuple(
                (rid, self._source(rid), start, value, half)
                for (rid, start), (value, half) in sorted(self._forecasts.items())
            ),
            watermark=self._watermark,
        )

    def restore(self, state: AlertEngineState) -> None:
        """State of rules no longer configured is dropped with them."""
        known = self._rules
        self._tracks = {
            (t.rule_id, t.target): _Track(t.firing, t.since, t.opened_at, t.value)
            for t in state.tracks
            if t.rule_id in known
        }
        self._occupancy = {(c, z): dict(counts) for c, z, counts in state.occupancy}
        self._group_occupancy = {(t, s): v for t, s, v in state.group_occupancy}
        self._windows = {}
        for rid, _, start, value in state.pending:
            if rid in known:
                self._windows.setdefault(rid, _Window()).values[start] = value
        for rid, _, start in state.next_window:
            if rid in known:
                self._windows.setdefault(rid, _Window()).next_start = start
        self._forecasts = {(rid, s): (v, h) for rid, _, s, v, h in state.forecasts if rid in known}
        self._watermark = state.watermark

    def _source(self, rule_id: str) -> str:
        rule = self._rules.get(rule_id)
        if isinstance(rule, FlowRule | ForecastRule):
            return rule.source
        if isinstance(rule, OccupancyRule):
            return rule.target
        return ""


def split_state(
    states: Sequence[AlertEngineState], shards: int, route: Callable[[str], int]
) -> list[AlertEngineState]:
    """Engine states re-cut for ``shards`` shards, each entry to the shard
    that owns its camera or group (``route``), so an open alert survives a
    restore onto another number of shards."""
    cut: list[dict[str, list[object]]] = [
        {k: [] for k in ("tracks", "occupancy", "group", "pending", "next", "forecasts")}
        for _ in range(shards)
    ]
    for st in states:
        for t in st.tracks:
            cut[route(t.target.split("/", 1)[0])]["tracks"].append(t)
        for o in st.occupancy:
            cut[route(o[0])]["occupancy"].append(o)
        for g in st.group_occupancy:
            cut[route(g[0])]["group"].append(g)
        for p in st.pending:
            cut[route(p[1])]["pending"].append(p)
        for n in st.next_window:
            cut[route(n[1])]["next"].append(n)
        for f in st.forecasts:
            cut[route(f[1])]["forecasts"].append(f)
    mark = min((st.watermark for st in states), default=-math.inf)
    return [
        AlertEngineState(
            tracks=tuple(c["tracks"]),  # type: ignore[arg-type]
            occupancy=tuple(c["occupancy"]),  # type: ignore[arg-type]
            group_occupancy=tuple(c["group"]),  # type: ignore[arg-type]
            pending=tuple(c["pending"]),  # type: ignore[arg-type]
            next_window=tuple(c["next"]),  # type: ignore[arg-type]
            forecasts=tuple(c["forecasts"]),  # type: ignore[arg-type]
            watermark=mark,
        )
        for c in cut
    ]


def _row_value(rule: AlertRule, row: WindowRow) -> float | None:
    """What a window row adds to a window-valued rule's window, or None."""
    if isinstance(rule, FlowRule | ForecastRule):
        if row.window_size_s != rule.window_s or row.camera_id != rule.source:
            return None
        if row.counter_id != rule.counter or row.direction == "net":
            return None
        if rule.class_name is not None and row.class_name != rule.class_name:
            return None
        if rule.direction is not None and row.direction != rule.direction:
            return None
        return float(row.count)
    if isinstance(rule, OccupancyRule) and rule.group is not None:
        if row.camera_id != rule.target or row.window_size_s != rule.window_s:
            return None
        if row.direction != "net":
            return None
        if rule.class_name is not None and row.class_name != rule.class_name:
            return None
        return float(row.count)
    return None


def _is_series(rule: ForecastRule, f: Forecast) -> bool:
    return (
        f.camera_id == rule.source
        and f.counter_id == rule.counter
        and f.class_name == rule.class_name
        and f.direction == rule.direction
        and f.window_size_s == rule.window_s
    )


def _message(rule: AlertRule, target: str, state: str, value: float, threshold: float) -> str:
    if state == RESOLVED:
        return f"{rule.kind} {target}: back to normal ({value:g})"
    if isinstance(rule, CameraRule):
        return f"camera {target} is {rule.state}"
    if isinstance(rule, ForecastRule):
        return f"{target}: {value:g} in the window, outside the forecast band (edge {threshold:g})"
    side = "above" if getattr(rule, "above", None) is not None else "below"
    return f"{rule.kind} {target}: {value:g}, {side} {threshold:g}"
