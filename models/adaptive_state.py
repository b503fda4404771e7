"""How the adaptive model's parameters travel: a sparse delta and two byte formats.

Only touched buckets are ever written. A bucket is ``(index: uint32, mean: float64,
precision: float64)``, 20 bytes, little-endian, arrays one after the other behind a header:

- state ``NBAM`` v1: ``<4s H B x d Q Q``: magic, format, bits, prior precision, updates,
  buckets; then indices, means, precisions (absolute values: a round trip is exact);
- delta ``NBAD`` v1: ``<4s H x x Q Q``: magic, format, updates, buckets; then indices
  (strictly increasing), ``dm``, ``dq`` (additive: deltas from several workers commute).

Storing them (the worker sees responses, API processes sample):

- the worker applies responses to its in-memory model in micro-batches
  (:meth:`~models.adaptive.AdaptiveModel.update_batch`, every second or every N responses)
  and ``XADD``\\ s each :class:`Delta` to one Redis stream (``MAXLEN ~`` a few minutes);
- every minute or so it writes the whole state with the stream id it covers, in one
  ``HSET nba:adaptive:<scope> blob <to_bytes()> stream_id <id> updates <n>``;
- an API process loads the blob at start, then ``XREAD``\\ s from that stream id in its
  background loop and applies each delta in place; a reader that falls behind the stream's
  trim reloads the blob. Deltas are additive, so each must be applied exactly once: the
  stream id is the cursor. ``<scope>`` names the offset the weights were learned against:
  ``prior`` or the base model's version (a new base model starts a fresh state).

A hash of bucket -> (m, q) with ``HINCRBYFLOAT`` also works but costs two commands per
touched bucket and a full ``HGETALL`` (100k fields) per reader start; the blob plus stream
costs one command per batch and reads in one round trip.

>>> delta = Delta(np.array([3, 7]), np.array([0.5, -0.25]), np.array([0.1, 0.2]), updates=2)
>>> Delta.from_bytes(delta.to_bytes()) == delta
True
>>> Delta.combine([delta, delta]).dm.tolist()
[1.0, -0.5]
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "DELTA_HEADER",
    "STATE_HEADER",
    "Delta",
    "pack_buckets",
    "read_header",
    "unpack_buckets",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

STATE_HEADER = struct.Struct("<4sHBxdQQ")
DELTA_HEADER = struct.Struct("<4sHxxQQ")
BUCKET_BYTES = 20


@dataclass(frozen=True, slots=True, eq=False)
class Delta:
    """A sparse change of the parameters: ``m[indices] += dm``, ``q[indices] += dq``."""

    indices: IntArray
    dm: FloatArray
    dq: FloatArray
    updates: int = 0

    def __post_init__(self) -> None:
        index = self.indices
        if not len(index) == len(self.dm) == len(self.dq):
            raise ValueError("indices, dm and dq must have the same length")
        if len(index) > 1 and not bool(np.all(index[1:] > index[:-1])):
            raise ValueError("delta indices must be strictly increasing")
        if len(index) and int(index[0]) < 0:
            raise ValueError("delta indices must be non-negative")

    def __len__(self) -> int:
        return len(self.indices)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Delta):
            return NotImplemented
        return (
            self.updates == other.updates
            and np.array_equal(self.indices, other.indices)
            and np.array_equal(self.dm, other.dm)
            and np.array_equal(self.dq, other.dq)
        )

    @classmethod
    def empty(cls) -> Delta:
        return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))

    @classmethod
    def combine(cls, deltas: Iterable[Delta]) -> Delta:
        """One delta with the effect of all, summed per bucket."""
        parts = list(deltas)
        if not parts:
            return cls.empty()
        index, inverse = np.unique(np.concatenate([d.indices for d in parts]), return_inverse=True)
        n = len(index)
        dm = np.bincount(inverse, np.concatenate([d.dm for d in parts]), n).astype(np.float64)
        dq = np.bincount(inverse, np.concatenate([d.dq for d in parts]), n).astype(np.float64)
        return cls(index.astype(np.int64), dm, dq, sum(d.updates for d in parts))

    def to_bytes(self) -> bytes:
        head = DELTA_HEADER.pack(b"NBAD", 1, self.updates, len(self))
        return head + pack_buckets(self.indices, self.dm, self.dq)

    @classmethod
    def from_bytes(cls, data: bytes) -> Delta:
        _, _, updates, count = read_header(DELTA_HEADER, data, b"NBAD")
        index, dm, dq = unpack_buckets(data, DELTA_HEADER.size, count)
        return cls(index, dm, dq, updates)


def pack_buckets(index: IntArray, a: FloatArray, b: FloatArray) -> bytes:
    return index.astype("<u4").tobytes() + a.astype("<f8").tobytes() + b.astype("<f8").tobytes()


def unpack_buckets(data: bytes, start: int, count: int) -> tuple[IntArray, FloatArray, FloatArray]:
    if len(data) != start + BUCKET_BYTES * count:
        raise ValueError(f"expected {start + BUCKET_BYTES * count} bytes, got {len(data)}")
    index = np.frombuffer(data, "<u4", count, start).astype(np.int64)
    a = np.frombuffer(data, "<f8", count, start + 4 * count).astype(np.float64)
    b = np.frombuffer(data, "<f8", count, start + 12 * count).astype(np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("non-finite parameters")
    return index, a, b


def read_header(layout: struct.Struct, data: bytes, magic: bytes) -> tuple[Any, ...]:
    if len(data) < layout.size or data[:4] != magic:
        raise ValueError(f"not an adaptive-model {magic.decode()} blob")
    fields = tuple(layout.unpack_from(data))
    if fields[1] != 1:
        raise ValueError(f"unknown {magic.decode()} format version {fields[1]}")
    return fields
