"""Hashed features for the adaptive model: any attribute is a predictor, with no configuration.

Every scalar of the customer, the context and the action becomes a *token*: a stable 63-bit
hash (BLAKE2b, the same in every process and release: stored models depend on it). A
feature's bucket is the top ``bits`` bits of its token. What is hashed:

- strings and booleans: ``hash(source.key) XOR hash(value)``, e.g. ``customer.segment=gold``;
- numbers: one token per ``(key, bucket)``, ``bucket = floor(4 log2(1 + |v|))`` with the sign
  (quarter-octave buckets: 0, 1, 2, 3, 4-5, 6-7 ... apart, 1000 and 1100 together), so counts,
  amounts and scores need no scaling and may act non-linearly;
- skipped: ``None``, NaN, infinities, lists, dicts, keys starting with ``_``, and the action's
  ``name`` (it repeats ``id``) and ``prior`` (it is the offset, see :mod:`models.adaptive`).

One candidate's row, block by block; the features of a block share one value ``x``
(``d`` = :data:`DETAIL`; R request tokens, A action attributes, S action strings, C request
strings and lookups):

=============================================  ==========  ====================================
block                                          x           example
=============================================  ==========  ====================================
global bias (shared by all candidates)         1
customer and context tokens (shared)           d/√R        ``customer.segment=gold``
``action.id``: the per-action bias             1           the cold-start arm
the action's other attributes                  d/√A        ``action.category=shoes``
``action.id`` × each customer/context token    d/√R        ``id=a1 × customer.segment=gold``
action string × customer/context string        d/√(S·C)    ``action.category=shoes ×
                                                           context.page_category=bags``
matches                                        d           ``action.category ==
                                                           context.page_category``
=============================================  ==========  ====================================

A string cross is the XOR of the two tokens. When the two values are equal their hashes
cancel and the cross *is* the match feature of the two keys, whatever the value
(``hash(action.category) XOR hash(context.page_category)``): learned on shoes, it works for
bags and for actions never seen. The match block repeats those cells with a larger ``x``.
A *lookup* is a number whose key ends with an action value: ``customer.views_shoes = 3``
crosses as ``hash(customer.views_<>, bucket 8) XOR hash("shoes")``, so for a shoe action it
is the feature "views of the action's category in bucket 8". The block values make a block's
prior variance ``d²/prior_precision`` however many attributes arrive (the ``action.id`` bias:
``1/prior_precision``), so a new action's logit starts near its prior's, and the many detail
weights do not drown the ranking in exploration noise.

:meth:`Hasher.design` computes the crosses in numpy for all candidates at once into one
``(candidates, K)`` matrix: the readable reference. The model scores and learns through
:mod:`models.adaptive_kernels`, which visits the same cells without building it. An
action's tokens are hashed once, when a catalogue is bound. Tokens with the top
bit set (padding, a match that missed) land in ``[2**bits, 2**(bits+1))``, the *null* half
of the model's table: always 0, never learned. Known approximation: XOR is symmetric, so
``category=shoes × page=bags`` and ``category=bags × page=shoes`` share a bucket.

The hashes, the buckets and :data:`DETAIL` are part of the stored format: a change to any
of them needs a fresh state (a new scope in the store).

>>> h = Hasher(bits=18)
>>> table = h.table([{"id": "a", "category": "shoes"}, {"id": "b", "category": "bags"}])
>>> request = h.request({"favourite": "shoes", "orders": 3}, {"page_category": "bags"})
>>> design = h.design(request, table)
>>> np.diff([*design.starts, design.index.shape[1]]).tolist()  # bias, attrs, id×3, 2, 2+null
[1, 1, 3, 2, 3]
>>> (design.index[:, 7:] < h.dims).tolist()  # a's category matches favourite, b's the page
[[True, False, False], [False, True, False]]
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_PRIOR",
    "DETAIL",
    "ActionTable",
    "Design",
    "Hasher",
    "PackedRequest",
    "RequestPart",
    "bucket",
    "logit",
    "token",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
HashArray = npt.NDArray[np.uint64]

DEFAULT_PRIOR = 0.02  # engine.domain.Action.prior's default
DETAIL = 0.3  # prior scale of the detail blocks, relative to the action.id bias
SKIPPED_ACTION_KEYS = frozenset({"id", "name", "prior"})
CACHE_LIMIT = 1 << 17  # request entries remembered per process; cleared when full
NULL = 1 << 63  # any token with this bit lands in the null half
_NULL = np.uint64(NULL)
_EMPTY = np.zeros(0, dtype=np.uint64)
_MISSING: Any = object()  # a cache lookup that found nothing (None is a cached answer)


def token(*parts: str) -> int:
    """Stable 63-bit hash of the parts (never Python's ``hash``, which differs per process).

    >>> token("customer", "segment", "gold")
    3928904451991496686
    """
    data = "\x1f".join(parts).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") & (NULL - 1)


def bucket(value: float) -> int | None:
    """Signed quarter-octave bucket of a number; None for NaN and infinities.

    >>> [bucket(v) for v in (0, 1, 2, 3, 5, 1000, 1100, -1)]
    [0, 4, 6, 8, 10, 39, 40, -5]
    """
    if not math.isfinite(value):
        return None
    level = int(4.0 * math.log2(1.0 + abs(value)))
    return level if value >= 0 else -level - 1


def logit(p: FloatArray | float) -> FloatArray:
    """log(p / (1 - p)), with p clipped to [1e-9, 1 - 1e-9]."""
    clipped = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1.0 - 1e-9)
    out: FloatArray = np.log(clipped) - np.log1p(-clipped)
    return out


GLOBAL_BIAS = token("bias")

# (token, crossing token, crossing value hash); 0, 0 when the value does not cross
_Entry = tuple[int, int, int]


def _entry(source: str, key: str, value: Any) -> _Entry | None:
    if value.__class__ is bool:
        value = "true" if value else "false"
    if isinstance(value, str):
        value_hash = token("value", value)
        pair = token(source, key) ^ value_hash
        return pair, pair, value_hash
    level = _level(value)
    return None if level is None else _numeric_entry(source, key, level)


def _level(value: Any) -> int | None:
    """The bucket of a number (not a bool); None for anything else."""
    if not isinstance(value, int | float) or value.__class__ is bool:
        return None
    try:
        return bucket(float(value))
    except OverflowError:  # an int beyond float range
        return None


def _numeric_entry(source: str, key: str, level: int) -> _Entry:
    if "_" not in key:
        return token(source, key, f"#{level}"), 0, 0
    prefix, suffix = key.rsplit("_", 1)
    value_hash = token("value", suffix)
    lookup = token(source, f"{prefix}_<>", f"#{level}") ^ value_hash
    return token(source, key, f"#{level}"), lookup, value_hash


def _inverse_sqrt(count: float) -> float:
    return 1.0 / math.sqrt(count) if count > 0 else 0.0  # 0: an empty block


@dataclass(frozen=True, slots=True)
class RequestPart:
    """The customer and context tokens of one decision."""

    tokens: HashArray  # the global bias, then every customer and context token (1 + R)
    crossing: HashArray  # strings, booleans and lookups (C)
    values: HashArray  # their value hashes (C)
    shared: IntArray  # buckets of ``tokens``
    shared_values: FloatArray
    block_values: FloatArray  # (5,): the request's factor of each block's value


class PackedRequest(NamedTuple):
    """:class:`RequestPart`'s three token arrays end to end: ``packed[:n]`` the shared
    tokens (the global bias first), then ``c`` crossing tokens, then their ``c`` value
    hashes."""

    packed: HashArray
    n: int
    c: int
    shared_values: FloatArray
    block_values: FloatArray


@dataclass(frozen=True, slots=True)
class ActionTable:
    """A catalogue's actions, hashed once; row ``i`` is the ``i``-th view.

    ``packed`` holds per row ``[action.id, other tokens (A), string tokens (S), their value
    hashes (S), 5 block values (float64 bits)]``, padded with :data:`NULL`, so that the
    candidates' rows come in one gather."""

    ids: tuple[str, ...]
    offsets: FloatArray  # logit of each action's prior (N)
    packed: HashArray  # (N, 1 + A + 2S + 5)
    width: int  # 1 + A
    depth: int  # S
    scales: FloatArray = field(init=False, repr=False)  # (N, 5): the block values, apart

    def __post_init__(self) -> None:
        scales = np.ascontiguousarray(self.packed[:, -5:].view(np.float64))
        object.__setattr__(self, "scales", scales)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True)
class Design:
    """One decision's features: each candidate's buckets in blocks starting at ``starts``,
    one value per candidate and block; and the buckets every candidate shares."""

    index: IntArray  # (n, K + 1); the last column is null
    starts: IntArray  # (5,): action.id, attributes, id × request, string crosses, matches
    scales: FloatArray  # (n, 5)
    shared: IntArray  # (1 + R,)
    shared_values: FloatArray  # (1 + R,)


class Hasher:
    """Turns customers, contexts and actions into buckets of a ``2**bits`` table."""

    def __init__(self, bits: int = 18) -> None:
        if not 4 <= bits <= 31:
            raise ValueError(f"bits must be in 4..31, got {bits}")
        self.bits = bits
        self.dims = 1 << bits
        self.shift = np.uint64(63 - bits)
        self.shift_bits = 63 - bits  # the same, as the compiled kernels take it
        self._cache: dict[tuple[str, str, Any], _Entry | None] = {}
        self._levels: dict[tuple[str, str, int], _Entry] = {}
        self._counts: dict[tuple[int, int], tuple[FloatArray, FloatArray]] = {}

    def packed_request(
        self, customer: Mapping[str, Any], context: Mapping[str, Any]
    ) -> PackedRequest:
        """The request's tokens in one array, as the scoring kernel reads them: the
        slices, the shift and the view of :meth:`request` and the shared cells' gather
        and sums were a dozen array calls around the kernel. Folded into it, the demo
        world's warm web decision in process took about 5% less CPU (paired block
        medians 0.941 and 0.946 of the previous code's, alternated; cold, no change)."""
        cache = self._cache
        if len(cache) > CACHE_LIMIT:
            cache.clear()
        if len(self._levels) > CACHE_LIMIT:
            self._levels.clear()
        tokens: list[int] = [GLOBAL_BIAS]
        crossing: list[int] = []
        values: list[int] = []
        for source, mapping in (("customer", customer), ("context", context)):
            for key, value in mapping.items():
                kind = value.__class__
                if kind is float and not value.is_integer() and key[:1] != "_":
                    entry = self._by_level(source, key, value)  # never kept by value
                else:
                    if kind is bool:  # True == 1 as a key: keep them apart
                        value = "true" if value else "false"  # (what _entry hashes anyway)
                    try:
                        entry = cache.get((source, key, value), _MISSING)
                    except TypeError:  # unhashable: a list or a dict
                        continue
                    if entry is _MISSING:
                        entry = self._miss(source, key, value)
                if entry is not None:
                    tokens.append(entry[0])
                    if entry[1]:
                        crossing.append(entry[1])
                        values.append(entry[2])
        # One array for the three lists, and the value arrays (which depend only on the
        # counts) made once per count: inside a decision, with its caches cooled by the
        # rest of it, six array constructions took 18 µs of a 41 µs call.
        n, c = len(tokens), len(crossing)
        packed = np.array(tokens + crossing + values, dtype=np.uint64)
        shared_values, block_values = self._counted(n, c)
        return PackedRequest(packed, n, c, shared_values, block_values)

    def request(self, customer: Mapping[str, Any], context: Mapping[str, Any]) -> RequestPart:
        packed, n, c, shared_values, block_values = self.packed_request(customer, context)
        array = packed[:n]
        return RequestPart(
            array,
            packed[n : n + c] if c else _EMPTY,
            packed[n + c :] if c else _EMPTY,
            (array >> self.shift).view(np.int64),
            shared_values,
            block_values,
        )

    def _counted(self, n: int, c: int) -> tuple[FloatArray, FloatArray]:
        """The shared cells' values and the blocks' request factors of a request with
        ``n`` shared tokens (the bias included) and ``c`` crossing ones (read-only)."""
        found = self._counts.get((n, c))
        if found is None:
            if len(self._counts) > CACHE_LIMIT:
                self._counts.clear()
            shared_values = np.full(n, DETAIL * _inverse_sqrt(n - 1))
            shared_values[0] = 1.0
            blocks = np.array(
                [1.0, 1.0, DETAIL * _inverse_sqrt(n - 1), DETAIL * _inverse_sqrt(c), DETAIL]
            )
            shared_values.flags.writeable = False
            blocks.flags.writeable = False
            found = self._counts[(n, c)] = (shared_values, blocks)
        return found

    def _by_level(self, source: str, key: str, value: float) -> _Entry | None:
        """A fractional number's entry, by its bucket (see :meth:`_miss`)."""
        level = bucket(value)
        if level is None:  # NaN, infinities
            return None
        slot = (source, key, level)
        found = self._levels.get(slot)
        if found is None:
            found = self._levels[slot] = _numeric_entry(source, key, level)
        return found

    def _miss(self, source: str, key: str, value: Any) -> _Entry | None:
        """A value not seen yet. Numbers that vary from decision to decision (minutes
        since a visit, a CLV) would rarely repeat, so they are kept by their bucket,
        which does, and hashed once per bucket rather than once per value."""
        if key[:1] == "_":
            entry = None
        elif (level := _level(value)) is not None:
            slot = (source, key, level)
            found = self._levels.get(slot)
            if found is None:
                found = self._levels[slot] = _numeric_entry(source, key, level)
            if value.__class__ is float and not value.is_integer():
                return found  # not kept by value: it would crowd out the others
            entry = found
        else:
            entry = _entry(source, key, value)
        self._cache[(source, key, value)] = entry
        return entry

    def table(
        self, views: Sequence[Mapping[str, Any]], priors: Sequence[float] | None = None
    ) -> ActionTable:
        """Hash every action once; a prior comes from ``priors``, else the view's ``prior``,
        else :data:`DEFAULT_PRIOR`."""
        heads: list[list[int]] = []
        strings: list[list[tuple[int, int]]] = []
        offsets: list[float] = []
        ids: list[str] = []
        for row, view in enumerate(views):
            action_id = str(view.get("id", row))
            ids.append(action_id)
            prior = priors[row] if priors is not None else view.get("prior", DEFAULT_PRIOR)
            offsets.append(float(logit(float(prior))))
            head = [token("action", "id", action_id)]
            crossing: list[tuple[int, int]] = []
            for key, value in view.items():
                if key in SKIPPED_ACTION_KEYS or key[:1] == "_":
                    continue
                try:
                    entry = _entry("action", key, value)
                except TypeError:
                    continue
                if entry is not None:
                    head.append(entry[0])
                    if isinstance(value, str | bool):
                        crossing.append((entry[1], entry[2]))
            heads.append(head)
            strings.append(crossing)
        n = len(ids)
        width = max((len(h) for h in heads), default=1)
        depth = max((len(c) for c in strings), default=0)
        packed = np.full((n, width + 2 * depth + 5), NULL, dtype=np.uint64)
        packed[:, width + depth : width + 2 * depth] = 0  # a padded value matches nothing
        scales = packed[:, width + 2 * depth :].view(np.float64)
        for row in range(n):
            packed[row, : len(heads[row])] = heads[row]
            for slot, (pair, value_hash) in enumerate(strings[row]):
                packed[row, width + slot] = pair
                packed[row, width + depth + slot] = value_hash
            attributes = DETAIL * _inverse_sqrt(len(heads[row]) - 1)
            scales[row] = (1.0, attributes, 1.0, _inverse_sqrt(len(strings[row])), 1.0)
        return ActionTable(tuple(ids), np.array(offsets), packed, width, depth)

    def design(
        self, request: RequestPart, table: ActionTable, rows: IntArray | None = None
    ) -> Design:
        """Every bucket of every candidate (``rows`` of ``table``; default all) in one matrix."""
        packed = table.packed if rows is None else table.packed[rows]
        a, s = table.width, table.depth
        n = len(packed)
        r, c = len(request.tokens) - 1, len(request.crossing)
        cross, match = a + r, a + r + s * c
        k = match + s * c
        out = np.empty((n, k + 1), dtype=np.uint64)
        out[:, :a] = packed[:, :a]
        np.bitwise_xor(packed[:, :1], request.tokens[1:], out=out[:, a:cross])
        crossed = out[:, cross:match].reshape((n, s, c), copy=False)
        np.bitwise_xor(packed[:, a : a + s, None], request.crossing, out=crossed)
        out[:, match:k] = out[:, cross:match]
        matched = out[:, match:k].reshape((n, s, c), copy=False)
        np.copyto(matched, _NULL, where=packed[:, a + s : a + 2 * s, None] != request.values)
        out[:, k] = _NULL
        np.right_shift(out, self.shift, out=out)
        scales = packed[:, -5:].view(np.float64) * request.block_values
        return Design(
            out.view(np.int64),
            np.array([0, 1, a, cross, match], dtype=np.int64),
            scales,
            request.shared,
            request.shared_values,
        )
