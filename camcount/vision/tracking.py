"""A multi-object tracker of the ByteTrack family, vectorised with numpy.

Per frame (``Tracker.update``):

1. Predict every track forward with its Kalman filter.
2. One assignment by overlap. Confirmed tracks (tracked and lost) against
   high-confidence detections by buffered IoU (C-BIoU): both boxes of a pair
   are widened by ``match_box_buffer``, and a lost track's further in
   proportion to the frames it has been unseen, since its prediction grows
   less certain with every frame; jittery detectors and irregular motion then
   break tracks far less often. In the same assignment, tentative tracks seen
   more than once against high detections by IoU (``tentative_match_iou``),
   and the pairs of step 3.
3. Also in step 2's assignment: confirmed tracks against low-confidence
   detections by IoU (``low_match_iou``), which keeps a track alive through
   a partial occlusion; a lost track's box widened with the frames unseen
   as against high ones (without ``match_box_buffer``), so a weak box finds
   a track after a gap as a strong one would. In one assignment with the high ones, a track takes
   the box that overlaps its prediction best, whatever its score: it never
   takes the strong detection of someone beside it while its own, weak one
   is there (a person half hidden or turned away just as a neighbour steps
   out beside them; taking the neighbour's box would carry the track off on
   the neighbour's path), and a lost track's widened box never takes the
   detection of someone beside it whose own track sits right on it. A weak
   box wins only at the high ``low_match_iou`` gate, i.e. where it sits
   nearly on the prediction.
4. Match the still unmatched confirmed tracks to the high detections left by
   centre distance from the predicted centre, of the track's class and of a
   size within ``max_size_ratio``: within ``match_distance`` times the
   track's own motion since it was last seen (its speed from the filter,
   counted at most one box diagonal per frame). Where a box moves its own
   size or more between frames (fast objects, low sampling rates) no IoU
   survives, but the prediction from the track's velocity still lands near
   the detection; a pair is preferred the closer it lies to the prediction,
   so a match against the track's velocity loses to one along it; and for a
   slow track the gate shrinks to nothing, so no track takes a neighbour's
   detection by distance.
5. Match tentative tracks to the detections left: high ones by IoU, low ones
   by IoU (a tentative box unseen for a frame widened as a lost one's), then
   by distance as in step 4 (a track seen once has no velocity yet: its
   motion is taken at the most counted there). Last, a track seen once at
   ``new_track_threshold`` or more may match a high detection up to
   ``birth_distance`` box diagonals away per frame since, and the two
   sightings give it its velocity: an object moving 200 to 300 px per frame
   starts a track.
6. Bookkeeping. Unmatched tracked tracks become lost; they are kept for
   ``lost_track_buffer_s`` of event time, so an object found again behind an
   occluder keeps its id. A tentative track survives ``tentative_max_misses``
   frames without a detection. It is confirmed, and only then gets its public
   id, after ``min_hits`` consecutive sightings matched by overlap to
   confident detections, the first at ``new_track_threshold`` or more and the
   others high (its *chain*); or else after ``weak_min_hits`` sightings of any
   kind. A match by distance restarts the chain: two boxes apart may be two
   things, so a fast object confirms at its third sighting, once the third
   box lands where the first two said it would.
7. Start tentative tracks from the detections left: high ones at
   ``new_track_threshold`` or more start a chain; below it they start weak
   tracks, which confirm only after ``weak_min_hits`` consistent sightings.
   Low ones start *faint* tracks, unless they lie on a box of this frame
   that a track took or that is strong (IoU ``tentative_match_iou`` or
   more: an upper body, a second guess, which moves with its object and so
   would pass any test of motion): a person far away or half hidden may be
   boxed only weakly all the way across a line, and a track born only at
   the first strong box would start past it. A faint track takes only low
   detections, by overlap (step 5): never a high one, which starts its own
   track as before, so a sure detection is tracked as it always was; and
   never by distance, since a weak box away from it is as likely a
   neighbour's or clutter. It survives ``faint_max_gap_s`` unseen (a weak
   box comes and goes), and confirms after ``weak_min_hits`` sightings only
   once it has shown it moves as a walker or a vehicle does: its box has
   travelled ``faint_min_travel`` of its height from its first sighting, at
   ``faint_min_speed`` heights per second or more on average. A bin or a
   poster scored weakly in every frame stays where it is, so it never
   becomes a track that zones would count as occupancy; its detector
   jitter moves its box a few hundredths of its height, far below the
   travel; and a slow drift of a box (a shadow lengthening) is far below a
   walker's speed (about 0.8 heights per second; half of it is a stroll).

A track's class is a confidence-weighted vote over its whole life, so one
misclassified frame never changes it. Ids are per instance and part of the
snapshot: two cameras in one process never share ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import numpy.typing as npt

from camcount.detectors.detections import Detections
from camcount.errors import StateError
from camcount.vision import kalman
from camcount.vision.assignment import (
    all_pairs,
    assign_pairs,
    iou_matrix,
    near_pairs,
    overlap_candidates,
    pair_iou,
)

STATE_FORMAT_VERSION = 1

TENTATIVE, TRACKED, LOST = 0, 1, 2

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Frame counts come from event times, which carry rounding: a frame is late
# or missing only past half a frame.
_HALF_FRAME = 0.5


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    high_threshold: float = 0.5
    low_threshold: float = 0.1
    new_track_threshold: float = 0.6
    match_iou: float = 0.2
    low_match_iou: float = 0.5
    tentative_match_iou: float = 0.3
    min_hits: int = 2
    lost_track_buffer_s: float = 3.0
    match_box_buffer: float = 0.15
    lost_box_growth_per_frame: float = 0.1
    lost_box_growth_max: float = 0.5
    fps: float = 10.0
    # Added after the fields above; new fields go last (see __setstate__).
    tentative_max_misses: int = 1
    weak_min_hits: int = 4
    match_distance: float = 0.5
    birth_distance: float = 3.0
    max_size_ratio: float = 1.5
    faint_min_travel: float = 0.25
    faint_min_speed: float = 0.3
    faint_max_gap_s: float = 0.3

    def __post_init__(self) -> None:
        if not 0 <= self.low_threshold <= self.high_threshold <= 1:
            raise ValueError(
                "need 0 <= low_threshold <= high_threshold <= 1, got "
                f"{self.low_threshold}, {self.high_threshold}"
            )
        if self.min_hits < 1:
            raise ValueError(f"min_hits must be >= 1, got {self.min_hits}")
        if self.weak_min_hits < 1:
            raise ValueError(f"weak_min_hits must be >= 1, got {self.weak_min_hits}")
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.lost_track_buffer_s < 0:
            raise ValueError(f"lost_track_buffer_s must be >= 0, got {self.lost_track_buffer_s}")
        if self.tentative_max_misses < 0:
            raise ValueError(f"tentative_max_misses must be >= 0, got {self.tentative_max_misses}")
        if self.match_distance < 0 or self.birth_distance < 0:
            raise ValueError(
                "match_distance and birth_distance must be >= 0, got "
                f"{self.match_distance}, {self.birth_distance}"
            )
        if self.max_size_ratio < 1:
            raise ValueError(f"max_size_ratio must be >= 1, got {self.max_size_ratio}")
        if min(self.faint_min_travel, self.faint_min_speed, self.faint_max_gap_s) < 0:
            raise ValueError(
                "faint_min_travel, faint_min_speed and faint_max_gap_s must be >= 0, got "
                f"{self.faint_min_travel}, {self.faint_min_speed}, {self.faint_max_gap_s}"
            )

    @property
    def weak_hits_needed(self) -> int:
        """A weak track never confirms sooner than a confident one."""
        return max(self.weak_min_hits, self.min_hits)

    def __getstate__(self) -> list[object]:
        return [getattr(self, f.name) for f in fields(self)]

    def __setstate__(self, state: list[object]) -> None:
        """Settings pickled before the later fields existed (checkpoints of
        an older release) hold fewer values: the missing ones, always the
        last, take their defaults."""
        for i, f in enumerate(fields(self)):
            object.__setattr__(self, f.name, state[i] if i < len(state) else f.default)


@dataclass(frozen=True, slots=True)
class TrackFrame:
    """What the tracker says about one frame; the counters' only input.

    ``detections`` holds the confirmed tracks matched in this frame (Kalman
    smoothed boxes, voted class, public id); ``lost_ids`` the confirmed tracks
    kept while unseen; ``removed_ids`` those dropped for good in this frame,
    so counters can free their memory of them. ``observed_xyxy`` holds, row
    for row, the detector's own box each track matched (None: the same as
    the smoothed ones): whether the frame edge cuts an object shows there,
    while the smoothed box of one coming in from the edge lags inside it.
    ``born_ids`` are the tracks confirmed in this frame and ``born_xyxy``
    the detector's box where each was first seen: a track is confirmed only
    after a few sightings, and one that crossed a line meanwhile (fast, or
    first seen close to it) must still count.
    """

    frame_index: int
    frame_time: float
    detections: Detections
    lost_ids: IntArray
    removed_ids: IntArray
    observed_xyxy: npt.NDArray[np.float32] | None = None
    born_ids: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    born_xyxy: npt.NDArray[np.float32] = field(
        default_factory=lambda: np.zeros((0, 4), dtype=np.float32)
    )

    @property
    def observed(self) -> npt.NDArray[np.float32]:
        """The detector's boxes of the rows of ``detections``."""
        return self.detections.xyxy if self.observed_xyxy is None else self.observed_xyxy


@dataclass(frozen=True, slots=True)
class Forecast:
    """Every track (confirmed or not) where its motion model puts it at a
    given time, with no detection to correct it, row for row with the
    tracker's tracks.

    ``spread_px`` is one standard deviation of the predicted position of
    the box's anchor points (its centre's, plus half its height's for the
    anchors on its edges), grown by the filter with every frame since the
    track's last update; ``speed_px`` its speed in pixels per
    frame of the nominal rate; ``frames_unseen`` the frames since it was
    last matched to a detection.
    """

    xyxy: FloatArray
    spread_px: FloatArray
    speed_px: FloatArray
    frames_unseen: FloatArray
    status: npt.NDArray[np.int8]


@dataclass(frozen=True)
class TrackerState:
    """A copy of the tracker's state; plain arrays and numbers only.

    ``chain``, ``first_xyxy``, ``first_seen`` and ``faint`` were added after
    the first release of this format: a state saved before them has none
    (None here). ``Tracker.restore`` rebuilds the chain from ``hits``, which
    is what every tentative track's chain was then, knows no first sighting
    (NaN) of the tracks then tentative, and none of them was faint.
    """

    format_version: int
    next_id: int
    next_key: int
    last_time: float | None
    keys: IntArray
    ids: IntArray
    status: npt.NDArray[np.int8]
    hits: IntArray
    last_seen: FloatArray
    mean: FloatArray
    cov: FloatArray
    class_votes: FloatArray
    settings: TrackerSettings = field(default_factory=TrackerSettings)
    chain: IntArray | None = None
    first_xyxy: npt.NDArray[np.float32] | None = None
    first_seen: FloatArray | None = None
    faint: BoolArray | None = None


@dataclass(slots=True)
class _Matches:
    """Steps 2 to 5's outcome, filled stage by stage: per track the
    detection matched (-1 for none) and whether by distance rather than
    overlap; per detection whether a track took it."""

    det: IntArray
    by_distance: BoolArray
    taken: BoolArray

    def add(self, tracks: IntArray, dets: IntArray, by_distance: bool) -> None:
        self.det[tracks] = dets
        self.by_distance[tracks] = by_distance
        self.taken[dets] = True


class Tracker:
    """Keeps every live track as one row in a set of parallel arrays."""

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self._next_id = 1
        self._next_key = 0
        self._last_time: float | None = None
        self._keys = np.zeros(0, dtype=np.int64)  # internal, every track
        self._ids = np.zeros(0, dtype=np.int64)  # public, 0 while tentative
        self._status = np.zeros(0, dtype=np.int8)
        self._hits = np.zeros(0, dtype=np.int64)
        self._chain = np.zeros(0, dtype=np.int64)  # see step 6; 0 once broken
        self._last_seen = np.zeros(0, dtype=np.float64)
        self._mean = np.zeros((0, 8))
        self._cov = np.zeros((0, 3, 4))  # kalman's block form
        self._votes = np.zeros((0, 1))
        self._first = np.zeros((0, 4), dtype=np.float32)  # where first seen
        self._first_seen = np.zeros(0, dtype=np.float64)  # when first seen
        self._faint = np.zeros(0, dtype=bool)  # started by a low detection

    @property
    def track_count(self) -> int:
        return len(self._keys)

    def forecast(self, frame_time: float) -> Forecast:
        """Where the tracks are expected at ``frame_time`` by their motion
        model alone; the tracker is not changed. A caller deciding whether a
        frame needs the detector asks this (``camcount.vision.interval``)."""
        s = self.settings
        dt = 0.0 if self._last_time is None else max(0.0, (frame_time - self._last_time) * s.fps)
        mean, cov = kalman.predict_blocks(self._mean, self._cov, dt)
        std = np.sqrt(np.maximum(cov[:, 0], 0.0))  # (T, 4): cx, cy, aspect, height
        return Forecast(
            xyxy=kalman.xyah_to_xyxy(mean[:, :4]),
            spread_px=np.hypot(std[:, 0], std[:, 1]) + std[:, 3] / 2,
            speed_px=np.hypot(mean[:, 4], mean[:, 5]),
            frames_unseen=(frame_time - self._last_seen) * s.fps,
            status=self._status.copy(),
        )

    def predicted(self, forecast: Forecast) -> Detections:
        """The confirmed tracks of ``forecast`` (this tracker's) as
        detections at their predicted boxes, with their voted class."""
        rows = (forecast.status == TRACKED).nonzero()[0]
        return Detections(
            forecast.xyxy[rows].astype(np.float32),
            np.ones(rows.size, dtype=np.float32),
            self._votes[rows].argmax(axis=1).astype(np.int64),
            self._ids[rows],
        )

    def update(self, detections: Detections, frame_index: int, frame_time: float) -> TrackFrame:
        s = self.settings
        # Step 1: predict.
        if self._last_time is not None and frame_time < self._last_time:
            raise ValueError(f"frame time went backwards: {self._last_time} -> {frame_time}")
        dt = 1.0 if self._last_time is None else (frame_time - self._last_time) * s.fps
        self._last_time = frame_time
        self._mean, self._cov = kalman.predict_blocks(self._mean, self._cov, dt)
        self._mean[self._status == LOST, 7] = 0.0

        # Steps 2 to 5.
        conf = detections.confidence
        boxes = detections.xyxy.astype(np.float64)
        is_high = conf >= s.high_threshold
        is_low = (conf >= s.low_threshold) & (conf < s.high_threshold)
        found = self._match(boxes, is_high, is_low, detections.class_id, frame_time)
        det_of_track = found.det
        # 1-D masks: .nonzero()[0] is np.flatnonzero without its Python wrapper.
        matched = (det_of_track >= 0).nonzero()[0]
        det_idx = det_of_track[matched]
        used = np.zeros(len(detections), dtype=bool)
        used[det_idx] = True
        high_left = (is_high & ~used).nonzero()[0]
        low_left = (is_low & ~used).nonzero()[0]
        if low_left.size:
            # A low box on one a track took, or on a strong one, is part of
            # that object (an upper body, a second guess), not someone new.
            taken = (used | is_high).nonzero()[0]
            if taken.size:
                overlap = iou_matrix(boxes[low_left], boxes[taken]).max(axis=1)
                low_left = low_left[overlap < s.tentative_match_iou]

        # Step 6: bookkeeping of the matched tracks.
        if matched.size:
            self._matched(matched, boxes[det_idx], conf[det_idx], found.by_distance, frame_time)
            self._vote(matched, detections.class_id[det_idx], conf[det_idx])
            tentative = self._status[matched] == TENTATIVE
            ready = (self._chain[matched] >= s.min_hits) | (
                (self._hits[matched] >= s.weak_hits_needed)
                & (~self._faint[matched] | self._moving(matched, boxes[det_idx], frame_time))
            )
            newly = matched[tentative & ready]
            self._ids[newly] = np.arange(self._next_id, self._next_id + newly.size)
            self._next_id += int(newly.size)
            self._status[matched[~tentative]] = TRACKED
            self._status[newly] = TRACKED
            born_ids, born_xyxy = self._ids[newly], self._first[newly]
        else:
            born_ids, born_xyxy = self._ids[:0], self._first[:0]

        # Step 6, the unmatched: confirmed tracks are lost; drop the expired
        # ones and the tentative tracks unseen for too many frames.
        unmatched = det_of_track < 0
        self._status[unmatched & (self._status == TRACKED)] = LOST
        expired = (self._status == LOST) & (frame_time - self._last_seen > s.lost_track_buffer_s)
        waiting = unmatched & (self._status == TENTATIVE)
        self._chain[waiting] = 0
        unseen_frames = (frame_time - self._last_seen[waiting]) * s.fps
        dropped_tentative = np.zeros_like(waiting)
        max_misses = np.where(
            self._faint[waiting],
            max(s.tentative_max_misses, s.faint_max_gap_s * s.fps),
            s.tentative_max_misses,
        )
        dropped_tentative[waiting] = unseen_frames > max_misses + _HALF_FRAME
        removed_ids = self._ids[expired]
        keep = ~(expired | dropped_tentative)

        out_rows = matched[self._status[matched] == TRACKED]
        out_det = det_of_track[out_rows]
        output = Detections(
            kalman.xyah_to_xyxy(self._mean[out_rows, :4]).astype(np.float32),
            conf[out_det].astype(np.float32),
            self._votes[out_rows].argmax(axis=1).astype(np.int64),
            self._ids[out_rows],
        )
        observed = detections.xyxy[out_det]
        lost_ids = self._ids[keep & (self._status == LOST)]
        if not keep.all():
            self._keep(keep)

        # Step 7: new tentative tracks from the high detections left.
        if high_left.size:
            strong = conf[high_left] >= s.new_track_threshold
            self._start(detections, high_left, strong, frame_time)
            if s.min_hits <= 1 and strong.any():
                fresh = high_left[strong]
                new_rows = len(self._keys) - high_left.size + strong.nonzero()[0]
                self._confirm(new_rows)
                output = Detections.concatenate(
                    [
                        output,
                        Detections(
                            detections.xyxy[fresh],
                            conf[fresh],
                            detections.class_id[fresh],
                            self._ids[new_rows].copy(),
                        ),
                    ]
                )
                observed = np.concatenate([observed, detections.xyxy[fresh]])

        # Step 7, faint tracks from the low detections left; a faint track
        # never confirms at its first sighting, whatever ``min_hits``.
        if low_left.size:
            self._start(detections, low_left, np.zeros(low_left.size, dtype=bool), frame_time)
            self._faint[-low_left.size :] = True

        # Fancy indexing above already made these copies of the state.
        return TrackFrame(
            frame_index, frame_time, output, lost_ids, removed_ids, observed, born_ids, born_xyxy
        )

    def _matched(
        self,
        rows: IntArray,
        boxes: FloatArray,
        conf: npt.NDArray[np.float32],
        by_distance: BoolArray,
        frame_time: float,
    ) -> None:
        """Step 6 for the tracks matched this frame: filter update, hits and
        chains."""
        s = self.settings
        z = kalman.xyxy_to_xyah(boxes)
        mean, cov = kalman.update_blocks(self._mean[rows], self._cov[rows], z)
        # A track seen once and now matched by distance has moved its own size
        # or more in a frame: its velocity comes from the two sightings.
        first = by_distance[rows] & (self._hits[rows] == 1)
        if first.any():
            elapsed = (frame_time - self._last_seen[rows[first]]) * s.fps
            mean[first], cov[first] = kalman.initiate_moving_blocks(
                self._mean[rows[first], :4], z[first], elapsed
            )
        self._mean[rows], self._cov[rows] = mean, cov
        # The chain goes on through a confident match by overlap; any other
        # match starts a new one if the detection could have started a track.
        chain = self._chain[rows]
        goes_on = (chain > 0) & ~by_distance[rows] & (conf >= s.high_threshold)
        starts = (conf >= s.new_track_threshold).astype(np.int64)
        self._chain[rows] = np.where(goes_on, chain + 1, starts)
        self._hits[rows] += 1
        self._last_seen[rows] = frame_time

    def _moving(self, rows: IntArray, boxes: FloatArray, frame_time: float) -> BoolArray:
        """Whether each track's box (``boxes``, this frame's) has moved as
        a walker or a vehicle does since its first sighting: far enough for
        its size, and fast enough for the time it took."""
        s = self.settings
        first = self._first[rows].astype(np.float64)
        travel = np.hypot(
            (boxes[:, 0] + boxes[:, 2] - first[:, 0] - first[:, 2]) / 2,
            (boxes[:, 1] + boxes[:, 3] - first[:, 1] - first[:, 3]) / 2,
        )
        height = np.maximum((boxes[:, 3] - boxes[:, 1] + first[:, 3] - first[:, 1]) / 2, 1e-6)
        elapsed_s = np.maximum(frame_time - self._first_seen[rows], 1e-9)
        heights = travel / height
        # NaN (a first sighting a restored old state never knew) compares False.
        moved: BoolArray = (heights >= s.faint_min_travel) & (
            heights / elapsed_s >= s.faint_min_speed
        )
        return moved

    def _match(
        self,
        boxes: FloatArray,
        is_high: BoolArray,
        is_low: BoolArray,
        class_id: IntArray,
        frame_time: float,
    ) -> _Matches:
        """Steps 2 to 5: the detection each track matches, -1 for none.

        The overlap stages differ in their tracks, detections, gate and
        buffer, but all compare the predicted track boxes with the detection
        boxes, so the candidate pairs and their IoU are computed once, with
        each pair's own buffer, and each stage takes its share of them. The
        distance stages see only what the overlap stages left.
        """
        s = self.settings
        n_tracks = len(self._keys)
        found = _Matches(
            np.full(n_tracks, -1, dtype=np.int64),
            np.zeros(n_tracks, dtype=bool),
            np.zeros(len(boxes), dtype=bool),
        )
        if n_tracks == 0 or len(boxes) == 0:
            return found
        status = self._status
        tentative = status == TENTATIVE
        # A track's prediction grows less certain with every frame unseen.
        frames_unseen = (frame_time - self._last_seen) * s.fps - 1
        growth = np.clip(frames_unseen * s.lost_box_growth_per_frame, 0, s.lost_box_growth_max)
        # Confirmed tracks' boxes are buffered against high detections, a lost
        # track's further with that time; a tentative track's box only by
        # that time, so one seen in the last frame compares by plain IoU.
        buffer = np.where(status == LOST, growth, 0.0) + s.match_box_buffer
        buffer[tentative] = growth[tentative]
        track_boxes = kalman.xyah_to_xyxy(self._mean[:, :4])

        # Candidate pairs: with every gate above zero, a pair whose buffered
        # boxes do not overlap (IoU 0) can never match, so only pairs that may
        # overlap under some stage's buffer need their IoU.
        if min(s.match_iou, s.low_match_iou, s.tentative_match_iou) > 0:
            max_buffer = float(np.abs(buffer).max())
            rows, cols = overlap_candidates(track_boxes, buffer, boxes, max_buffer)
        else:
            rows, cols = all_pairs(len(track_boxes), len(boxes))
        wanted = (is_high | is_low)[cols]
        rows, cols = rows[wanted], cols[wanted]
        high_pair = is_high[cols]
        # Low pairs of confirmed tracks: widened only by the time unseen (plain
        # IoU for a track seen in the last frame), since a box that finds a
        # track after a gap may lie anywhere its prediction has grown
        # uncertain over, whatever its score.
        pair_buffer = np.where(high_pair | tentative[rows], buffer[rows], growth[rows])
        iou = pair_iou(track_boxes, boxes, rows, cols, pair_buffer)

        def by_overlap(sel: BoolArray) -> None:
            sel &= (found.det[rows] < 0) & ~found.taken[cols]
            r, c = assign_pairs(rows[sel], cols[sel], iou[sel])
            found.add(r, c, by_distance=False)

        seen_once = self._hits == 1
        faint = self._faint
        low_pairs = not high_pair.all()  # most frames have none: skip those masks then
        # Steps 2 and 3: confirmed tracks, and tentative tracks seen more than
        # once (faint ones never take a high box: step 7), against high
        # detections in one assignment (buffered IoU for the confirmed ones);
        # confirmed tracks against low detections too, so that a track's own
        # weak box beats a neighbour's strong one.
        step2 = high_pair & ~tentative[rows] & (iou >= s.match_iou)
        step2 |= (
            (tentative & ~seen_once & ~faint)[rows] & high_pair & (iou >= s.tentative_match_iou)
        )
        if low_pairs:
            step2 |= ~tentative[rows] & ~high_pair & (iou >= s.low_match_iou)
        by_overlap(step2)
        # Step 4: confirmed tracks left against high detections left, by
        # distance within a share of the track's own motion since last seen,
        # counted at most one box diagonal per frame.
        elapsed = frames_unseen + 1
        diagonal = self._mean[:, 3] * np.hypot(self._mean[:, 2], 1.0)  # (w, h) = (a h, h)
        speed = np.hypot(self._mean[:, 4], self._mean[:, 5])
        motion = np.minimum(speed, diagonal) * elapsed
        if s.match_distance > 0:
            radius = s.match_distance * motion
            self._by_distance(found, ~tentative & (found.det < 0), radius, boxes, is_high, class_id)
        if not tentative.any():
            return found

        # Step 5: tentative tracks against the detections left: high by IoU,
        # low by IoU, then high or low by distance as in step 4 (a track seen
        # once has no velocity yet: its motion is taken at the most counted
        # there); last, tracks seen once at ``new_track_threshold`` or more
        # against high detections within the birth gate for each frame since.
        # Faint tracks take only the low ones by IoU (step 7).
        by_overlap((tentative & ~faint)[rows] & high_pair & (iou >= s.tentative_match_iou))
        if low_pairs:
            by_overlap(tentative[rows] & ~high_pair & (iou >= s.low_match_iou))
        waiting = tentative & (found.det < 0) & ~faint
        if s.match_distance > 0:
            radius = s.match_distance * np.where(seen_once, diagonal * elapsed, motion)
            self._by_distance(found, waiting, radius, boxes, is_high | is_low, class_id)
        if s.birth_distance > 0:
            radius = s.birth_distance * diagonal * elapsed
            strong = waiting & seen_once & (self._chain > 0) & (found.det < 0)
            self._by_distance(found, strong, radius, boxes, is_high, class_id)
        return found

    def _by_distance(
        self,
        found: _Matches,
        track_ok: BoolArray,
        radius: FloatArray,
        boxes: FloatArray,
        det_ok: BoolArray,
        class_id: IntArray,
    ) -> None:
        """The distance stage of steps 4 and 5: tracks and free detections
        whose centres lie within the track's ``radius`` (pixels) of its
        predicted centre, of its class and of a size within
        ``max_size_ratio``; the closer to the prediction, the better."""
        s = self.settings
        tracks = track_ok.nonzero()[0]
        dets = (det_ok & ~found.taken).nonzero()[0]
        if tracks.size == 0 or dets.size == 0:
            return
        mean = self._mean[tracks]
        t_centre = mean[:, :2]
        t_diag = mean[:, 3] * np.hypot(mean[:, 2], 1.0)  # (w, h) = (a h, h)
        radius = radius[tracks]
        b = boxes[dets]
        d_centre = (b[:, :2] + b[:, 2:]) / 2
        d_diag = np.hypot(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
        r, c = near_pairs(t_centre, radius, d_centre)
        dist = np.hypot(d_centre[c, 0] - t_centre[r, 0], d_centre[c, 1] - t_centre[r, 1])
        ratio = d_diag[c] / np.maximum(t_diag[r], 1e-6)
        track_class = self._votes[tracks].argmax(axis=1)
        ok = (dist <= radius[r]) & (track_class[r] == class_id[dets[c]])
        ok &= (ratio <= s.max_size_ratio) & (ratio * s.max_size_ratio >= 1)
        r, c, closeness = r[ok], c[ok], 1.0 - dist[ok] / np.maximum(radius[r[ok]], 1e-6)
        r, c = assign_pairs(r, c, closeness)
        found.add(tracks[r], dets[c], by_distance=True)

    def _vote(
        self, rows: IntArray, class_ids: IntArray, confidence: npt.NDArray[np.float32]
    ) -> None:
        need = int(class_ids.max()) + 1 if class_ids.size else 0
        if need > self._votes.shape[1]:
            grow = np.zeros((len(self._votes), need - self._votes.shape[1]))
            self._votes = np.concatenate([self._votes, grow], axis=1)
        # Each row is a different track, so no (row, class) cell repeats and
        # a plain fancy-indexed += needs no np.add.at.
        self._votes[rows, class_ids] += confidence.astype(np.float64)

    def _keep(self, mask: BoolArray) -> None:
        self._keys = self._keys[mask]
        self._ids = self._ids[mask]
        self._status = self._status[mask]
        self._hits = self._hits[mask]
        self._chain = self._chain[mask]
        self._last_seen = self._last_seen[mask]
        self._mean = self._mean[mask]
        self._cov = self._cov[mask]
        self._votes = self._votes[mask]
        self._first = self._first[mask]
        self._first_seen = self._first_seen[mask]
        self._faint = self._faint[mask]

    def _start(
        self, detections: Detections, rows: IntArray, strong: BoolArray, frame_time: float
    ) -> None:
        """Tentative tracks from ``detections[rows]``; the ``strong`` ones
        (at ``new_track_threshold`` or more) start a chain."""
        n = rows.size
        mean, cov = kalman.initiate_blocks(kalman.xyxy_to_xyah(detections.xyxy[rows]))
        self._keys = np.concatenate([self._keys, np.arange(self._next_key, self._next_key + n)])
        self._next_key += n
        self._ids = np.concatenate([self._ids, np.zeros(n, dtype=np.int64)])
        self._status = np.concatenate([self._status, np.full(n, TENTATIVE, dtype=np.int8)])
        self._hits = np.concatenate([self._hits, np.ones(n, dtype=np.int64)])
        self._chain = np.concatenate([self._chain, strong.astype(np.int64)])
        self._last_seen = np.concatenate([self._last_seen, np.full(n, frame_time)])
        self._mean = np.concatenate([self._mean, mean])
        self._cov = np.concatenate([self._cov, cov])
        votes = np.zeros((n, self._votes.shape[1]))
        self._votes = np.concatenate([self._votes, votes])
        self._first = np.concatenate([self._first, detections.xyxy[rows].astype(np.float32)])
        self._first_seen = np.concatenate([self._first_seen, np.full(n, frame_time)])
        self._faint = np.concatenate([self._faint, np.zeros(n, dtype=bool)])
        self._vote(
            np.arange(len(self._keys) - n, len(self._keys)),
            detections.class_id[rows],
            detections.confidence[rows],
        )

    def _confirm(self, rows: IntArray) -> None:
        self._ids[rows] = np.arange(self._next_id, self._next_id + rows.size)
        self._next_id += int(rows.size)
        self._status[rows] = TRACKED

    def snapshot(self) -> TrackerState:
        return TrackerState(
            format_version=STATE_FORMAT_VERSION,
            next_id=self._next_id,
            next_key=self._next_key,
            last_time=self._last_time,
            keys=self._keys.copy(),
            ids=self._ids.copy(),
            status=self._status.copy(),
            hits=self._hits.copy(),
            last_seen=self._last_seen.copy(),
            mean=self._mean.copy(),
            cov=kalman.blocks_to_full(self._cov),
            class_votes=self._votes.copy(),
            settings=self.settings,
            chain=self._chain.copy(),
            first_xyxy=self._first.copy(),
            first_seen=self._first_seen.copy(),
            faint=self._faint.copy(),
        )

    def restore(self, state: TrackerState) -> None:
        if state.format_version != STATE_FORMAT_VERSION:
            raise StateError(
                f"tracker state version {state.format_version}, expected {STATE_FORMAT_VERSION}"
            )
        self._next_id = state.next_id
        self._next_key = state.next_key
        self._last_time = state.last_time
        self._keys = state.keys.copy()
        self._ids = state.ids.copy()
        self._status = state.status.copy()
        self._hits = state.hits.copy()
        # Before chains were saved, a tentative track was dropped at its first
        # miss and fed only confident overlaps: its chain was its hit count.
        self._chain = (state.hits if state.chain is None else state.chain).copy()
        self._last_seen = state.last_seen.copy()
        self._mean = state.mean.copy()
        self._cov = kalman.full_to_blocks(state.cov)
        self._votes = state.class_votes.copy()
        self._first = (
            np.full((len(state.keys), 4), np.nan, dtype=np.float32)
            if state.first_xyxy is None
            else state.first_xyxy.copy()
        )
        n = len(state.keys)
        self._first_seen = (
            np.full(n, np.nan) if state.first_seen is None else state.first_seen.copy()
        )
        self._faint = np.zeros(n, dtype=bool) if state.faint is None else state.faint.copy()

    @classmethod
    def from_state(cls, state: TrackerState) -> Tracker:
        tracker = cls(state.settings)
        tracker.restore(state)
        return tracker
