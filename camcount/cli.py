"""The ``camcount`` command line: the composition root.

Core commands (``synth``, ``count``, ``config-schema``...) never import Ray;
the Ray commands import ``actors`` and ``serve_app`` inside their function.
Results go to stdout (JSON with ``--json``), progress and messages to
stderr, so output can be piped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from camcount import __version__
from camcount.errors import CamcountError

if TYPE_CHECKING:
    from pydantic import ValidationError

    from camcount.config import AppConfig, CameraConfig
    from camcount.detectors import Detector
    from camcount.outputs.settings import WebhookOutputConfig
    from camcount.scenes.synthetic import SceneLayout

# Messages are one line each, whatever the width of stderr (a log file, a
# pipe): rich would wrap them at 80 columns where it is not a terminal.
err = Console(stderr=True, soft_wrap=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


class _LateBar:
    """A progress bar that appears with the first step done, so that a
    command refused before its first frame (an output that cannot be
    written, a line outside the picture, a video without frames) leaves
    only its one line of error."""

    def __init__(self, label: str) -> None:
        self._bar = _progress()
        self._label = label
        self._task: TaskID | None = None

    def __call__(self, done: int, total: int | None) -> None:
        if self._task is None:
            self._bar.start()
            self._task = self._bar.add_task(self._label, total=total)
        self._bar.update(self._task, completed=done, total=total)

    def stop(self) -> None:
        # Stopping a bar that never started would still print an empty line.
        if self._bar.live.is_started:
            self._bar.stop()


class _DefaultsShown(argparse.HelpFormatter):
    """Help shows an option's default where it has one worth saying (not
    None, not an off switch), even where the help text is empty."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or not action.option_strings
        ):
            return action.help
        return f"{text} (default: %(default)s)".lstrip()


class _Parser(argparse.ArgumentParser):
    """Bad arguments end like every other bad input: one line on stderr
    naming the argument, and status 2 (argparse would print the usage too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Every command's help shows its defaults (subcommands are made
        # with this class too).
        kwargs.setdefault("formatter_class", _DefaultsShown)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(text: str) -> float:
    """A finite number: NaN and infinities compare false with everything,
    so a line or a rate holding one would silently count nothing."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _above(low: float, or_equal: bool) -> Callable[[str], float]:
    """A finite number above ``low`` (or equal to it)."""

    def parse(text: str) -> float:
        value = _number(text)
        if value < low or (value == low and not or_equal):
            want = "at least" if or_equal else "above"
            raise argparse.ArgumentTypeError(f"must be {want} {low:g}, got {text!r}")
        return value

    return parse


def _whole(low: int) -> Callable[[str], int]:
    """A whole number from ``low`` up."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {text!r}")
        return value

    return parse


_positive = _above(0.0, or_equal=False)
_non_negative = _above(0.0, or_equal=True)
_at_least_one = _whole(1)
_at_least_zero = _whole(0)


def _interval_arg(text: str) -> int:
    from camcount.config import MAX_INTERVAL_FRAMES

    value = _at_least_one(text)
    if value > MAX_INTERVAL_FRAMES:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_INTERVAL_FRAMES} frames, got {text!r}"
        )
    return value


def _floats(text: str, n: int | None = None) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r} (no nan or inf)")
    if n is not None and len(values) != n:
        raise argparse.ArgumentTypeError(f"expected {n} numbers, got {len(values)} in {text!r}")
    return values


def _line_arg(text: str) -> list[float]:
    from camcount.config import distinct_ends

    values = _floats(text, 4)
    try:
        distinct_ends(((values[0], values[1]), (values[2], values[3])))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return values


def _zone_arg(text: str) -> list[float]:
    from camcount.config import simple_polygon

    values = _floats(text)
    if len(values) < 6 or len(values) % 2:
        raise argparse.ArgumentTypeError(f"a zone needs 3 or more x,y pairs, got {text!r}")
    try:
        simple_polygon(tuple(zip(values[::2], values[1::2], strict=True)))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return values


def _grid_arg(text: str) -> tuple[int, int]:
    """``COLS,ROWS`` of a slicing grid, validated as the config's ``grid`` is."""
    from pydantic import ValidationError

    from camcount.config import SlicingConfig

    try:
        cols, rows = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected COLS,ROWS as two whole numbers, got {text!r}"
        ) from None
    if min(cols, rows) < 1:
        raise argparse.ArgumentTypeError(f"COLS and ROWS must be at least 1, got {text!r}")
    try:
        SlicingConfig(grid=(cols, rows))
    except ValidationError as exc:
        reason = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise argparse.ArgumentTypeError(reason) from None
    return cols, rows


def _validation_line(exc: ValidationError, what: str) -> CamcountError:
    """A pydantic error as the one line a bad input gets: its first problem,
    with the field path."""
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return CamcountError(f"{what}: {field + ': ' if field else ''}{first['msg']}{more}")


# ------------------------------------------------------------------ synth


def cmd_synth(args: argparse.Namespace) -> int:
    from camcount.scenes.synthetic import SceneLayout, generate_scene, write_scene
    from camcount.vision.annotate import is_video_path, video_suffixes

    if not is_video_path(args.out):
        raise CamcountError(
            f"OUT {args.out}: not a video file name; use one of {', '.join(video_suffixes())}"
        )

    layout = SceneLayout(width=args.width, height=args.height, fps=args.fps, frames=args.frames)
    try:
        scene = generate_scene(args.seed, layout, n_objects=args.objects)
    except ValueError:
        # The objects' lanes are laid out in proportion to the frame; a
        # small or narrow one leaves some of them no room.
        raise CamcountError(
            f"a {args.width}x{args.height} frame is too small for the scene; "
            "try 640x360 (the default) or larger"
        ) from None
    progress = _LateBar(f"render {Path(args.out).name}")
    try:
        with _output_named("OUT", args.out):
            video, truth, config = write_scene(scene, args.out, progress=progress)
    finally:
        progress.stop()
    err.print(
        f"wrote {video}\n      {truth} (exact boxes and counts)\n      {config} (camcount config)"
    )
    expected = scene.expected()
    if args.json:
        print(json.dumps(_synth_summary(video, truth, config, layout, expected), indent=2))
    else:
        err.print(f"expected counts: {json.dumps(expected)}")
    return 0


def _synth_summary(
    video: Path, truth: Path, config: Path, layout: SceneLayout, expected: dict[str, Any]
) -> dict[str, Any]:
    """What ``synth --json`` prints: the files written, and the counts a
    perfect run must print, as rows of ``count --json``'s shape (a zone's
    visits as its enters and exits), so the two compare as they are."""
    from camcount.events import CountRow, row_order
    from camcount.scenes.synthetic import expected_rows

    camera_id = video.stem  # the camera of the config written beside it
    rows: list[CountRow] = [
        {
            "camera_id": camera_id,
            "counter_id": counter,
            "class_name": class_name,
            "direction": direction,
            "count": n,
        }
        for (counter, class_name, direction), n in expected_rows(expected).items()
        if n
    ]
    return {
        "video": str(video),
        "truth": str(truth),
        "config": str(config),
        "frames": layout.frames,
        "fps": layout.fps,
        "frame_size": [layout.width, layout.height],
        "expected": sorted(rows, key=row_order),
    }


# ------------------------------------------------------------------ count


def _count_config(args: argparse.Namespace) -> tuple[AppConfig, CameraConfig]:
    """The config file's camera (or one made for VIDEO) with the command
    line's lines, zones and settings, validated as a whole like a file."""
    from pydantic import ValidationError

    from camcount.config import AppConfig, CameraConfig, DetectorConfig, load_config

    video = str(Path(args.video).resolve())
    if args.camera and not args.config:
        raise CamcountError(f"--camera {args.camera} needs --config FILE to choose it from")
    config = load_config(args.config) if args.config else AppConfig()
    lines = [
        {"id": f"line-{i + 1}", "points": ((v[0], v[1]), (v[2], v[3])), "band_px": args.band_px}
        for i, v in enumerate(args.line or [])
    ]
    zones = [
        {"id": f"zone-{i + 1}", "polygon": tuple(zip(v[::2], v[1::2], strict=True))}
        for i, v in enumerate(args.zone or [])
    ]
    if config.cameras:
        if args.camera:
            ids = [c.id for c in config.cameras]
            if args.camera not in ids:
                raise CamcountError(
                    f"--camera {args.camera}: {args.config} has no such camera; "
                    f"its cameras: {', '.join(ids)}"
                )
            camera = config.camera(args.camera)
        elif len(config.cameras) == 1:
            camera = config.cameras[0]
        else:
            matches = [c for c in config.cameras if Path(c.source).name == Path(video).name]
            if len(matches) != 1:
                raise CamcountError(
                    f"{args.config} has {len(config.cameras)} cameras; choose one with --camera"
                )
            camera = matches[0]
        fields = camera.model_dump()
    else:
        if not lines and not zones:
            raise CamcountError("nothing to count: give --config FILE, or --line x1,y1,x2,y2")
        fields = {"id": Path(video).stem}
    fields["source"] = video
    fields["lines"] = [*fields.get("lines", ()), *lines]
    fields["zones"] = [*fields.get("zones", ()), *zones]
    if args.fps is not None:
        fields["fps"] = args.fps
    if args.slice is not None:  # the grid replaces the config's tiling, keeps the rest
        fields["slicing"] = {**(fields.get("slicing") or {}), "grid": args.slice, "tile_px": None}
    detector = config.detector.model_dump()
    if args.model:
        detector["model"] = args.model
    if args.threshold is not None:
        detector["score_threshold"] = args.threshold
    if args.seed is not None:
        detector["options"] = {**detector["options"], "seed": args.seed}
    # model_copy would skip validation: what the command line adds is
    # checked as a config file is (ids that clash, a bad value).
    try:
        camera = CameraConfig.model_validate(fields)
    except ValidationError as exc:
        raise _validation_line(exc, f"camera {fields['id']}") from None
    try:
        chosen = DetectorConfig.model_validate(detector)
    except ValidationError as exc:
        raise _validation_line(exc, "detector") from None
    return config.model_copy(update={"cameras": (camera,), "detector": chosen}), camera


def build_detector_from(config: AppConfig) -> Detector:
    from camcount.detectors import DetectorSettings, build_detector

    d = config.detector
    settings = DetectorSettings(
        score_threshold=d.score_threshold,
        classes=d.classes,
        device=d.device,
        weights=d.weights,
        options=dict(d.options),
    )
    return build_detector(d.model, settings)


@contextlib.contextmanager
def _output_named(option: str, path: str | None, source: str | None = None) -> Iterator[None]:
    """An output that cannot be written is told by the option that named it
    (the writer knows only the path); one left empty, by the ``source``
    that gave it nothing."""
    from camcount.errors import EmptyOutputError, SourceError

    try:
        yield
    except SourceError as exc:
        if path is None or Path(exc.source) != Path(path):
            raise
        reason = exc.reason
        if isinstance(exc, EmptyOutputError) and source is not None:
            reason = f"{Path(source).name} yields no frames; nothing written"
        raise CamcountError(f"{option} {path}: {reason}") from None


def _check_out(out: str | None, source: str) -> None:
    """An annotated copy's name, checked before any work: a typo should not
    cost a whole video's counting, and the source must not be overwritten
    while it is read."""
    from camcount.vision.annotate import is_video_path, video_suffixes

    if out is None:
        return
    if not is_video_path(out):
        raise CamcountError(
            f"--out {out}: not a video file name; use one of {', '.join(video_suffixes())}"
        )
    if Path(out).resolve() == Path(source).resolve():
        raise CamcountError(f"--out {out}: that is the input itself; name another file")


def cmd_count(args: argparse.Namespace) -> int:
    from camcount.reference import count_video
    from camcount.vision.annotate import VideoWriter, draw_counted, draw_label
    from camcount.vision.processor import CameraProcessor
    from camcount.vision.video import DecodedFrame, VideoFile

    config, camera = _count_config(args)
    if args.motion and not camera.motion.enabled:
        motion = camera.motion.model_copy(update={"enabled": True})
        camera = camera.model_copy(update={"motion": motion})
    if args.interval is not None:
        interval = camera.interval.model_copy(update={"max_interval": args.interval})
        camera = camera.model_copy(update={"interval": interval})
    _check_out(args.out, camera.source)
    detector = build_detector_from(config)
    progress = _LateBar(f"count {Path(camera.source).name}")

    # The annotated copy opens with the first frame counted: its size and
    # rate are the source's after sampling, known only then. Sampling above
    # the source's own rate keeps every frame, at the source's rate.
    writer: VideoWriter | None = None

    def annotate(frame: DecodedFrame, processor: CameraProcessor) -> None:
        nonlocal writer
        if writer is None:
            with VideoFile(camera.source) as source:
                fps = min(processor.fps, source.native_fps)
            writer = VideoWriter(args.out, fps, processor.frame_size)
        image = frame.image  # a new array per decoded frame: drawn on in place
        draw_counted(
            image,
            camera,
            processor.tracks,
            processor.class_names,
            processor.totals(),
            processor.occupancy(),
        )
        caption = f"{camera.id}  frame {frame.index}"
        draw_label(image, caption, (4, image.shape[0]), (40, 40, 40))
        writer.write(image)

    try:
        with _output_named("--out", args.out):
            result = count_video(
                config,
                camera,
                detector,
                batch_size=args.batch_size,
                progress=progress,
                on_frame=annotate if args.out else None,
            )
    finally:
        progress.stop()
        if writer is not None:
            writer.release()  # it holds a frame at least: it was opened to write one
    if args.out:
        if writer is None:
            raise CamcountError(
                f"--out {args.out}: {Path(camera.source).name} yields no frames; nothing written"
            )
        err.print(f"wrote {args.out} ({writer.frames} frames)")
    if camera.motion.enabled:
        ran = ", ".join(
            f"{k} {result.gate.get(k, 0)}" for k in ("motion", "tracks", "pending", "keyframe")
        )
        err.print(
            f"motion gate: {result.gate.get('skipped', 0)} of {result.frames_processed} frames "
            f"skipped the detector (it ran for {ran})"
        )
    if camera.interval.max_interval > 1:
        ran = ", ".join(
            f"{k} {result.gate.get(k, 0)}"
            for k in ("tentative", "lost", "newcomer", "line", "zone", "interval")
        )
        err.print(
            f"detector interval {camera.interval.max_interval}: "
            f"{result.gate.get('carried', 0)} of {result.frames_processed} frames carried by "
            f"the motion model, {result.frames_detected} detected (it ran for {ran})"
        )
    if args.json:
        print(json.dumps(result.totals, indent=2))
        return 0
    table = Table(title=f"{camera.id}: {result.frames_processed} frames processed")
    for col in ("counter_id", "class_name", "direction", "count"):
        table.add_column(col, justify="right" if col == "count" else "left")
    for row in result.totals:
        table.add_row(
            str(row["counter_id"]), str(row["class_name"]), str(row["direction"]), str(row["count"])
        )
    if not result.totals:
        table.add_row("-", "-", "-", "0")
    Console().print(table)
    return 0


# ------------------------------------------------------------------ detect


def cmd_detect(args: argparse.Namespace) -> int:
    """Detections of one image or video, per frame; no tracking, no counting."""
    from contextlib import ExitStack
    from itertools import chain

    import cv2
    import numpy as np

    from camcount.config import SlicingConfig
    from camcount.detectors import DetectorSettings, FrameMeta, build_detector
    from camcount.detectors.detections import Detections
    from camcount.detectors.slicing import detect_sliced
    from camcount.errors import SourceError
    from camcount.vision.annotate import VideoWriter, draw_detections, is_image_path, write_image
    from camcount.vision.video import DecodedFrame, VideoFile

    source = str(Path(args.input))
    if not Path(source).is_file():
        raise SourceError(source, "no such file")
    threshold = {} if args.threshold is None else {"score_threshold": args.threshold}
    settings = DetectorSettings(device=args.device, weights=args.weights, **threshold)
    # The model loads only once the input and output are known to be usable: a typo
    # should not cost the seconds a model takes to load.
    detector: Detector | None = None
    names: tuple[str, ...] = ()
    tally: dict[str, int] = {}
    console = Console()

    def load() -> Detector:
        nonlocal detector, names
        detector = build_detector(args.model, settings)
        names = detector.class_names
        return detector

    def emit(index: int, dets: Detections) -> None:
        rows = [
            {"box": [round(float(v), 1) for v in box], "score": round(float(s), 4),
             "class_name": names[c]}
            for box, s, c in zip(dets.xyxy, dets.confidence, dets.class_id, strict=True)
        ]  # fmt: skip
        for row in rows:
            tally[row["class_name"]] = tally.get(row["class_name"], 0) + 1
        if args.json:
            print(json.dumps({"frame": index, "detections": rows}), flush=True)
        elif rows:
            found = "; ".join(
                f"{r['class_name']} {r['score']:.2f} ({', '.join(f'{v:.0f}' for v in r['box'])})"
                for r in rows
            )
            console.print(f"frame {index}: {found}", highlight=False, soft_wrap=True)

    slicing = SlicingConfig(grid=args.slice).settings() if args.slice else None

    def run(batch: list[DecodedFrame], size: tuple[int, int]) -> list[Detections]:
        model = detector or load()
        metas = [FrameMeta(source, f.index, size) for f in batch]
        if slicing is not None:
            images = [f.image for f in batch]
            found = detect_sliced(model, images, metas, slicing, args.batch_size)
        else:
            found = model.detect([model.prepare(f.image) for f in batch], metas)
        for frame, dets in zip(batch, found, strict=True):
            emit(frame.index, dets)
        return found

    frames = 0
    if is_image_path(source):
        decoded = cv2.imread(source, cv2.IMREAD_COLOR)
        if decoded is None:
            raise SourceError(source, "OpenCV cannot read it as an image")
        if args.out and not is_image_path(args.out):
            raise CamcountError(
                f"--out {args.out}: an image's annotated copy must be an image file"
            )
        if args.out and Path(args.out).resolve() == Path(source).resolve():
            raise CamcountError(f"--out {args.out}: that is the input itself; name another file")
        image = np.asarray(decoded, dtype=np.uint8)
        (dets,) = run([DecodedFrame(0, 0.0, image)], (image.shape[1], image.shape[0]))
        frames = 1
        if args.out:
            with _output_named("--out", args.out):
                write_image(args.out, draw_detections(image.copy(), dets, names))
    else:
        _check_out(args.out, source)
        with (
            _output_named("--out", args.out, source),
            VideoFile(source, args.fps) as video,
            ExitStack() as stack,
        ):
            progress = _LateBar(f"detect {Path(source).name}")
            stack.callback(progress.stop)
            writer = (
                stack.enter_context(
                    VideoWriter(args.out, args.fps or video.native_fps, video.frame_size)
                )
                if args.out
                else None
            )
            load()
            batch: list[DecodedFrame] = []
            for frame in chain(video, [None]):
                if frame is not None:
                    batch.append(frame)
                if batch and (frame is None or len(batch) == args.batch_size):
                    for f, dets in zip(batch, run(batch, video.frame_size), strict=True):
                        if writer is not None:
                            writer.write(draw_detections(f.image.copy(), dets, names))
                    frames += len(batch)
                    progress(batch[-1].index + 1, video.frame_count or None)
                    batch = []
    if args.out:
        err.print(f"wrote {args.out}")
    if not args.json:
        summary = ", ".join(f"{n} {c}" for c, n in sorted(tally.items())) or "nothing"
        err.print(f"{frames} frame(s): {summary} detected by {args.model}")
    return 0


# ------------------------------------------------------------------ config


def cmd_config_schema(args: argparse.Namespace) -> int:
    from camcount.config import json_schema

    print(json_schema())
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    from camcount.config import load_config

    config = load_config(args.file)
    for cam in config.cameras:
        err.print(f"camera {cam.id}: {cam.source} ({len(cam.lines)} lines, {len(cam.zones)} zones)")
    err.print(f"[green]{args.file} is valid[/green]")
    return 0


# ------------------------------------------------------------------ alerts


def cmd_alerts_rules(args: argparse.Namespace) -> int:
    """The alert rules in force in the running pipeline of CONFIG, through
    its API; ``--set FILE`` replaces them first (docs/alerts.md)."""
    import yaml
    from pydantic import ValidationError

    from camcount.alerts import remote
    from camcount.alerts.rules import AlertsConfig
    from camcount.config import load_config

    api = load_config(args.config).api
    url = args.url or remote.api_url(api)
    token = args.token or remote.admin_token(api)
    if args.rules_file is None:
        rules = remote.get_rules(url, token)
    else:
        try:
            raw = yaml.safe_load(Path(args.rules_file).read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            why = " ".join(str(exc).split())  # YAML's message spans lines
            raise CamcountError(f"{args.rules_file}: cannot read rules: {why}") from None
        if isinstance(raw, dict) and set(raw) == {"alerts"}:
            raw = raw["alerts"]  # a config file's section as it stands
        try:
            wanted = AlertsConfig.model_validate(raw)
        except ValidationError as exc:
            raise _validation_line(exc, args.rules_file) from None
        rules = remote.put_rules(url, token, wanted)
    print(yaml.safe_dump({"alerts": rules.document()}, sort_keys=False), end="")
    return 0


# ------------------------------------------------------------------ warehouse


def cmd_warehouse_dead_letters(args: argparse.Namespace) -> int:
    """List the batches the warehouse refused (and those still waiting to be
    written after an outage); with ``--replay``, insert the refused ones
    again once their cause is fixed. Rows keep their deterministic keys, so
    a replay never doubles a count."""
    from camcount.config import load_config, with_absolute_paths
    from camcount.stream.spill import SpillStore
    from camcount.warehouse import WarehouseWriter, WriterSettings, connect

    config = with_absolute_paths(load_config(args.config))
    wcfg = config.warehouse
    store = SpillStore(config.storage.root, namespace=f"warehouse/{wcfg.sink_id}")
    listed = []
    for state, files in (("dead", store.dead()), ("pending", store.pending())):
        for f in files:
            batch = store.read(f)
            if batch is None or (args.reason and batch.reason != args.reason):
                continue
            listed.append(
                {
                    "state": state,
                    "kind": f.kind,
                    "rows": batch.rows.num_rows,
                    "reason": batch.reason,
                    "detail": batch.detail,
                    "path": f.path,
                }
            )
    replayed = None
    if args.replay:
        # Opening the warehouse here fails clearly (with who holds it) while
        # a pipeline's sink owns an embedded database: stop it first.
        warehouse = connect(wcfg, role="camcount warehouse dead-letters")
        try:
            writer = WarehouseWriter(warehouse.backend, store, WriterSettings.from_config(wcfg))
            try:
                replayed = writer.replay_dead_letters(args.reason)
            finally:
                writer.close()
        finally:
            warehouse.close()
    if args.json:
        print(json.dumps({"batches": listed, "replayed_rows": replayed}, indent=2))
        return 0
    table = Table(title=f"stored batches of warehouse sink {wcfg.sink_id}")
    for col in ("state", "kind", "rows", "reason", "detail"):
        table.add_column(col, justify="right" if col == "rows" else "left")
    for b in listed:
        table.add_row(b["state"], b["kind"], str(b["rows"]), b["reason"], b["detail"][:80])
    Console().print(table)  # the answer, on stdout; what to do next, on stderr
    if replayed is not None:
        err.print(f"replayed {replayed} rows into {warehouse.url}")
    elif any(b["state"] == "dead" for b in listed):
        err.print("fix the cause, then run again with --replay")
    return 0


def cmd_warehouse_rebuild(args: argparse.Namespace) -> int:
    """Load the archive (docs/outputs.md) into the config's warehouse: a
    restore from backup that is also a replay. Into an empty warehouse it
    gives every documented query the original answer; into one that has
    rows already it adds what is missing and doubles nothing."""
    from camcount.config import load_config, with_absolute_paths
    from camcount.outputs.rebuild import rebuild_from_archive
    from camcount.warehouse import connect

    config = with_absolute_paths(load_config(args.config))
    # Opening the warehouse fails clearly (with who holds it) while a
    # pipeline's sink owns an embedded database: stop it first.
    warehouse = connect(config.warehouse, role="camcount warehouse rebuild")
    bar = _LateBar("rows")
    try:
        report = rebuild_from_archive(args.from_archive, warehouse, bar)
    finally:
        bar.stop()
        warehouse.close()
    if args.json:
        print(json.dumps({"rows": report.rows, "files": report.files, "total": report.total}))
        return 0
    table = Table(title=f"rebuilt from {args.from_archive}")
    table.add_column("kind")
    table.add_column("rows", justify="right")
    for kind, n in sorted(report.rows.items()):
        table.add_row(kind, str(n))
    Console().print(table)
    err.print(f"{report.total} rows from {report.files} files into {warehouse.url}")
    return 0


# ------------------------------------------------------------------ dead letters


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """List what the config's webhooks gave up on (posts refused with a 4xx,
    or never answered through the whole retry budget); with ``--replay``,
    post them again and delete what was delivered. Events keep their
    ``event_id``, so a receiver that dedupes takes a replay once. Exit 1
    when a replay leaves dead letters behind."""
    from camcount.config import load_config, with_absolute_paths
    from camcount.errors import ConfigError
    from camcount.outputs.webhook import WebhookSink, dead_letter_store

    config = with_absolute_paths(load_config(args.config))
    root = config.storage.root
    webhooks = _webhook_outputs(config)
    if args.output is not None:
        webhooks = [w for w in webhooks if w.label == args.output]
        if not webhooks:
            known = ", ".join(w.label for w in _webhook_outputs(config)) or "none"
            raise ConfigError(
                args.config, [f"--output: no webhook named {args.output!r} (webhooks: {known})"]
            )
    listed: list[dict[str, Any]] = []
    replays: dict[str, dict[str, Any]] = {}
    for hook in webhooks:
        store = dead_letter_store(root, hook.label)
        for f in store.dead():
            batch = store.read(f)
            if batch is None or (args.reason and batch.reason != args.reason):
                continue
            listed.append(
                {
                    "output": hook.label,
                    "kind": f.kind,
                    "events": batch.rows.num_rows,
                    "reason": batch.reason,
                    "detail": batch.detail,
                    "path": f.path,
                }
            )
        if args.replay:
            sink = WebhookSink(hook, root)
            try:
                report = sink.replay_dead_letters(args.reason)
            finally:
                sink.close()
            replays[hook.label] = {
                "delivered_events": report.delivered_events,
                "delivered_batches": report.delivered_batches,
                "left_batches": report.left_batches,
                "receiver_down": report.receiver_down,
                "last_error": report.last_error,
            }
    left = any(r["left_batches"] for r in replays.values())
    if args.json:
        print(json.dumps({"batches": listed, "replayed": replays or None}, indent=2))
        return 1 if left else 0
    table = Table(title="dead letters of the webhooks")
    for col in ("output", "kind", "events", "reason", "detail"):
        table.add_column(col, justify="right" if col == "events" else "left")
    for b in listed:
        table.add_row(b["output"], b["kind"], str(b["events"]), b["reason"], b["detail"][:80])
    Console().print(table)  # the answer, on stdout; what happened and what next, on stderr
    for name, r in replays.items():
        err.print(
            f"webhook {name}: replayed {r['delivered_events']} events "
            f"({r['delivered_batches']} batches), {r['left_batches']} batches left"
            + (f"; {r['last_error']}" if r["left_batches"] else ""),
            markup=False,
            highlight=False,
        )
    if not webhooks:
        err.print(f"{args.config} has no webhook outputs")
    elif listed and not args.replay:
        err.print("fix the cause, then run again with --replay")
    return 1 if left else 0


def _webhook_outputs(config: AppConfig) -> list[WebhookOutputConfig]:
    from camcount.outputs.settings import WebhookOutputConfig

    return [o for o in config.outputs if isinstance(o, WebhookOutputConfig)]


# ------------------------------------------------------------------ token


def cmd_token(args: argparse.Namespace) -> int:
    """A token an operator keeps (in ``CAMCOUNT_API_TOKENS`` or ``api.tokens``):
    the one a run makes for itself is gone with the run."""
    import secrets

    print(secrets.token_urlsafe(32))
    if args.scope == "read":
        err.print(
            "a read token: give it to the API in CAMCOUNT_API_READ_TOKENS (comma separated) "
            "or as {token: ..., scope: read} in api.tokens"
        )
    else:
        err.print("an admin token: give it to the API in CAMCOUNT_API_TOKENS or api.tokens")
    return 0


# ------------------------------------------------------------------ models


def cmd_models_fetch(args: argparse.Namespace) -> int:
    from camcount.detectors.fetch import fetch_ssdlite

    path = fetch_ssdlite(progress=lambda msg: err.print(msg))
    print(path)
    return 0


def cmd_models_export(args: argparse.Namespace) -> int:
    """ONNX from the person SSDLite (for onnxruntime), TorchScript from a torchvision model."""
    from camcount.detectors import DetectorSettings
    from camcount.errors import DetectorError

    kind, _, name = args.model.partition(":")
    if args.int8:
        from camcount.detectors.quantize import export_int8, int8_path

        if args.model != "ssdlite-person":
            raise DetectorError(f"int8 export covers ssdlite-person, not {args.model!r}")
        if not args.calibration:
            raise DetectorError(
                "--int8 needs --calibration: videos or images like the cameras' scenes"
            )
        out = Path(args.out) if args.out else int8_path()
        if out.suffix.lower() != ".onnx":
            raise DetectorError(f"--out must end in .onnx for an int8 model: {out}")
        path = export_int8(
            out, args.calibration, weights=args.weights, progress=lambda m: err.print(m)
        )
        hint = "ssdlite-person-int8" if path == int8_path() else f"onnx:{path}"
        err.print(f"wrote {path}; use it as --model {hint}")
        print(path)
        return 0
    if not args.out:
        raise DetectorError("--out FILE.onnx or FILE.pt is needed (only --int8 has a default)")
    out = Path(args.out)
    if out.suffix.lower() == ".onnx":
        if args.model != "ssdlite-person":
            raise DetectorError(f"ONNX export covers ssdlite-person, not {args.model!r}")
        from camcount.detectors.onnx import export_ssdlite

        err.print(f"exporting {args.model} to ONNX (takes a while)")
        path = export_ssdlite(out, weights=args.weights, opset=args.opset)
    elif out.suffix.lower() == ".pt":
        if kind != "torchvision" or not name:
            raise DetectorError(f"TorchScript export covers torchvision:NAME, not {args.model!r}")
        from camcount.detectors.torchscript import export_torchvision
        from camcount.detectors.torchvision_backend import TorchvisionDetector

        detector = TorchvisionDetector(name, DetectorSettings(device="cpu", weights=args.weights))
        path = export_torchvision(detector, out)
    else:
        raise DetectorError(f"--out must end in .onnx (onnxruntime) or .pt (TorchScript): {out}")
    backend = "onnx" if path.suffix == ".onnx" else "torchscript"
    err.print(f"wrote {path}; use it as --model {backend}:{path}")
    print(path)
    return 0


# ------------------------------------------------------------------ ray commands


def _warehouse_note(config: AppConfig) -> str | None:
    """Where the run's rows are, for analysts (password masked)."""
    from camcount.config import with_absolute_paths
    from camcount.warehouse import mask_url

    if not config.warehouse.enabled:
        return None
    url = mask_url(with_absolute_paths(config).warehouse.url)
    return f"rows are in the warehouse {url} (docs/warehouse.md, notebooks/analytics.ipynb)"


def _status_table(status: dict[str, object]) -> Table:
    table = Table(title="camcount cameras")
    for col in ("camera", "state", "fps", "processed", "dropped", "events", "counts"):
        table.add_column(col)
    for cam in status["cameras"]:  # type: ignore[attr-defined]
        counts = ", ".join(
            f"{t['counter_id']}/{t['class_name']}/{t['direction']}={t['count']}"
            for t in cam.get("totals", [])
        )
        table.add_row(
            str(cam.get("camera_id")),
            str(cam.get("state")),
            str(cam.get("fps")),
            str(cam.get("frames_processed")),
            str(cam.get("frames_dropped")),
            str(cam.get("events")),
            counts or "-",
        )
    cp = status.get("checkpoints")
    if isinstance(cp, dict):
        age = cp.get("age_s")
        table.caption = (
            f"checkpoint {cp.get('last_id') or '-'}"
            + (f", {age:.1f} s ago" if age is not None else "")
            + f"; {cp.get('completed', 0)} completed, {cp.get('failed', 0)} failed"
            + (f" — FAILING: {cp.get('last_error')}" if cp.get("failing") else "")
        )
    return table


#: How often ``camcount run`` rewrites the Prometheus target file.
METRICS_TARGETS_EVERY_S = 30.0


def cmd_run(args: argparse.Namespace) -> int:
    """Run until Ctrl-C (or SIGTERM), showing per camera progress; when every
    source is a file that has ended, close the windows and stop.

    A stop takes a final checkpoint, so nothing counted is lost; the next
    run on the same config and storage resumes from the newest checkpoint
    (file sources continue where they stopped) unless ``--fresh``.
    """
    import signal
    import time

    from rich.live import Live

    from camcount.config import load_config
    from camcount.vision.capture import is_live
    from serve_app.app import connect_ray, start_pipeline, write_metrics_targets

    config = load_config(args.config)
    if args.serve_apps:
        config = config.model_copy(
            update={"serve": config.serve.model_copy(update={"apps": args.serve_apps})}
        )
    files_only = bool(config.cameras) and not any(is_live(c.source) for c in config.cameras)
    connect_ray(
        args.address,
        cameras=len(config.cameras),
        metrics_export_port=config.metrics.export_port,
    )
    targets = config.metrics.targets_file
    targets_due = 0.0

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # the same clean stop as Ctrl-C

    signal.signal(signal.SIGTERM, terminate)
    pipeline = start_pipeline(config, shards=args.shards, fresh=args.fresh)
    resumed = pipeline.status()["checkpoints"]["resumed_from"]
    if resumed is not None:
        err.print(f"resumed from checkpoint {resumed} (--fresh starts over)")
    err.print(f"dashboard: {pipeline.dashboard_url} (API: docs/api.md, health: /healthz)")
    if pipeline.apps_mode == "declared":
        err.print("Serve apps: declared (used as found, left running on stop)")
    try:
        with Live(_status_table(pipeline.status()), console=err, refresh_per_second=2) as live:
            while True:
                if targets and time.monotonic() >= targets_due:
                    # Nodes join and leave: Prometheus follows the file.
                    try:
                        write_metrics_targets(targets)
                    except OSError as exc:  # monitoring never stops the counting
                        err.print(f"metrics.targets_file {targets}: {exc.strerror}; not written")
                        targets = None
                    targets_due = time.monotonic() + METRICS_TARGETS_EVERY_S
                time.sleep(1.0)
                status = pipeline.status()
                live.update(_status_table(status))
                cameras = status["cameras"]
                if (
                    files_only
                    and cameras
                    and all(c.get("state") in ("finished", "failed") for c in cameras)
                ):
                    pipeline.wait_files()  # every window closed and written
                    break
    except KeyboardInterrupt:
        err.print("stopping: taking a final checkpoint…")
    finally:
        outcome = pipeline.stop()
    final = outcome.get("final_checkpoint")
    if final is not None:
        err.print(f"final checkpoint {final} written; `camcount run` again resumes from it")
    if note := _warehouse_note(config):
        err.print(note, soft_wrap=True)
    return 0


def _wait_files_with_progress(pipeline: Any, config: AppConfig) -> dict[str, Any]:
    """``Pipeline.wait_files`` with a bar per camera of frames counted."""
    with _progress() as bar:
        tasks = {c.id: bar.add_task(c.id, total=None) for c in config.cameras}

        def show(cameras: list[dict[str, Any]]) -> None:
            for c in cameras:
                bar.update(tasks[c["camera_id"]], completed=c.get("frames_processed", 0))

        status: dict[str, Any] = pipeline.wait_files(on_progress=show)
    return status


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """File descriptor 1 goes to stderr meanwhile, for this process and the
    ones it starts (Ray's raylet and workers write there directly)."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def cmd_replay(args: argparse.Namespace) -> int:
    """Process every file source as fast as possible, then print the counts."""
    from camcount.config import load_config
    from serve_app.app import connect_ray, start_pipeline

    config = load_config(args.config)
    live = [c.id for c in config.cameras if "://" in c.source or c.source.isdigit()]
    if live:
        raise CamcountError(f"replay takes file sources only; live cameras: {live}")
    # Ray and its processes print to stdout (worker logs, a worker's death):
    # with --json, stdout carries the JSON alone.
    with _stdout_to_stderr() if args.json else contextlib.nullcontext():
        connect_ray(
            args.address,
            cameras=len(config.cameras),
            metrics_export_port=config.metrics.export_port,
        )
        pipeline = start_pipeline(config, shards=args.shards, api=False, fresh=not args.resume)
        try:
            status = _wait_files_with_progress(pipeline, config)
            totals = pipeline.totals()
        finally:
            pipeline.stop()
    failed = [c for c in status["cameras"] if c["state"] == "failed"]
    for cam in failed:
        err.print(f"[red]camera {cam['camera_id']} failed:[/red] {cam['detail']}")
    if args.json:
        print(json.dumps(totals, indent=2))
    else:
        Console().print(_status_table({"cameras": status["cameras"]}))
    if note := _warehouse_note(config):
        err.print(note, soft_wrap=True)  # a path to copy, unbroken
    return 1 if failed else 0


def _checkpoint_store(config_file: str) -> Any:
    from camcount.checkpoints import CheckpointStore
    from camcount.config import load_config, with_absolute_paths

    storage = with_absolute_paths(load_config(config_file)).storage
    return CheckpointStore(storage.root, storage.keep_checkpoints)


def cmd_checkpoints_list(args: argparse.Namespace) -> int:
    """Every checkpoint under the config's storage root, newest first."""
    from camcount.checkpoints.report import list_rows

    store = _checkpoint_store(args.config)
    rows = list_rows(store)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"checkpoints in {store.uri}")
    for col in ("id", "complete", "final", "created (UTC)", "parts", "bytes"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["checkpoint_id"]),
            "yes" if r["complete"] else "no (in progress or abandoned)",
            "yes" if r["final"] else "",
            str(r["created_at"] or "-"),
            str(r["parts"]),
            str(r["bytes"]),
        )
    Console().print(table)
    if not rows:
        err.print("no checkpoints: the next run starts every source from its beginning")
    return 0


def cmd_checkpoints_show(args: argparse.Namespace) -> int:
    """One complete checkpoint (the newest by default) and what it holds."""
    from camcount.checkpoints.report import show

    detail = show(_checkpoint_store(args.config), args.id)
    if args.json:
        print(json.dumps(detail, indent=2))
        return 0
    console = Console()
    final = " (final: written by a stop)" if detail["final"] else ""
    console.print(
        f"checkpoint {detail['checkpoint_id']}{final}, {detail['created_at']} UTC, "
        f"{detail['bytes']} bytes"
    )
    cams = Table(title="cameras")
    for col in ("camera", "resumes at frame", "frames counted", "events", "last frame", "ended"):
        cams.add_column(col)
    for c in detail["cameras"]:
        cams.add_row(
            c["camera_id"],
            str(c["resumes_at_frame"] if c["resumes_at_frame"] is not None else "start/now"),
            str(c["frames_processed"]),
            str(c["events"]),
            str(c["last_frame_time"] or "-"),
            str(c["ended"] or ""),
        )
    console.print(cams)
    shards = Table(title="aggregator shards")
    for col in ("shard", "cameras", "open windows", "watermark", "events counted"):
        shards.add_column(col)
    for sh in detail["shards"]:
        shards.add_row(
            sh["shard"],
            ", ".join(sh["inputs"]),
            str(sh["open_windows"]),
            str(sh["watermark"]),
            str(sh["events_counted"]),
        )
    console.print(shards)
    return 0


def cmd_checkpoints_restore(args: argparse.Namespace) -> int:
    """Roll back to an older checkpoint: the next `camcount run` resumes there."""
    from camcount.checkpoints.report import restore_to

    store = _checkpoint_store(args.config)
    if not args.yes:
        raise CamcountError(
            f"this deletes every checkpoint after {args.id} in {store.uri}; stop the "
            "pipeline first, then run again with --yes"
        )
    deleted = restore_to(store, args.id)
    err.print(
        f"the next run resumes from checkpoint {args.id}"
        + (f"; deleted {', '.join(map(str, deleted))}" if deleted else "")
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The synthetic scene in this process, then real clips through the
    whole pipeline on a local Ray cluster."""
    from camcount.demo import (
        INTEL_CREDIT,
        REAL_VIDEO_NOTE,
        real_video_config,
        run_synthetic,
        shared_data_dir,
        totals_table,
    )
    from serve_app.app import connect_ray, start_pipeline

    console = Console()
    run_synthetic(Path(args.out), console)
    data = shared_data_dir()
    if data is None:
        console.print("no ../shared/data here: the real-video part of the demo is skipped")
        return 0
    config = real_video_config(data)
    console.print("starting the pipeline on Ray (local cluster, CPU, person SSDLite)…")
    connect_ray(None)
    pipeline = start_pipeline(config, api=True)
    console.print(f"dashboard while it runs: {pipeline.dashboard_url}")
    try:
        _wait_files_with_progress(pipeline, config)
        totals = pipeline.totals()
    finally:
        pipeline.stop()
    console.print(totals_table("real videos through the pipeline", totals))
    if note := _warehouse_note(config):
        console.print(note, soft_wrap=True)  # a path to copy, unbroken
    console.print(REAL_VIDEO_NOTE)
    console.print(f"[dim]{INTEL_CREDIT}[/dim]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="camcount", description="Count people and vehicles in camera streams.")
    parser.add_argument("--version", action="version", version=f"camcount {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="render a synthetic scene with exact truth beside it")
    p.add_argument(
        "out",
        metavar="OUT",
        help="output video (.mp4, .avi...); truth and config are written beside it",
    )
    p.add_argument("--seed", type=_at_least_zero, default=0)
    p.add_argument("--frames", type=_at_least_one, default=300)
    p.add_argument("--width", type=_at_least_one, default=640)
    p.add_argument("--height", type=_at_least_one, default=360)
    p.add_argument("--fps", type=_positive, default=10.0)
    p.add_argument("--objects", type=_at_least_zero, default=12, help="how many scripted objects")
    p.add_argument(
        "--json",
        action="store_true",
        help="print the files written and the expected counts, as rows of `count --json`",
    )
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("count", help="count one video in this process (the reference run)")
    p.add_argument("video")
    p.add_argument("--config", help="YAML config; its camera (or --camera) gets VIDEO as source")
    p.add_argument("--camera", help="which camera of the config to use")
    p.add_argument(
        "--line",
        type=_line_arg,
        action="append",
        metavar="X1,Y1,X2,Y2",
        help="a counting line in pixels; crossing it left to right (walking from "
        "the first point to the second) is 'in'; repeatable",
    )
    p.add_argument(
        "--zone",
        type=_zone_arg,
        action="append",
        metavar="X,Y,X,Y,X,Y...",
        help="a zone polygon in pixels; repeatable",
    )
    p.add_argument(
        "--band-px", type=_non_negative, default=8.0, help="hysteresis band of --line lines"
    )
    p.add_argument("--model", help="detector: oracle, noisy, ssdlite-person, ...")
    p.add_argument("--threshold", type=_number, help="detector score threshold")
    p.add_argument("--seed", type=_at_least_zero, help="seed of the noisy detector")
    p.add_argument("--fps", type=_positive, help="sample the video at this rate")
    p.add_argument(
        "--slice",
        type=_grid_arg,
        metavar="COLS,ROWS",
        help="detect in a grid of overlapping tiles as well as the whole frame, for small, "
        "distant people (the camera's slicing settings, this grid); about COLS x ROWS + 1 "
        "times the model's time per frame",
    )
    p.add_argument("--batch-size", type=_at_least_one, default=8)
    p.add_argument(
        "--motion",
        action="store_true",
        help="skip the detector on frames where nothing moves and nothing is tracked",
    )
    p.add_argument(
        "--interval",
        type=_interval_arg,
        metavar="N",
        help="run the detector at most N frames apart, carrying tracks by their motion "
        "model between, but on every frame where a track is near a line or zone border, "
        "new or lost, or something new moves (1: every frame)",
    )
    p.add_argument(
        "--out",
        metavar="FILE.mp4",
        help="also write the video as counted: every frame (after --fps sampling) with the "
        "tracked boxes and ids, the lines and zones, each line's in/out counts and each "
        "zone's occupancy",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one object per (camera_id, counter_id, class_name, direction) with its count",
    )
    p.set_defaults(func=cmd_count)

    p = sub.add_parser("detect", help="print (and draw) a model's detections on an image or video")
    p.add_argument("input", metavar="IMAGE_OR_VIDEO")
    p.add_argument(
        "--model",
        default="ssdlite-person",
        help="ssdlite-person, torchvision:NAME, torchscript:PATH, onnx:PATH, ...",
    )
    p.add_argument("--threshold", type=_number, help="score threshold (default 0.3)")
    p.add_argument("--weights", help="weights file or name, for models that take one")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--fps", type=_positive, help="sample a video at this rate")
    p.add_argument("--batch-size", type=_at_least_one, default=8)
    p.add_argument(
        "--slice",
        type=_grid_arg,
        metavar="COLS,ROWS",
        help="detect in a grid of overlapping tiles as well as the whole frame, for small, "
        "distant people (merged as a camera's slicing does); about COLS x ROWS + 1 "
        "times the model's time per frame",
    )
    p.add_argument("--out", help="write the image or video with the boxes drawn")
    p.add_argument(
        "--json",
        action="store_true",
        help='one JSON line per frame: {"frame", "detections": [{"box", "score", "class_name"}]}',
    )
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("run", help="run the pipeline on Ray until Ctrl-C, with live progress")
    p.add_argument("config")
    p.add_argument("--address", help="join this Ray cluster instead of starting one")
    p.add_argument("--shards", type=_at_least_one, default=1, help="aggregator shards")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="start every source over, deleting the checkpoints (default: resume from them)",
    )
    p.add_argument(
        "--serve-apps",
        choices=("auto", "owned", "declared"),
        help="who owns the Serve apps, over the config's serve.apps (cluster/README.md)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("replay", help="process file sources on Ray as fast as possible")
    p.add_argument("config")
    p.add_argument("--address", help="join this Ray cluster instead of starting one")
    p.add_argument("--shards", type=_at_least_one, default=1, help="aggregator shards")
    p.add_argument("--json", action="store_true", help="print the final counts like `count --json`")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint (default: start over)",
    )
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("demo", help="count a synthetic scene and a real video, with truth beside")
    p.add_argument("--out", default="var/demo", help="where the synthetic scene is written")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("config-schema", help="print the JSON schema of the config file")
    p.set_defaults(func=cmd_config_schema)

    p = sub.add_parser("config-check", help="validate a config file")
    p.add_argument("file")
    p.set_defaults(func=cmd_config_check)

    p = sub.add_parser("warehouse", help="inspect and repair what the warehouse sink stored")
    wsub = p.add_subparsers(dest="warehouse_command", required=True, metavar="ACTION")
    w = wsub.add_parser(
        "dead-letters",
        help="list refused and pending batches; --replay inserts refused ones again",
    )
    w.add_argument("config", help="the config file (its storage root and warehouse)")
    w.add_argument("--replay", action="store_true", help="insert the refused batches again")
    w.add_argument("--reason", help="only batches set aside for this reason (e.g. rejected)")
    w.add_argument("--json", action="store_true", help="print the list as JSON")
    w.set_defaults(func=cmd_warehouse_dead_letters)
    w = wsub.add_parser(
        "rebuild",
        help="load the archive of raw events into the warehouse (restore, replay)",
    )
    w.add_argument("config", help="the config file (its warehouse)")
    w.add_argument(
        "--from-archive",
        required=True,
        metavar="URI",
        help="the archive output's URI (file://, s3://, gs://; docs/outputs.md)",
    )
    w.add_argument("--json", action="store_true", help="print rows per kind as JSON")
    w.set_defaults(func=cmd_warehouse_rebuild)

    p = sub.add_parser(
        "dead-letters",
        help="list what the webhooks gave up on; --replay posts it again",
    )
    p.add_argument("config", help="the config file (its storage root and outputs)")
    p.add_argument("--replay", action="store_true", help="post the dead letters again")
    p.add_argument("--output", metavar="NAME", help="only the webhook of this name")
    p.add_argument(
        "--reason", help="only batches set aside for this reason (rejected, unavailable)"
    )
    p.add_argument("--json", action="store_true", help="print the list (and replays) as JSON")
    p.set_defaults(func=cmd_dead_letters)

    p = sub.add_parser(
        "checkpoints", help="list, inspect and roll back the checkpoints a run resumes from"
    )
    csub = p.add_subparsers(dest="checkpoints_command", required=True, metavar="ACTION")
    c = csub.add_parser("list", help="every checkpoint under the storage root, newest first")
    c.add_argument("config", help="the config file (its storage root)")
    c.add_argument("--json", action="store_true", help="print the list as JSON")
    c.set_defaults(func=cmd_checkpoints_list)
    c = csub.add_parser("show", help="what a complete checkpoint holds (default: the newest)")
    c.add_argument("config", help="the config file (its storage root)")
    c.add_argument(
        "id", type=_at_least_zero, nargs="?", help="checkpoint id (default: the newest complete)"
    )
    c.add_argument("--json", action="store_true", help="print it as JSON")
    c.set_defaults(func=cmd_checkpoints_show)
    c = csub.add_parser(
        "restore", help="make an older checkpoint the one the next run resumes from"
    )
    c.add_argument("config", help="the config file (its storage root)")
    c.add_argument("id", type=_at_least_zero, help="the complete checkpoint to go back to")
    c.add_argument("--yes", action="store_true", help="delete the newer checkpoints")
    c.set_defaults(func=cmd_checkpoints_restore)

    p = sub.add_parser("alerts", help="the alert rules of a running pipeline, through its API")
    asub = p.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    a = asub.add_parser("rules", help="print the rules in force; --set FILE replaces them")
    a.add_argument("config", help="the running pipeline's config file (its api: section)")
    a.add_argument(
        "--set",
        dest="rules_file",
        metavar="FILE",
        help="YAML or JSON rules in the config's alerts: format ({rules: [...]})",
    )
    a.add_argument("--url", help="the API's address (default: from the config's api:)")
    a.add_argument("--token", help="an admin token (default: the config's, or CAMCOUNT_API_TOKENS)")
    a.set_defaults(func=cmd_alerts_rules)

    p = sub.add_parser("token", help="print a new random API token (see README, API tokens)")
    p.add_argument(
        "--scope",
        choices=("admin", "read"),
        default="admin",
        help="read: live updates and every GET; admin: also adds, changes and removes cameras",
    )
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("models", help="manage detector weights")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    m = msub.add_parser("fetch", help="download and convert the person SSDLite weights")
    m.set_defaults(func=cmd_models_fetch)
    m = msub.add_parser(
        "export", help="write a model as ONNX (ssdlite-person) or TorchScript (torchvision:...)"
    )
    m.add_argument("--model", default="ssdlite-person", help="ssdlite-person or torchvision:NAME")
    m.add_argument(
        "--out", help="FILE.onnx or FILE.pt (with --int8: default the ssdlite-person-int8 model)"
    )
    m.add_argument(
        "--int8",
        action="store_true",
        help="quantize the person SSDLite's backbone to int8 for CPUs, heads and box decoding "
        "kept float (onnxruntime; needs --calibration)",
    )
    m.add_argument(
        "--calibration",
        nargs="+",
        metavar="PATH",
        help="videos, images or folders of them whose scenes the cameras see",
    )
    m.add_argument("--weights", help="weights of the model (default: its usual place)")
    m.add_argument("--opset", type=_at_least_one, help="ONNX opset (default: the exporter's)")
    m.set_defaults(func=cmd_models_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except CamcountError as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except BrokenPipeError:
        # The reader of our output went away (``| head``): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
