"""Fixtures of the cluster tests (those of every test that starts clusters: `cluster_fixtures`)."""

from collections.abc import Iterator

import pytest
from agent_helpers import setup_cluster
from cluster_fixtures import ClusterFactory
from cluster_helpers import Cluster

from k8s.fakeapi import FakeKubernetes


@pytest.fixture(scope="module")
def lab(module_cluster_factory: ClusterFactory) -> Cluster:
    """A 2-device cluster ready for agents (agent_helpers.setup_cluster), for the tests of one module."""
    cluster = module_cluster_factory()
    setup_cluster(cluster)
    return cluster


@pytest.fixture
def kube() -> Iterator[FakeKubernetes]:
    """The test Kubernetes API server, bookmarks every half second."""
    with FakeKubernetes(bookmark_interval=0.5) as server:
        yield server
