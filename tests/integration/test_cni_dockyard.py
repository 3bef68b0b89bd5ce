"""dockyard-cni beyond the shared conformance tests: what is dockyard's own.

GC and STATUS (CNI 1.1.0, which the installed reference plugins do not
speak), CHECK of published ports, the state shared with `dockyard network`,
capabilities and CNI_ARGS, chaining with the reference plugins after
dockyard, restarts (the host ports left to the runtime), concurrency,
configuration errors, the result formats, and the plugin's imports. Crashes
of the daemon at every step of ADD, DEL and GC are test_cni_crash.py's.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from cni_runtime import (
    REFERENCE_DIR,
    Outcome,
    PluginFailed,
    Runtime,
    Sandboxes,
    dockyard_conflist,
    plugin_dir,
    stub_plugin,
)

from dockyard.clients.api import Client
from dockyard.clients.cni import plugin as plugin
from lab import HOST_ADDR, HOST_ADDR6, PROBE, UP_ADDR, UP_ADDR6, WORLD_ADDR, Lab, pid_alive

SUBNET = "10.47.0.0/24"
GATEWAY = "10.47.0.1"
BRIDGE = "cni-dy0"
NETWORK = "dynet"


@dataclass
class Env:
    lab: Lab
    rt: Runtime
    sandboxes: Sandboxes

    def conflist(
        self,
        version: str = "1.1.0",
        name: str = NETWORK,
        subnet: str | None = SUBNET,
        bridge: str = "",
        **extra: Any,
    ) -> Any:
        bridge = bridge or (BRIDGE if name == NETWORK else f"cni-{name}"[:15])
        conflist = dockyard_conflist(version, name, subnet or "", bridge, self.lab.root, **extra)
        if subnet is None:
            del conflist["plugins"][0]["subnet"]
        return conflist

    def conf(self, version: str = "1.1.0", **changes: Any) -> dict[str, Any]:
        conflist = self.conflist(version)
        conf = Runtime.plugin_conf(conflist, conflist["plugins"][0], None, None)
        conf.update(changes)
        return conf

    def exec(
        self, command: str, conf: dict[str, Any] | bytes, container_id: str = "", netns: str = "", **env: str
    ) -> Outcome:
        base = self.rt.env(command, container_id, netns, "eth0")
        base.update(env)
        return self.rt.exec("dockyard", base, conf)

    @property
    def client(self) -> Client:
        return Client(str(self.lab.root), autostart=False)

    def settle(self) -> None:
        self.client.settle()

    def attachments(self) -> list[dict[str, Any]]:
        return self.client.request("GET", "/dockyard/cni/attachments")["Attachments"]

    def host_veths(self) -> list[str]:
        return [name for name in self.lab.links() if name.startswith("veth")]

    def members(self, network: str = NETWORK) -> set[str]:
        """The names `dockyard network inspect` lists as the network's users."""
        info = json.loads(self.lab.dy_ok("network", "inspect", network))[0]
        return {m["Name"] for m in info["Containers"].values()}

    def published(self) -> set[int]:
        """The host ports of the publish maps (both families'), as `nft -j list table inet dockyard`
        shows them."""
        ports = set()
        for name in ("publish_any", "publish_addr", "publish_any6", "publish_addr6"):
            for key, _target in self.lab.map_elements(name):
                ports.add(int(key["concat"][-1]))
        return ports


@pytest.fixture
def env(lab: Lab, tmp_path: Path) -> Iterator[Env]:
    rt = Runtime(
        [plugin_dir(tmp_path / "cni-bin"), REFERENCE_DIR], prefix=["nsenter", f"--net=/run/netns/{lab.host}"]
    )
    sandboxes = Sandboxes(f"dyt-c-{lab.host[-6:]}-")
    try:
        yield Env(lab, rt, sandboxes)
    finally:
        Lab.made |= set(sandboxes.names)
        sandboxes.close()


def ns_name(path: str) -> str:
    return Path(path).name


def ip_json(*args: str) -> Any:
    r = subprocess.run(["ip", "-j", *args], capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else []


def address_of(result: dict[str, Any]) -> str:
    return result["ips"][0]["address"].split("/")[0]


# -- the plugin process ----------------------------------------------------------

IMPORT_PROBE = """
import io, os, sys
from dockyard.clients.cni import plugin as cni
conf = sys.argv[1].encode()
for command in ("ADD", "CHECK", "DEL"):
    env = dict(os.environ, CNI_COMMAND=command)
    stdin = conf
    if command == "CHECK":
        stdin = conf[:-1] + b', "prevResult": ' + last.encode() + b"}"
    out = io.StringIO()
    assert cni.main(env, io.BytesIO(stdin), out) == 0, out.getvalue()
    last = out.getvalue().strip() or last
print(" ".join(sorted(sys.modules)))
"""


def _probe_an_add(env: Env, probe: str, container_id: str) -> tuple[str, str]:
    """Run a probe script in the host namespace with an ADD's environment, the config as its
    argument (it runs the plugin in process): its output and the container's netns."""
    netns = env.sandboxes.new()
    r = subprocess.run(
        ["nsenter", f"--net=/run/netns/{env.lab.host}", sys.executable, "-c", probe, json.dumps(env.conf())],
        capture_output=True,
        text=True,
        env=env.rt.env("ADD", container_id, netns, "eth0"),
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout, netns


def _modules_of_a_plugin_run(env: Env, container_id: str) -> set[str]:
    return set(_probe_an_add(env, IMPORT_PROBE, container_id)[0].split())


def test_plugin_loads_no_kernel_database_or_json_modules(env: Env) -> None:
    heavy = {
        "pyroute2",
        "nftables",
        "sqlite3",
        "_sqlite3",
        "dockyard.engine",
        "dockyard.store",
        "dockyard.daemon.api",
    }
    starting = _modules_of_a_plugin_run(env, "probe-1")  # this one starts the daemon
    assert not heavy & starting, sorted(heavy & starting)
    running = _modules_of_a_plugin_run(env, "probe-2")
    assert not heavy & running, sorted(heavy & running)
    # With the daemon up: none of the API client's calls (only its connection, clients.wire),
    # no private CPython modules in place of json and socket.
    assert "dockyard.clients.api" not in running and "dockyard.clients.daemon_control" not in running
    assert {"json", "socket", "dockyard.wire.http", "dockyard.clients.wire"} <= running


def test_results_in_each_version_format() -> None:
    daemon_result = {
        "interfaces": [
            {"name": "br", "mac": "02:00:00:00:00:01", "mtu": 1400},
            {"name": "veth1", "mac": "02:00:00:00:00:02", "mtu": 1400},
            {"name": "eth0", "mac": "02:42:0a:00:00:02", "mtu": 1400, "sandbox": "/run/netns/x"},
        ],
        "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 2}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}],
    }
    dns = {"nameservers": ["10.0.0.1"]}
    r110 = plugin.format_result(daemon_result, "1.1.0", dns)
    assert r110["interfaces"][2]["mtu"] == 1400 and "version" not in r110["ips"][0] and r110["dns"] == dns
    r100 = plugin.format_result(daemon_result, "1.0.0", dns)
    assert all("mtu" not in i for i in r100["interfaces"]) and "version" not in r100["ips"][0]
    for old in ("0.3.0", "0.3.1", "0.4.0"):
        r = plugin.format_result(daemon_result, old, {})
        assert r["cniVersion"] == old and r["ips"][0]["version"] == "4" and r["dns"] == {}
        assert all(set(i) <= {"name", "mac", "sandbox"} for i in r["interfaces"])
    assert plugin.loads(plugin.dumps(r110)) == r110


# -- GC and STATUS ---------------------------------------------------------------


def test_gc_removes_attachments_not_listed(env: Env) -> None:
    conflist = env.conflist()
    spaces = [env.sandboxes.new() for _ in range(3)]
    results = [env.rt.add(conflist, f"ctr-{i}", ns) for i, ns in enumerate(spaces)]
    other = env.conflist(name="othernet", subnet="10.48.0.0/24")
    kept_elsewhere = env.rt.add(other, "ctr-9", env.sandboxes.new())
    env.rt.gc(conflist, [("ctr-0", "eth0")])
    env.settle()
    left = {(a["Network"], a["ContainerID"]) for a in env.attachments()}
    assert left == {(NETWORK, "ctr-0"), ("othernet", "ctr-9")}, "GC touches only its network"
    assert len(env.host_veths()) == 2
    for ns in spaces[1:]:
        assert ip_json("-n", ns_name(ns), "link", "show", "eth0") == []
    env.rt.check(conflist, "ctr-0", spaces[0], prev_result=results[0])
    env.rt.gc(conflist, [])
    env.rt.gc(other, [])
    env.settle()
    assert env.attachments() == [] and env.host_veths() == []
    assert kept_elsewhere


def test_gc_and_status_need_1_1_0(env: Env) -> None:
    for command in ("GC", "STATUS"):
        outcome = env.exec(command, env.conf("1.0.0", **{"cni.dev/valid-attachments": []}))
        assert outcome.exit_code != 0 and outcome.json["code"] == 1, outcome
    outcome = env.exec("GC", env.conf())
    assert outcome.exit_code != 0 and outcome.json["code"] == 7 and "valid-attachments" in outcome.json["msg"]


def test_status_says_whether_an_add_can_work(env: Env) -> None:
    small = env.conflist(name="tiny", subnet="10.49.0.0/30")
    env.rt.status(small)  # before the network exists: it can be made
    assert env.rt.log[-1].stdout == ""
    a = env.sandboxes.new()
    result = env.rt.add(small, "ctr-a", a)
    with pytest.raises(PluginFailed) as full:
        env.rt.status(small)
    assert full.value.error["code"] == 50 and "no free address" in full.value.error["msg"]
    env.rt.delete(small, "ctr-a", a, prev_result=result)
    env.settle()
    env.rt.status(small)

    # A config that disagrees with the network: an ADD would fail.
    wrong = env.conflist(name="tiny", subnet="10.49.0.4/30")
    with pytest.raises(PluginFailed) as disagree:
        env.rt.status(wrong)
    assert disagree.value.error["code"] == 50 and "10.49.0.4/30" in disagree.value.error["msg"]

    # nftables broken under an attachment: 51, existing containers suffer.
    result = env.rt.add(
        small, "ctr-a", a, runtime_config={"portMappings": [{"hostPort": 8081, "containerPort": 80}]}
    )
    env.lab.in_host("nft", "delete", "table", "inet", "dockyard")
    with pytest.raises(PluginFailed) as broken:
        env.rt.status(small)
    assert broken.value.error["code"] == 51, broken.value
    env.lab.dy_ok("system", "gc")  # the table comes back, and the attachment's port with it
    with pytest.raises(PluginFailed) as full_again:
        env.rt.status(small)
    assert full_again.value.error["code"] == 50, "back to merely full"
    env.rt.check(small, "ctr-a", a, prev_result=result)
    env.rt.delete(small, "ctr-a", a, prev_result=result)
    env.settle()


# -- CHECK of what the result does not list ------------------------------------------


def test_check_reports_a_missing_port_mapping(env: Env) -> None:
    conflist = env.conflist()
    netns = env.sandboxes.new()
    ports = {"portMappings": [{"hostPort": 8083, "containerPort": 80, "protocol": "tcp", "hostIP": ""}]}
    result = env.rt.add(conflist, "ctr-1", netns, runtime_config=ports)
    env.rt.check(conflist, "ctr-1", netns, prev_result=result, runtime_config=ports)
    env.lab.in_host("nft", "delete", "element", "inet", "dockyard", "publish_any", "{ tcp . 8083 }")
    with pytest.raises(PluginFailed) as failed:
        env.rt.check(conflist, "ctr-1", netns, prev_result=result, runtime_config=ports)
    assert failed.value.error["code"] == 102 and "8083" in failed.value.error["msg"], failed.value
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result, runtime_config=ports)
    env.settle()


def test_port_mappings_on_ipv6_host_addresses_are_published_on_ipv6(env: Env) -> None:
    """portMappings with hostIP :: or an IPv6 address are published on IPv6 only, 0.0.0.0 on
    IPv4 only, "" on both (portmap's and -p's meaning); a real connection from upstream
    answers exactly where they say, CHECK sees an IPv6 element gone, and a mapping that
    overlaps one of another family's "every address" is refused."""
    conflist = env.conflist(subnet=None, ranges=DUAL_RANGES)
    netns = env.sandboxes.new()
    rc = {
        "portMappings": [
            {"hostPort": 8086, "containerPort": 80, "protocol": "tcp", "hostIP": "::"},
            {"hostPort": 8087, "containerPort": 80, "protocol": "tcp", "hostIP": HOST_ADDR6},
            {"hostPort": 8088, "containerPort": 80, "protocol": "tcp", "hostIP": "0.0.0.0"},
            {"hostPort": 8089, "containerPort": 80, "protocol": "tcp", "hostIP": ""},
        ]
    }
    result = env.rt.add(conflist, "ctr-1", netns, runtime_config=rc)
    addr6 = next(ip["address"] for ip in result["ips"] if ":" in ip["address"]).split("/")[0]
    env.lab.spawn_in(ns_name(netns), sys.executable, PROBE, "serve", "tcp", "80")
    lab = env.lab
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR6, 8086).startswith(f"peer=[{UP_ADDR6}]:")
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR6, 8087).startswith(f"peer=[{UP_ADDR6}]:")
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8088).startswith(f"peer={UP_ADDR}:")
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8089).startswith(f"peer={UP_ADDR}:")
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR6, 8089).startswith(f"peer=[{UP_ADDR6}]:")
    # Each family only where it was asked: the other answers nothing (the container would).
    assert lab.ask(lab.up, "tcp", HOST_ADDR, 8086, timeout=1) is None
    assert lab.ask(lab.up, "tcp", HOST_ADDR6, 8088, timeout=1) is None
    assert sorted(key["concat"][-1] for key, _ in lab.map_elements("publish_any6")) == [8086, 8089]
    assert [key["concat"] for key, _ in lab.map_elements("publish_addr6")] == [[HOST_ADDR6, "tcp", 8087]]
    assert {target["concat"][0] for _, target in lab.map_elements("publish_any6")} == {addr6}
    env.rt.check(conflist, "ctr-1", netns, prev_result=result, runtime_config=rc)
    # A second attachment: "" on 8088 overlaps 0.0.0.0's IPv4 (code 100); 0.0.0.0 on 8086 does not.
    other = env.sandboxes.new()
    clash = {"portMappings": [{"hostPort": 8088, "containerPort": 80, "protocol": "tcp", "hostIP": ""}]}
    plugin_conf = Runtime.plugin_conf(conflist, conflist["plugins"][0], None, clash)
    taken = env.exec("ADD", plugin_conf, "ctr-2", other)
    assert taken.exit_code != 0 and taken.json["code"] == 100, taken
    assert taken.json["msg"] == "Bind for 0.0.0.0:8088/tcp failed: port is already allocated", taken
    beside = {
        "portMappings": [{"hostPort": 8086, "containerPort": 80, "protocol": "tcp", "hostIP": "0.0.0.0"}]
    }
    second = env.rt.add(conflist, "ctr-3", other, runtime_config=beside)
    # CHECK sees an IPv6 element removed behind dockyard's back.
    r = lab.in_host("nft", "delete", "element", "inet", "dockyard", "publish_any6", "{ tcp . 8086 }")
    assert r.returncode == 0, r.stderr
    with pytest.raises(PluginFailed) as failed:
        env.rt.check(conflist, "ctr-1", netns, prev_result=result, runtime_config=rc)
    assert failed.value.error["code"] == 102 and "[::]:8086" in failed.value.error["msg"], failed.value
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result, runtime_config=rc)
    env.rt.delete(conflist, "ctr-3", other, prev_result=second, runtime_config=beside)
    env.settle()
    assert lab.map_elements("publish_any6") == [] and lab.map_elements("publish_addr6") == []
    assert env.published() == set() and env.host_veths() == []


@pytest.mark.parametrize("host_ip", ["0.0.0.0", HOST_ADDR])
def test_an_ipv4_port_mapping_on_an_ipv6_only_network_is_refused_by_name(env: Env, host_ip: str) -> None:
    conflist = env.conflist(subnet=None, ranges=V6_RANGES)
    netns = env.sandboxes.new()
    rc = {"portMappings": [{"hostPort": 8088, "containerPort": 80, "protocol": "tcp", "hostIP": host_ip}]}
    outcome = env.exec("ADD", Runtime.plugin_conf(conflist, conflist["plugins"][0], None, rc), "ctr-1", netns)
    assert outcome.exit_code != 0 and outcome.json["code"] == 7, outcome
    assert outcome.json["msg"] == f"cannot publish on {host_ip}:8088: network {NETWORK} has no IPv4", outcome
    env.settle()
    assert_no_network_left(env)
    assert env.published() == set() and env.host_veths() == []
    assert ip_json("-n", ns_name(netns), "link", "show", "eth0") == []


def test_port_mappings_on_an_ipv6_only_network_answer_over_ipv6_only(env: Env) -> None:
    """On an IPv6-only network "" publishes on IPv6 alone (the only family the container has),
    as :: and an IPv6 address do: a real connection from upstream answers over IPv6 with the
    client's address kept, the host's IPv4 address answers nothing; CHECK passes; DEL unpublishes."""
    conflist = env.conflist(subnet=None, ranges=V6_RANGES)
    netns = env.sandboxes.new()
    rc = {
        "portMappings": [
            {"hostPort": 8086, "containerPort": 80, "protocol": "tcp", "hostIP": "::"},
            {"hostPort": 8087, "containerPort": 80, "protocol": "tcp", "hostIP": HOST_ADDR6},
            {"hostPort": 8089, "containerPort": 80, "protocol": "tcp", "hostIP": ""},
        ]
    }
    result = env.rt.add(conflist, "ctr-1", netns, runtime_config=rc)
    (ip,) = result["ips"]
    addr6 = ip["address"].split("/")[0]
    env.lab.spawn_in(ns_name(netns), sys.executable, PROBE, "serve", "tcp", "80")
    lab = env.lab
    for port in (8086, 8087, 8089):
        assert lab.wait_answer(lab.up, "tcp", HOST_ADDR6, port).startswith(f"peer=[{UP_ADDR6}]:")
    assert lab.ask(lab.up, "tcp", HOST_ADDR, 8089, timeout=1) is None
    assert lab.map_elements("publish_any") == [] and lab.map_elements("publish_addr") == []
    assert sorted(key["concat"][-1] for key, _ in lab.map_elements("publish_any6")) == [8086, 8089]
    assert {target["concat"][0] for _, target in lab.map_elements("publish_any6")} == {addr6}
    env.rt.check(conflist, "ctr-1", netns, prev_result=result, runtime_config=rc)
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result, runtime_config=rc)
    env.settle()
    assert lab.map_elements("publish_any6") == [] and lab.map_elements("publish_addr6") == []
    assert lab.ask(lab.up, "tcp", HOST_ADDR6, 8089, timeout=1) is None
    assert env.host_veths() == []


def test_an_ipv6_port_mapping_on_an_ipv4_network_is_refused_by_name(env: Env) -> None:
    conflist = env.conflist()
    netns = env.sandboxes.new()
    rc = {"portMappings": [{"hostPort": 8086, "containerPort": 80, "protocol": "tcp", "hostIP": "::"}]}
    outcome = env.exec("ADD", Runtime.plugin_conf(conflist, conflist["plugins"][0], None, rc), "ctr-1", netns)
    assert outcome.exit_code != 0 and outcome.json["code"] == 7, outcome
    assert outcome.json["msg"] == f"cannot publish on [::]:8086: network {NETWORK} has no IPv6", outcome
    env.settle()
    # The network the ADD would have made is not left either.
    assert NETWORK not in env.lab.dy_ok("network", "ls")
    assert env.published() == set() and env.host_veths() == []
    assert ip_json("-n", ns_name(netns), "link", "show", "eth0") == []


# -- shared state with the dockyard CLI ----------------------------------------------


def test_attachments_show_in_dockyard_network_commands(env: Env) -> None:
    conflist = env.conflist()
    netns = env.sandboxes.new()
    result = env.rt.add(conflist, "0123456789abcdef", netns)
    assert NETWORK in env.lab.dy_ok("network", "ls")
    info = json.loads(env.lab.dy_ok("network", "inspect", NETWORK))[0]
    assert info["Labels"] == {"dev.dockyard.cni": "true"}
    assert info["IPAM"]["Config"][0]["Subnet"] == SUBNET
    (member,) = info["Containers"].values()
    assert member["Name"] == "cni:0123456789ab/eth0" and member["IPv4Address"] == result["ips"][0]["address"]
    refused = env.lab.dy("network", "rm", NETWORK)
    assert refused.returncode != 0 and "cni:0123456789ab/eth0" in refused.stderr
    env.rt.delete(conflist, "0123456789abcdef", netns, prev_result=result)
    env.settle()
    assert json.loads(env.lab.dy_ok("network", "inspect", NETWORK))[0]["Containers"] == {}


def test_a_config_can_name_an_existing_dockyard_network(env: Env) -> None:
    env.lab.dy_ok(
        "network",
        "create",
        "--subnet",
        "10.50.0.0/24",
        "-o",
        "com.docker.network.bridge.name=br-made",
        "made",
    )
    netns = env.sandboxes.new()
    wrong = env.conflist(name="made", subnet="10.51.0.0/24", bridge="br-made")
    outcome = env.exec("ADD", Runtime.plugin_conf(wrong, wrong["plugins"][0], None, None), "ctr-1", netns)
    assert outcome.exit_code != 0 and outcome.json["code"] == 7, outcome
    assert "10.50.0.0/24" in outcome.json["msg"] and "10.51.0.0/24" in outcome.json["msg"]
    right = env.conflist(name="made", subnet=None, bridge="br-made", ipMasq=True)
    result = env.rt.add(right, "ctr-1", netns)
    assert ipaddress.IPv4Address(address_of(result)) in ipaddress.IPv4Network("10.50.0.0/24")
    env.rt.delete(right, "ctr-1", netns, prev_result=result)
    env.settle()


def test_a_config_can_name_an_existing_ipv6_only_network(env: Env) -> None:
    """A network made by `network create --ipv4=false --ipv6` is attached by name: its IPv6
    address alone, in the result and on the interface; an `ips` IPv4 address, or a config
    that gives it IPv4, is refused by name and changes nothing; CHECK passes, DEL frees it."""
    env.lab.dy_ok(
        "network", "create", "--ipv4=false", "--ipv6", "--subnet", "fd00:50::/64",
        "-o", "com.docker.network.bridge.name=br-six", "six",
    )  # fmt: skip
    netns = env.sandboxes.new()
    conflist = env.conflist(name="six", subnet=None, bridge="br-six", ipMasq=True)
    refusals = [
        (
            conflist,
            {"ips": ["10.47.0.9/24"]},
            "ips: IPv4 address 10.47.0.9 asked for, but network six is IPv6-only",
        ),
        (
            env.conflist(name="six", bridge="br-six", ipMasq=True),
            None,
            f"with no subnet, but the CNI config asks for {SUBNET}",
        ),
    ]
    for wrong, rc, message in refusals:
        outcome = env.exec("ADD", Runtime.plugin_conf(wrong, wrong["plugins"][0], None, rc), "ctr-1", netns)
        assert outcome.exit_code != 0 and outcome.json["code"] == 7, outcome
        assert message in outcome.json["msg"], outcome
        assert env.attachments() == [] and env.host_veths() == []
    rc = {"ips": ["fd00:50::77/64"]}
    result = env.rt.add(conflist, "ctr-1", netns, runtime_config=rc)
    assert [(ip["address"], ip["gateway"]) for ip in result["ips"]] == [("fd00:50::77/64", "fd00:50::1")]
    assert result["routes"] == [{"dst": "::/0", "gw": "fd00:50::1"}]
    assert ip_json("-n", ns_name(netns), "-4", "addr", "show", "eth0") in ([], [{}])
    ping6(env.lab.host, "fd00:50::77")
    (member,) = json.loads(env.lab.dy_ok("network", "inspect", "six"))[0]["Containers"].values()
    assert (member["IPv4Address"], member["IPv6Address"]) == ("", "fd00:50::77/64")
    env.rt.check(conflist, "ctr-1", netns, prev_result=result, runtime_config=rc)
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result, runtime_config=rc)
    env.settle()
    assert env.attachments() == [] and env.host_veths() == []
    assert json.loads(env.lab.dy_ok("network", "inspect", "six"))[0]["Containers"] == {}


def test_an_ipv6_only_config_does_not_take_a_dual_stack_network(env: Env) -> None:
    env.lab.dy_ok(
        "network", "create", "--ipv6", "--subnet", "fd00:51::/64", "--subnet", "10.51.0.0/24",
        "-o", "com.docker.network.bridge.name=br-dual", "dual",
    )  # fmt: skip
    conflist = env.conflist(name="dual", subnet=None, bridge="br-dual", ranges=[[{"subnet": "fd00:51::/64"}]])
    outcome = env.exec(
        "ADD", Runtime.plugin_conf(conflist, conflist["plugins"][0], None, None), "ctr-1", env.sandboxes.new()
    )
    assert outcome.exit_code != 0 and outcome.json["code"] == 7, outcome
    assert outcome.json["msg"] == (
        f"network dual exists in {env.lab.root} with IPv4 subnet 10.51.0.0/24, but the CNI config gives "
        "only IPv6: make them agree, or give the config another name"
    )
    assert env.attachments() == [] and env.host_veths() == []


# -- capabilities, CNI_ARGS and options -----------------------------------------------


def test_runtime_config_ips_and_mac(env: Env) -> None:
    conflist = env.conflist()
    netns = env.sandboxes.new()
    rc = {"ips": ["10.47.0.77/24"], "mac": "02:11:22:33:44:55"}
    result = env.rt.add(conflist, "ctr-1", netns, runtime_config=rc)
    assert result["ips"][0]["address"] == "10.47.0.77/24"
    assert result["interfaces"][2]["mac"] == "02:11:22:33:44:55"
    (link,) = ip_json("-n", ns_name(netns), "link", "show", "eth0")
    assert link["address"] == "02:11:22:33:44:55"
    env.rt.check(conflist, "ctr-1", netns, prev_result=result)
    taken = env.sandboxes.new()
    outcome = env.exec("ADD", Runtime.plugin_conf(conflist, conflist["plugins"][0], None, rc), "ctr-2", taken)
    assert outcome.exit_code != 0 and "10.47.0.77" in outcome.json["msg"], outcome
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result)
    env.settle()


DUAL_RANGES = [
    [{"subnet": "10.55.0.0/24"}],
    [{"subnet": "2001:db8:55::/64", "rangeStart": "2001:db8:55::100", "rangeEnd": "2001:db8:55::1ff"}],
]
# An IPv6-only config: its one range set is IPv6's (Docker 28's --ipv4=false network).
V6_RANGES = DUAL_RANGES[1:]


def ping6(ns: str, address: str) -> None:
    r = subprocess.run(
        ["ip", "netns", "exec", ns, "ping", "-6", "-c", "1", "-W", "2", address],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, f"ping -6 {address} from {ns}: {r.stdout}{r.stderr}"


V6_IPAM = {
    "type": "host-local",
    "subnet": "2001:db8:55::/64",
    "rangeStart": "2001:db8:55::100",
    "rangeEnd": "2001:db8:55::1ff",
}
FAMILIES = {
    "dual": {"ranges": DUAL_RANGES},
    "ipv6only": {"ranges": V6_RANGES},
    "ipv6only-ipam-subnet": {"ipam": V6_IPAM},  # host-local's one-range form, an IPv6 subnet
}


@pytest.mark.parametrize(
    ("version", "family"),
    [(v, f) for f in ("dual", "ipv6only") for v in ("0.4.0", "1.1.0")] + [("1.1.0", "ipv6only-ipam-subnet")],
)
def test_dual_stack_ranges_add_check_del(env: Env, version: str, family: str) -> None:
    """ranges with a range set per family: both addresses and default routes, in the result
    (in each version's shape) and in the sandbox; CHECK finds them; DEL frees both. With
    IPv6's range set alone (or an IPv6 subnet) the network is IPv6-only: the IPv6 address,
    route and gateway only, no IPv4 on the interface, and the address answers from
    another attachment and the gateway."""
    v6only = family != "dual"
    conflist = env.conflist(version, subnet=None, **FAMILIES[family])
    netns = env.sandboxes.new()
    rc = {"ips": ["2001:db8:55::1a0/64"]}  # the ips capability, IPv6 alone: IPv4 is chosen
    result = env.rt.add(conflist, "ctr-1", netns, runtime_config=rc)
    ips = {ip["address"]: ip for ip in result["ips"]}
    assert set(ips) == {"2001:db8:55::1a0/64"} | (set() if v6only else {"10.55.0.2/24"})
    assert ips["2001:db8:55::1a0/64"]["gateway"] == "2001:db8:55::1"
    assert {ip["interface"] for ip in result["ips"]} == {2}
    assert result["interfaces"][2]["name"] == "eth0" and result["interfaces"][2]["sandbox"] == netns
    if version == "0.4.0":
        assert {ip["version"] for ip in result["ips"]} == {"6"} | (set() if v6only else {"4"})
    assert {(r["dst"], r["gw"]) for r in result["routes"]} == {("::/0", "2001:db8:55::1")} | (
        set() if v6only else {("0.0.0.0/0", "10.55.0.1")}
    )
    name = ns_name(netns)
    (link,) = ip_json("-n", name, "-6", "addr", "show", "eth0")
    assert "2001:db8:55::1a0" in [a["local"] for a in link["addr_info"]]
    default6 = ip_json("-n", name, "-6", "route", "show", "default")
    assert [(r["gateway"], r["dev"]) for r in default6] == [("2001:db8:55::1", "eth0")]
    if v6only:
        assert ip_json("-n", name, "-4", "addr", "show", "eth0") in ([], [{}])
        assert ip_json("-n", name, "-4", "route", "show") == []
        info = json.loads(env.lab.dy_ok("network", "inspect", NETWORK))[0]
        assert info["EnableIPv4"] is False
        assert info["IPAM"]["Config"] == [
            {"Subnet": "2001:db8:55::/64", "Gateway": "2001:db8:55::1", "IPRange": "2001:db8:55::100/120"}
        ]
    env.rt.check(conflist, "ctr-1", netns, prev_result=result)
    # A second ADD asking for the same IPv6 address is refused; without asking, the next one.
    other = env.sandboxes.new()
    taken = env.exec("ADD", Runtime.plugin_conf(conflist, conflist["plugins"][0], None, rc), "ctr-2", other)
    assert taken.exit_code != 0 and "2001:db8:55::1a0" in taken.json["msg"], taken
    second = env.rt.add(conflist, "ctr-3", other)
    assert "2001:db8:55::100/64" in {ip["address"] for ip in second["ips"]}
    # The address answers from the other attachment and from the gateway (the host).
    ping6(ns_name(other), "2001:db8:55::1a0")
    ping6(env.lab.host, "2001:db8:55::1a0")
    # CHECK sees an IPv6 address gone.
    subprocess.run(["ip", "-n", name, "addr", "del", "2001:db8:55::1a0/64", "dev", "eth0"], check=True)
    broken = env.exec(
        "CHECK", Runtime.plugin_conf(conflist, conflist["plugins"][0], result, None), "ctr-1", netns
    )
    assert broken.exit_code != 0 and "2001:db8:55::1a0/64 is missing" in broken.json["msg"], broken
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result)
    env.rt.delete(conflist, "ctr-3", other, prev_result=second)
    env.settle()
    # DEL freed the lease: the address can be had again.
    again = env.rt.add(conflist, "ctr-4", netns, runtime_config=rc)
    assert "2001:db8:55::1a0/64" in {ip["address"] for ip in again["ips"]}
    env.rt.delete(conflist, "ctr-4", netns, prev_result=again)
    env.settle()
    assert env.host_veths() == [] and env.attachments() == []
    assert ip_json("-n", name, "link", "show", "eth0") == []


def test_cni_args_as_podman_sends_them(env: Env) -> None:
    conflist = env.conflist()
    netns = env.sandboxes.new()
    args = "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.47.0.88;MAC=02:aa:bb:cc:dd:ee"
    result = env.rt.add(conflist, "ctr-1", netns, args=args)
    assert result["ips"][0]["address"] == "10.47.0.88/24"
    assert result["interfaces"][2]["mac"] == "02:aa:bb:cc:dd:ee"
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result, args=args)
    env.settle()


def test_options_mtu_is_gateway_and_dns(env: Env) -> None:
    conflist = env.conflist(mtu=1400, isGateway=False, dns={"nameservers": ["10.47.0.1"], "search": ["lab"]})
    netns = env.sandboxes.new()
    result = env.rt.add(conflist, "ctr-1", netns)
    assert "routes" not in result and result["dns"] == {"nameservers": ["10.47.0.1"], "search": ["lab"]}
    assert all(i["mtu"] == 1400 for i in result["interfaces"])
    assert ip_json("-n", ns_name(netns), "route", "show", "default") == []
    (link,) = ip_json("-n", ns_name(netns), "link", "show", "eth0")
    assert link["mtu"] == 1400
    env.rt.check(conflist, "ctr-1", netns, prev_result=result)
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result)
    env.settle()


def test_ranges_and_ipam_section(env: Env) -> None:
    conflist = env.conflist(
        subnet=None,
        ranges=[
            [
                {
                    "subnet": "10.52.0.0/24",
                    "rangeStart": "10.52.0.64",
                    "rangeEnd": "10.52.0.127",
                    "gateway": "10.52.0.1",
                }
            ]
        ],
    )
    netns = env.sandboxes.new()
    result = env.rt.add(conflist, "ctr-1", netns)
    assert ipaddress.IPv4Address(address_of(result)) in ipaddress.IPv4Network("10.52.0.64/26")
    assert result["ips"][0]["gateway"] == "10.52.0.1"
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result)
    host_local_style = env.conflist(
        name="hl", subnet=None, ipam={"type": "host-local", "subnet": "10.53.0.0/24"}
    )
    result = env.rt.add(host_local_style, "ctr-2", netns)
    assert address_of(result).startswith("10.53.0.")
    env.rt.delete(host_local_style, "ctr-2", netns, prev_result=result)
    env.settle()


def test_a_range_set_of_several_ranges_gives_each_address_its_own_gateway(env: Env) -> None:
    """host-local's way: an address comes from the set's first range with room; its prefix,
    gateway and default route are its own range's, and attachments of the two ranges reach
    each other through the host."""
    ranges = [
        [
            {"subnet": "10.56.0.0/30"},
            {
                "subnet": "10.57.0.0/24",
                "rangeStart": "10.57.0.16",
                "rangeEnd": "10.57.0.31",
                "gateway": "10.57.0.254",
            },
        ]
    ]
    conflist = env.conflist(name="several", subnet=None, ranges=ranges)
    first_ns, second_ns = env.sandboxes.new(), env.sandboxes.new()
    first = env.rt.add(conflist, "ctr-1", first_ns)
    second = env.rt.add(conflist, "ctr-2", second_ns)
    assert [(ip["address"], ip["gateway"]) for ip in first["ips"]] == [("10.56.0.2/30", "10.56.0.1")]
    assert [(ip["address"], ip["gateway"]) for ip in second["ips"]] == [("10.57.0.16/24", "10.57.0.254")]
    assert [(r["dst"], r["gw"]) for r in second["routes"]] == [("0.0.0.0/0", "10.57.0.254")]
    default = ip_json("-n", ns_name(second_ns), "-4", "route", "show", "default")
    assert [r["gateway"] for r in default] == ["10.57.0.254"]
    info = json.loads(env.lab.dy_ok("network", "inspect", "several"))[0]
    assert info["IPAM"]["Config"] == [
        {"Subnet": "10.56.0.0/30", "Gateway": "10.56.0.1"},
        {"Subnet": "10.57.0.0/24", "Gateway": "10.57.0.254", "IPRange": "10.57.0.16/28"},
    ]
    for ns, address in ((first_ns, "10.57.0.16"), (second_ns, "10.56.0.2")):
        r = subprocess.run(
            ["ip", "netns", "exec", ns_name(ns), "ping", "-c", "1", "-W", "2", address],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, f"ping {address}: {r.stdout}{r.stderr}"
    env.rt.check(conflist, "ctr-2", second_ns, prev_result=second)
    # The same config again: its network agrees; one whose later range differs does not.
    other = env.conflist(name="several", subnet=None, ranges=[[ranges[0][0], {"subnet": "10.58.0.0/24"}]])
    third_ns = env.sandboxes.new()
    refused = env.exec("ADD", Runtime.plugin_conf(other, other["plugins"][0], None, None), "ctr-3", third_ns)
    assert refused.exit_code != 0 and "later ranges 10.57.0.0/24" in refused.json["msg"], refused
    env.rt.delete(conflist, "ctr-1", first_ns, prev_result=first)
    env.rt.delete(conflist, "ctr-2", second_ns, prev_result=second)
    env.settle()
    assert env.host_veths() == [] and env.attachments() == []


@pytest.mark.parametrize(
    "changes,code,named",
    [
        ({"ipam": {"type": "dhcp"}}, 7, "ipam.type: 'dhcp'"),
        (
            {"ranges": [[{"subnet": "10.47.0.0/24"}], [{"subnet": "10.48.0.0/24"}]]},
            7,
            "ranges: gives 2 range sets of IPv4 (0, 1); a dockyard endpoint has one address of each family",
        ),
        (
            {"ranges": [[{"subnet": "10.47.0.0/24"}, {"subnet": "10.48.0.1/24"}]]},
            7,
            "ranges[0][1].subnet: invalid subnet '10.48.0.1/24': host bits",
        ),
        (
            {"ranges": [[{"subnet": "10.47.0.0/24"}, {"subnet": "10.48.0.0/24", "rangeEnd": "10.49.0.9"}]]},
            7,
            "ranges[0][1].rangeEnd: 10.49.0.9 is not within subnet 10.48.0.0/24",
        ),
        (
            {"ranges": [[{"subnet": "10.47.0.0/24"}, {"subnet": "10.47.0.0/25"}]]},
            7,
            "subnet 10.47.0.0/25 overlaps subnet 10.47.0.0/24 of the same network",
        ),
        (
            {"subnet": "fd00::/64", "ranges": [[{"subnet": "fd01::/64"}]]},
            7,
            "ranges[0][0].subnet: fd01::/64 disagrees with subnet fd00::/64",
        ),
        (
            {"ranges": [[{"subnet": "fd00::/64"}], [{"subnet": "10.47.0.0/24"}], [{"subnet": "fd01::/64"}]]},
            7,
            "ranges: gives 2 range sets of IPv6 (0, 2)",
        ),
        (
            {"ranges": [[{"subnet": "10.47.0.0/24", "rangeStart": "10.47.0.10", "rangeEnd": "10.47.0.100"}]]},
            7,
            "ranges[0][0].rangeStart: rangeStart 10.47.0.10 to rangeEnd 10.47.0.100 is not one CIDR",
        ),
        (
            {"subnet": None, "ipam": {"ranges": [[{"subnet": "10.54.0.1/24"}]]}},
            7,
            "ipam.ranges[0][0].subnet: invalid subnet '10.54.0.1/24': host bits",
        ),
        ({"subnet": None, "ipam": {"ranges": [[{"subnet": 5}]]}}, 7, "ipam.ranges[0][0].subnet: must be"),
        ({"subnet": None, "ipam": {"ranges": [[], [{}]]}}, 7, "ipam.ranges[0]: must be a list of ranges"),
        (
            {"subnet": None, "ipam": {"subnet": "10.54.0.0/24", "gateway": "10.54.0.x"}},
            7,
            "ipam.gateway: invalid",
        ),
        ({"subnet": "10.54.0.1/24"}, 7, "subnet: invalid subnet '10.54.0.1/24': host bits"),
        ({"subnet": "127.0.0.0/24"}, 7, "loopback"),
        ({"subnet": "169.254.1.0/24"}, 7, "link-local"),
        ({"mtu": "big"}, 7, "mtu: must be"),
        ({"ipMasq": "yes"}, 7, "ipMasq: must be"),
        ({"bridge": 5}, 7, "bridge: must be"),
        ({"name": ""}, 7, "name"),
        (
            {"runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}, {"hostPort": 0}]}},
            7,
            "runtimeConfig.portMappings[1]: invalid port mapping",
        ),
        (
            {"runtimeConfig": {"portMappings": [{"hostPort": 0, "containerPort": 80}]}},
            7,
            "runtimeConfig.portMappings[0].hostPort: invalid hostPort 0",
        ),
        (
            {"runtimeConfig": {"mac": "01:00:5e:00:00:01"}},
            7,
            "runtimeConfig.mac: MAC address 01:00:5e:00:00:01 is a multicast",
        ),
        (
            {"runtimeConfig": {"ips": ["10.47.0.9/24", "nonsense"]}},
            7,
            "runtimeConfig.ips[1]: invalid address 'nonsense'",
        ),
        ({"args": {"cni": {"ips": ["nonsense"]}}}, 7, "args.cni.ips[0]: invalid address"),
        ({"runtimeConfig": {"ips": ["10.99.0.5/24"]}}, 7, "10.99.0.5"),
    ],
)
def test_config_errors(env: Env, changes: dict[str, Any], code: int, named: str) -> None:
    """Each refused with its code, naming the JSON path of the bad value in the runtime's config."""
    netns = env.sandboxes.new()
    conf = env.conf(**{k: v for k, v in changes.items() if v is not None})
    for key in [k for k, v in changes.items() if v is None]:  # None: the key left out
        del conf[key]
    outcome = env.exec("ADD", conf, "ctr-1", netns)
    assert outcome.exit_code != 0 and outcome.json["code"] == code and named in outcome.json["msg"], outcome
    assert ip_json("-n", ns_name(netns), "link", "show", "eth0") == []
    assert env.host_veths() == []
    assert_no_network_left(env)


def assert_no_network_left(env: Env) -> None:
    """A refused first ADD leaves no network (nor bridge) behind either."""
    if (env.lab.root / "dockyard.sock").exists():  # the daemon refused it, not the plugin already
        assert env.attachments() == []
        assert NETWORK not in env.lab.dy_ok("network", "ls") and BRIDGE not in env.lab.links()


@pytest.mark.parametrize(
    "variables,named",
    [
        ({"CNI_ARGS": "IP"}, "CNI_ARGS"),
        ({"CNI_IFNAME": "eth0:1"}, "CNI_IFNAME"),
        ({"CNI_IFNAME": "a-name-far-too-long"}, "CNI_IFNAME"),
        ({"CNI_CONTAINERID": "-bad"}, "CNI_CONTAINERID"),
        ({"CNI_COMMAND": "FROB"}, "FROB"),
    ],
)
def test_environment_errors(env: Env, variables: dict[str, str], named: str) -> None:
    netns = env.sandboxes.new()
    outcome = env.exec("ADD", env.conf(), "ctr-1", netns, **variables)
    assert outcome.exit_code != 0 and outcome.json["code"] == 4 and named in outcome.json["msg"], outcome


def test_del_keeps_an_interface_it_did_not_make(env: Env) -> None:
    netns = env.sandboxes.new()
    subprocess.run(
        ["ip", "-n", ns_name(netns), "link", "add", "eth0", "type", "veth", "peer", "name", "mine0"],
        check=True,
    )
    failed = env.exec("ADD", env.conf(), "ctr-1", netns)
    assert failed.exit_code != 0 and failed.json["code"] == 4 and "eth0" in failed.json["msg"]
    env.rt.delete(env.conflist(), "ctr-1", netns)
    assert ip_json("-n", ns_name(netns), "link", "show", "eth0") != []


def test_add_right_after_del_in_the_same_netns(env: Env) -> None:
    conflist = env.conflist()
    netns = env.sandboxes.new()
    for _ in range(5):  # no settle in between: the old interface may still be on its way out
        result = env.rt.add(conflist, "ctr-1", netns)
        env.rt.delete(conflist, "ctr-1", netns, prev_result=result)
    other = env.conflist(name="second", subnet="10.55.0.0/24")
    result = env.rt.add(conflist, "ctr-1", netns)
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result)
    result = env.rt.add(other, "ctr-1", netns)  # another network, the same interface name
    env.rt.delete(other, "ctr-1", netns, prev_result=result)
    env.settle()


# -- chaining with the reference plugins ---------------------------------------------


def test_first_in_a_chain_with_tuning_bandwidth_and_firewall(env: Env) -> None:
    missing = [p for p in ("tuning", "bandwidth", "firewall") if not (REFERENCE_DIR / p).exists()]
    if missing:
        pytest.skip(
            f"reference plugins {missing} not installed (apt-get install containernetworking-plugins)"
        )
    conflist = env.conflist("1.0.0")  # the newest version the reference plugins here speak
    conflist["plugins"] += [
        {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.rp_filter": "2"}, "capabilities": {"mac": True}},
        {"type": "bandwidth", "ingressRate": 8000000, "ingressBurst": 100000},
        {"type": "firewall", "backend": "iptables"},
    ]
    # The MAC goes to dockyard too: its bridge port lets no other through
    # (one that only a later plugin sets is cut off: the next test).
    conflist["plugins"][0]["capabilities"] = {"portMappings": True, "mac": True}
    netns = env.sandboxes.new()
    rc = {
        "mac": "02:33:44:55:66:77",
        "portMappings": [{"hostPort": 8084, "containerPort": 80, "protocol": "tcp"}],
    }
    result = env.rt.add(conflist, "ctr-1", netns, runtime_config=rc)
    assert result["cniVersion"] == "1.0.0"
    ip = address_of(result)
    sandbox = next(i for i in result["interfaces"] if i.get("sandbox"))
    assert sandbox["mac"] == "02:33:44:55:66:77"  # tuning set it too and said so in the result
    rp = subprocess.run(
        ["ip", "netns", "exec", ns_name(netns), "sysctl", "-n", "net.ipv4.conf.eth0.rp_filter"],
        capture_output=True,
        text=True,
    )
    assert rp.stdout.strip() == "2"
    host_veth = result["interfaces"][1]["name"]
    qdisc = env.lab.in_host("tc", "qdisc", "show", "dev", host_veth).stdout
    assert "tbf" in qdisc, qdisc
    rules = env.lab.in_host("iptables", "-S", "CNI-FORWARD").stdout
    assert ip in rules, rules
    env.lab.spawn_in(ns_name(netns), sys.executable, PROBE, "serve", "tcp", "80")
    answer = env.lab.wait_answer(env.lab.up, "tcp", HOST_ADDR, 8084)
    assert answer.startswith(f"peer={UP_ADDR}:")
    env.rt.check(conflist, "ctr-1", netns, prev_result=result, runtime_config=rc)
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result, runtime_config=rc)
    env.settle()
    assert ip not in env.lab.in_host("iptables", "-S", "CNI-FORWARD").stdout
    assert env.host_veths() == []


def test_a_mac_set_after_the_add_is_not_let_through_and_check_says_why(env: Env) -> None:
    if not (REFERENCE_DIR / "tuning").exists():
        pytest.skip("reference plugin tuning not installed (apt-get install containernetworking-plugins)")
    conflist = env.conflist("1.0.0")
    conflist["plugins"].append({"type": "tuning", "capabilities": {"mac": True}})
    conflist["plugins"][0]["capabilities"] = {"portMappings": True}
    netns = env.sandboxes.new()
    rc = {
        "mac": "02:33:44:55:66:78",
        "portMappings": [{"hostPort": 8085, "containerPort": 80, "protocol": "tcp"}],
    }
    result = env.rt.add(conflist, "ctr-1", netns, runtime_config=rc)
    sandbox = next(i for i in result["interfaces"] if i.get("sandbox"))
    assert sandbox["mac"] == "02:33:44:55:66:78"  # tuning changed it after dockyard's ADD
    env.lab.spawn_in(ns_name(netns), sys.executable, PROBE, "serve", "tcp", "80")
    # The port's guard holds the MAC dockyard gave: the container's frames go nowhere.
    assert env.lab.ask(env.lab.up, "tcp", HOST_ADDR, 8085, timeout=1) is None
    with pytest.raises(PluginFailed) as info:
        env.rt.check(conflist, "ctr-1", netns, prev_result=result, runtime_config=rc)
    outcome = info.value.outcome
    assert outcome.plugin == "dockyard" and outcome.json["code"] == 102, outcome
    assert "has MAC 02:33:44:55:66:78, but its bridge port lets only" in outcome.json["msg"], outcome
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result, runtime_config=rc)
    env.settle()


# -- restarts and concurrency --------------------------------------------------------


def test_published_ports_survive_a_daemon_restart_and_gc(env: Env) -> None:
    conflist = env.conflist()
    netns = env.sandboxes.new()
    rc = {"portMappings": [{"hostPort": 8085, "containerPort": 80, "protocol": "tcp"}]}
    result = env.rt.add(conflist, "ctr-1", netns, runtime_config=rc)
    env.lab.spawn_in(ns_name(netns), sys.executable, PROBE, "serve", "tcp", "80")
    env.lab.wait_answer(env.lab.up, "tcp", HOST_ADDR, 8085)
    env.lab.dy_ok("daemon", "stop")
    env.rt.check(conflist, "ctr-1", netns, prev_result=result, runtime_config=rc)  # starts it again
    env.lab.wait_answer(env.lab.up, "tcp", HOST_ADDR, 8085)
    env.lab.dy_ok("system", "gc")
    env.rt.check(conflist, "ctr-1", netns, prev_result=result, runtime_config=rc)
    env.lab.wait_answer(env.lab.up, "tcp", HOST_ADDR, 8085)
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result, runtime_config=rc)
    env.settle()


# The runtime's own hold of a host port (Podman binds it after the ADD).
HOLD_PORT = """
import socket, sys, time
s = socket.socket()
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen()
print("held", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("restart", ["stop", "kill"])
def test_a_restarted_daemon_leaves_the_host_ports_to_the_runtime(env: Env, restart: str) -> None:
    """As with portmap, the runtime holds an attachment's host port: a daemon that
    starts again puts the DNAT back without trying to hold the port, so it
    never warns that it cannot, and the port still answers from outside."""
    conflist = env.conflist()
    netns = env.sandboxes.new()
    rc = {"portMappings": [{"hostPort": 8087, "containerPort": 80, "protocol": "tcp"}]}
    result = env.rt.add(conflist, "ctr-1", netns, runtime_config=rc)
    env.lab.spawn_in(ns_name(netns), sys.executable, PROBE, "serve", "tcp", "80")
    runtime = env.lab.spawn_in(env.lab.host, sys.executable, "-c", HOLD_PORT, "8087")
    assert runtime.stdout is not None and runtime.stdout.readline().strip() == "held"
    env.lab.wait_answer(env.lab.up, "tcp", HOST_ADDR, 8087)
    if restart == "stop":
        env.lab.dy_ok("daemon", "stop")
    else:
        pid = int((env.lab.root / "dockyardd.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        env.lab.eventually(lambda: not pid_alive(pid), what="the daemon gone")
    env.lab.dy_ok("network", "inspect", NETWORK)  # any command starts a daemon again
    log = (env.lab.root / "daemon.log").read_text()
    starts = [line for line in log.splitlines() if "]: dockyardd " in line and " serving " in line]
    assert len(starts) == 2, starts
    assert "cannot hold host port" not in log, log
    answer = env.lab.wait_answer(env.lab.up, "tcp", HOST_ADDR, 8087)
    assert answer.startswith(f"peer={UP_ADDR}:"), answer
    env.rt.check(conflist, "ctr-1", netns, prev_result=result, runtime_config=rc)
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result, runtime_config=rc)
    env.settle()
    assert "cannot hold host port" not in (env.lab.root / "daemon.log").read_text()


def test_parallel_adds_start_one_daemon(env: Env) -> None:
    conflist = env.conflist()
    spaces = [env.sandboxes.new() for _ in range(8)]
    with concurrent.futures.ThreadPoolExecutor(len(spaces)) as pool:
        results = list(pool.map(lambda i: env.rt.add(conflist, f"ctr-{i}", spaces[i]), range(len(spaces))))
    addresses = {address_of(r) for r in results}
    assert len(addresses) == len(spaces)
    daemons = [
        line
        for line in (env.lab.root / "daemon.log").read_text().splitlines()
        if " serving " in line and "]: dockyardd " in line
    ]
    assert len(daemons) == 1, daemons
    with concurrent.futures.ThreadPoolExecutor(len(spaces)) as pool:
        list(
            pool.map(
                lambda i: env.rt.delete(conflist, f"ctr-{i}", spaces[i], prev_result=results[i]),
                range(len(spaces)),
            )
        )
    env.settle()
    assert env.attachments() == [] and env.host_veths() == []


# -- not first in a chain: prevResult kept -------------------------------------------


def test_after_the_reference_loopback_plugin(env: Env) -> None:
    if not (REFERENCE_DIR / "loopback").exists():
        pytest.skip(
            "the reference loopback plugin is not installed (apt-get install containernetworking-plugins)"
        )
    conflist = env.conflist("1.0.0")  # the newest version the reference plugins here speak
    conflist["plugins"].insert(0, {"type": "loopback"})
    netns = env.sandboxes.new()
    subprocess.run(["ip", "-n", ns_name(netns), "link", "set", "lo", "down"], check=True)
    result = env.rt.add(conflist, "ctr-1", netns)
    names = [i["name"] for i in result["interfaces"]]
    assert names[0] == "lo" and names[-1] == "eth0" and len(names) == 4, result
    by_interface = {ip["interface"]: ip["address"] for ip in result["ips"] if ":" not in ip["address"]}
    assert by_interface[0] == "127.0.0.1/8", result  # loopback's entry, index unchanged
    assert ipaddress.IPv4Interface(by_interface[3]).network == ipaddress.IPv4Network(SUBNET)
    assert {"dst": "0.0.0.0/0", "gw": GATEWAY} in result["routes"]
    (lo,) = ip_json("-n", ns_name(netns), "link", "show", "lo")
    assert "UP" in lo["flags"]  # loopback really ran, then dockyard
    env.rt.check(conflist, "ctr-1", netns, prev_result=result)
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result)
    env.settle()
    assert env.attachments() == [] and env.host_veths() == []


def _stub_result(version: str, netns: str) -> dict[str, Any]:
    ip: dict[str, Any] = {"address": "192.0.2.5/24", "gateway": "192.0.2.1", "interface": 1}
    if plugin.version_tuple(version) < (1, 0, 0):
        ip = {"version": "4", **ip}
    return {
        "interfaces": [{"name": "stub-host"}, {"name": "net1", "sandbox": netns}],
        "ips": [ip],
        "routes": [{"dst": "198.18.0.0/15", "gw": "192.0.2.1"}],
        "dns": {"nameservers": ["192.0.2.53"], "search": ["stub.example"]},
    }


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_after_another_plugin_its_result_is_kept(env: Env, tmp_path: Path, version: str) -> None:
    stub_plugin(tmp_path / "cni-bin")
    netns = env.sandboxes.new()
    conflist = env.conflist(version, dns={"nameservers": ["10.47.0.1"], "search": ["lab"], "domain": "lab"})
    prev = _stub_result(version, netns)
    conflist["plugins"].insert(0, {"type": "stub", "result": prev})
    result = env.rt.add(conflist, "ctr-1", netns)
    assert result["cniVersion"] == version
    assert result["interfaces"][:2] == prev["interfaces"]
    assert [i["name"] for i in result["interfaces"][2:]] == [BRIDGE, result["interfaces"][3]["name"], "eth0"]
    stub_ip, ours = result["ips"]
    assert stub_ip == prev["ips"][0], "the earlier plugin's entries pass through as they were"
    assert ours["interface"] == 4 and result["interfaces"][4]["sandbox"] == netns
    assert ("version" in ours) == (plugin.version_tuple(version) < (1, 0, 0))
    assert result["routes"] == [prev["routes"][0], {"dst": "0.0.0.0/0", "gw": GATEWAY}]
    assert result["dns"] == {
        "nameservers": ["192.0.2.53", "10.47.0.1"],
        "search": ["stub.example", "lab"],
        "domain": "lab",
    }
    assert ours["address"] in {
        f"{a['local']}/{a['prefixlen']}"
        for link in ip_json("-n", ns_name(netns), "addr", "show", "eth0")
        for a in link["addr_info"]
    }
    if plugin.version_tuple(version) >= (0, 4, 0):
        env.rt.check(conflist, "ctr-1", netns, prev_result=result)
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result)
    env.settle()
    assert env.attachments() == [] and env.host_veths() == []


@pytest.mark.parametrize(
    "prev",
    [
        [],
        {"interfaces": {"name": "lo"}},
        {"interfaces": [{"name": "lo"}], "ips": [{"address": "127.0.0.1/8", "interface": 5}]},
        {"interfaces": [{"name": "lo"}], "ips": [{"address": "127.0.0.1/8", "interface": "0"}]},
        {"routes": ["0.0.0.0/0"]},
        {"dns": ["1.1.1.1"]},
    ],
    ids=["list", "interfaces-object", "index-out-of-range", "index-string", "route-string", "dns-list"],
)
def test_add_with_a_malformed_prev_result(env: Env, prev: Any) -> None:
    netns = env.sandboxes.new()
    outcome = env.exec("ADD", env.conf(prevResult=prev), "ctr-1", netns)
    assert outcome.exit_code != 0 and outcome.json["code"] == 7 and "prevResult" in outcome.json["msg"], (
        outcome
    )
    assert ip_json("-n", ns_name(netns), "link", "show", "eth0") == []
    assert env.host_veths() == []


# -- the bridge plugin's keys: gateway, ipMasq, hairpin, ipam.routes ----------------------


@pytest.mark.parametrize(
    "keys,default_route",
    [
        ({}, True),
        ({"isGateway": True}, True),
        ({"isGateway": False}, False),
        ({"isDefaultGateway": True}, True),
        ({"isDefaultGateway": False}, False),
        ({"isGateway": True, "isDefaultGateway": False}, False),
        ({"isGateway": False, "isDefaultGateway": True}, True),
        ({"isDefaultGateway": False, "ipam": {"routes": [{"dst": "0.0.0.0/0"}]}}, True),
    ],
)
def test_gateway_keys(env: Env, keys: dict[str, Any], default_route: bool) -> None:
    conflist = env.conflist()
    conflist["plugins"][0].pop("isGateway")
    conflist["plugins"][0].update(keys)
    netns = env.sandboxes.new()
    result = env.rt.add(conflist, "ctr-1", netns)
    routes = ip_json("-n", ns_name(netns), "route", "show", "default")
    if default_route:
        assert [r["gateway"] for r in routes] == [GATEWAY]
        assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": GATEWAY}]
    else:
        assert routes == [] and "routes" not in result
    # Whatever the keys, a dockyard network's gateway address is on its bridge.
    (bridge,) = ip_json("-n", env.lab.host, "addr", "show", "dev", BRIDGE)
    assert f"{GATEWAY}/24" in {f"{a['local']}/{a['prefixlen']}" for a in bridge["addr_info"]}
    assert result["ips"][0]["gateway"] == GATEWAY
    env.rt.check(conflist, "ctr-1", netns, prev_result=result)
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result)
    env.settle()


def test_ip_masq_on_and_off(env: Env) -> None:
    lab = env.lab
    lab.spawn_in(lab.up, sys.executable, PROBE, "serve", "tcp", "9000")
    lab.wait_answer(lab.host, "tcp", UP_ADDR, 9000)
    on = env.conflist(name="masqon", subnet="10.56.0.0/24", ipMasq=True)
    off = env.conflist(name="masqoff", subnet="10.57.0.0/24", ipMasq=False)
    a, b = env.sandboxes.new(), env.sandboxes.new()
    ra = env.rt.add(on, "ctr-a", a)
    rb = env.rt.add(off, "ctr-b", b)
    # Masqueraded: the upstream sees the host's address, and needs no route back.
    answer = lab.wait_answer(ns_name(a), "tcp", UP_ADDR, 9000)
    assert answer.startswith(f"peer={HOST_ADDR}:"), answer
    # Not masqueraded: without a route back to 10.57.0.0/24 the upstream cannot answer ...
    assert lab.ask(ns_name(b), "tcp", UP_ADDR, 9000, timeout=1.0) is None
    # ... and with one it sees the container's own address.
    subprocess.run(["ip", "-n", lab.up, "route", "add", "10.57.0.0/24", "via", HOST_ADDR], check=True)
    answer = lab.wait_answer(ns_name(b), "tcp", UP_ADDR, 9000)
    assert answer.startswith(f"peer={address_of(rb)}:"), answer
    env.rt.delete(on, "ctr-a", a, prev_result=ra)
    env.rt.delete(off, "ctr-b", b, prev_result=rb)
    env.settle()


def _hairpin(env: Env, host_veth: str) -> bool:
    (link,) = ip_json("-n", env.lab.host, "-d", "link", "show", host_veth)
    return bool(link["linkinfo"]["info_slave_data"]["hairpin"])


@pytest.mark.parametrize("hairpin", [None, True, False])
def test_hairpin_mode(env: Env, hairpin: bool | None) -> None:
    extra = {} if hairpin is None else {"hairpinMode": hairpin}
    conflist = env.conflist(**extra)
    netns = env.sandboxes.new()
    rc = {"portMappings": [{"hostPort": 8086, "containerPort": 80, "protocol": "tcp"}]}
    result = env.rt.add(conflist, "ctr-1", netns, runtime_config=rc)
    host_veth = result["interfaces"][1]["name"]
    env.lab.spawn_in(ns_name(netns), sys.executable, PROBE, "serve", "tcp", "80")
    env.lab.wait_answer(env.lab.host, "tcp", address_of(result), 80)
    br_netfilter = env.lab.in_host("sysctl", "-n", "net.bridge.bridge-nf-call-iptables").stdout.strip() == "1"
    # The container asks for its own published port on the host's address: a hairpin request.
    if hairpin is False:
        assert _hairpin(env, host_veth) is False
        if br_netfilter:  # the DNATed frame must leave by the port it came in: refused
            assert env.lab.ask(ns_name(netns), "tcp", HOST_ADDR, 8086, timeout=1.0) is None
    else:
        assert _hairpin(env, host_veth) is True
        answer = env.lab.wait_answer(ns_name(netns), "tcp", HOST_ADDR, 8086)
        assert answer.startswith("peer="), answer
    env.rt.check(conflist, "ctr-1", netns, prev_result=result, runtime_config=rc)
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result, runtime_config=rc)
    env.settle()


def test_ipam_routes(env: Env) -> None:
    lab = env.lab
    lab.spawn_in(lab.up, sys.executable, PROBE, "serve", "tcp", "9000")
    lab.wait_answer(lab.host, "tcp", WORLD_ADDR, 9000)
    routes = [{"dst": "203.0.113.0/24"}, {"dst": "198.18.0.0/15", "gw": "10.47.0.254"}]
    conflist = env.conflist(isDefaultGateway=False, ipMasq=True, ipam={"routes": routes})
    netns = env.sandboxes.new()
    result = env.rt.add(conflist, "ctr-1", netns)
    assert result["routes"] == [
        {"dst": "203.0.113.0/24", "gw": GATEWAY},
        {"dst": "198.18.0.0/15", "gw": "10.47.0.254"},
    ]
    present = {(r["dst"], r.get("gateway")) for r in ip_json("-n", ns_name(netns), "route", "show")}
    assert {("203.0.113.0/24", GATEWAY), ("198.18.0.0/15", "10.47.0.254")} <= present
    assert not any(dst == "default" for dst, _ in present)
    # Traffic follows them: the world is reachable through the route, the upstream's link is not.
    answer = lab.wait_answer(ns_name(netns), "tcp", WORLD_ADDR, 9000)
    assert answer.startswith(f"peer={HOST_ADDR}:"), answer
    assert lab.ask(ns_name(netns), "tcp", UP_ADDR, 9000, timeout=1.0) is None
    env.rt.check(conflist, "ctr-1", netns, prev_result=result)
    subprocess.run(["ip", "-n", ns_name(netns), "route", "del", "198.18.0.0/15"], check=True)
    with pytest.raises(PluginFailed) as failed:
        env.rt.check(conflist, "ctr-1", netns, prev_result=result)
    assert failed.value.error["code"] == 102 and "198.18.0.0/15" in failed.value.error["msg"]
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result)
    env.settle()


@pytest.mark.parametrize(
    "routes,named",
    [
        ([{"dst": "192.0.2.0/24", "gw": "10.99.0.1"}], "10.99.0.1"),
        ([{"dst": "fd00::/64"}], "route to fd00::/64 has no gw, and network dynet no IPv6 gateway"),
        ([{"dst": "192.0.2.0/24"}, {"dst": "not-a-cidr"}], "ipam.routes[1].dst: invalid dst 'not-a-cidr'"),
        ([{"gw": "10.47.0.1"}], "ipam.routes[0]: invalid route"),
        ([{"dst": "192.0.2.0/24", "gw": "x"}], "ipam.routes[0].gw: invalid gw"),
        ({"dst": "192.0.2.0/24"}, "ipam.routes: must be"),
        ([{"dst": SUBNET}], SUBNET),
    ],
)
def test_ipam_route_errors(env: Env, routes: Any, named: str) -> None:
    netns = env.sandboxes.new()
    outcome = env.exec("ADD", env.conf(ipam={"routes": routes}), "ctr-1", netns)
    assert outcome.exit_code != 0 and outcome.json["code"] == 7 and named in outcome.json["msg"], outcome
    assert ip_json("-n", ns_name(netns), "link", "show", "eth0") == []
    assert env.host_veths() == []
    assert_no_network_left(env)


# -- a failed ADD leaves nothing: no row, no map element, the address free -------------


KEEP_PORTS = {"portMappings": [{"hostPort": 8090, "containerPort": 80, "protocol": "tcp"}]}
WANTED = {
    "ips": ["10.47.0.50/24"],
    "portMappings": [{"hostPort": 8091, "containerPort": 80, "protocol": "tcp"}],
}


def _bad_add(env: Env, case: str, netns: str) -> Outcome:
    conflist = env.conflist()
    conf = Runtime.plugin_conf(conflist, conflist["plugins"][0], None, WANTED)
    if case == "malformed JSON":
        return env.exec("ADD", json.dumps(conf).encode()[:-9], "ctr-bad", netns)
    if case == "unknown cniVersion":
        return env.exec("ADD", {**conf, "cniVersion": "9.9.9"}, "ctr-bad", netns)
    if case.startswith("missing "):
        return env.exec("ADD", conf, "ctr-bad", netns, **{case.split()[1]: ""})
    if case == "netns missing":
        return env.exec("ADD", conf, "ctr-bad", f"/run/netns/{env.lab.host}-nothing-here")
    if case == "ifname present":
        subprocess.run(
            ["ip", "-n", ns_name(netns), "link", "add", "eth0", "type", "veth", "peer", "name", "mine0"],
            check=True,
        )
        return env.exec("ADD", conf, "ctr-bad", netns)
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case,code",
    [
        ("malformed JSON", 6),
        ("unknown cniVersion", 1),
        ("missing CNI_CONTAINERID", 4),
        ("missing CNI_NETNS", 4),
        ("missing CNI_IFNAME", 4),
        ("netns missing", 4),
        ("ifname present", 4),
    ],
)
def test_a_failed_add_leaves_nothing(env: Env, case: str, code: int) -> None:
    conflist = env.conflist()
    keep_ns = env.sandboxes.new()
    kept = env.rt.add(conflist, "ctr-keep", keep_ns, runtime_config=KEEP_PORTS)
    netns = env.sandboxes.new()
    failed = _bad_add(env, case, netns)
    assert failed.exit_code != 0 and failed.json["code"] == code, failed
    env.settle()
    assert env.members() == {"cni:ctr-keep/eth0"}
    assert [a["ContainerID"] for a in env.attachments()] == ["ctr-keep"]
    assert env.published() == {8090}
    assert len(env.host_veths()) == 1
    # The address and the host port it asked for are free: the same request now succeeds.
    again = env.sandboxes.new()
    result = env.rt.add(conflist, "ctr-bad", again, runtime_config=WANTED)
    assert result["ips"][0]["address"] == "10.47.0.50/24" and env.published() == {8090, 8091}
    env.rt.delete(conflist, "ctr-bad", again, prev_result=result, runtime_config=WANTED)
    env.rt.delete(conflist, "ctr-keep", keep_ns, prev_result=kept, runtime_config=KEEP_PORTS)
    env.settle()
    assert env.members() == set() and env.published() == set() and env.host_veths() == []


@pytest.mark.parametrize("family", ["ipv4", "ipv6only"])
def test_an_add_to_an_exhausted_subnet_leaves_nothing(env: Env, family: str) -> None:
    if family == "ipv4":
        small, full_range = env.conflist(name="tiny", subnet="10.49.0.0/30"), "10.49.0.0/30"  # one container
    else:  # an IPv6-only network whose range holds one address
        one = {"rangeStart": "fd00:49::2", "rangeEnd": "fd00:49::2"}
        small, full_range = env.conflist(name="tiny", subnet="fd00:49::/64", **one), "fd00:49::2/128"
    a, b = env.sandboxes.new(), env.sandboxes.new()
    first = env.rt.add(small, "ctr-a", a, runtime_config=KEEP_PORTS)
    conf = Runtime.plugin_conf(small, small["plugins"][0], None, {"portMappings": WANTED["portMappings"]})
    full = env.exec("ADD", conf, "ctr-b", b)
    assert full.exit_code != 0 and full.json["code"] == 11 and full_range in full.json["msg"], full
    env.settle()
    assert env.members("tiny") == {"cni:ctr-a/eth0"} and env.published() == {8090}
    assert ip_json("-n", ns_name(b), "link", "show", "eth0") == [] and len(env.host_veths()) == 1
    env.rt.delete(small, "ctr-a", a, prev_result=first, runtime_config=KEEP_PORTS)
    second = env.rt.add(small, "ctr-b", b, runtime_config={"portMappings": WANTED["portMappings"]})
    assert second["ips"][0]["address"] == first["ips"][0]["address"], "the one address is given again"
    assert env.members("tiny") == {"cni:ctr-b/eth0"} and env.published() == {8091}
    env.rt.delete(small, "ctr-b", b, prev_result=second)
    env.settle()


@pytest.mark.parametrize("taken", ["address", "host port"])
def test_an_address_or_host_port_taken_is_code_100(env: Env, taken: str) -> None:
    conflist = env.conflist()
    a, b = env.sandboxes.new(), env.sandboxes.new()
    first = env.rt.add(conflist, "ctr-a", a, runtime_config=WANTED)
    rc = {"ips": WANTED["ips"]} if taken == "address" else {"portMappings": WANTED["portMappings"]}
    outcome = env.exec("ADD", Runtime.plugin_conf(conflist, conflist["plugins"][0], None, rc), "ctr-b", b)
    named = "10.47.0.50" if taken == "address" else "8091"
    assert outcome.exit_code != 0 and outcome.json["code"] == 100 and named in outcome.json["msg"], outcome
    env.settle()
    assert env.members() == {"cni:ctr-a/eth0"} and env.published() == {8091}
    assert ip_json("-n", ns_name(b), "link", "show", "eth0") == [] and len(env.host_veths()) == 1
    env.rt.delete(conflist, "ctr-a", a, prev_result=first, runtime_config=WANTED)
    env.settle()


# -- more error codes: CHECK of an unknown attachment, STATUS, the daemon's netns checks -----


def test_check_of_an_unknown_attachment_is_code_3(env: Env) -> None:
    conflist = env.conflist()
    netns = env.sandboxes.new()
    result = env.rt.add(conflist, "ctr-1", netns)
    with pytest.raises(PluginFailed) as unknown:
        env.rt.check(conflist, "ctr-never-added", netns, prev_result=result)
    assert unknown.value.error["code"] == 3 and "ctr-never-added" in unknown.value.error["msg"]
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result)
    with pytest.raises(PluginFailed) as deleted:
        env.rt.check(conflist, "ctr-1", netns, prev_result=result)
    assert deleted.value.error["code"] == 3
    env.settle()


@pytest.mark.parametrize("foreign", ["veth", "bridge"])
def test_status_when_a_foreign_link_has_the_bridge_name(env: Env, foreign: str) -> None:
    name = "cni-taken"
    if foreign == "veth":
        env.lab.in_host("ip", "link", "add", name, "type", "veth", "peer", "name", "cni-taken-p")
    else:
        env.lab.in_host("ip", "link", "add", name, "type", "bridge")
    conflist = env.conflist(name="taken", subnet="10.58.0.0/24", bridge=name)
    with pytest.raises(PluginFailed) as refused:
        env.rt.status(conflist)
    error = refused.value.error
    assert error["code"] == 50 and name in error["msg"] and "cannot be made" in error["msg"], error
    netns = env.sandboxes.new()
    outcome = env.exec(
        "ADD", Runtime.plugin_conf(conflist, conflist["plugins"][0], None, None), "ctr-1", netns
    )
    assert outcome.exit_code != 0 and name in outcome.json["msg"], "STATUS told the truth: ADD fails"
    assert ip_json("-n", ns_name(netns), "link", "show", "eth0") == [] and env.host_veths() == []
    env.lab.in_host("ip", "link", "del", name)


def test_status_when_the_bridge_is_gone_under_attachments(env: Env) -> None:
    conflist = env.conflist()
    netns = env.sandboxes.new()
    result = env.rt.add(conflist, "ctr-1", netns)
    env.rt.status(conflist)
    env.lab.in_host("ip", "link", "del", BRIDGE)
    with pytest.raises(PluginFailed) as missing:
        env.rt.status(conflist)
    error = missing.value.error
    assert error["code"] == 51 and BRIDGE in error["msg"] and "missing" in error["msg"], error
    with pytest.raises(PluginFailed) as broken:
        env.rt.check(conflist, "ctr-1", netns, prev_result=result)
    assert broken.value.error["code"] == 102 and BRIDGE in broken.value.error["msg"]
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result)
    env.settle()
    env.lab.dy_ok("system", "gc")  # makes the network's bridge again
    env.rt.status(conflist)
    result = env.rt.add(conflist, "ctr-1", netns)
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result)
    env.settle()


@pytest.mark.parametrize("kind", ["regular file", "uts namespace", "the host's own netns"])
def test_daemon_refuses_a_netns_that_is_not_a_containers(env: Env, tmp_path: Path, kind: str) -> None:
    if kind == "regular file":
        path = tmp_path / "not-a-netns"
        path.write_text("")
        netns, named = str(path), "is not a network namespace"
    elif kind == "uts namespace":
        netns, named = "/proc/self/ns/uts", "is not a network namespace"  # the daemon's, as it reads it
    else:
        netns, named = f"/run/netns/{env.lab.host}", "host's own network namespace"
    env.lab.dy_ok("network", "ls")  # the daemon up (with its default bridge) before looking
    before = env.lab.links()
    outcome = env.exec("ADD", env.conf(), "ctr-1", netns)
    assert outcome.exit_code != 0 and outcome.json["code"] == 4 and named in outcome.json["msg"], outcome
    env.settle()
    assert env.lab.links() == before and env.attachments() == []


# -- robustness of the plugin's input -----------------------------------------------------


def test_malformed_json_names_the_problem(env: Env) -> None:
    outcome = env.exec("ADD", b'{"cniVersion" "1.1.0"}', "ctr-1", env.sandboxes.new())
    assert outcome.exit_code != 0 and outcome.json["code"] == 6, outcome
    assert "Expecting ':' delimiter" in outcome.json["msg"], outcome


@pytest.mark.parametrize("where", ["document", "value"])
def test_deeply_nested_json_is_a_decode_error(env: Env, where: str) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    stdin = deep if where == "document" else b'{"cniVersion": "1.1.0", "name": "x", "args": ' + deep + b"}"
    netns = env.sandboxes.new()
    outcome = env.exec("ADD", stdin, "ctr-1", netns)
    assert outcome.exit_code != 0 and outcome.json["code"] == 6, outcome
    assert "nested too deeply" in outcome.json["msg"]


@pytest.mark.parametrize(
    "prev",
    [
        {"interfaces": "eth0"},
        {"interfaces": [{"name": "eth0", "sandbox": "/x"}], "ips": [{"address": "bogus", "interface": 0}]},
        {"interfaces": [{"name": "eth0", "sandbox": "/x"}], "ips": [{"address": 5, "interface": 0}]},
        {"interfaces": [{"name": "eth0", "sandbox": "/x"}], "routes": [5]},
        {"interfaces": [{"name": "eth0", "sandbox": "/x"}], "routes": [{"dst": "nowhere"}]},
        {"interfaces": [{"name": "eth0", "sandbox": "/x"}], "routes": [{"dst": "0.0.0.0/0", "gw": 7}]},
        {"interfaces": [{"name": "eth0", "sandbox": "/x", "mac": "zz"}]},
        {
            "interfaces": [{"name": "eth0", "sandbox": "/x"}],
            "ips": [{"address": "10.47.0.2/24", "interface": 3}],
        },
    ],
)
def test_check_with_a_malformed_prev_result_is_code_7(env: Env, prev: dict[str, Any]) -> None:
    conflist = env.conflist()
    netns = env.sandboxes.new()
    result = env.rt.add(conflist, "ctr-1", netns)
    outcome = env.exec("CHECK", env.conf(prevResult=prev), "ctr-1", netns)
    assert outcome.exit_code != 0 and outcome.json["code"] == 7 and "prevResult" in outcome.json["msg"], (
        outcome
    )
    # The daemon's own check, for a client that sends it without the plugin's.
    body = {
        "network": plugin.network_of(env.conf()),
        "containerId": "ctr-1",
        "ifname": "eth0",
        "netns": netns,
    }
    fd = os.open(netns, os.O_RDONLY)
    try:
        status, reply = plugin.post(
            str(env.lab.root / "dockyard.sock"), "/dockyard/cni/check", {**body, "prevResult": prev}, [fd]
        )
    finally:
        os.close(fd)
    error = json.loads(reply)["cni"]
    assert status == 400 and error["code"] == 7 and "prevResult" in error["msg"], error
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result)
    env.settle()
