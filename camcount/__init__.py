"""camcount: count people and vehicles in many camera streams.

The core package: configuration, geometry, tracking, counting, windows,
events and their schemas. It never imports Ray.
"""

from camcount.config import AppConfig, CameraConfig, load_config
from camcount.detectors.detections import Detections
from camcount.events import Crossing, Direction, WindowRow, ZoneSample, ZoneTransition, ZoneVisit
from camcount.geometry import Anchor, Polygon, Segment
from camcount.stream.windows import WatermarkClock, WindowCounts
from camcount.vision.counting import LineCounter
from camcount.vision.processor import CameraProcessor
from camcount.vision.tracking import Tracker, TrackerSettings, TrackFrame
from camcount.vision.zones import ZoneCounter

__version__ = "0.1.0"

__all__ = [
    "Anchor",
    "AppConfig",
    "CameraConfig",
    "CameraProcessor",
    "Crossing",
    "Detections",
    "Direction",
    "LineCounter",
    "Polygon",
    "Segment",
    "TrackFrame",
    "Tracker",
    "TrackerSettings",
    "WatermarkClock",
    "WindowCounts",
    "WindowRow",
    "ZoneCounter",
    "ZoneSample",
    "ZoneTransition",
    "ZoneVisit",
    "load_config",
]
