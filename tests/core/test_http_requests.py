"""REST request bodies and the /counts query, checked where they enter."""

from __future__ import annotations

import pytest

from camcount.config import CameraConfig
from camcount.errors import RequestError
from camcount.http.bodies import camera_id, new_camera, parse_json, patched_camera
from camcount.http.counts import (
    checked_counts_query,
    count_row,
    counts_answer,
    counts_query,
    wanted,
)
from camcount.http.openapi import openapi_document

CAM = CameraConfig.model_validate(
    {
        "id": "gate",
        "source": "/videos/gate.mp4",
        "lines": [{"id": "door", "points": [[0, 10], [100, 10]]}],
    }
)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "bad_json"),
        (b"{", "bad_json"),
        (b'{"a": NaN}', "bad_json"),  # not JSON, although Python's json reads it
        (b"\xff\xfe", "bad_json"),
    ],
)
def test_bodies_that_are_not_json(body: bytes, code: str) -> None:
    with pytest.raises(RequestError) as exc:
        parse_json(body)
    assert exc.value.code == code and exc.value.status == 400


def test_a_new_camera_is_validated_with_the_config_schema() -> None:
    assert new_camera({"id": "a", "source": "x.mp4"}).id == "a"
    with pytest.raises(RequestError) as exc:
        new_camera({"id": "a b", "source": ""})
    assert exc.value.status == 422
    assert {tuple(d["loc"]) for d in exc.value.detail} == {("id",), ("source",)}
    with pytest.raises(RequestError):
        new_camera([1])


@pytest.mark.parametrize(
    ("patch", "check"),
    [
        # new lines replace the old ones; the rest stays
        ({"lines": [{"id": "l2", "points": [[0, 0], [5, 5]]}]}, lambda c: c.lines[0].id == "l2"),
        (
            {"zones": [{"id": "z", "polygon": [[0, 0], [5, 0], [5, 5]]}]},
            lambda c: len(c.zones) == 1,
        ),
        ({"min_confidence": 0.4}, lambda c: c.min_confidence == 0.4 and c.lines[0].id == "door"),
        ({"roi": None}, lambda c: c.roi is None),
        ({"source": "/videos/gate.mp4"}, lambda c: c.source == "/videos/gate.mp4"),  # unchanged
        # slicing turned on, then off, while the camera runs
        ({"slicing": {"grid": [3, 2]}}, lambda c: c.slicing.grid == (3, 2)),
        ({"slicing": None}, lambda c: c.slicing is None),
    ],
)
def test_patches_that_apply(patch: dict, check) -> None:
    assert check(patched_camera(CAM, patch))


@pytest.mark.parametrize(
    ("patch", "code"),
    [
        ({"source": "/other.mp4"}, "immutable"),  # needs remove and add
        ({"fps": 5}, "immutable"),
        ({"lines": "door"}, "invalid"),
        ({"zoom": 2}, "invalid"),  # unknown field
        # a zone may not reuse a line's id
        ({"zones": [{"id": "door", "polygon": [[0, 0], [5, 0], [5, 5]]}]}, "invalid"),
        ({"lines": [{"id": "x", "points": [[1, 1], [1, 1]]}]}, "invalid"),  # degenerate
        ([], "invalid"),
    ],
)
def test_patches_that_are_refused(patch: object, code: str) -> None:
    with pytest.raises(RequestError) as exc:
        patched_camera(CAM, patch)
    assert exc.value.code == code and exc.value.status == 422


@pytest.mark.parametrize(
    ("body", "loc", "message"),
    [
        # 1e400 is valid JSON that Python reads as infinity
        (b'{"lines": [{"id": "l", "points": [[1e400, 0], [5, 5]]}]}', ["lines", "0", "points",
         "0", "0"], "finite number"),
        (b'{"lines": [{"id": "l", "points": [[0, 0], [5, 5]], "band_px": -1e400}]}',
         ["lines", "0", "band_px"], "finite number"),
        (b'{"zones": [{"id": "z", "polygon": [[0, 0], [10, 10], [10, 0], [0, 10]]}]}',
         ["zones", "0", "polygon"], "crosses itself at (5, 5)"),
        (b'{"roi": [[0, 0], [10, 0], [0, -1e999]]}', ["roi", "2", "1"], "finite number"),
        (b'{"roi": [[0, 0], [10, 10], [10, 0], [0, 10]]}', ["roi"], "crosses itself at (5, 5)"),
        (b'{"slicing": {"grid": [2, 0]}}', ["slicing", "grid", "1"], "greater than or equal to 1"),
        (b'{"slicing": {"grid": [2, 2], "overlap": 1}}', ["slicing", "overlap"], "less than 1"),
        (b'{"slicing": {"grid": [2, 2], "tile_px": [300, 300]}}', ["slicing"], "not both"),
        (b'{"slicing": {"merge": "average"}}', ["slicing", "merge"], "'nmm' or 'nms'"),
    ],
)  # fmt: skip
def test_camera_geometry_that_cannot_count_is_refused_naming_the_field(
    body: bytes, loc: list[str], message: str
) -> None:
    for attempt in (
        lambda: new_camera({"id": "a", "source": "x.mp4", **parse_json(body)}),
        lambda: patched_camera(CAM, parse_json(body)),
    ):
        with pytest.raises(RequestError) as exc:
            attempt()
        assert exc.value.status == 422 and exc.value.code == "invalid"
        (problem,) = exc.value.detail
        assert problem["loc"] == loc and message in problem["msg"]


def test_counts_queries() -> None:
    q = counts_query(
        {"camera": ["gate"], "start": ["2026-01-01T00:00:00Z"], "end": ["1767229200"]}, [10, 60]
    )
    assert (q.window_size_s, q.start, q.end, q.limit) == (10, 1767225600.0, 1767229200.0, 1000)
    for bad in (
        {},  # camera is required
        {"camera": ["gate"], "window": ["7"]},  # not a configured size
        {"camera": ["gate"], "start": ["yesterday"]},
        {"camera": ["gate"], "start": ["-5"]},
        {"camera": ["gate"], "start": ["20"], "end": ["10"]},
        {"camera": ["gate"], "direction": ["sideways"]},
        {"camera": ["gate"], "limit": ["0"]},
        {"camera": ["gate/../x"]},
    ):
        with pytest.raises(RequestError) as exc:
            counts_query(bad, [10, 60])
        assert exc.value.status == 422, bad


def test_counts_answer_filters_orders_and_truncates() -> None:
    q = counts_query({"camera": ["gate"], "direction": ["in"], "limit": ["1"]}, [10])
    rows = [
        count_row("gate", "door", "person", "in", 10, 20.0, 2),
        count_row("gate", "door", "person", "in", 10, 10.0, 1),
        count_row("gate", "door", "person", "out", 10, 10.0, 5),
        count_row("other", "door", "person", "in", 10, 10.0, 5),
    ]
    kept = [r for r in rows if wanted(q, r)]
    answer = counts_answer(q, kept, "aggregator")
    assert answer["truncated"] and [r["window_start"] for r in answer["rows"]] == [10.0]


@pytest.mark.parametrize(
    "query",
    [
        {"camera": ["gate"]},
        {"camera": ["gate"], "window": ["60"], "limit": ["5"], "direction": ["out"]},
        {"camera": ["gate"], "start": ["2026-01-01T00:00:00"], "end": ["1767229200"]},
        {"camera": ["gate"], "counter": [""], "class": ["person"]},  # empty is absent
    ],
)
def test_the_raw_query_string_and_typed_values_give_one_query(query: dict) -> None:
    one = {k: v[-1] for k, v in query.items()}
    typed = checked_counts_query(
        [10, 60],
        camera=one.get("camera"),
        counter=one.get("counter"),
        class_name=one.get("class"),
        direction=one.get("direction"),
        window=int(one["window"]) if "window" in one else None,
        start=one.get("start"),
        end=one.get("end"),
        limit=int(one["limit"]) if "limit" in one else None,
    )
    assert counts_query(query, [10, 60]) == typed


@pytest.mark.parametrize(
    "cam_id", ["c" * 128, "c" * 129, "a/b", "é", "cam 1", "cam:1", "", "a.b-c_D9", "x\n"]
)
def test_a_path_id_is_found_exactly_when_a_new_camera_could_have_it(cam_id: str) -> None:
    """One rule for both: an id the API accepts in a body can be read,
    changed and removed by its path, and one it refuses is simply not found."""
    body = {**CAM.model_dump(mode="json"), "id": cam_id}
    try:
        created = new_camera(body).id
    except RequestError as err:
        assert (err.status, err.code) == (422, "invalid")
        assert [d["loc"] for d in err.detail] == [["id"]]
        created = None
    try:
        found = camera_id(cam_id)
    except RequestError as err:
        assert (err.status, err.code) == (404, "not_found")
        found = None
    assert created == found
    assert (found is not None) == (cam_id in ("c" * 128, "a.b-c_D9"))
    param = openapi_document()["paths"]["/cameras/{camera_id}"]["get"]["parameters"][0]["schema"]
    assert param["maxLength"] == 128 and param["pattern"] == r"^[A-Za-z0-9_.-]+$"
