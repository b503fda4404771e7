"""The adaptive model's inner loops, compiled (numba): each candidate's logit belief
(scoring, in the API), the rows of a decision's observations and the Laplace steps of a
whole batch (learning, in the stream worker).

Beliefs (:func:`candidate_moments`): for each candidate, the sums of the table over the
cells of each block of :meth:`models.hashing.Hasher.design`, without building the design.
With numpy, the design, the gather and the block sums of 14 candidates cost about 55 µs
of a demo-world decision, mostly fixed costs and temporaries.

Rows (:func:`design_rows`): :meth:`models.hashing.Hasher.design` and the merge of a row's
repeated buckets, per decision, in one pass. With numpy, a decision's rows took some twenty
array calls and a sort, about 35 µs per observation, mostly fixed costs.

Steps (:func:`laplace_steps`): a step touches a row of about 230 buckets: a gather, two
dot products, a scalar Newton solve and a scatter. Written with numpy that is a dozen
calls whose fixed costs, about 15 µs per observation, were a quarter of the learner's
time; the steps are sequential (every row shares the bias and the customer's buckets),
so they cannot be vectorised across a batch. Compiled, the loop costs about what its
arithmetic does. The maths is :meth:`models.adaptive.AdaptiveModel.update`'s, documented
there.

Glue (:func:`thompson_draw`, :func:`logits`): the Thompson draw that decides and a base
model's logits were each a handful of small array calls. Folded into one call each (with
the logged shares, now in :mod:`models.selection_kernels`), the demo world's web decision
in process went from 226-236 to 205-207 µs of CPU warm and from 558-582 to 488-527 cold
(median of 4,000 and 1,500, three pairs alternated, pinned to one CPU).

Compiled on first use and cached beside this file (``cache=True``), so a process after
the first loads the machine code instead of compiling it again.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

__all__ = [
    "action_cells",
    "candidate_moments",
    "clipped_sigma",
    "design_rows",
    "laplace_steps",
    "logits",
    "sigma",
    "solve",
    "thompson_draw",
    "warm_up",
]


@njit(cache=True)
def sigma(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(cache=True)
def clipped_sigma(z: float, limit: float) -> float:
    """σ(z) with z clipped to ±limit first, as :func:`models.adaptive.sigmoid` computes it."""
    return 1.0 / (1.0 + math.exp(-min(max(z, -limit), limit)))


@njit(cache=True)
def solve(score: float, spread: float, reward: float, weight: float) -> float:
    """The root of ``g(c) = c - w (r - σ(s + c v))``, increasing in c, inside
    [w (r - 1), w r]: Newton steps kept inside a shrinking bracket."""
    lo, hi = weight * (reward - 1.0), weight * reward
    c = weight * (reward - sigma(score))
    for _ in range(60):
        p = sigma(score + c * spread)
        g = c - weight * (reward - p)
        if g > 0:
            hi = c
        else:
            lo = c
        nxt = c - g / (1.0 + weight * spread * p * (1.0 - p))
        if not lo <= nxt <= hi:
            nxt = 0.5 * (lo + hi)
        if abs(nxt - c) < 1e-14:
            return nxt
        c = nxt
    return c


@njit(cache=True)
def laplace_steps(
    z: npt.NDArray[np.complex128],
    q: npt.NDArray[np.float64],
    index: npt.NDArray[np.int64],
    x: npt.NDArray[np.float64],
    bounds: npt.NDArray[np.int64],
    rewards: npt.NDArray[np.float64],
    offsets: npt.NDArray[np.float64],
    weights: npt.NDArray[np.float64],
) -> None:
    """Row ``r`` is ``index[bounds[r]:bounds[r + 1]]`` (distinct buckets) with values
    ``x``; ``z`` holds each bucket's mean + 1j / precision, ``q`` its precision. The
    rows are applied in order, in place."""
    for r in range(len(rewards)):
        start, end = bounds[r], bounds[r + 1]
        dot = spread = 0.0
        for j in range(start, end):
            bucket = index[j]
            dot += z[bucket].real * x[j]
            spread += x[j] * x[j] * (1.0 / q[bucket])
        score = offsets[r] + dot
        c = solve(score, spread, rewards[r], weights[r])
        p = sigma(score + c * spread)
        curvature = weights[r] * p * (1.0 - p)
        for j in range(start, end):
            bucket = index[j]
            precision = q[bucket]
            grown = precision + x[j] * x[j] * curvature
            z[bucket] = complex(z[bucket].real + c * x[j] / precision, 1.0 / grown)
            q[bucket] = grown


@njit(cache=True)
def action_cells(
    tokens: npt.NDArray[np.uint64],
    crossing: npt.NDArray[np.uint64],
    values: npt.NDArray[np.uint64],
    packed: npt.NDArray[np.uint64],
    row: int,
    width: int,
    depth: int,
    down: np.uint64,
    keys: npt.NDArray[np.int64],
    start: int,
    bounds: npt.NDArray[np.int64],
) -> None:
    """The buckets of candidate ``row``'s own cells, in ``Hasher.design``'s order, into
    ``keys`` from ``start`` on; block ``b`` is ``keys[bounds[b]:bounds[b + 1]]``: the
    action's id, its other tokens, its id crossed with each request token, its strings
    crossed with the request's, those crosses again where the values match (else null)
    and one null cell."""
    null = np.uint64(1) << np.uint64(63)
    shared, c = len(tokens), len(crossing)
    head = packed[row, 0]
    n = start
    bounds[0] = n
    keys[n] = np.int64(head >> down)
    n += 1
    bounds[1] = n
    for j in range(1, width):
        keys[n] = np.int64(packed[row, j] >> down)
        n += 1
    bounds[2] = n
    for t in range(1, shared):
        keys[n] = np.int64((head ^ tokens[t]) >> down)
        n += 1
    bounds[3] = n
    for j in range(depth):
        pair = packed[row, width + j]
        for k in range(c):
            keys[n] = np.int64((pair ^ crossing[k]) >> down)
            n += 1
    bounds[4] = n
    for j in range(depth):
        pair = packed[row, width + j]
        value = packed[row, width + depth + j]
        for k in range(c):
            keys[n] = np.int64((pair ^ crossing[k] if value == values[k] else null) >> down)
            n += 1
    keys[n] = np.int64(null >> down)
    bounds[5] = n + 1


@njit(cache=True)
def design_rows(
    tokens: npt.NDArray[np.uint64],
    shared_values: npt.NDArray[np.float64],
    crossing: npt.NDArray[np.uint64],
    values: npt.NDArray[np.uint64],
    packed: npt.NDArray[np.uint64],
    scales: npt.NDArray[np.float64],
    width: int,
    depth: int,
    block_values: npt.NDArray[np.float64],
    shift: int,
    dims: int,
    rows: npt.NDArray[np.int64],
    out_index: npt.NDArray[np.int64],
    out_x: npt.NDArray[np.float64],
    lengths: npt.NDArray[np.int64],
) -> None:
    """Row ``rows[i]`` of the outputs: the distinct live buckets of candidate ``i`` of
    ``packed`` (a table's rows) for this request, in the order they first appear, each
    with the sum of its cells' values in column order (merged through a small open-
    addressing table, which costs a third of sorting the row). The cells are the
    request's own (bias, customer and context tokens), then :func:`action_cells`."""
    down = np.uint64(shift)
    shared, c = len(tokens), len(crossing)
    cells = shared + width + (shared - 1) + 2 * depth * c + 1
    size = 16
    while size < 2 * cells:
        size *= 2
    spread_bits = np.uint64(64 - int(math.log2(size)))
    slot_bucket = np.full(size, -1, dtype=np.int64)  # open addressing: bucket -> column
    slot_column = np.empty(size, dtype=np.int64)
    used = np.empty(cells, dtype=np.int64)
    keys = np.empty(cells, dtype=np.int64)
    cell_values = np.empty(cells, dtype=np.float64)
    bounds = np.empty(6, dtype=np.int64)
    for i in range(len(rows)):
        for t in range(shared):
            keys[t] = np.int64(tokens[t] >> down)
            cell_values[t] = shared_values[t]
        action_cells(tokens, crossing, values, packed, i, width, depth, down, keys, shared, bounds)
        for block in range(5):
            scale = scales[i, block] * block_values[block]
            for j in range(bounds[block], bounds[block + 1]):
                cell_values[j] = scale
        n = bounds[5]
        row = rows[i]
        kept = 0
        for j in range(n):
            bucket = keys[j]
            if bucket >= dims:  # the null half: never learned
                continue
            slot = np.int64((np.uint64(bucket) * np.uint64(0x9E3779B97F4A7C15)) >> spread_bits)
            while slot_bucket[slot] != -1 and slot_bucket[slot] != bucket:
                slot = (slot + 1) & (size - 1)
            if slot_bucket[slot] == -1:
                slot_bucket[slot] = bucket
                slot_column[slot] = kept
                used[kept] = slot
                out_index[row, kept] = bucket
                out_x[row, kept] = cell_values[j]
                kept += 1
            else:
                out_x[row, slot_column[slot]] += cell_values[j]
        live = 0
        for j in range(kept):
            slot_bucket[used[j]] = -1
            if out_x[row, j] != 0.0:
                out_index[row, live] = out_index[row, j]
                out_x[row, live] = out_x[row, j]
                live += 1
        lengths[row] = live


@njit(cache=True)
def candidate_moments(
    request: npt.NDArray[np.uint64],
    shared: int,
    c: int,
    shared_values: npt.NDArray[np.float64],
    packed: npt.NDArray[np.uint64],
    scales: npt.NDArray[np.float64],
    rows: npt.NDArray[np.int64],
    width: int,
    depth: int,
    block_values: npt.NDArray[np.float64],
    shift: int,
    z: npt.NDArray[np.complex128],
    offsets: npt.NDArray[np.float64],
    offsets_by_row: bool,
    mean: npt.NDArray[np.float64],
    variance: npt.NDArray[np.float64],
) -> tuple[float, float]:
    """``mean[i]`` and ``variance[i]``: candidate ``rows[i]`` of ``packed``, its cells'
    means and variances (``z``'s real and imaginary parts) summed per block, weighted by
    the block's value and its square, plus its offset (``offsets[rows[i]]`` if
    ``offsets_by_row``, else ``offsets[i]``); returned, the request's own cells, shared
    by every candidate: the sum of their means and of their variances, weighted by
    ``shared_values`` and its square. ``request`` is a
    :class:`models.hashing.PackedRequest`'s array: ``shared`` tokens, then ``c``
    crossing tokens and their ``c`` value hashes. The cells are :func:`action_cells`',
    visited in the same order but summed as they are found: writing them out first, as
    the learner does, took 64 µs for 100 candidates against 28."""
    null = np.uint64(1) << np.uint64(63)
    down = np.uint64(shift)
    tokens = request[:shared]
    crossing = request[shared : shared + c]
    values = request[shared + c : shared + 2 * c]
    for i in range(len(rows)):
        row = rows[i]
        head = packed[row, 0]
        id_bias = z[head >> down]  # one running sum per block, kept in registers
        attributes = 0j
        id_crosses = 0j
        crosses = 0j
        matches = 0j
        for j in range(1, width):
            attributes += z[packed[row, j] >> down]
        for t in range(1, shared):
            id_crosses += z[(head ^ tokens[t]) >> down]
        for j in range(depth):
            pair = packed[row, width + j]
            value = packed[row, width + depth + j]
            for k in range(c):
                cross = pair ^ crossing[k]
                crosses += z[cross >> down]
                matches += z[(cross if value == values[k] else null) >> down]
        matches += z[null >> down]
        m = offsets[row] if offsets_by_row else offsets[i]
        v = 0.0
        for b, total in enumerate((id_bias, attributes, id_crosses, crosses, matches)):
            scale = scales[row, b] * block_values[b]
            m += total.real * scale
            v += total.imag * (scale * scale)
        mean[i] = m
        variance[i] = v
    shared_mean = shared_variance = 0.0
    for t in range(shared):
        cell = z[tokens[t] >> down]
        x = shared_values[t]
        shared_mean += cell.real * x
        shared_variance += cell.imag * (x * x)
    return shared_mean, shared_variance


@njit(cache=True)
def thompson_draw(
    mean: npt.NDArray[np.float64],
    variance: npt.NDArray[np.float64],
    shared_mean: float,
    shared_variance: float,
    normals: npt.NDArray[np.float64],
    limit: float,
    out: npt.NDArray[np.float64],
) -> None:
    """``out[i] = σ(mean[i] + √variance[i] normals[i + 1] + shared term)``, the shared
    term ``shared_mean + √shared_variance normals[0]``: one Thompson draw, in one pass
    (with numpy, nine array calls)."""
    shift = shared_mean + math.sqrt(shared_variance) * normals[0]
    for i in range(len(mean)):
        out[i] = clipped_sigma(mean[i] + math.sqrt(variance[i]) * normals[i + 1] + shift, limit)


@njit(cache=True)
def logits(p: npt.NDArray[np.float64], eps: float, out: npt.NDArray[np.float64]) -> None:
    """``out[i] = log(p / (1 - p))`` with ``p`` clipped to ``[eps, 1 - eps]``."""
    for i in range(len(p)):
        q = min(max(p[i], eps), 1.0 - eps)
        out[i] = math.log(q) - math.log1p(-q)


def warm_up() -> None:
    """Load (or compile) the kernels now, before taking work: loading numba and the
    cached machine code took 2.4 s of a loaded worker's event loop at its first learning
    step (py-spy, 1,000 decisions/s), and a decision's budget is 20 ms."""
    from models.adaptive import AdaptiveModel, Observation

    model = AdaptiveModel(dims=2**4)
    view = {"id": "warm-up", "category": "up"}
    model.update_batch([Observation({"warm": "up"}, {}, view, 1.0)])
    moments = model.moments({"warm": "up"}, {}, model.bind([view]), np.zeros(1, dtype=np.intp))
    moments.selection_probabilities(model.rng, 2, np.ones(1))
    moments.sample(model.rng)
    moments.logged_selection(model.rng, 2, np.ones(1), np.ones(1), None)
    logits(np.full(1, 0.5), 1e-9, np.empty(1))
