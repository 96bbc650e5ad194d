"""A multi-object tracker of the ByteTrack family, vectorised with numpy.

Per frame (``Tracker.update``):

1. Predict every track forward with its Kalman filter.
2. Match confirmed tracks (tracked and lost) to high-confidence detections
   by buffered IoU (C-BIoU): both boxes of a pair are widened by
   ``match_box_buffer``, and a lost track's further in proportion to the
   frames it has been unseen, since its prediction grows less certain with
   every frame. Jittery detectors and irregular motion then break tracks
   far less often.
3. Match the still unmatched *tracked* tracks to low-confidence detections,
   which keeps a track alive through a partial occlusion without ever
   starting a track from a weak detection.
4. Unmatched tracked tracks become lost; they are kept for
   ``lost_track_buffer_s`` of event time, so an object found again behind an
   occluder keeps its id.
5. Match tentative tracks to the remaining high detections; a tentative track
   that misses once is dropped, one matched ``min_hits`` times is confirmed
   and only then gets its public id.
6. Start tentative tracks from the remaining detections above
   ``new_track_threshold``.

A track's class is a confidence-weighted vote over its whole life, so one
misclassified frame never changes it. Ids are per instance and part of the
snapshot: two cameras in one process never share ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from camcount import kalman
from camcount.assignment import all_pairs, assign_pairs, overlap_candidates, pair_iou
from camcount.detections import Detections
from camcount.errors import StateError

STATE_FORMAT_VERSION = 1

TENTATIVE, TRACKED, LOST = 0, 1, 2

IntArray = npt.NDArray[np.int64]


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

    def __post_init__(self) -> None:
        if not 0 <= self.low_threshold <= self.high_threshold <= 1:
            raise ValueError(
                "need 0 <= low_threshold <= high_threshold <= 1, got "
                f"{self.low_threshold}, {self.high_threshold}"
            )
        if self.min_hits < 1:
            raise ValueError(f"min_hits must be >= 1, got {self.min_hits}")
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.lost_track_buffer_s < 0:
            raise ValueError(f"lost_track_buffer_s must be >= 0, got {self.lost_track_buffer_s}")


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
    """

    frame_index: int
    frame_time: float
    detections: Detections
    lost_ids: IntArray
    removed_ids: IntArray
    observed_xyxy: npt.NDArray[np.float32] | None = None

    @property
    def observed(self) -> npt.NDArray[np.float32]:
        """The detector's boxes of the rows of ``detections``."""
        return self.detections.xyxy if self.observed_xyxy is None else self.observed_xyxy


@dataclass(frozen=True)
class TrackerState:
    """A copy of the tracker's state; plain arrays and numbers only."""

    format_version: int
    next_id: int
    next_key: int
    last_time: float | None
    keys: IntArray
    ids: IntArray
    status: npt.NDArray[np.int8]
    hits: IntArray
    last_seen: npt.NDArray[np.float64]
    mean: npt.NDArray[np.float64]
    cov: npt.NDArray[np.float64]
    class_votes: npt.NDArray[np.float64]
    settings: TrackerSettings = field(default_factory=TrackerSettings)


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
        self._last_seen = np.zeros(0, dtype=np.float64)
        self._mean = np.zeros((0, 8))
        self._cov = np.zeros((0, 3, 4))  # kalman's block form
        self._votes = np.zeros((0, 1))

    @property
    def track_count(self) -> int:
        return len(self._keys)

    def update(self, detections: Detections, frame_index: int, frame_time: float) -> TrackFrame:
        s = self.settings
        # Step 1: predict.
        if self._last_time is not None and frame_time < self._last_time:
            raise ValueError(f"frame time went backwards: {self._last_time} -> {frame_time}")
        dt = 1.0 if self._last_time is None else (frame_time - self._last_time) * s.fps
        self._last_time = frame_time
        self._mean, self._cov = kalman.predict_blocks(self._mean, self._cov, dt)
        self._mean[self._status == LOST, 7] = 0.0

        # Steps 2, 3 and 5 (before 4, whose bookkeeping is shared below).
        conf = detections.confidence
        boxes = detections.xyxy.astype(np.float64)
        is_high = conf >= s.high_threshold
        is_low = (conf >= s.low_threshold) & (conf < s.high_threshold)
        det_of_track = self._match(boxes, is_high, is_low, frame_time)
        # 1-D masks: .nonzero()[0] is np.flatnonzero without its Python wrapper.
        matched = (det_of_track >= 0).nonzero()[0]
        det_idx = det_of_track[matched]
        used = np.zeros(len(detections), dtype=bool)
        used[det_idx] = True
        high_left = (is_high & ~used).nonzero()[0]
        if matched.size:
            z = kalman.xyxy_to_xyah(boxes[det_idx])
            self._mean[matched], self._cov[matched] = kalman.update_blocks(
                self._mean[matched], self._cov[matched], z
            )
            self._hits[matched] += 1
            self._last_seen[matched] = frame_time
            self._vote(matched, detections.class_id[det_idx], conf[det_idx])
            newly = matched[
                (self._status[matched] == TENTATIVE) & (self._hits[matched] >= s.min_hits)
            ]
            self._ids[newly] = np.arange(self._next_id, self._next_id + newly.size)
            self._next_id += int(newly.size)
            self._status[matched[self._status[matched] != TENTATIVE]] = TRACKED
            self._status[newly] = TRACKED

        # Step 4: unmatched confirmed tracks are lost; drop the expired and
        # the tentative tracks that missed.
        unmatched = det_of_track < 0
        self._status[unmatched & (self._status == TRACKED)] = LOST
        expired = (self._status == LOST) & (frame_time - self._last_seen > s.lost_track_buffer_s)
        dropped_tentative = unmatched & (self._status == TENTATIVE)
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

        # Step 6: new tentative tracks.
        fresh = high_left[conf[high_left] >= s.new_track_threshold]
        if fresh.size:
            self._start(detections, fresh, frame_time)
            if s.min_hits <= 1:
                self._confirm_new(fresh.size)
                new_rows = np.arange(len(self._keys) - fresh.size, len(self._keys))
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

        # Fancy indexing above already made these copies of the state.
        return TrackFrame(frame_index, frame_time, output, lost_ids, removed_ids, observed)

    def _match(
        self,
        boxes: npt.NDArray[np.float64],
        is_high: npt.NDArray[np.bool_],
        is_low: npt.NDArray[np.bool_],
        frame_time: float,
    ) -> IntArray:
        """Steps 2, 3 and 5: the detection each track matches, -1 for none.

        The stages differ in their tracks, detections, gate and buffer, but
        all compare the predicted track boxes with the detection boxes, so
        the candidate pairs and their IoU are computed once, with each pair's
        own buffer, and each stage takes its share of them.
        """
        s = self.settings
        det_of_track = np.full(len(self._keys), -1, dtype=np.int64)
        if len(self._keys) == 0 or len(boxes) == 0:
            return det_of_track
        status = self._status
        tracked, tentative = status == TRACKED, status == TENTATIVE
        # Step 2's buffer: a lost track's box is widened with the time it has
        # been unseen.
        frames_lost = (frame_time - self._last_seen) * s.fps - 1
        growth = np.clip(frames_lost * s.lost_box_growth_per_frame, 0, s.lost_box_growth_max)
        growth[status != LOST] = 0.0
        growth += s.match_box_buffer
        track_boxes = kalman.xyah_to_xyxy(self._mean[:, :4])

        # Candidate pairs: with every gate above zero, a pair whose buffered
        # boxes do not overlap (IoU 0) can never match, so only pairs that may
        # overlap under some stage's buffer need their IoU.
        if min(s.match_iou, s.low_match_iou, s.tentative_match_iou) > 0:
            max_buffer = float(np.abs(growth).max())
            rows, cols = overlap_candidates(track_boxes, growth, boxes, max_buffer)
        else:
            rows, cols = all_pairs(len(track_boxes), len(boxes))
        high_pair = is_high[cols]
        wanted = high_pair | (is_low[cols] & tracked[rows])
        rows, cols, high_pair = rows[wanted], cols[wanted], high_pair[wanted]
        buffered = high_pair & ~tentative[rows]  # step 2's pairs; the others use plain IoU
        iou = pair_iou(track_boxes, boxes, rows, cols, np.where(buffered, growth[rows], 0.0))

        # Step 2: confirmed tracks against high detections, buffered IoU.
        sel = buffered & (iou >= s.match_iou)
        r, c = assign_pairs(rows[sel], cols[sel], iou[sel])
        det_of_track[r] = c

        # Step 3: still unmatched tracked tracks against low detections
        # (most frames have none: skip the masks then).
        if not high_pair.all():
            sel = ~high_pair & (iou >= s.low_match_iou) & (det_of_track[rows] < 0)
            r3, c3 = assign_pairs(rows[sel], cols[sel], iou[sel])
            det_of_track[r3] = c3

        # Step 5: tentative tracks against the high detections left.
        if tentative.any():
            taken = np.zeros(len(boxes), dtype=bool)
            taken[c] = True
            sel = high_pair & tentative[rows] & (iou >= s.tentative_match_iou) & ~taken[cols]
            r5, c5 = assign_pairs(rows[sel], cols[sel], iou[sel])
            det_of_track[r5] = c5
        return det_of_track

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

    def _keep(self, mask: npt.NDArray[np.bool_]) -> None:
        self._keys = self._keys[mask]
        self._ids = self._ids[mask]
        self._status = self._status[mask]
        self._hits = self._hits[mask]
        self._last_seen = self._last_seen[mask]
        self._mean = self._mean[mask]
        self._cov = self._cov[mask]
        self._votes = self._votes[mask]

    def _start(self, detections: Detections, rows: IntArray, frame_time: float) -> None:
        n = rows.size
        mean, cov = kalman.initiate_blocks(kalman.xyxy_to_xyah(detections.xyxy[rows]))
        self._keys = np.concatenate([self._keys, np.arange(self._next_key, self._next_key + n)])
        self._next_key += n
        self._ids = np.concatenate([self._ids, np.zeros(n, dtype=np.int64)])
        self._status = np.concatenate([self._status, np.full(n, TENTATIVE, dtype=np.int8)])
        self._hits = np.concatenate([self._hits, np.ones(n, dtype=np.int64)])
        self._last_seen = np.concatenate([self._last_seen, np.full(n, frame_time)])
        self._mean = np.concatenate([self._mean, mean])
        self._cov = np.concatenate([self._cov, cov])
        votes = np.zeros((n, self._votes.shape[1]))
        self._votes = np.concatenate([self._votes, votes])
        self._vote(
            np.arange(len(self._keys) - n, len(self._keys)),
            detections.class_id[rows],
            detections.confidence[rows],
        )

    def _confirm_new(self, n: int) -> None:
        rows = np.arange(len(self._keys) - n, len(self._keys))
        self._ids[rows] = np.arange(self._next_id, self._next_id + n)
        self._next_id += n
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
        self._last_seen = state.last_seen.copy()
        self._mean = state.mean.copy()
        self._cov = kalman.full_to_blocks(state.cov)
        self._votes = state.class_votes.copy()

    @classmethod
    def from_state(cls, state: TrackerState) -> Tracker:
        tracker = cls(state.settings)
        tracker.restore(state)
        return tracker
