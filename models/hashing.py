"""Hashed features for the adaptive model: any attribute is a predictor, with no configuration.

Every scalar of the customer, the context and the action becomes a *token*: a stable 63-bit
hash of source, key and value (BLAKE2b, the same in every process and release: stored models
depend on it). A feature's bucket is the top ``bits`` bits of its token. What is hashed:

- strings and booleans: one token per ``(key, value)``, e.g. ``customer.segment=gold``;
- numbers: one token per ``(key, bucket)``, ``bucket = floor(4 log2(1 + |v|))`` with the sign
  (quarter-octave buckets: 0, 1, 2, 3, 4-5, 6-7 ... apart, 1000 and 1100 together), so counts,
  amounts and scores need no scaling and may act non-linearly;
- skipped: ``None``, NaN, infinities, lists, dicts, keys starting with ``_``, and the action's
  ``name`` (it repeats ``id``) and ``prior`` (it is the offset, below).

One candidate's row, block by block (the features of a block share one value ``x``):

====================================================  ============  =====================
block                                                 x             example
====================================================  ============  =====================
global bias (shared by all candidates)                1
customer and context tokens (shared)                  1/√R          ``customer.segment=gold``
``action.id``: the per-action bias, the cold-start arm  1
the action's other attributes                         1/√A          ``action.category=shoes``
``action.id`` × every customer/context token          1/√R          ``id=a1 × segment=gold``
action string × customer/context string               1/√(S·Rs)     ``category=shoes ×
                                                                    context.page_category=shoes``
matches and lookups                                   1             ``customer.favourite ==
                                                                    action.category``
====================================================  ============  =====================

A *match* is one feature per pair of keys whose values are equal, whatever the value, so it
carries over to categories and actions never seen. A *lookup* matches a number whose key ends
with an action value, in its bucket: ``customer.views_shoes = 3`` for a shoe action is the
feature ``customer.views_<action.category> in bucket 8``. The ``1/√size`` values give every
block a prior variance of ``1/prior_precision`` however many attributes arrive.

Crosses are the XOR of two tokens, computed in numpy for all candidates at once into one
``(candidates, K)`` matrix; an action's tokens are hashed once, when a catalogue is bound.
Tokens with the top bit set (padding, a match that did not hit) land in ``[2**bits,
2**(bits+1))``, the *null* half of the model's table, which stays 0 and is never learned.

>>> h = Hasher(bits=18)
>>> table = h.table([{"id": "a", "category": "shoes"}, {"id": "b", "category": "bags"}])
>>> request = h.request({"favourite": "shoes", "orders": 3}, {"page_category": "bags"})
>>> design = h.design(request, table, np.arange(2))
>>> np.diff([*design.starts, design.index.shape[1]]).tolist()  # 1 + 1 + 3 + 2 + (2 + 1 null)
[1, 1, 3, 2, 3]
>>> int((design.index[:, 7:] < h.dims).sum())  # one match each: favourite, page_category
2
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_PRIOR", "ActionTable", "Design", "Hasher", "RequestPart", "bucket", "token"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
HashArray = npt.NDArray[np.uint64]

DEFAULT_PRIOR = 0.02  # engine.domain.Action.prior's default
SKIPPED_ACTION_KEYS = frozenset({"id", "name", "prior"})
CACHE_LIMIT = 1 << 17  # request tokens remembered per process; cleared when full
NULL = 1 << 63  # a token in the null half
_LOW = NULL - 1
_EMPTY = np.zeros(0, dtype=np.uint64)


def token(*parts: str) -> int:
    """Stable 63-bit hash of the parts (never Python's ``hash``, which differs per process).

    >>> token("customer", "segment", "gold")
    3928904451991496686
    """
    data = "\x1f".join(parts).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") & _LOW


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
    clipped = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1.0 - 1e-9)
    out: FloatArray = np.log(clipped) - np.log1p(-clipped)
    return out


# (token, crossed with action strings, match key (0: none), match value)
_Entry = tuple[int, bool, int, int]


def _entry(source: str, key: str, value: Any) -> _Entry | None:
    if value.__class__ is bool:
        value = "true" if value else "false"
    if isinstance(value, str):
        return token(source, key, value), True, token("match", source, key), token("value", value)
    if not isinstance(value, int | float):
        return None
    level = bucket(float(value))
    if level is None:
        return None
    match_key = match_value = 0
    if "_" in key:
        prefix, suffix = key.rsplit("_", 1)
        match_key = token("lookup", source, prefix, str(level))
        match_value = token("value", suffix)
    return token(source, key, f"#{level}"), False, match_key, match_value


def _inverse_sqrt(counts: FloatArray) -> FloatArray:
    out: FloatArray = np.zeros_like(counts)
    np.divide(1.0, np.sqrt(counts), out=out, where=counts > 0)
    return out


@dataclass(frozen=True, slots=True)
class RequestPart:
    """The customer and context tokens of one decision."""

    tokens: HashArray  # every token (R)
    strings: HashArray  # those of strings and booleans (Rs)
    match_keys: HashArray  # matches and lookups (M)
    match_values: HashArray
    shared: IntArray  # buckets of the global bias and the tokens
    shared_values: FloatArray


@dataclass(frozen=True, slots=True)
class ActionTable:
    """A catalogue's actions, hashed once; row ``i`` is the ``i``-th action view."""

    ids: tuple[str, ...]
    offsets: FloatArray  # logit of each action's prior (N)
    head: HashArray  # [action.id, other attribute tokens, NULL padding] (N, 1 + A)
    strings: HashArray  # [token, match key, value] per string attribute (N, S, 3)
    scales: FloatArray  # [1, 1/√A, 1, 1/√S, 1] (N, 5)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True)
class Design:
    """One decision's features: each candidate's buckets, blocks starting at ``starts``
    with one value per candidate and block; and the buckets all candidates share."""

    index: IntArray  # (n, K + 1); the last column is null
    starts: IntArray  # (5,): bias, attributes, id×request, string crosses, matches
    scales: FloatArray  # (n, 5)
    shared: IntArray  # (k,)
    shared_values: FloatArray  # (k,)


class Hasher:
    """Turns customers, contexts and actions into buckets of a ``2**bits`` table."""

    def __init__(self, bits: int = 18) -> None:
        if not 4 <= bits <= 31:
            raise ValueError(f"bits must be in 4..31, got {bits}")
        self.bits = bits
        self.dims = 1 << bits
        self.shift = np.uint64(63 - bits)
        self.global_bias = token("bias") >> (63 - bits)
        self._cache: dict[tuple[str, str, Any], _Entry | None] = {}

    def request(self, customer: Mapping[str, Any], context: Mapping[str, Any]) -> RequestPart:
        cache = self._cache
        if len(cache) > CACHE_LIMIT:
            cache.clear()
        tokens: list[int] = []
        strings: list[int] = []
        keys: list[int] = []
        values: list[int] = []
        for source, mapping in (("customer", customer), ("context", context)):
            for key, value in mapping.items():
                slot = (source, key, value)
                try:
                    entry = cache[slot]
                except KeyError:
                    entry = None if key[:1] == "_" else _entry(source, key, value)
                    cache[slot] = entry
                except TypeError:  # unhashable: a list or a dict
                    continue
                if entry is None:
                    continue
                tokens.append(entry[0])
                if entry[1]:
                    strings.append(entry[0])
                if entry[2]:
                    keys.append(entry[2])
                    values.append(entry[3])
        array = np.array(tokens, dtype=np.uint64)
        shared = np.empty(len(tokens) + 1, dtype=np.int64)
        shared[0] = self.global_bias
        shared[1:] = array >> self.shift
        shared_values = np.full(len(tokens) + 1, 1.0 / math.sqrt(max(len(tokens), 1)))
        shared_values[0] = 1.0
        return RequestPart(
            array,
            np.array(strings, dtype=np.uint64) if strings else _EMPTY,
            np.array(keys, dtype=np.uint64) if keys else _EMPTY,
            np.array(values, dtype=np.uint64) if values else _EMPTY,
            shared,
            shared_values,
        )

    def table(
        self, views: Sequence[Mapping[str, Any]], priors: Sequence[float] | None = None
    ) -> ActionTable:
        """Hash every action once; a prior comes from ``priors``, else the view's ``prior``,
        else :data:`DEFAULT_PRIOR`."""
        heads: list[list[int]] = []
        crosses: list[list[tuple[int, int, int]]] = []
        offsets: list[float] = []
        ids: list[str] = []
        for row, view in enumerate(views):
            action_id = str(view.get("id", row))
            ids.append(action_id)
            prior = priors[row] if priors is not None else view.get("prior", DEFAULT_PRIOR)
            offsets.append(float(logit(float(prior))))  # type: ignore[arg-type]
            head = [token("action", "id", action_id)]
            cross: list[tuple[int, int, int]] = []
            for key, value in view.items():
                if key in SKIPPED_ACTION_KEYS or key[:1] == "_":
                    continue
                try:
                    entry = _entry("action", key, value)
                except TypeError:
                    continue
                if entry is None:
                    continue
                head.append(entry[0])
                if entry[1]:
                    cross.append((entry[0], token("match", "action", key), entry[3]))
            heads.append(head)
            crosses.append(cross)
        n = len(ids)
        width = max((len(h) for h in heads), default=1)
        depth = max((len(c) for c in crosses), default=0)
        head_array = np.full((n, width), NULL, dtype=np.uint64)
        strings = np.zeros((n, depth, 3), dtype=np.uint64)
        strings[:, :, :2] = NULL
        scales = np.ones((n, 5))
        for row in range(n):
            head_array[row, : len(heads[row])] = heads[row]
            if crosses[row]:
                strings[row, : len(crosses[row])] = crosses[row]
        scales[:, 1] = _inverse_sqrt(np.array([len(h) - 1.0 for h in heads]))
        scales[:, 3] = _inverse_sqrt(np.array([float(len(c)) for c in crosses]))
        return ActionTable(tuple(ids), np.array(offsets), head_array, strings, scales)

    def design(
        self, request: RequestPart, table: ActionTable, rows: IntArray | None = None
    ) -> Design:
        """Every bucket of every candidate (``rows`` of ``table``; default all) in one matrix."""
        head = table.head if rows is None else table.head[rows]
        strings = table.strings if rows is None else table.strings[rows]
        scales = table.scales if rows is None else table.scales[rows]
        n, a = head.shape
        s = strings.shape[1]
        r, rs, m = len(request.tokens), len(request.strings), len(request.match_keys)
        starts = np.cumsum([0, 1, a - 1, r, s * rs], dtype=np.int64)
        k = int(starts[-1]) + s * m
        out = np.empty((n, k + 1), dtype=np.uint64)
        out[:, :a] = head
        np.bitwise_xor(head[:, :1], request.tokens, out=out[:, a : a + r])
        crossed = out[:, starts[3] : starts[4]].reshape((n, s, rs), copy=False)
        np.bitwise_xor(strings[:, :, :1], request.strings, out=crossed)
        hit = strings[:, :, 2:] == request.match_values
        keys = np.bitwise_xor(strings[:, :, 1:2], request.match_keys)
        matched = out[:, starts[4] : k].reshape((n, s, m), copy=False)
        np.copyto(matched, np.where(hit, keys, np.uint64(NULL)))
        out[:, k] = NULL
        np.right_shift(out, self.shift, out=out)
        factors = _inverse_sqrt(np.array([1.0, 1.0, r, rs, 1.0]))  # 0 for an empty block
        return Design(
            out.view(np.int64),
            starts,
            scales * factors,
            request.shared,
            request.shared_values,
        )
