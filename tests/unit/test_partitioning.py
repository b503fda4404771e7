"""The decision log's partitioner (streams.partitioning): every key lands where aiokafka's
default partitioner (Java's murmur2) puts it, for any partition count, also once the
remembered keys were cleared; a record without a key still goes to a partition."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.partitioning import RememberingPartitioner


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(st.binary(max_size=40), min_size=1, max_size=30),
    counts=st.lists(st.integers(1, 12), min_size=1, max_size=3),
    limit=st.integers(1, 8),
)
def test_each_key_goes_where_the_default_partitioner_puts_it(
    keys: list[bytes], counts: list[int], limit: int
) -> None:
    remembering, default = RememberingPartitioner(limit), DefaultPartitioner()
    for count in counts:
        partitions = list(range(count))
        for key in keys + keys:  # the second time from memory
            expected = default(key, partitions, partitions)
            assert remembering(key, partitions, partitions) == expected


def test_partition_ids_need_not_start_at_zero() -> None:
    remembering, default = RememberingPartitioner(), DefaultPartitioner()
    partitions = [3, 5, 8]
    for key in (b"c-0001", b"c-0002", b"c-0003", b"c-0001"):
        assert remembering(key, partitions, partitions) == default(key, partitions, partitions)


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    assert RememberingPartitioner()(None, [0, 1, 2], [2]) == 2
