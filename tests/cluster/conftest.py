"""A local Redis Cluster of three masters, started once per session (see ``cluster.py``)."""

from __future__ import annotations

import pytest

from tests.cluster.cluster import LocalCluster, local_cluster


@pytest.fixture(scope="session")
def redis_cluster(request: pytest.FixtureRequest) -> LocalCluster:
    return local_cluster(request)
