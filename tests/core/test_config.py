from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from camcount.config import AppConfig, json_schema, load_config, parse_config
from camcount.errors import ConfigError

GOOD = """\
cameras:
  - id: gate
    source: videos/gate.mp4
    fps: 10
    site: north
    lines:
      - id: entrance
        points: [[0.1, 0.5], [0.9, 0.5]]
    zones:
      - id: queue
        polygon: [[10, 10], [100, 10], [100, 100]]
    coordinates: normalized
windows:
  sizes_s: [10, 60]
"""


def test_a_good_file_loads_and_relative_sources_follow_the_file(tmp_path: Path):
    path = tmp_path / "camcount.yaml"
    path.write_text(GOOD)
    config = load_config(path)
    cam = config.cameras[0]
    assert cam.source == str(tmp_path / "videos" / "gate.mp4")
    assert cam.lines[0].points == ((0.1, 0.5), (0.9, 0.5))
    assert config.windows.sizes_s == (10, 60)
    assert config.warehouse.url.startswith("chdb://")


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        (GOOD.replace("    fps: 10", "    fps: -3"), 4, "cameras.0.fps"),
        (GOOD.replace("    site: north", "    sight: north"), 5, "cameras.0.sight"),
        (
            GOOD.replace("[[0.1, 0.5], [0.9, 0.5]]", "[[0.1, 0.5], [0.1, 0.5]]"),
            8,
            "cameras.0.lines.0.points",
        ),
        (GOOD.replace("  sizes_s: [10, 60]", "  sizes_s: [10, 0]"), 14, "windows.sizes_s.1"),
        ("cameras:\n  - id: a\n    source: a.mp4\n  - id: a\n    source: b.mp4\n", 1, "cameras"),
    ],
)
def test_errors_name_the_field_and_the_line(text, line, field):
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "cfg.yaml")
    message = str(exc.value)
    assert "cfg.yaml" in message and field in message
    if line is not None:
        assert f"line {line}:" in message


def test_yaml_syntax_errors_carry_the_line():
    with pytest.raises(ConfigError, match="line 2"):
        parse_config("cameras:\n  - id: [unclosed\n", "bad.yaml")


def test_missing_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_json_schema_describes_every_section():
    schema = json.loads(json_schema())
    assert set(schema["properties"]) == set(AppConfig.model_fields)
    assert "CameraConfig" in schema["$defs"]


@pytest.mark.parametrize("start", ["1969-12-31T23:59:59Z", "2106-02-07T00:00:00Z"])
def test_a_start_time_the_warehouse_cannot_store_is_refused(start: str):
    text = f"cameras:\n  - id: a\n    source: a.mp4\n    start_time: '{start}'\n"
    with pytest.raises(ConfigError, match=r"cameras\.0\.start_time.*1970-01-01 and 2106-02-06"):
        parse_config(text)
    ok = parse_config(text.replace(start, "2026-01-01T00:00:00Z"))
    assert ok.cameras[0].start_timestamp == 1767225600.0


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "message"),
    [
        ("[[0.1, 0.5], [0.9, 0.5]]", "[[.nan, 0.5], [0.9, 0.5]]", 8,
         "cameras.0.lines.0.points.0.0", "finite number"),
        ("[[0.1, 0.5], [0.9, 0.5]]", "[[0.1, 0.5], [.inf, 0.5]]", 8,
         "cameras.0.lines.0.points.1.0", "finite number"),
        ("[[0.1, 0.5], [0.9, 0.5]]", "[[0.1, 0.5], [0.9, 0.5]]\n        band_px: .nan", 9,
         "cameras.0.lines.0.band_px", "finite number"),
        ("[[10, 10], [100, 10], [100, 100]]", "[[10, 10], [100, -.inf], [100, 100]]", 11,
         "cameras.0.zones.0.polygon.1.1", "finite number"),
        ("    fps: 10", "    fps: .inf", 4, "cameras.0.fps", "finite number"),
        ("[[10, 10], [100, 10], [100, 100]]", "[[0, 0], [100, 100], [100, 0], [0, 100]]", 11,
         "cameras.0.zones.0.polygon", "crosses itself at (50, 50)"),
        ("    site: north", "    site: north\n    roi: [[0, 0], [1, 1], [1, 0], [0, 1]]", 6,
         "cameras.0.roi", "crosses itself at (0.5, 0.5)"),
        ("[[10, 10], [100, 10], [100, 100]]", "[[10, 10], [50, 50], [100, 100]]", 11,
         "cameras.0.zones.0.polygon", "zero area"),
        ("    site: north", "    site: north\n    slicing: {tile_px: [4, 4], overlap: 0.9}", 6,
         "cameras.0.slicing", "step by 0.40 px"),
        ("    site: north", "    site: north\n    slicing:\n      match_threshold: .nan", 7,
         "cameras.0.slicing.match_threshold", "finite number"),
    ],
)  # fmt: skip
def test_geometry_that_cannot_count_is_refused(old, new, line, field, message):
    with pytest.raises(ConfigError) as exc:
        parse_config(GOOD.replace(old, new), "cfg.yaml")
    text = str(exc.value)
    assert f"line {line}: {field}: " in text and message in text
    assert len(exc.value.problems) == 1 and "\n" not in text  # one problem, one line


def test_every_number_in_the_file_must_be_finite():
    text = "tracker:\n  lost_track_buffer_s: .inf\ndetector:\n  score_threshold: .nan\n"
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "cfg.yaml")
    assert exc.value.problems == [
        "line 4: detector.score_threshold: Input should be a finite number",
        "line 2: tracker.lost_track_buffer_s: Input should be a finite number",
    ]


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (
            "[{camera: gates, counter: entrance}]",
            "group 'north' names camera 'gates', which the config does not have "
            "(did you mean 'gate'?)",
        ),
        (
            "[{camera: gate, counter: entrence}]",
            "group 'north' names counter 'entrence' of camera 'gate', which has no such "
            "line or zone (did you mean 'entrance'?)",
        ),
    ],
)
def test_a_group_names_only_cameras_and_counters_that_exist(members, message):
    text = f"{GOOD}groups:\n  - id: north\n    members: {members}\n"
    with pytest.raises(ConfigError, match=r"line 1:.*") as exc:
        parse_config(text, "cfg.yaml")
    assert message in str(exc.value)
    # a zone is a counter too
    assert parse_config(text.replace(members, "[{camera: gate, counter: queue}]"), "cfg.yaml")


@pytest.mark.parametrize(
    ("model", "hint"),
    [
        ("ssdlite", "did you mean 'ssdlite-person'?"),
        (
            "torchvison:fasterrcnn_resnet50_fpn",
            "did you mean 'torchvision:fasterrcnn_resnet50_fpn'?",
        ),
        ("yolo-magic", "choose oracle, noisy, ssdlite-person"),
        ("onnx:", "needs a name after the colon"),
    ],
)
def test_an_unknown_detector_is_refused_where_the_config_is_read(model, hint):
    with pytest.raises(ConfigError, match=r"detector\.model") as exc:
        parse_config(f'{GOOD}detector:\n  model: "{model}"\n', "cfg.yaml")
    assert hint in str(exc.value)


def test_one_id_rule_for_cameras_lines_zones_and_groups():
    """At most 128 characters: a longer camera id was created through the API
    but could never be read, changed or removed (paths stop at 128)."""
    long = "c" * 129
    for text in (
        GOOD.replace("  - id: gate", f"  - id: {long}"),
        GOOD.replace("      - id: entrance", f"      - id: {long}"),
        GOOD.replace("      - id: queue", f"      - id: {long}"),
    ):
        with pytest.raises(ConfigError, match="at most 128 characters"):
            parse_config(text, "cfg.yaml")
    assert parse_config(GOOD.replace("  - id: gate", f"  - id: {'c' * 128}"), "cfg.yaml")


def test_configs_travel_between_processes_as_the_objects_they_are():
    # Actors hand each other the checked objects, pickled by Ray, and never
    # check them again: each must arrive equal and of its own type.
    config = parse_config(GOOD, "cfg.yaml")
    travelling = [
        config,
        config.cameras[0],
        config.tracker,
        config.detector,
        config.warehouse,
        config.api.model_copy(update={"tokens": ()}),
    ]
    for sent in travelling:
        arrived = pickle.loads(pickle.dumps(sent, protocol=5))
        assert type(arrived) is type(sent)
        assert arrived == sent
    assert pickle.loads(pickle.dumps(config)).cameras[0].lines[0].id == "entrance"


PLACED = """\
cameras:
  - id: gate
    source: gate.mp4
    placement:
      resources: {site-north: 0.001}
      labels: {site: north}
detector:
  resources: {detector: 1}
  autoscaling:
    min_replicas: 1
    max_replicas: 6
    target_ongoing_requests: 2
    downscale_delay_s: 30
placement:
  shards: ray
"""


def test_placement_and_autoscaling_load_and_become_serve_options():
    config = parse_config(PLACED)
    assert config.cameras[0].placement.resources == {"site-north": 0.001}
    assert config.cameras[0].placement.constrained
    assert config.placement.cameras == "least_loaded" and config.placement.shards == "ray"
    assert config.detector.resources == {"detector": 1}
    autoscaling = config.detector.autoscaling
    assert autoscaling is not None
    options = autoscaling.serve_options()
    assert options["max_replicas"] == 6 and options["downscale_delay_s"] == 30
    assert "initial_replicas" not in options  # unset: Serve's own default


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("    max_replicas: 6", "    max_replicas: 0", "detector.autoscaling.max_replicas"),
        ("    min_replicas: 1", "    min_replicas: 9", "detector.autoscaling"),
        ("target_ongoing_requests: 2", "target_ongoing_requests: 0", "target_ongoing_requests"),
        ("    downscale_delay_s: 30", "    downscale_delay: 30", "downscale_delay"),
        ("{detector: 1}", "{detector: -1}", "detector.resources.detector"),
        ("{site-north: 0.001}", "{site-north: 0}", "cameras.0.placement.resources"),
        ("  shards: ray", "  shards: everywhere", "placement.shards"),
    ],
)
def test_bad_placement_or_autoscaling_names_the_field(old, new, field):
    assert old in PLACED
    with pytest.raises(ConfigError) as exc:
        parse_config(PLACED.replace(old, new), "cfg.yaml")
    assert field in str(exc.value)


def test_a_camera_without_placement_may_run_anywhere():
    config = parse_config("cameras:\n  - id: a\n    source: a.mp4\n")
    assert not config.cameras[0].placement.constrained
    assert config.detector.autoscaling is None and config.detector.resources == {}
