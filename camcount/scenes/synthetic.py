"""Synthetic scenes whose counts are known exactly, rendered to real video.

Every object follows a scripted path chosen from a scenario (cross the line
down, turn back inside the band, stop and jitter on the line, pass beyond
the line's end, hide behind the pillar while crossing, visit the zone...).
The expected counts come from the scenarios, not from running the counter,
so the counter is checked against intent. Objects never overlap each other,
so an exact detector (the oracle) must give exact counts.

Layout of a scene (fractions of the frame):

- the line runs left to right at mid height over the left part of the frame:
  moving down across it is ``in``;
- the zone is a rectangle in the top right, away from the line;
- a short pillar stands on the line and hides narrow objects passing it.
"""

from __future__ import annotations

import itertools
import json
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TRUTH_VERSION = 1
CLASS_NAMES: tuple[str, ...] = ("person", "bicycle", "car", "truck")
LINE_ID = "line-main"
ZONE_ID = "zone-a"
BAND_PX = 15.0
MIN_VISIBLE_FRACTION = 0.4

# (min width, max width, min height, max height) in pixels at 640x360.
_SIZES: dict[str, tuple[int, int, int, int]] = {
    "person": (20, 28, 52, 68),
    "bicycle": (26, 34, 40, 50),
    "car": (70, 96, 40, 54),
    "truck": (96, 120, 56, 70),
}

LINE_SCENARIOS = (
    "cross_down",
    "cross_up",
    "beyond_end",
    "turn_back",
    "stop_and_go",
    "cross_and_return",
    "occluded_cross",
)
ZONE_SCENARIOS = ("zone_visit", "zone_through", "zone_pass_by")


@dataclass(frozen=True)
class SceneLayout:
    width: int = 640
    height: int = 360
    fps: float = 10.0
    frames: int = 300

    @property
    def line(self) -> tuple[tuple[int, int], tuple[int, int]]:
        y = round(self.height * 0.5)
        return (round(self.width * 0.0625), y), (round(self.width * 0.625), y)

    @property
    def zone(self) -> tuple[tuple[int, int], ...]:
        x0, x1 = round(self.width * 0.735), round(self.width * 0.97)
        y0, y1 = round(self.height * 0.11), round(self.height * 0.42)
        return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))

    @property
    def pillar(self) -> tuple[int, int, int, int]:
        cx = round(self.width * 0.35)
        y = self.line[0][1]
        return (cx - 25, y - 20, cx + 25, y + 20)


@dataclass
class ObjectPlan:
    """One object's path: anchor (bottom centre) keyframes, linearly joined."""

    obj_id: int
    class_name: str
    scenario: str
    size: tuple[int, int]
    keyframes: list[tuple[int, float, float]]  # (frame, x, y)
    jitter: dict[int, float] = field(default_factory=dict)  # frame -> extra y offset
    expected_in: int = 0
    expected_out: int = 0
    expected_visits: int = 0

    @property
    def first_frame(self) -> int:
        return self.keyframes[0][0]

    @property
    def last_frame(self) -> int:
        return self.keyframes[-1][0]

    def anchor_at(self, frame: int) -> tuple[float, float] | None:
        kf = self.keyframes
        if frame < kf[0][0] or frame > kf[-1][0]:
            return None
        for (f0, x0, y0), (f1, x1, y1) in itertools.pairwise(kf):
            if f0 <= frame <= f1:
                a = 0.0 if f1 == f0 else (frame - f0) / (f1 - f0)
                return x0 + (x1 - x0) * a, y0 + (y1 - y0) * a + self.jitter.get(frame, 0.0)
        return kf[-1][1], kf[-1][2]

    def box_at(self, frame: int) -> tuple[float, float, float, float] | None:
        p = self.anchor_at(frame)
        if p is None:
            return None
        w, h = self.size
        return (p[0] - w / 2, p[1] - h, p[0] + w / 2, p[1])


@dataclass(frozen=True)
class TruthBox:
    obj_id: int
    class_id: int
    xyxy: tuple[float, float, float, float]


@dataclass
class Scene:
    seed: int
    layout: SceneLayout
    objects: list[ObjectPlan]

    def visible_boxes(self, frame: int) -> list[TruthBox]:
        """Boxes an exact detector sees: clipped to the frame, mostly visible,
        not behind the pillar."""
        w, h = self.layout.width, self.layout.height
        px0, py0, px1, py1 = self.layout.pillar
        out = []
        for obj in self.objects:
            box = obj.box_at(frame)
            if box is None:
                continue
            x0, y0, x1, y1 = box
            full = (x1 - x0) * (y1 - y0)
            cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
            if cx1 <= cx0 or cy1 <= cy0 or (cx1 - cx0) * (cy1 - cy0) < MIN_VISIBLE_FRACTION * full:
                continue
            ox = max(0.0, min(cx1, px1) - max(cx0, px0))
            oy = max(0.0, min(cy1, py1) - max(cy0, py0))
            if ox * oy > 0.5 * (cx1 - cx0) * (cy1 - cy0):
                continue
            rounded = (round(cx0, 2), round(cy0, 2), round(cx1, 2), round(cy1, 2))
            out.append(TruthBox(obj.obj_id, CLASS_NAMES.index(obj.class_name), rounded))
        return out

    def expected(self) -> dict[str, Any]:
        lines: dict[str, dict[str, int]] = {}
        visits: dict[str, int] = {}
        for o in self.objects:
            per = lines.setdefault(o.class_name, {"in": 0, "out": 0})
            per["in"] += o.expected_in
            per["out"] += o.expected_out
            if o.expected_visits:
                visits[o.class_name] = visits.get(o.class_name, 0) + o.expected_visits
        lines = {c: v for c, v in lines.items() if v["in"] or v["out"]}
        return {"lines": {LINE_ID: lines}, "zones": {ZONE_ID: {"visits": visits}}}


def generate_scene(seed: int, layout: SceneLayout | None = None, n_objects: int = 12) -> Scene:
    """Place ``n_objects`` scripted objects so that none overlaps another."""
    lay = layout or SceneLayout()
    rng = np.random.default_rng(seed)
    scenarios = list(LINE_SCENARIOS + ZONE_SCENARIOS)
    objects: list[ObjectPlan] = []
    tries = 0
    while len(objects) < n_objects and tries < n_objects * 60:
        tries += 1
        scenario = (
            scenarios[(len(objects) + seed) % len(scenarios)]
            if tries % 7
            else str(rng.choice(scenarios))
        )
        plan = _plan(len(objects) + 1, scenario, lay, rng)
        if plan is not None and not any(_overlaps(plan, other) for other in objects):
            objects.append(plan)
    return Scene(seed, lay, objects)


def _class_for(scenario: str, rng: np.random.Generator) -> str:
    if scenario in ("occluded_cross",) or scenario in ZONE_SCENARIOS:
        return str(rng.choice(["person", "bicycle"], p=[0.75, 0.25]))
    return str(rng.choice(CLASS_NAMES, p=[0.45, 0.15, 0.3, 0.1]))


def _plan(
    obj_id: int, scenario: str, lay: SceneLayout, rng: np.random.Generator
) -> ObjectPlan | None:
    cls = _class_for(scenario, rng)
    lo_w, hi_w, lo_h, hi_h = _SIZES[cls]
    scale = lay.width / 640
    w = int(rng.integers(lo_w, hi_w + 1) * scale)
    h = int(rng.integers(lo_h, hi_h + 1) * scale)
    (lx0, ly), (lx1, _) = lay.line
    speed = float(rng.uniform(3.0, 7.0)) * scale  # pixels per frame
    top = h * 0.75  # anchor y at which the box is mostly visible at the top edge
    bottom = lay.height + h * 0.25
    margin = w / 2 + 12
    start = int(rng.integers(0, max(1, lay.frames - 120)))

    def run(
        points: list[tuple[float, float]], pauses: dict[int, int] | None = None
    ) -> list[tuple[int, float, float]]:
        keys = [(start, points[0][0], points[0][1])]
        f = start
        for i, (x, y) in enumerate(points[1:], start=1):
            px, py = keys[-1][1], keys[-1][2]
            f += max(1, round(np.hypot(x - px, y - py) / speed))
            keys.append((f, x, y))
            if pauses and i in pauses:
                f += pauses[i]
                keys.append((f, x, y))
        return keys

    plan = ObjectPlan(obj_id, cls, scenario, (w, h), [])
    lane = float(rng.uniform(lx0 + margin, lx1 - margin))
    if scenario == "cross_down":
        plan.keyframes = run([(lane, top), (lane, bottom)])
        plan.expected_in = 1
    elif scenario == "cross_up":
        plan.keyframes = run([(lane, bottom), (lane, top)])
        plan.expected_out = 1
    elif scenario == "beyond_end":
        # Only the anchor matters: it passes between the line's end and the zone.
        x = float(rng.uniform(lx1 + 12, lay.zone[0][0] - 3 * BAND_PX))
        pts = [(x, top), (x, bottom)]
        plan.keyframes = run(pts if rng.random() < 0.5 else pts[::-1])
    elif scenario == "turn_back":
        depth = float(rng.uniform(-BAND_PX / 2, BAND_PX / 4))
        plan.keyframes = run([(lane, top), (lane, ly + depth), (lane, top)], pauses={1: 3})
    elif scenario == "stop_and_go":
        stop = int(rng.integers(5, 15))
        plan.keyframes = run([(lane, top), (lane, float(ly)), (lane, bottom)], pauses={1: stop})
        f_stop = plan.keyframes[1][0]
        plan.jitter = {
            f_stop + i: float(rng.uniform(-BAND_PX / 2, BAND_PX / 2)) for i in range(1, stop)
        }
        plan.expected_in = 1
    elif scenario == "cross_and_return":
        turn = ly + float(rng.uniform(50, 90)) * scale
        plan.keyframes = run([(lane, top), (lane, turn), (lane, top)], pauses={1: 2})
        plan.expected_in = 1
        plan.expected_out = 1
    elif scenario == "occluded_cross":
        px0, _, px1, _ = lay.pillar
        x = (px0 + px1) / 2
        pts = [(x, top), (x, bottom)]
        down = rng.random() < 0.5
        plan.keyframes = run(pts if down else pts[::-1])
        plan.expected_in, plan.expected_out = (1, 0) if down else (0, 1)
    else:
        (zx0, zy0), _, (zx1, zy1), _ = lay.zone
        x = float(rng.uniform(zx0 + margin / 2 + BAND_PX, zx1 - margin / 2 - BAND_PX))
        if scenario == "zone_visit":
            inside_y = float(rng.uniform(zy0 + 2 * BAND_PX, zy1 - 2 * BAND_PX))
            dwell = int(rng.integers(10, 40))
            plan.keyframes = run([(x, top), (x, inside_y), (x, top)], pauses={1: dwell})
            plan.expected_visits = 1
        elif scenario == "zone_through":
            pts = [(x, top), (x, bottom)]
            plan.keyframes = run(pts if rng.random() < 0.5 else pts[::-1])
            plan.expected_visits = 1
        else:  # zone_pass_by: right to left just below the zone, beyond the line's end
            y = zy1 + 2 * BAND_PX
            plan.keyframes = run([(lay.width - w / 2, y), (lx1 + w / 2 + 12, y)])
    if plan.keyframes[-1][0] >= lay.frames:
        return None
    return plan


GHOST_FRAMES = 40


def _overlaps(a: ObjectPlan, b: ObjectPlan, pad: float = 6.0) -> bool:
    """Whether two objects come close, counting each as lingering where it
    appeared and vanished for ``GHOST_FRAMES``: an object that enters where
    another has just left could be taken for it by any tracker (the lost
    track is still kept), so scenes avoid that ambiguity."""
    lo = max(a.first_frame, b.first_frame) - GHOST_FRAMES
    hi = min(a.last_frame, b.last_frame) + GHOST_FRAMES
    for f in range(lo, hi + 1):
        ba, bb = _ghost_box(a, f), _ghost_box(b, f)
        if ba is None or bb is None:
            continue
        if (
            ba[0] - pad < bb[2]
            and bb[0] - pad < ba[2]
            and ba[1] - pad < bb[3]
            and bb[1] - pad < ba[3]
        ):
            return True
    return False


def _ghost_box(obj: ObjectPlan, frame: int) -> tuple[float, float, float, float] | None:
    if obj.first_frame - GHOST_FRAMES <= frame < obj.first_frame:
        return obj.box_at(obj.first_frame)
    if obj.last_frame < frame <= obj.last_frame + GHOST_FRAMES:
        return obj.box_at(obj.last_frame)
    return obj.box_at(frame)


# ---------------------------------------------------------------- rendering


def _background(lay: SceneLayout, rng: np.random.Generator) -> np.ndarray:
    import cv2

    yy, xx = np.mgrid[0 : lay.height, 0 : lay.width]
    base = np.stack(
        [70 + 40 * yy / lay.height, 90 + 30 * xx / lay.width, 80 + 20 * np.sin(xx / 37.0)], axis=2
    )
    noise = rng.normal(0, 6, size=base.shape)
    img = np.clip(base + noise, 0, 255).astype(np.uint8)
    for x in range(0, lay.width, 80):
        cv2.line(img, (x, 0), (x, lay.height - 1), (95, 105, 100), 1)
    return img


def _draw(img: np.ndarray, obj: ObjectPlan, box: tuple[float, float, float, float]) -> None:
    import cv2

    x0, y0, x1, y1 = (round(v) for v in box)
    hue = (obj.obj_id * 47) % 180
    color = tuple(
        int(c)
        for c in cv2.cvtColor(np.array([[[hue, 200, 220]]], dtype=np.uint8), cv2.COLOR_HSV2BGR)[
            0, 0
        ]
    )
    w, h = x1 - x0, y1 - y0
    if obj.class_name == "person":
        r = max(2, w // 3)
        cv2.circle(img, ((x0 + x1) // 2, y0 + r), r, (60, 170, 230), -1)
        cv2.ellipse(
            img,
            ((x0 + x1) // 2, y0 + 2 * r + (h - 2 * r) // 2),
            (w // 2, (h - 2 * r) // 2),
            0,
            0,
            360,
            color,
            -1,
        )
    elif obj.class_name == "bicycle":
        r = max(3, h // 4)
        cv2.circle(img, (x0 + r, y1 - r), r, (30, 30, 30), 2)
        cv2.circle(img, (x1 - r, y1 - r), r, (30, 30, 30), 2)
        cv2.rectangle(img, (x0 + w // 3, y0), (x1 - w // 3, y1 - r), color, -1)
    else:
        cv2.rectangle(img, (x0, y0 + h // 5), (x1, y1), color, -1)
        cv2.rectangle(img, (x0 + w // 6, y0), (x1 - w // 6, y0 + h // 2), color, -1)
        cv2.rectangle(
            img, (x0 + w // 4, y0 + h // 10), (x1 - w // 4, y0 + h // 3), (40, 40, 60), -1
        )
        if obj.class_name == "truck":
            cv2.rectangle(img, (x0 + w // 2, y0), (x1, y1 - h // 5), (200, 200, 210), -1)


def render_frame(scene: Scene, frame: int, background: np.ndarray) -> np.ndarray:
    import cv2

    img = background.copy()
    for obj in scene.objects:
        box = obj.box_at(frame)
        if box is not None:
            _draw(img, obj, box)
    px0, py0, px1, py1 = scene.layout.pillar
    cv2.rectangle(img, (px0, py0), (px1, py1), (120, 120, 130), -1)
    return img


def truth_path(video: str | Path) -> Path:
    p = Path(video)
    return p.with_name(p.stem + ".truth.json")


def config_path(video: str | Path) -> Path:
    p = Path(video)
    return p.with_name(p.stem + ".yaml")


def write_scene(
    scene: Scene, out: str | Path, progress: Callable[[int, int], None] | None = None
) -> tuple[Path, Path, Path]:
    """Render the scene to ``out`` and write its truth and a config beside it.

    A scene of no frames is refused (``EmptyOutputError``), as every video
    written through ``annotate.VideoWriter`` is: no player opens the file.
    """
    from camcount.vision.annotate import VideoWriter

    out = Path(out)
    lay = scene.layout
    bg = _background(lay, np.random.default_rng(scene.seed + 7919))
    with VideoWriter(out, lay.fps, (lay.width, lay.height)) as writer:
        for f in range(lay.frames):
            writer.write(render_frame(scene, f, bg))
            if progress is not None:
                progress(f + 1, lay.frames)
    truth = scene_truth(scene)
    tpath = truth_path(out)
    tpath.write_text(json.dumps(truth, separators=(",", ":")))
    cpath = config_path(out)
    cpath.write_text(scene_config_yaml(scene, out.name))
    return out, tpath, cpath


def scene_truth(scene: Scene) -> dict[str, Any]:
    lay = scene.layout
    return {
        "version": TRUTH_VERSION,
        "seed": scene.seed,
        "layout": asdict(lay),
        "class_names": list(CLASS_NAMES),
        "line": {"id": LINE_ID, "points": [list(p) for p in lay.line], "band_px": BAND_PX},
        "zone": {"id": ZONE_ID, "polygon": [list(p) for p in lay.zone]},
        "pillar": list(lay.pillar),
        "objects": [
            {
                "id": o.obj_id,
                "class_name": o.class_name,
                "scenario": o.scenario,
                "first_frame": o.first_frame,
                "last_frame": o.last_frame,
            }
            for o in scene.objects
        ],
        "expected": scene.expected(),
        "frames": [
            [[b.obj_id, b.class_id, *b.xyxy] for b in scene.visible_boxes(f)]
            for f in range(lay.frames)
        ],
    }


def scene_config_yaml(scene: Scene, video_name: str) -> str:
    lay = scene.layout
    (x0, y0), (x1, y1) = lay.line
    zone = ", ".join(f"[{x}, {y}]" for x, y in lay.zone)
    stem = Path(video_name).stem
    return f"""# Written by `camcount synth` beside {video_name}; paths are relative to this file.
cameras:
  - id: {stem}
    source: {video_name}
    lines:
      - id: {LINE_ID}
        points: [[{x0}, {y0}], [{x1}, {y1}]]
        band_px: {BAND_PX}
    zones:
      - id: {ZONE_ID}
        polygon: [{zone}]
detector:
  model: oracle
"""


def expected_rows(expected: dict[str, Any]) -> dict[tuple[str, str, str], int]:
    """A truth file's expected counts keyed like ``count --json`` rows:
    (counter, class, direction); a zone's visits are its enters and exits."""
    rows: dict[tuple[str, str, str], int] = {}
    for counter, per_class in expected["lines"].items():
        for cls, dirs in per_class.items():
            for direction, n in dirs.items():
                if n:
                    rows[(counter, cls, direction)] = n
    for zone, data in expected["zones"].items():
        for cls, n in data["visits"].items():
            rows[(zone, cls, "enter")] = n
            rows[(zone, cls, "exit")] = n
    return rows


def load_truth(path: str | Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if data.get("version") != TRUTH_VERSION:
        raise ValueError(f"{path}: truth version {data.get('version')}, expected {TRUTH_VERSION}")
    return data


def source_seed(source: str) -> int:
    """A stable number for a source name, to seed per-source noise."""
    return zlib.crc32(Path(source).name.encode())
