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

Selection (:func:`chosen_first`): how often each candidate comes first over the Monte-Carlo
draws that estimate the logged selection probabilities. With numpy, a dozen array calls on
(draws × contenders) temporaries: 43 µs median for the demo world's 13 candidates and 100
draws, on every logged decision. A decision that answers with several actions counts
instead how often each is among them (:func:`chosen_within`: the best few of each draw,
at most one per diversity group).

Glue (:func:`thompson_draw`, :func:`selection_shares`, :func:`logits`): the Thompson draw
that decides, the logged shares around :func:`chosen_first` and a base model's logits
were each a handful of small array calls. Folded into one call each, the demo world's
web decision in process went from 226-236 to 205-207 µs of CPU warm and from 558-582 to
488-527 cold (median of 4,000 and 1,500, three pairs alternated, pinned to one CPU).

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
    "chosen_first",
    "chosen_within",
    "clipped_sigma",
    "design_rows",
    "laplace_steps",
    "logits",
    "selection_shares",
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
    tokens: npt.NDArray[np.uint64],
    crossing: npt.NDArray[np.uint64],
    values: npt.NDArray[np.uint64],
    packed: npt.NDArray[np.uint64],
    scales: npt.NDArray[np.float64],
    rows: npt.NDArray[np.int64],
    width: int,
    depth: int,
    block_values: npt.NDArray[np.float64],
    shift: int,
    z: npt.NDArray[np.complex128],
    mean: npt.NDArray[np.float64],
    variance: npt.NDArray[np.float64],
) -> None:
    """``mean[i]`` and ``variance[i]``: candidate ``rows[i]`` of ``packed``, its cells'
    means and variances (``z``'s real and imaginary parts) summed per block, weighted by
    the block's value and its square. The request's own cells, shared by every
    candidate, are left to the caller. The cells are :func:`action_cells`', visited in
    the same order but summed as they are found: writing them out first, as the learner
    does, took 64 µs for 100 candidates against 28."""
    null = np.uint64(1) << np.uint64(63)
    down = np.uint64(shift)
    shared, c = len(tokens), len(crossing)
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
        m = v = 0.0
        for b, total in enumerate((id_bias, attributes, id_crosses, crosses, matches)):
            scale = scales[row, b] * block_values[b]
            m += total.real * scale
            v += total.imag * (scale * scale)
        mean[i] = m
        variance[i] = v


@njit(cache=True)
def _score_bounds(
    mean: npt.NDArray[np.float64],
    sd: npt.NDArray[np.float64],
    shared_mean: float,
    shared_sd: float,
    weights: npt.NDArray[np.float64],
    weighted: bool,
    sigmas: float,
    limit: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Each candidate's best and worst score ``sigmas`` deviations up and down (its own and
    the shared term's), scored as a draw scores it: which candidates can win at all."""
    n = len(mean)
    up = np.empty(n)
    down = np.empty(n)
    shared_reach = sigmas * shared_sd
    for i in range(n):
        reach = sigmas * sd[i]
        if weighted:
            hi = mean[i] + reach + (shared_mean + shared_reach)
            lo = mean[i] - reach + (shared_mean - shared_reach)
            up[i] = clipped_sigma(hi, limit) * weights[i]
            down[i] = clipped_sigma(lo, limit) * weights[i]
        else:
            up[i] = mean[i] + reach
            down[i] = mean[i] - reach
    return up, down


@njit(cache=True)
def chosen_first(
    mean: npt.NDArray[np.float64],
    sd: npt.NDArray[np.float64],
    shared_mean: float,
    shared_sd: float,
    weights: npt.NDArray[np.float64],
    weighted: bool,
    normals: npt.NDArray[np.float64],
    draws: int,
    sigmas: float,
    limit: float,
    counts: npt.NDArray[np.float64],
) -> None:
    """``counts[i]``: in how many of ``draws`` Thompson draws candidate ``i`` ranks first.

    Weighted, a draw ranks by ``σ(logit + shared term) × weight``, else by the logit alone
    (σ is monotone and the shared term moves all alike). Only contenders are drawn: those
    whose best case (``sigmas`` deviations up) reaches the best worst case; the others
    keep 0. Draw ``d`` reads ``normals[d (m + 1)]`` for the shared term and the next ``m``
    for the ``m`` contenders in order, so ``normals`` holds at least ``draws (m + 1)``.
    Logits are clipped to ``±limit`` before σ."""
    n = len(mean)
    up, down = _score_bounds(mean, sd, shared_mean, shared_sd, weights, weighted, sigmas, limit)
    floor = down.max() if n else 0.0
    contenders = np.flatnonzero(up >= floor)
    m = len(contenders)
    if m == 1:
        counts[contenders[0]] = draws
        return
    for d in range(draws):
        at = d * (m + 1)
        shift = shared_mean + shared_sd * normals[at]
        best = -np.inf
        first = 0
        for j in range(m):
            i = contenders[j]
            logit = sd[i] * normals[at + 1 + j] + mean[i]
            score = clipped_sigma(logit + shift, limit) * weights[i] if weighted else logit
            if score > best:
                best = score
                first = j
        counts[contenders[first]] += 1.0


@njit(cache=True)
def _offer(
    top: npt.NDArray[np.float64],
    at: npt.NDArray[np.int64],
    filled: int,
    score: float,
    j: int,
) -> int:
    """Put candidate ``j`` into the best-first list ``top`` (its scores; ``at``, who)
    if it belongs among the ``len(top)`` best; a tie goes to the lower ``j``, as the
    walk down a stable sort meets it first. Returns how many the list now holds."""
    k = len(top)
    if filled == k:
        last = top[k - 1]
        if score < last or (score == last and j > at[k - 1]):
            return filled
        t = k - 1
    else:
        t = filled
        filled += 1
    while t > 0 and (score > top[t - 1] or (score == top[t - 1] and j < at[t - 1])):
        top[t] = top[t - 1]
        at[t] = at[t - 1]
        t -= 1
    top[t] = score
    at[t] = j
    return filled


@njit(cache=True)
def chosen_within(
    mean: npt.NDArray[np.float64],
    sd: npt.NDArray[np.float64],
    shared_mean: float,
    shared_sd: float,
    weights: npt.NDArray[np.float64],
    weighted: bool,
    groups: npt.NDArray[np.int64],
    chosen: int,
    normals: npt.NDArray[np.float64],
    draws: int,
    sigmas: float,
    limit: float,
    counts: npt.NDArray[np.float64],
) -> None:
    """``counts[i]``: in how many of ``draws`` Thompson draws candidate ``i`` is among
    the ``chosen`` a selection takes: the walk down the order by score that skips a
    candidate whose group already has one, until ``chosen``. That is the ``chosen`` best
    of the groups' bests. ``groups[i]`` in ``0 … n-1`` is candidate ``i``'s group (one
    without a group has one of its own); empty, every candidate is its own group.

    Scores, draws and the normals read are :func:`chosen_first`'s. Only contenders are
    drawn: those whose best case reaches the ``chosen``-th best of the groups' best worst
    cases (below it, ``chosen`` other groups, or a better one of its own, always beat
    it). A draw scores every contender first (a loop without branches), then keeps its
    ``chosen`` best in a short sorted list, the likeliest visited first so that few enter
    it; ties go to the lower index, as in the stable sort. For 100 contenders and 100
    draws the logged shares took 104 µs at ``chosen`` 1, 136 at 3, 166 at 3 with ten
    groups and 185 at 10; scoring and inserting in one loop took 155 and 245."""
    n = len(mean)
    grouped = len(groups) > 0
    k = min(chosen, n)
    up, down = _score_bounds(mean, sd, shared_mean, shared_sd, weights, weighted, sigmas, limit)
    group_down = np.full(n, -np.inf)
    for i in range(n):
        g = groups[i] if grouped else i
        group_down[g] = max(group_down[g], down[i])
    floor = np.sort(group_down)[n - k] if k > 0 else np.inf
    contenders = np.flatnonzero(up >= floor)
    m = len(contenders)
    if not grouped and m <= k:
        for sure in contenders:
            counts[sure] += draws
        return
    # the likeliest first: the list fills with winners early, and few later ones enter
    middle = np.empty(m)
    for j in range(m):
        middle[j] = -(up[contenders[j]] + down[contenders[j]])
    contenders = contenders[np.argsort(middle, kind="mergesort")]
    top = np.empty(k)
    at = np.empty(k, dtype=np.int64)
    scores = np.empty(m)
    best = np.empty(n)
    leader = np.empty(n, dtype=np.int64)
    units = np.unique(groups[contenders]) if grouped else contenders[:0]
    for d in range(draws):
        at_draw = d * (m + 1)
        shift = shared_mean + shared_sd * normals[at_draw]
        filled = 0
        bar = -np.inf  # what a score must reach to enter the list: its last, once full
        for j in range(m):  # the scores first: a loop without branches runs faster
            i = contenders[j]
            logit = sd[i] * normals[at_draw + 1 + j] + mean[i]
            scores[j] = clipped_sigma(logit + shift, limit) * weights[i] if weighted else logit
        if grouped:
            for g in units:
                best[g] = -np.inf
                leader[g] = n
            for j in range(m):
                i = contenders[j]
                score = scores[j]
                g = groups[i]
                if score > best[g] or (score == best[g] and i < leader[g]):
                    best[g] = score
                    leader[g] = i
            for g in units:
                if best[g] >= bar:
                    filled = _offer(top, at, filled, best[g], leader[g])
                    if filled == k:
                        bar = top[k - 1]
        else:
            for j in range(m):
                if scores[j] >= bar:
                    filled = _offer(top, at, filled, scores[j], contenders[j])
                    if filled == k:
                        bar = top[k - 1]
        for t in range(filled):
            counts[at[t]] += 1.0


@njit(cache=True)
def selection_shares(
    mean: npt.NDArray[np.float64],
    variance: npt.NDArray[np.float64],
    shared_mean: float,
    shared_variance: float,
    priority: npt.NDArray[np.float64],
    propensity: npt.NDArray[np.float64],
    weighted: bool,
    groups: npt.NDArray[np.int64],
    chosen: int,
    normals: npt.NDArray[np.float64],
    draws: int,
    sigmas: float,
    limit: float,
    floor: float,
    shares: npt.NDArray[np.float64],
) -> None:
    """``shares[i]``: candidate ``i``'s share of ``draws`` draws in which it is chosen,
    at least ``floor``: with ``chosen`` 1, :func:`chosen_first` (who comes first: the
    groups do not matter); above, :func:`chosen_within` (who is among the ``chosen``,
    at most one per group of ``groups``). Weighted, each ranks by its sampled
    probability times ``priority / propensity`` (what multiplied the decision's own
    draw into its priority). One call for what took a dozen array calls around the
    draws."""
    n = len(mean)
    sd = np.empty(n)
    weights = np.empty(n)
    for i in range(n):
        sd[i] = math.sqrt(variance[i])
        weights[i] = priority[i] / max(propensity[i], 1e-12) if weighted else 1.0
        shares[i] = 0.0
    if chosen <= 1:
        chosen_first(
            mean,
            sd,
            shared_mean,
            math.sqrt(shared_variance),
            weights,
            weighted,
            normals,
            draws,
            sigmas,
            limit,
            shares,
        )
    else:
        chosen_within(
            mean,
            sd,
            shared_mean,
            math.sqrt(shared_variance),
            weights,
            weighted,
            groups,
            chosen,
            normals,
            draws,
            sigmas,
            limit,
            shares,
        )
    for i in range(n):
        shares[i] = max(shares[i] / draws, floor)


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
