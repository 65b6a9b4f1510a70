"""Fixtures of tests that start clusters (a plugin of the root conftest, for the cluster and fidelity tests): several
real devices on loopback, formed into clusters through the API; two peered sites; the logs of a failed test."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cluster_helpers import Cluster
from peering_helpers import Site, start_site

from waiting import wait_until

ClusterFactory = Callable[[], Cluster]
_live: list[Cluster] = []


def _factory(base: Path) -> tuple[ClusterFactory, list[Cluster]]:
    made: list[Cluster] = []

    def make() -> Cluster:
        cluster = Cluster(base / f"c{len(made)}")
        cluster.base_dir.mkdir(parents=True)
        made.append(cluster)
        _live.append(cluster)
        return cluster

    return make, made


def _close(made: list[Cluster]) -> None:
    for cluster in made:
        cluster.close()
        _live.remove(cluster)


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[ClusterFactory]:
    """`cluster_factory()` gives an empty `Cluster` whose devices stop when the test ends."""
    make, made = _factory(tmp_path)
    yield make
    _close(made)


@pytest.fixture(scope="module")
def module_cluster_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterFactory]:
    """Like `cluster_factory`, for clusters shared by the tests of one module."""
    make, made = _factory(tmp_path_factory.mktemp("cluster"))
    yield make
    _close(made)


@pytest.fixture(scope="module")
def formed_pair(module_cluster_factory: ClusterFactory) -> Cluster:
    """Two devices, dev-1 and dev-2, formed into one trust domain and device group, for the tests of one module."""
    cluster = module_cluster_factory()
    cluster.start("dev-1", "dev-2")
    cluster.form()
    return cluster


@pytest.fixture(scope="module")
def pair_of_sites(module_cluster_factory: ClusterFactory) -> Iterator[tuple[Site, Site]]:
    """Two lab clusters of two devices each (`east` and `west`), for the peering tests of one module."""
    a, b = start_site(module_cluster_factory(), "east"), start_site(module_cluster_factory(), "west")
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def sites(pair_of_sites: tuple[Site, Site]) -> Iterator[tuple[Site, Site]]:
    """The two sites, their link healed and no relationship left behind when the test ends."""
    yield pair_of_sites
    for site in pair_of_sites:
        site.heal()
        for peer in site.peers():
            site.api.delete(f"/api/cluster/peers/{peer['uuid']}")
    for site in pair_of_sites:
        wait_until(lambda site=site: all(site.peers(n) == [] for n in site.nodes), 10, f"no peers left on {site.name}")
        for proxy in site.proxies:
            proxy.captured.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failed test's report carries the end of every live device's log."""
    report = yield
    if report.failed and call.when == "call":
        for cluster in _live:
            for node in cluster.nodes:
                report.sections.append((f"log of {node.name} ({cluster.base_dir.name})", node.device.log_tail(25)))
    return report
