"""``make serve``: the pipeline, the API and the dashboard, for people who watch.

Plays the demo's sample videos (``../shared/data``, or
``CAMCOUNT_SHARED_DATA``) as cameras, looped at their own speed, with the
person detector; without them, two synthetic scenes with the exact
``oracle`` detector. ``--config FILE`` runs a config file's cameras
instead. Prints the dashboard's URL and runs until Ctrl-C (or
``--duration`` seconds).

    python -m serve_app.watch [--config FILE] [--port 8000] [--duration S] [--synthetic]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from camcount.config import AppConfig, DetectorConfig, load_config

SYNTHETIC_SEEDS = (1, 2)
OUT_DIR = Path("var/serve")


def synthetic_config(out_dir: Path = OUT_DIR) -> AppConfig:
    """Two rendered scenes (written once) with the exact oracle detector."""
    from camcount.scenes.synthetic import generate_scene, truth_path, write_scene

    out_dir.mkdir(parents=True, exist_ok=True)
    cameras = []
    for seed in SYNTHETIC_SEEDS:
        video = out_dir / f"scene{seed}.mp4"
        if not truth_path(video).exists():
            write_scene(generate_scene(seed), video)
        cam = load_config(video.with_suffix(".yaml")).cameras[0]
        cameras.append(cam.model_copy(update={"id": f"scene-{seed}"}))
    return AppConfig(cameras=tuple(cameras), detector=DetectorConfig(model="oracle"))


def sample_config(synthetic: bool) -> tuple[AppConfig, str]:
    from camcount.demo import INTEL_CREDIT, real_video_config, shared_data_dir

    data = None if synthetic else shared_data_dir()
    if data is None:
        return synthetic_config(), "synthetic scenes (oracle detector)"
    return real_video_config(data), f"sample videos from {data} (person SSDLite). {INTEL_CREDIT}"


def looped(config: AppConfig) -> AppConfig:
    """Every file camera plays over and over at its own speed, like a live one."""
    cams = tuple(
        c if "://" in c.source else c.model_copy(update={"loop": True, "realtime": True})
        for c in config.cameras
    )
    return config.model_copy(update={"cameras": cams})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve_app.watch", description=__doc__)
    parser.add_argument("--config", help="a config file (default: the sample videos)")
    parser.add_argument("--port", type=int, help="HTTP port (default: the config's, 8000)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--synthetic", action="store_true", help="synthetic scenes only")
    args = parser.parse_args(argv)

    if args.config:
        config, what = load_config(args.config), args.config
    else:
        config, what = sample_config(args.synthetic)
    config = looped(config)
    if args.port:
        config = config.model_copy(
            update={"api": config.api.model_copy(update={"port": args.port})}
        )

    import ray

    from serve_app.app import connect_ray, start_pipeline

    print(f"starting the pipeline on {what}…", file=sys.stderr, flush=True)
    connect_ray(None)
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # keep the URL in sight
    pipeline = start_pipeline(config)
    try:
        print(f"\ndashboard: {pipeline.dashboard_url}", flush=True)
        print(f"API docs:  {pipeline.api_url}/openapi.json (docs/api.md)", flush=True)
        print("running until Ctrl-C", file=sys.stderr, flush=True)
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping…", file=sys.stderr)
    finally:
        pipeline.stop()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
