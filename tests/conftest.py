"""Fixtures: a lab per integration test, and a guard over the root namespace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

from etcd_lab import EtcdLab
from lab import Lab

# Hypothesis times its examples and its input generation by default: on a loaded machine (two
# suites side by side) a unit test failed its "too slow" health check by chance. What a test
# asserts is what the code does, never how fast: speed is bench/'s.
settings.register_profile("dockyard", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("dockyard")


def _root_snapshot() -> dict[str, object]:
    def j(*cmd: str) -> object:
        r = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
        return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else r.stdout

    links = j("ip", "-j", "link", "show")
    return {
        "links": sorted(link["ifname"] for link in links) if isinstance(links, list) else links,
        "routes": j("ip", "-j", "route", "show"),
        "nft_tables": j("nft", "-j", "list", "tables"),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
    }


@pytest.fixture(scope="session", autouse=True)
def root_namespace_untouched() -> Iterator[None]:
    """No test may change the root namespace's links, routes, sysctls or firewall."""
    before = _root_snapshot() if os.geteuid() == 0 else None
    yield
    if before is not None:
        after = _root_snapshot()
        assert after == before, f"the root network namespace changed: {before} -> {after}"
        present = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
        stray = sorted(present & Lab.made)
        assert not stray, f"namespaces left behind: {stray}"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (network namespaces); run them as root")
    lab = Lab(tmp_path)
    try:
        lab.setup()
        yield lab
    finally:
        leaks = lab.teardown()
    assert not leaks, f"left behind: {leaks}"


@pytest.fixture(scope="module")
def etcd_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdLab]:
    """Three host namespaces on 192.0.2.0/24 and a three-member etcd cluster, shared by a
    module's tests (a start costs ~1.3 s): each test brings back what it killed
    (`etcd_lab.ensure_all_running()`) and works under a key root of its own."""
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (network namespaces); run them as root")
    lab = EtcdLab(tmp_path_factory.mktemp("etcd"))
    try:
        lab.setup()
        yield lab
    finally:
        leaks = lab.teardown()
    assert not leaks, f"left behind: {leaks}"


@pytest.fixture
def underlay6(etcd_lab: EtcdLab) -> Iterator[list[str]]:
    """The etcd lab's hosts with an IPv6 address each on their underlay, for this test only."""
    with etcd_lab.underlay6() as addrs:
        yield addrs
