"""Filters and the poll and resume query strings: what a live client asks for."""

from __future__ import annotations

import pytest

from camcount.config import MAX_ID_CHARS
from camcount.errors import RequestError
from camcount.http.live.query import Filter, filter_from_query, poll_query, resume_point
from camcount.stream.livefeed import Update
from tests.core.liveupdates import upd


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


def test_query_parameters_are_checked_with_clear_errors() -> None:
    q = poll_query({"after": ["5"], "timeout": ["1.5"], "kinds": ["crossing"]})
    assert (q.after, q.timeout_s, q.limit) == (5, 1.5, 1000)
    for bad in ({"after": ["-1"]}, {"after": ["x"]}, {"timeout": ["nan"]}, {"limit": ["0"]}):
        with pytest.raises(RequestError) as exc:
            poll_query(bad)
        assert exc.value.status == 422
    assert resume_point("12", {"after": ["3"]}) == 12  # Last-Event-ID wins
    assert resume_point(None, {"after": ["3"]}) == 3


@pytest.mark.parametrize(
    ("camera", "ok"),
    [
        ("gate-2", True),  # a configured camera's id
        ("group:entrances", True),  # a group's window rows carry its derived key
        ("site:north", True),  # so do a site's
        ("x" * MAX_ID_CHARS, True),  # the longest id the config takes
        ("x" * (MAX_ID_CHARS + 1), False),  # longer than any id could be
        ("bad id!", False),
    ],
)
def test_camera_filters_take_configured_ids_and_derived_keys(camera: str, ok: bool) -> None:
    row = Update(1, "window_row", camera, {"counter_id": "door"})
    if ok:
        assert filter_from_query({"cameras": [camera]}).matches(row)
    else:
        with pytest.raises(RequestError) as exc:
            filter_from_query({"cameras": [camera]})
        assert exc.value.code == "bad_filter" and exc.value.status == 422
