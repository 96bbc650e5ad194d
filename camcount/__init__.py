"""camcount: count people and vehicles in many camera streams.

The core package: configuration, geometry, tracking, counting, windows,
events and their schemas. It never imports Ray.
"""

from camcount.config import AppConfig, CameraConfig, load_config
from camcount.counting import LineCounter
from camcount.detections import Detections
from camcount.events import Crossing, Direction, WindowRow, ZoneSample, ZoneTransition, ZoneVisit
from camcount.geometry import Anchor, Polygon, Segment
from camcount.processor import CameraProcessor
from camcount.tracking import Tracker, TrackerSettings, TrackFrame
from camcount.windows import WatermarkClock, WindowCounts
from camcount.zones import ZoneCounter

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
