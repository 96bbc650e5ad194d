"""Box overlap and gated one-to-one assignment for the tracker.

Overlap is computed only for candidate pairs, found by sort and sweep, and
assignment is split into independent groups of candidate pairs, so a frame
with a thousand well-separated objects costs a thousand tiny problems, not
one dense thousand-by-thousand one.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IndexArray = npt.NDArray[np.intp]
FloatArray = npt.NDArray[np.float64]

# Below this many pairs, listing them all costs fewer numpy calls than the sweep.
ALL_PAIRS_UP_TO = 2048


def pair_iou(
    a: npt.NDArray[np.floating],
    b: npt.NDArray[np.floating],
    rows: IndexArray,
    cols: IndexArray,
    buffer: npt.NDArray[np.floating] | None = None,
) -> FloatArray:
    """Intersection over union of the xyxy boxes ``a[rows]`` and ``b[cols]``.

    ``buffer`` (one per pair) widens both boxes of a pair by that fraction of
    their own width and height on every side before comparing them (buffered
    IoU, as in C-BIoU): an object unseen for a while is matched despite the
    motion its prediction could not follow. A zero buffer gives plain IoU.
    """
    pa = np.asarray(a, dtype=np.float64)[rows]
    pb = np.asarray(b, dtype=np.float64)[cols]
    if buffer is None:
        a_lo, a_hi, b_lo, b_hi = pa[:, :2], pa[:, 2:], pb[:, :2], pb[:, 2:]
    else:
        k = np.asarray(buffer, dtype=np.float64)[:, None]
        a_pad = k * (pa[:, 2:] - pa[:, :2])
        b_pad = k * (pb[:, 2:] - pb[:, :2])
        a_lo, a_hi = pa[:, :2] - a_pad, pa[:, 2:] + a_pad
        b_lo, b_hi = pb[:, :2] - b_pad, pb[:, 2:] + b_pad
    overlap = np.maximum(np.minimum(a_hi, b_hi) - np.maximum(a_lo, b_lo), 0.0)  # 0 if apart
    inter = overlap[:, 0] * overlap[:, 1]
    a_size, b_size = a_hi - a_lo, b_hi - b_lo
    union = a_size[:, 0] * a_size[:, 1] + b_size[:, 0] * b_size[:, 1] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def iou_matrix(
    a: npt.NDArray[np.floating],
    b: npt.NDArray[np.floating],
    buffer: npt.NDArray[np.floating] | None = None,
) -> FloatArray:
    """Pairwise intersection over union of xyxy boxes, shape (len(a), len(b)).

    ``buffer`` (one per row of ``a``) is as in ``pair_iou``, for every pair
    of that row.
    """
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    rows, cols = all_pairs(len(a), len(b))
    k = None if buffer is None else np.repeat(np.asarray(buffer, np.float64), len(b))
    return pair_iou(a, b, rows, cols, k).reshape(len(a), len(b))


def overlap_candidates(
    a: FloatArray,
    a_buffer: npt.NDArray[np.floating],
    b: FloatArray,
    b_buffer: float,
) -> tuple[IndexArray, IndexArray]:
    """Pairs (i, j) that may have a positive IoU when ``a[i]`` and ``b[j]``
    are buffered (as in ``pair_iou``) by a fraction k with |k| <= |a_buffer[i]|
    and |k| <= |b_buffer|: a superset of them, in unspecified order.

    With a gate above zero, only these pairs can ever pass it. A handful of
    boxes are simply all paired, which costs fewer numpy calls than the sweep.
    """
    if len(a) * len(b) <= ALL_PAIRS_UP_TO:
        return all_pairs(len(a), len(b))
    return touching_pairs(padded_extents(a, a_buffer), padded_extents(b, b_buffer))


def near_pairs(a: FloatArray, a_radius: FloatArray, b: FloatArray) -> tuple[IndexArray, IndexArray]:
    """Pairs (i, j) of points ``a[i]`` and ``b[j]`` (x, y) that may lie within
    ``a_radius[i]`` of each other: a superset of them (the square around
    each ``a[i]``), in unspecified order; the caller measures the distance.

    The tracker's distance stages see only what the overlap stages left, a
    handful of pairs most frames, which are simply all paired; a crowd's
    leftovers go through the same sweep as overlapping boxes.
    """
    if len(a) * len(b) <= ALL_PAIRS_UP_TO:
        return all_pairs(len(a), len(b))
    r = np.abs(np.asarray(a_radius, dtype=np.float64))[:, None]
    points = np.asarray(b, dtype=np.float64)
    return touching_pairs(np.concatenate([a - r, a + r], axis=1), np.tile(points, 2))


def all_pairs(n_a: int, n_b: int) -> tuple[IndexArray, IndexArray]:
    """Every (row, column) pair in row-major order."""
    rows, cols = np.divmod(np.arange(n_a * n_b), n_b)
    return rows, cols


def padded_extents(
    xyxy: npt.NDArray[np.floating], pad: float | npt.NDArray[np.floating]
) -> FloatArray:
    """Boxes grown by ``|pad|`` times their own |width| and |height| on every
    side: they contain the box buffered by any fraction k with |k| <= |pad|
    as ``pair_iou`` computes it (rounding is monotonic, so this holds in
    floating point too, even for inverted boxes)."""
    boxes = np.asarray(xyxy, dtype=np.float64)
    grow = np.abs(np.reshape(pad, (-1, 1))) * np.abs(boxes[:, 2:] - boxes[:, :2])
    return np.concatenate([boxes[:, :2] - grow, boxes[:, 2:] + grow], axis=1)


def touching_pairs(a: FloatArray, b: FloatArray) -> tuple[IndexArray, IndexArray]:
    """Pairs (i, j) whose extents ``a[i]`` and ``b[j]`` (xyxy) touch or overlap.

    Sort and sweep on x: with ``b`` sorted by left edge, the boxes that can
    reach ``a[i]`` form one contiguous run, from the first whose running
    maximum right edge reaches a[i]'s left edge to the last whose left edge
    is within a[i]'s right edge. The runs are expanded to pairs, which are
    then tested exactly on both axes. Order of the pairs is unspecified.
    """
    if len(a) == 0 or len(b) == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    order = np.argsort(b[:, 0], kind="stable")
    b_left = b[order, 0]
    reach = np.maximum.accumulate(b[order, 2])
    start = np.searchsorted(reach, a[:, 0], side="left")
    stop = np.searchsorted(b_left, a[:, 2], side="right")
    counts = np.maximum(stop - start, 0)
    rows = np.repeat(np.arange(len(a)), counts)
    # Position of each pair in the sorted b: its run's start plus its rank in the run.
    first_slot = np.cumsum(counts) - counts
    cols = order[np.arange(len(rows)) - np.repeat(first_slot - start, counts)]
    pa, pb = a[rows], b[cols]
    ok = (pb[:, 2] >= pa[:, 0]) & (pb[:, 0] <= pa[:, 2])
    ok &= (pb[:, 3] >= pa[:, 1]) & (pb[:, 1] <= pa[:, 3])
    return rows[ok], cols[ok]


def assign(
    similarity: npt.NDArray[np.float64], min_similarity: float
) -> tuple[IndexArray, IndexArray]:
    """Maximum-similarity one-to-one matching among pairs at or above the gate.

    Returns matched row and column indices. Pairs below ``min_similarity``
    are never matched.
    """
    rows, cols = np.nonzero(similarity >= min_similarity)
    return assign_pairs(rows, cols, similarity[rows, cols])


def assign_pairs(
    rows: IndexArray, cols: IndexArray, similarity: npt.NDArray[np.float64]
) -> tuple[IndexArray, IndexArray]:
    """``assign`` on a list of eligible pairs (distinct (row, col) pairs that
    passed the gate) instead of a matrix; a pair not listed is never matched.

    A pair whose row and column appear in no other pair is matched as is;
    the rest is split into connected groups, each solved on its own.
    """
    if rows.size == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    row_deg = np.bincount(rows)
    col_deg = np.bincount(cols)
    lone = (row_deg[rows] == 1) & (col_deg[cols] == 1)
    if lone.all():
        return rows, cols
    out_rows = [rows[lone]]
    out_cols = [cols[lone]]
    rest = np.flatnonzero(~lone)
    rest_r, rest_c = rows[rest], cols[rest]
    for group in _connected_groups(rest_r.tolist(), rest_c.tolist()):
        idx = rest[group]
        sub_r, at_r = np.unique(rows[idx], return_inverse=True)
        sub_c, at_c = np.unique(cols[idx], return_inverse=True)
        if min(sub_r.size, sub_c.size) <= EXACT_UP_TO_SIDE and idx.size <= EXACT_UP_TO_PAIRS:
            r, c = _best_small(at_r.tolist(), at_c.tolist(), similarity[idx].tolist())
        else:
            r, c = _best_large(at_r, at_c, similarity[idx], (sub_r.size, sub_c.size))
        out_rows.append(sub_r[r])
        out_cols.append(sub_c[c])
    return np.concatenate(out_rows), np.concatenate(out_cols)


# A contested group this small is solved here, exactly; larger ones go to
# scipy, imported on first need: it adds ~50 MB to a process, and most
# camera processes never see a group that large.
EXACT_UP_TO_SIDE = 6
EXACT_UP_TO_PAIRS = 36


def _best_small(
    at_r: list[int], at_c: list[int], sim: list[float]
) -> tuple[IndexArray, IndexArray]:
    """The matching with the most pairs, then the most similarity (the rule
    ``_best_large`` gets from its cost matrix), by dynamic programming over
    subsets of the smaller side: a few dozen states for the groups a frame
    holds."""
    by_row = max(at_r) >= max(at_c)  # iterate the larger side, subsets of the other
    items, others = (at_r, at_c) if by_row else (at_c, at_r)
    options: dict[int, list[tuple[int, float]]] = {}
    for item, other, s in zip(items, others, sim, strict=True):
        options.setdefault(item, []).append((other, s))
    # subset of the smaller side used -> (pairs, similarity, chosen pairs)
    best: dict[int, tuple[int, float, tuple[tuple[int, int], ...]]] = {0: (0, 0.0, ())}
    for item in sorted(options):
        grown = dict(best)  # the item left unmatched
        for used, (n, total, chosen) in best.items():
            for other, s in options[item]:
                bit = 1 << other
                if used & bit:
                    continue
                key = used | bit
                old = grown.get(key)
                if old is None or (n + 1, total + s) > (old[0], old[1]):
                    grown[key] = (n + 1, total + s, (*chosen, (item, other)))
        best = grown
    chosen = max(best.values(), key=lambda v: (v[0], v[1]))[2]
    firsts = np.array([a for a, _ in chosen], dtype=np.intp)
    seconds = np.array([b for _, b in chosen], dtype=np.intp)
    return (firsts, seconds) if by_row else (seconds, firsts)


def _best_large(
    at_r: IndexArray, at_c: IndexArray, sim: FloatArray, shape: tuple[int, int]
) -> tuple[IndexArray, IndexArray]:
    from scipy.optimize import linear_sum_assignment

    # Pairs not listed are ineligible: a prohibitive cost, never accepted,
    # so the solver first maximises the number of eligible pairs.
    cost = np.full(shape, 1e6)
    cost[at_r, at_c] = -sim
    eligible = np.zeros(shape, dtype=bool)
    eligible[at_r, at_c] = True
    r, c = linear_sum_assignment(cost)
    ok = eligible[r, c]
    return r[ok], c[ok]


def _connected_groups(rows: list[int], cols: list[int]) -> list[list[int]]:
    """Positions of the pairs grouped so that pairs sharing a row or a column,
    directly or through other pairs, are in one group (union-find; the groups
    of a frame are a few pairs each, too small for a sparse-graph library
    to pay off)."""
    parent: dict[int, int] = {}

    def root(node: int) -> int:
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]  # path halving
            node = parent[node]
        return node

    for r, c in zip(rows, cols, strict=True):
        parent[root(r)] = root(~c)  # columns as negative nodes, apart from rows
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(root(r), []).append(i)
    return list(groups.values())
