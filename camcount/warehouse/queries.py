"""The documented queries: what the API and the notebook ask the warehouse.

Each is a `NamedQuery`: SQL with ``{name:Type}`` placeholders, the types
of its parameters, and the Arrow schema of its answer, so both backends
return identical tables. Every one reads correctly before any merge:

- event and window tables with ``FINAL`` (copies of a row share their
  sorting key, and every filter here is on identity-determined columns,
  so a filter keeps or drops all copies of a row together);
- cameras and their lines/zones, whose rows change between versions, with
  ``argMax(..., version)`` grouped by identity, since a filter on a
  changing column (``removed``) may run before ``FINAL`` collapses rows;
- gaps, whose end may change when a gap is reported again, with ``FINAL``
  in a subquery filtered on identity and the end tested outside it.

Time ranges are half-open ``[start, end)`` in epoch seconds (UTC).
Optional string filters take ``''`` for "all".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from camcount.warehouse.backends import Backend
from camcount.warehouse.binding import placeholders
from camcount.warehouse.errors import QueryError

_TS = pa.timestamp("s", tz="UTC")


@dataclass(frozen=True)
class NamedQuery:
    name: str
    doc: str
    sql: str
    schema: pa.Schema

    @property
    def params(self) -> dict[str, str]:
        return placeholders(self.sql)


def _q(name: str, doc: str, sql: str, fields: list[tuple[str, pa.DataType]]) -> NamedQuery:
    return NamedQuery(name, doc, sql.strip(), pa.schema(fields))


_RANGE = """
  AND {time} >= toDateTime({{start:UInt32}}, 'UTC')
  AND {time} < toDateTime({{end:UInt32}}, 'UTC')"""
_WINDOW_FILTER = """
WHERE camera_id = {camera_id:String}
  AND ({counter_id:String} = '' OR counter_id = {counter_id:String})
  AND ({class_name:String} = '' OR class_name = {class_name:String})
  AND window_size_s = {window_size_s:UInt32}""" + _RANGE.format(time="window_start")

QUERIES: dict[str, NamedQuery] = {
    q.name: q
    for q in (
        _q(
            "window_counts",
            "Closed window counts of one camera over a range, per counter, class and direction.",
            f"""
SELECT window_start, window_end, counter_id, class_name, direction, count
FROM window_counts FINAL{_WINDOW_FILTER}
ORDER BY window_start, counter_id, class_name, direction""",
            [
                ("window_start", _TS),
                ("window_end", _TS),
                ("counter_id", pa.string()),
                ("class_name", pa.string()),
                ("direction", pa.string()),
                ("count", pa.uint64()),
            ],
        ),
        _q(
            "hourly_counts",
            "Counts per hour (UTC), rolled up from windows of window_size_s (a divisor of 3600).",
            f"""
SELECT toStartOfHour(window_start) AS hour, counter_id, class_name, direction,
       sum(count) AS total
FROM window_counts FINAL{_WINDOW_FILTER}
GROUP BY hour, counter_id, class_name, direction
ORDER BY hour, counter_id, class_name, direction""",
            [
                ("hour", _TS),
                ("counter_id", pa.string()),
                ("class_name", pa.string()),
                ("direction", pa.string()),
                ("total", pa.uint64()),
            ],
        ),
        _q(
            "daily_counts",
            "Counts per day (UTC), rolled up from windows of window_size_s (a divisor of 86400).",
            f"""
SELECT toDate(window_start) AS day, counter_id, class_name, direction, sum(count) AS total
FROM window_counts FINAL{_WINDOW_FILTER}
GROUP BY day, counter_id, class_name, direction
ORDER BY day, counter_id, class_name, direction""",
            [
                ("day", pa.date32()),
                ("counter_id", pa.string()),
                ("class_name", pa.string()),
                ("direction", pa.string()),
                ("total", pa.uint64()),
            ],
        ),
        _q(
            "peak_hours",
            "Counts by hour of day (UTC) over the range, busiest first; days = days seen.",
            f"""
SELECT toHour(window_start) AS hour_of_day, direction, sum(count) AS total,
       uniqExact(toDate(window_start)) AS days
FROM window_counts FINAL{_WINDOW_FILTER}
GROUP BY hour_of_day, direction
ORDER BY total DESC, hour_of_day, direction""",
            [
                ("hour_of_day", pa.uint8()),
                ("direction", pa.string()),
                ("total", pa.uint64()),
                ("days", pa.uint64()),
            ],
        ),
        _q(
            "occupancy",
            "Zone occupancy per bucket of bucket_s seconds: mean and max of the samples.",
            """
SELECT toDateTime(intDiv(toUInt32(event_time), {bucket_s:UInt32}) * {bucket_s:UInt32}, 'UTC')
           AS bucket,
       zone_id, avg(occupancy) AS mean_occupancy, max(occupancy) AS max_occupancy,
       count() AS samples
FROM zone_samples FINAL
WHERE camera_id = {camera_id:String}
  AND ({zone_id:String} = '' OR zone_id = {zone_id:String})"""
            + _RANGE.format(time="event_time")
            + """
GROUP BY bucket, zone_id
ORDER BY bucket, zone_id""",
            [
                ("bucket", _TS),
                ("zone_id", pa.string()),
                ("mean_occupancy", pa.float64()),
                ("max_occupancy", pa.uint32()),
                ("samples", pa.uint64()),
            ],
        ),
        _q(
            "dwell_stats",
            "Dwell time per zone and class for visits that started in the range (exact quantiles).",
            """
SELECT zone_id, class_name, count() AS visits, avg(dwell_s) AS mean_dwell_s,
       quantileExact(0.5)(dwell_s) AS median_dwell_s,
       quantileExact(0.9)(dwell_s) AS p90_dwell_s, max(dwell_s) AS max_dwell_s
FROM zone_visits FINAL
WHERE camera_id = {camera_id:String}
  AND ({zone_id:String} = '' OR zone_id = {zone_id:String})"""
            + _RANGE.format(time="entered_at")
            + """
GROUP BY zone_id, class_name
ORDER BY zone_id, class_name""",
            [
                ("zone_id", pa.string()),
                ("class_name", pa.string()),
                ("visits", pa.uint64()),
                ("mean_dwell_s", pa.float64()),
                ("median_dwell_s", pa.float64()),
                ("p90_dwell_s", pa.float64()),
                ("max_dwell_s", pa.float64()),
            ],
        ),
        _q(
            "dwell_histogram",
            "Number of visits per dwell-time bucket of bucket_s seconds.",
            """
SELECT zone_id, floor(dwell_s / {bucket_s:Float64}) * {bucket_s:Float64} AS dwell_bucket_s,
       count() AS visits
FROM zone_visits FINAL
WHERE camera_id = {camera_id:String}
  AND ({zone_id:String} = '' OR zone_id = {zone_id:String})"""
            + _RANGE.format(time="entered_at")
            + """
GROUP BY zone_id, dwell_bucket_s
ORDER BY zone_id, dwell_bucket_s""",
            [("zone_id", pa.string()), ("dwell_bucket_s", pa.float64()), ("visits", pa.uint64())],
        ),
        _q(
            "crossings",
            "Individual crossings of one camera over a range, oldest first, at most `limit`.",
            """
SELECT event_id, counter_id, track_id, event_time, event_ms, class_name, direction, confidence
FROM crossings FINAL
WHERE camera_id = {camera_id:String}
  AND ({counter_id:String} = '' OR counter_id = {counter_id:String})"""
            + _RANGE.format(time="event_time")
            + """
ORDER BY event_time, event_ms, event_id
LIMIT {limit:UInt32}""",
            [
                ("event_id", pa.uint64()),
                ("counter_id", pa.string()),
                ("track_id", pa.uint64()),
                ("event_time", _TS),
                ("event_ms", pa.uint16()),
                ("class_name", pa.string()),
                ("direction", pa.string()),
                ("confidence", pa.float32()),
            ],
        ),
        _q(
            "cameras",
            "Current cameras (highest version, not removed).",
            """
SELECT camera_id, max(version) AS current_version, argMax(site, version) AS site,
       argMax(source, version) AS source, argMax(fps, version) AS fps,
       argMax(removed, version) AS is_removed
FROM cameras
GROUP BY camera_id
HAVING is_removed = 0
ORDER BY camera_id""",
            [
                ("camera_id", pa.string()),
                ("current_version", pa.uint64()),
                ("site", pa.string()),
                ("source", pa.string()),
                ("fps", pa.float64()),
                ("is_removed", pa.uint8()),
            ],
        ),
        _q(
            "camera_seen",
            "Whether the warehouse has ever heard of a camera (or group): a row in the "
            "cameras table, current or removed, or a window count. One row if so, else none.",
            """
SELECT camera_id FROM cameras WHERE camera_id = {camera_id:String} LIMIT 1
UNION ALL
SELECT camera_id FROM window_counts WHERE camera_id = {camera_id:String} LIMIT 1""",
            [("camera_id", pa.string())],
        ),
        _q(
            "camera_counters",
            "Current lines and zones of the current cameras ('' for every camera).",
            """
SELECT camera_id, counter_id, kind, points_x, points_y, anchor, band_px, classes
FROM
(
    SELECT camera_id, counter_id, max(version) AS current_version,
           argMax(kind, version) AS kind, argMax(points_x, version) AS points_x,
           argMax(points_y, version) AS points_y, argMax(anchor, version) AS anchor,
           argMax(band_px, version) AS band_px, argMax(classes, version) AS classes
    FROM camera_counters
    WHERE {camera_id:String} = '' OR camera_id = {camera_id:String}
    GROUP BY camera_id, counter_id
) AS counters
ALL INNER JOIN
(
    SELECT camera_id, max(version) AS current_version, argMax(removed, version) AS gone
    FROM cameras
    GROUP BY camera_id
    HAVING gone = 0
) AS current USING (camera_id, current_version)
ORDER BY camera_id, counter_id""",
            [
                ("camera_id", pa.string()),
                ("counter_id", pa.string()),
                ("kind", pa.string()),
                ("points_x", pa.list_(pa.float64())),
                ("points_y", pa.list_(pa.float64())),
                ("anchor", pa.string()),
                ("band_px", pa.float64()),
                ("classes", pa.list_(pa.string())),
            ],
        ),
        _q(
            "dead_letters",
            "Dead letters over a range ('' source for all), oldest first, at most `limit`.",
            """
SELECT event_id, event_time, event_ms, source, reason, detail, payload_kind, payload_id
FROM dead_letters FINAL
WHERE ({source:String} = '' OR source = {source:String})"""
            + _RANGE.format(time="event_time")
            + """
ORDER BY event_time, event_ms, event_id
LIMIT {limit:UInt32}""",
            [
                ("event_id", pa.uint64()),
                ("event_time", _TS),
                ("event_ms", pa.uint16()),
                ("source", pa.string()),
                ("reason", pa.string()),
                ("detail", pa.string()),
                ("payload_kind", pa.string()),
                ("payload_id", pa.uint64()),
            ],
        ),
        _q(
            "gaps",
            "Gaps (time a camera never captured) that overlap a range ('' camera for all), "
            "oldest first, at most `limit`.",
            # The range's start is tested on gap_to outside FINAL: a gap
            # reported again (after a crash) may end later, and only its
            # latest copy must be tested. Filters inside FINAL are on the
            # identity (camera, gap_from), equal in every copy.
            """
SELECT event_id, camera_id, gap_from, gap_from_ms, gap_to, gap_to_ms, duration_s, reason,
       frames_lost
FROM
(
    SELECT event_id, camera_id, gap_from, gap_from_ms, gap_to, gap_to_ms, duration_s, reason,
           frames_lost
    FROM gaps FINAL
    WHERE ({camera_id:String} = '' OR camera_id = {camera_id:String})
      AND gap_from < toDateTime({end:UInt32}, 'UTC')
) AS latest
WHERE gap_to >= toDateTime({start:UInt32}, 'UTC')
ORDER BY gap_from, gap_from_ms, camera_id, event_id
LIMIT {limit:UInt32}""",
            [
                ("event_id", pa.uint64()),
                ("camera_id", pa.string()),
                ("gap_from", _TS),
                ("gap_from_ms", pa.uint16()),
                ("gap_to", _TS),
                ("gap_to_ms", pa.uint16()),
                ("duration_s", pa.float64()),
                ("reason", pa.string()),
                ("frames_lost", pa.int64()),
            ],
        ),
        _q(
            "open_alerts",
            "Open alerts (no resolved change yet) of one camera or group ('' for all), "
            "one row each with its firing change, oldest first, at most `limit`.",
            # An alert has at most two changes, firing and resolved, under one
            # alert_id (it names the opening): no resolved row means open,
            # whatever the copies and merges. The camera is equal in every
            # change of an alert, so it filters before grouping (in a
            # subquery: the answer's columns are aggregates of the same
            # names); the severity is tested on the firing rows, the only ones
            # an open alert has.
            """
SELECT alert_id, any(rule_id) AS rule_id, any(target) AS target,
       any(camera_id) AS camera_id, any(severity) AS severity, any(value) AS value,
       any(threshold) AS threshold, any(opened_at) AS opened_at, any(opened_ms) AS opened_ms,
       any(event_time) AS event_time, any(event_ms) AS event_ms, any(message) AS message,
       any(labels) AS labels, any(event_id) AS event_id
FROM
(
    SELECT alert_id, rule_id, target, camera_id, state, severity, value, threshold,
           opened_at, opened_ms, event_time, event_ms, message, labels, event_id
    FROM alerts
    WHERE {camera_id:String} = '' OR camera_id = {camera_id:String}
) AS changes
GROUP BY alert_id
HAVING countIf(state = 'resolved') = 0
   AND ({severity:String} = '' OR severity = {severity:String})
ORDER BY opened_at, opened_ms, alert_id
LIMIT {limit:UInt32}""",
            [
                ("alert_id", pa.uint64()),
                ("rule_id", pa.string()),
                ("target", pa.string()),
                ("camera_id", pa.string()),
                ("severity", pa.string()),
                ("value", pa.float64()),
                ("threshold", pa.float64()),
                ("opened_at", _TS),
                ("opened_ms", pa.uint16()),
                ("event_time", _TS),
                ("event_ms", pa.uint16()),
                ("message", pa.string()),
                ("labels", pa.list_(pa.string())),
                ("event_id", pa.uint64()),
            ],
        ),
        _q(
            "alert_changes",
            "Changes of alerts (firing, resolved) at or after `since`, of one camera or group "
            "and one severity ('' for all), newest first, at most `limit`.",
            """
SELECT event_id, alert_id, rule_id, target, camera_id, state, severity, value, threshold,
       opened_at, opened_ms, event_time, event_ms, message, labels
FROM alerts FINAL
WHERE ({camera_id:String} = '' OR camera_id = {camera_id:String})
  AND ({severity:String} = '' OR severity = {severity:String})
  AND event_time >= toDateTime({since:UInt32}, 'UTC')
ORDER BY event_time DESC, event_ms DESC, event_id DESC
LIMIT {limit:UInt32}""",
            [
                ("event_id", pa.uint64()),
                ("alert_id", pa.uint64()),
                ("rule_id", pa.string()),
                ("target", pa.string()),
                ("camera_id", pa.string()),
                ("state", pa.string()),
                ("severity", pa.string()),
                ("value", pa.float64()),
                ("threshold", pa.float64()),
                ("opened_at", _TS),
                ("opened_ms", pa.uint16()),
                ("event_time", _TS),
                ("event_ms", pa.uint16()),
                ("message", pa.string()),
                ("labels", pa.list_(pa.string())),
            ],
        ),
        _q(
            "latest_forecasts",
            "The latest issue of each forecast key (camera or group, counter, class, "
            "direction, size), one row per forecast window; '' and 0 filter nothing.",
            # One table and no join (a join or IN over two Distributed reads
            # runs its right side on the remote shards): each key's issues
            # are gathered, and the newest one's windows kept.
            """
SELECT camera_id, counter_id, class_name, direction, window_size_s,
       latest AS issued_for,
       tupleElement(point, 1) AS window_start, tupleElement(point, 2) AS value,
       tupleElement(point, 3) AS lower, tupleElement(point, 4) AS upper
FROM
(
    SELECT camera_id, counter_id, class_name, direction, window_size_s,
           max(issued_for) AS latest,
           groupArray((issued_for, window_start, value, lower, upper)) AS issues
    FROM forecasts FINAL
    WHERE ({camera_id:String} = '' OR camera_id = {camera_id:String})
      AND ({counter_id:String} = '' OR counter_id = {counter_id:String})
      AND ({window_size_s:UInt32} = 0 OR window_size_s = {window_size_s:UInt32})
    GROUP BY camera_id, counter_id, class_name, direction, window_size_s
) AS keys
ARRAY JOIN arrayMap(p -> (tupleElement(p, 2), tupleElement(p, 3), tupleElement(p, 4),
                          tupleElement(p, 5)),
                    arrayFilter(p -> tupleElement(p, 1) = latest, issues)) AS point
ORDER BY camera_id, counter_id, class_name, direction, window_size_s, window_start""",
            [
                ("camera_id", pa.string()),
                ("counter_id", pa.string()),
                ("class_name", pa.string()),
                ("direction", pa.string()),
                ("window_size_s", pa.uint32()),
                ("issued_for", _TS),
                ("window_start", _TS),
                ("value", pa.float64()),
                ("lower", pa.float64()),
                ("upper", pa.float64()),
            ],
        ),
    )
}


def run_query(backend: Backend, name: str, params: Mapping[str, object]) -> pa.Table:
    """Run a documented query by name; the answer has its declared schema."""
    try:
        query = QUERIES[name]
    except KeyError:
        raise QueryError(f"unknown query {name!r}; known: {sorted(QUERIES)}") from None
    result = backend.query(query.sql, params)
    if result.num_columns == 0:
        return query.schema.empty_table()
    return result.select(query.schema.names).cast(query.schema)


Time = float | int | datetime


def epoch_s(t: Time) -> int:
    """Whole epoch seconds (UTC) of a time given as seconds or a datetime
    (a naive datetime is taken as UTC)."""
    if isinstance(t, datetime):
        t = (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()
    return math.floor(t)


def _range(start: Time, end: Time) -> dict[str, object]:
    s, e = epoch_s(start), epoch_s(end)
    if e < s:
        raise QueryError(f"end {e} is before start {s}")
    return {"start": s, "end": e}


def _window_params(
    camera_id: str, start: Time, end: Time, counter_id: str, class_name: str, window_size_s: int
) -> dict[str, object]:
    """The parameters of the window-count queries (empty ids: any)."""
    return {
        "camera_id": camera_id,
        "counter_id": counter_id,
        "class_name": class_name,
        "window_size_s": window_size_s,
        **_range(start, end),
    }


def _rollup_size(window_size_s: int, period_s: int) -> int:
    if window_size_s <= 0 or period_s % window_size_s:
        raise QueryError(f"window_size_s {window_size_s} must divide {period_s}")
    return window_size_s


def window_counts(
    backend: Backend,
    camera_id: str,
    start: Time,
    end: Time,
    window_size_s: int,
    counter_id: str = "",
    class_name: str = "",
) -> pa.Table:
    params = _window_params(camera_id, start, end, counter_id, class_name, window_size_s)
    return run_query(backend, "window_counts", params)


def hourly_counts(
    backend: Backend,
    camera_id: str,
    start: Time,
    end: Time,
    counter_id: str = "",
    class_name: str = "",
    window_size_s: int = 60,
) -> pa.Table:
    params = _window_params(
        camera_id, start, end, counter_id, class_name, _rollup_size(window_size_s, 3600)
    )
    return run_query(backend, "hourly_counts", params)


def daily_counts(
    backend: Backend,
    camera_id: str,
    start: Time,
    end: Time,
    counter_id: str = "",
    class_name: str = "",
    window_size_s: int = 3600,
) -> pa.Table:
    params = _window_params(
        camera_id, start, end, counter_id, class_name, _rollup_size(window_size_s, 86400)
    )
    return run_query(backend, "daily_counts", params)


def peak_hours(
    backend: Backend,
    camera_id: str,
    start: Time,
    end: Time,
    counter_id: str = "",
    class_name: str = "",
    window_size_s: int = 60,
) -> pa.Table:
    params = _window_params(
        camera_id, start, end, counter_id, class_name, _rollup_size(window_size_s, 3600)
    )
    return run_query(backend, "peak_hours", params)


def occupancy(
    backend: Backend, camera_id: str, start: Time, end: Time, zone_id: str = "", bucket_s: int = 60
) -> pa.Table:
    if bucket_s < 1:
        raise QueryError(f"bucket_s must be 1 or more, got {bucket_s}")
    params = {
        "camera_id": camera_id,
        "zone_id": zone_id,
        "bucket_s": bucket_s,
        **_range(start, end),
    }
    return run_query(backend, "occupancy", params)


def dwell_stats(
    backend: Backend, camera_id: str, start: Time, end: Time, zone_id: str = ""
) -> pa.Table:
    params = {"camera_id": camera_id, "zone_id": zone_id, **_range(start, end)}
    return run_query(backend, "dwell_stats", params)


def dwell_histogram(
    backend: Backend,
    camera_id: str,
    start: Time,
    end: Time,
    zone_id: str = "",
    bucket_s: float = 1.0,
) -> pa.Table:
    if not bucket_s > 0:
        raise QueryError(f"bucket_s must be above 0, got {bucket_s}")
    params = {
        "camera_id": camera_id,
        "zone_id": zone_id,
        "bucket_s": float(bucket_s),
        **_range(start, end),
    }
    return run_query(backend, "dwell_histogram", params)


def crossings(
    backend: Backend,
    camera_id: str,
    start: Time,
    end: Time,
    counter_id: str = "",
    limit: int = 10_000,
) -> pa.Table:
    params = {
        "camera_id": camera_id,
        "counter_id": counter_id,
        "limit": limit,
        **_range(start, end),
    }
    return run_query(backend, "crossings", params)


def cameras(backend: Backend) -> pa.Table:
    return run_query(backend, "cameras", {})


def camera_seen(backend: Backend, camera_id: str) -> bool:
    """A camera removed long ago still has its history: it is known here."""
    return run_query(backend, "camera_seen", {"camera_id": camera_id}).num_rows > 0


def camera_counters(backend: Backend, camera_id: str = "") -> pa.Table:
    return run_query(backend, "camera_counters", {"camera_id": camera_id})


def dead_letters(
    backend: Backend, start: Time, end: Time, source: str = "", limit: int = 10_000
) -> pa.Table:
    params = {"source": source, "limit": limit, **_range(start, end)}
    return run_query(backend, "dead_letters", params)


def gaps(
    backend: Backend, start: Time, end: Time, camera_id: str = "", limit: int = 10_000
) -> pa.Table:
    """Gaps that overlap ``[start, end)`` (to the second): they began before
    ``end`` and ended at or after ``start``."""
    params = {"camera_id": camera_id, "limit": limit, **_range(start, end)}
    return run_query(backend, "gaps", params)


def open_alerts(
    backend: Backend, camera_id: str = "", severity: str = "", limit: int = 1000
) -> pa.Table:
    params = {"camera_id": camera_id, "severity": severity, "limit": limit}
    return run_query(backend, "open_alerts", params)


def alert_changes(
    backend: Backend,
    since: Time = 0,
    camera_id: str = "",
    severity: str = "",
    limit: int = 1000,
) -> pa.Table:
    params = {
        "camera_id": camera_id,
        "severity": severity,
        "since": epoch_s(since),
        "limit": limit,
    }
    return run_query(backend, "alert_changes", params)


def latest_forecasts(
    backend: Backend, camera_id: str = "", counter_id: str = "", window_size_s: int = 0
) -> pa.Table:
    params = {"camera_id": camera_id, "counter_id": counter_id, "window_size_s": window_size_s}
    return run_query(backend, "latest_forecasts", params)
