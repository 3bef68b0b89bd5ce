"""Hostile input through the real CLI against a lab daemon.

Random -p specs, subnets, container names and bridge names go through the
`dockyard` command as a user's shell would hand them over (any bytes but
NUL). Each either succeeds (exit 0; what it made is removed before the next
example) or fails with exit 125 and one `dockyard: ` line on stderr, no
traceback, and nothing changed: the same containers, the same networks, the
same published-port elements in nft, the same links in the host namespace.

Examples are drawn from a fixed seed (derandomize) so that CI sees the same
inputs on every run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lab import DOCKYARD, Lab

DOCKER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
hostile_settings = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# What a shell can pass: any bytes but NUL, decoded as Python decodes argv.
shell_text = st.binary(max_size=20).filter(lambda b: b"\0" not in b).map(os.fsdecode)
plain_text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=20)
hostile = st.sampled_from(
    [
        "", " ", "..", ".", "/", "../x", "a/b", "web\n", "a\nb", "x" * 200, "%d", "a%d", "$(id)",
        "a;b", "-x", "é", "\u2028", "\udcff", "\t",
    ]
)  # fmt: skip
text = plain_text | shell_text | hostile

port_text = st.integers(min_value=-1, max_value=70000).map(str) | st.text(alphabet="0123456789-", max_size=6)
port_specs = (
    st.builds(
        lambda ip, host, cont, proto: "".join(x for x in (ip, host, cont, proto) if x is not None),
        st.sampled_from([None, "127.0.0.1:", "0.0.0.0:", "198.51.100.1:", "1.2.3:", "[::1]:", ":"]),
        st.none() | port_text.map(lambda t: t + ":"),
        port_text,
        st.sampled_from([None, "/tcp", "/udp", "/sctp", "/icmp", "/"]),
    )
    | text
)
# Private ranges only for the subnets meant to work; the rest is noise.
good_subnets = st.builds(
    lambda a, b, p: f"10.{a}.{b}.0/{p}",
    st.integers(min_value=0, max_value=255),
    st.integers(min_value=0, max_value=255),
    st.sampled_from([24, 26]),
)
subnets = (
    good_subnets
    | st.builds(lambda a, p: f"10.9.{a}.7/{p}", st.integers(min_value=0, max_value=255), st.integers(-1, 40))
    | st.sampled_from(
        ["10.0.0.0", "10.0.0.0/31", "172.17.0.0/16", "198.51.100.0/24", "fd00::/64", "10.0.0.0/33"]
    )
    | text
)
names = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{1,20}", fullmatch=True) | text
bridge_names = (
    st.from_regex(r"dyt[a-z0-9]{1,8}", fullmatch=True)
    | st.sampled_from(["lo", "up0", "dockyard0", "br%d", "x" * 16, "é" * 7, "a:b", "a b", ".."])
    | text
)


def dy_together(lab: Lab, *commands: tuple[str, ...]) -> list[str]:
    """The stdout of several dockyard commands run at once (each costs a client start-up)."""
    procs = [
        subprocess.Popen(
            [*DOCKYARD, "--root", str(lab.root), "--host-netns", lab.host, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    outs = []
    for args, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, (args, proc.returncode, err)
        outs.append(out)
    return outs


def state(lab: Lab) -> dict[str, Any]:
    """What bad input must not change."""
    ps, networks = dy_together(lab, ("ps", "-aq", "--no-trunc"), ("network", "ls", "--no-trunc"))
    return {
        "ps": sorted(ps.split()),
        "networks": sorted(networks.splitlines()),
        "publish_any": sorted(json.dumps(e, sort_keys=True) for e in lab.map_elements("publish_any")),
        "links": sorted(lab.links()),
    }


class Checker:
    """Runs one command per example; checks the outcome; removes what a success made."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        lab.dy_ok("ps")  # the daemon is up before the first snapshot
        self.baseline = state(lab)
        self.outcomes: dict[str, int] = {"ok": 0, "refused": 0}

    def check(
        self,
        cleanup: Callable[[dict[str, Any]], None],
        *args: str,
        valid: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        r = self.lab.dy(*args, input="")
        assert "Traceback" not in r.stderr + r.stdout, r.stderr
        assert r.returncode in (0, 125), (args, r.returncode, r.stderr)
        after = state(self.lab)
        if r.returncode == 0:
            self.outcomes["ok"] += 1
            try:
                if valid is not None:
                    valid(after)  # what was accepted is sound
            finally:
                cleanup(after)
            after = state(self.lab)
        else:
            self.outcomes["refused"] += 1
            lines = r.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("dockyard: "), (args, r.stderr)
        assert after == self.baseline, (args, r.returncode, r.stderr)

    def remove_new_containers(self, after: dict[str, Any]) -> None:
        new = sorted(set(after["ps"]) - set(self.baseline["ps"]))
        if new:
            self.lab.dy_ok("rm", "-f", *new)

    def remove_network(self, name: str) -> Callable[[dict[str, Any]], None]:
        def cleanup(after: dict[str, Any]) -> None:
            if after["networks"] != self.baseline["networks"]:
                self.lab.dy_ok("network", "rm", name)

        return cleanup


def test_random_publish_specs(lab: Lab) -> None:
    checker = Checker(lab)

    @hostile_settings
    @given(port_specs)
    @example("80")
    @example("127.0.0.1::80/udp")
    @example("8080:80\n")
    @example("0-5:80")
    def run_publish(spec: str) -> None:
        checker.check(checker.remove_new_containers, "run", "-p", spec, "true")

    run_publish()
    assert checker.outcomes["ok"] and checker.outcomes["refused"], checker.outcomes


def test_random_subnets_and_network_names(lab: Lab) -> None:
    checker = Checker(lab)

    @hostile_settings
    @given(subnet=subnets, name=names)
    @example(subnet="10.77.0.0/24", name="hostile-net")
    @example(subnet="10.77.0.0/24", name="web\n")
    @example(subnet="10.77.0.0/24", name="../x")
    @example(subnet="10.77.0.5/24", name="hostile-net")
    def create_network(subnet: str, name: str) -> None:
        def valid(after: dict[str, Any]) -> None:
            (info,) = json.loads(lab.dy_ok("network", "inspect", name))
            assert DOCKER_NAME.fullmatch(name) and info["Name"] == name, name
            # An empty --subnet is none: the network gets one from the pools.
            assert info["IPAM"]["Config"][0]["Subnet"] == (subnet or info["IPAM"]["Config"][0]["Subnet"])

        checker.check(
            checker.remove_network(name), "network", "create", "--subnet", subnet, name, valid=valid
        )

    create_network()
    assert checker.outcomes["ok"] and checker.outcomes["refused"], checker.outcomes


def test_random_container_names(lab: Lab) -> None:
    checker = Checker(lab)

    @hostile_settings
    @given(names)
    @example("web")
    @example("web\n")
    @example("../../etc")
    @example("\udcffab")
    def run_named(name: str) -> None:
        def valid(after: dict[str, Any]) -> None:
            (new,) = set(after["ps"]) - set(checker.baseline["ps"])
            got = lab.inspect(new)["Name"].lstrip("/")
            # An empty --name is none: dockyard makes one up, as Docker does.
            assert DOCKER_NAME.fullmatch(got) and got == (name or got), (name, got)

        checker.check(checker.remove_new_containers, "run", "--name", name, "true", valid=valid)

    run_named()
    assert checker.outcomes["ok"] and checker.outcomes["refused"], checker.outcomes


def test_random_bridge_names(lab: Lab) -> None:
    checker = Checker(lab)

    @hostile_settings
    @given(bridge_names)
    @example("dytbr1")
    @example("br%d")
    @example("up0")
    @example("x" * 16)
    def create_with_bridge(bridge: str) -> None:
        def valid(after: dict[str, Any]) -> None:
            # The bridge is there by the very name asked for, within the kernel's 15 bytes.
            assert bridge in after["links"] and len(os.fsencode(bridge)) <= 15, bridge

        checker.check(
            checker.remove_network("n1"),
            "network",
            "create",
            "-o",
            f"com.docker.network.bridge.name={bridge}",
            "n1",
            valid=valid,
        )
        # A bridge the kernel named otherwise ("br%d" -> "br0") would show here as a leak.
        assert not [n for n in lab.links() if re.fullmatch(r"br\d+", n)]

    create_with_bridge()
    assert checker.outcomes["ok"] and checker.outcomes["refused"], checker.outcomes
