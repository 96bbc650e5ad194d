"""Box overlap and gated one-to-one assignment for the tracker.

Assignment is split into independent groups of candidate pairs, so a frame
with a thousand well-separated objects costs a thousand tiny problems, not
one dense thousand-by-thousand one.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

IndexArray = npt.NDArray[np.intp]


def iou_matrix(
    a: npt.NDArray[np.floating],
    b: npt.NDArray[np.floating],
    buffer: npt.NDArray[np.floating] | None = None,
) -> npt.NDArray[np.float64]:
    """Pairwise intersection over union of xyxy boxes, shape (len(a), len(b)).

    ``buffer`` (one per row of ``a``) widens both boxes of a pair by that
    fraction of their own width and height on every side before comparing
    them (buffered IoU, as in C-BIoU): an object unseen for a while is
    matched despite the motion its prediction could not follow.
    """
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    aw, ah = (a[:, 2] - a[:, 0])[:, None], (a[:, 3] - a[:, 1])[:, None]
    bw, bh = (b[:, 2] - b[:, 0])[None, :], (b[:, 3] - b[:, 1])[None, :]
    k = np.zeros((len(a), 1)) if buffer is None else np.asarray(buffer, np.float64)[:, None]
    ax1, ay1 = a[:, 0:1] - k * aw, a[:, 1:2] - k * ah
    ax2, ay2 = a[:, 2:3] + k * aw, a[:, 3:4] + k * ah
    bx1, by1 = b[None, :, 0] - k * bw, b[None, :, 1] - k * bh
    bx2, by2 = b[None, :, 2] + k * bw, b[None, :, 3] + k * bh
    inter = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None) * np.clip(
        np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None
    )
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def assign(
    similarity: npt.NDArray[np.float64], min_similarity: float
) -> tuple[IndexArray, IndexArray]:
    """Maximum-similarity one-to-one matching among pairs at or above the gate.

    Returns matched row and column indices. Pairs below ``min_similarity``
    are never matched.
    """
    n_rows, n_cols = similarity.shape
    rows, cols = np.nonzero(similarity >= min_similarity)
    if rows.size == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    row_deg = np.bincount(rows, minlength=n_rows)
    col_deg = np.bincount(cols, minlength=n_cols)
    lone = (row_deg[rows] == 1) & (col_deg[cols] == 1)
    out_rows = [rows[lone]]
    out_cols = [cols[lone]]
    rest_r, rest_c = rows[~lone], cols[~lone]
    if rest_r.size:
        n = n_rows + n_cols
        graph = coo_matrix((np.ones(rest_r.size), (rest_r, rest_c + n_rows)), shape=(n, n))
        _, labels = connected_components(graph, directed=False)
        comp = labels[rest_r]
        order = np.argsort(comp, kind="stable")
        comp_sorted = comp[order]
        bounds = np.flatnonzero(np.diff(comp_sorted)) + 1
        for idx in np.split(order, bounds):
            sub_r = np.unique(rest_r[idx])
            sub_c = np.unique(rest_c[idx])
            sub = similarity[np.ix_(sub_r, sub_c)]
            cost = np.where(sub >= min_similarity, -sub, 1e6)
            r, c = linear_sum_assignment(cost)
            ok = sub[r, c] >= min_similarity
            out_rows.append(sub_r[r[ok]])
            out_cols.append(sub_c[c[ok]])
    return np.concatenate(out_rows), np.concatenate(out_cols)
