"""Golden checks of the nftables tables: what is loaded is what rules.py says, and
removing everything gives the baseline back."""

from __future__ import annotations

import json
import subprocess

from dockyard.policy import rules
from lab import Lab


def _listing(lab: Lab, family: str) -> list[dict]:
    r = lab.in_host("nft", "-j", "list", "table", family, "dockyard")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["nftables"]


def test_the_loaded_tables_are_the_rendered_ones(lab: Lab) -> None:
    for text in (rules.TABLE_TEXT, rules.BRIDGE_TABLE_TEXT):
        r = subprocess.run(
            ["nsenter", f"--net=/run/netns/{lab.host}", "nft", "-f", "-"],
            input=text,
            text=True,
            capture_output=True,
        )
        assert r.returncode == 0, r.stderr
    for family in (rules.FAMILY, rules.BRIDGE_FAMILY):
        assert rules.strip_listing(_listing(lab, family)) == rules.expected_listing(family)
    for family in (rules.FAMILY, rules.BRIDGE_FAMILY):
        lab.in_host("nft", "delete", "table", family, "dockyard")


def test_removing_everything_gives_the_baseline_back(lab: Lab) -> None:
    lab.dy_ok("ps")
    baseline = {f: _listing(lab, f) for f in (rules.FAMILY, rules.BRIDGE_FAMILY)}
    lab.dy_ok("network", "create", "-o", "com.docker.network.bridge.enable_icc=false", "--internal", "g1")
    lab.dy_ok("network", "create", "g2")
    cid = lab.run_d("--net", "g2", "-p", "8080:80", "-p", "127.0.0.1:8081:81/udp", "sleep", "300")
    lab.run_d("--net", "g1", "sleep", "300")
    lab.dy_ok("network", "connect", "g1", cid)
    changed = {f: _listing(lab, f) for f in (rules.FAMILY, rules.BRIDGE_FAMILY)}
    assert changed != baseline
    # Rules never change with containers or networks: only elements do.
    for family in changed:
        assert rules.strip_listing(changed[family]) == rules.expected_listing(family)
    ids = lab.dy_ok("ps", "-aq").split()
    lab.dy_ok("rm", "-f", *ids)
    lab.dy_ok("network", "rm", "g1", "g2")
    lab.dy_ok("system", "gc")
    assert {f: _listing(lab, f) for f in (rules.FAMILY, rules.BRIDGE_FAMILY)} == baseline
