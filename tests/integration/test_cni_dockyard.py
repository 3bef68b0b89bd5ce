"""dockyard-cni beyond the shared conformance tests: what is dockyard's own.

GC and STATUS (CNI 1.1.0, which the installed reference plugins do not
speak), crashes of the daemon in the middle of an ADD, CHECK of published
ports, the state shared with `dockyard network`, capabilities and CNI_ARGS,
chaining with the reference plugins after dockyard, restarts, concurrency,
configuration errors, the result formats, and the plugin's imports.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
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
)

from dockyard import cni as plugin
from dockyard.client import Client
from lab import HOST_ADDR, PROBE, UP_ADDR, Lab

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
from dockyard import cni
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


def _modules_of_a_plugin_run(env: Env, container_id: str) -> set[str]:
    netns = env.sandboxes.new()
    r = subprocess.run(
        [
            "nsenter",
            f"--net=/run/netns/{env.lab.host}",
            sys.executable,
            "-c",
            IMPORT_PROBE,
            json.dumps(env.conf()),
        ],
        capture_output=True,
        text=True,
        env=env.rt.env("ADD", container_id, netns, "eth0"),
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_plugin_loads_no_kernel_database_or_json_modules(env: Env) -> None:
    heavy = {
        "pyroute2",
        "nftables",
        "sqlite3",
        "_sqlite3",
        "dockyard.engine",
        "dockyard.store",
        "dockyard.api",
    }
    starting = _modules_of_a_plugin_run(env, "probe-1")  # this one starts the daemon
    assert not heavy & starting, sorted(heavy & starting)
    running = _modules_of_a_plugin_run(env, "probe-2")
    assert not heavy & running, sorted(heavy & running)
    # Its speed, with the daemon up: no json package (re, enum), no socket module, no dockyard.client.
    light = {"json", "re", "enum", "socket", "selectors", "dockyard.client"}
    assert not light & running, sorted(light & running)


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


# -- crashes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault", ["cni.add.begin", "cni.add.recorded", "endpoint.publish", "cni.add.plugged"]
)
def test_del_after_the_daemon_died_in_an_add(env: Env, fault: str) -> None:
    conflist = env.conflist()
    netns = env.sandboxes.new()
    ports = {"portMappings": [{"hostPort": 8082, "containerPort": 80, "protocol": "tcp"}]}
    conf = Runtime.plugin_conf(conflist, conflist["plugins"][0], None, ports)
    # The first plugin starts the daemon, which inherits the fault from its environment.
    crashed = env.exec("ADD", conf, "ctr-1", netns, DOCKYARD_FAULT=fault)
    assert crashed.exit_code != 0 and crashed.json["code"] == 11, crashed  # try again later
    env.rt.delete(conflist, "ctr-1", netns, runtime_config=ports)  # starts a daemon without the fault
    env.settle()
    assert env.attachments() == []
    assert ip_json("-n", ns_name(netns), "link", "show", "eth0") == []
    assert env.host_veths() == []
    assert env.lab.map_elements("publish_any") == []
    result = env.rt.add(conflist, "ctr-1", netns, runtime_config=ports)  # port and address are free
    env.rt.delete(conflist, "ctr-1", netns, prev_result=result, runtime_config=ports)
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


@pytest.mark.parametrize(
    "changes,code,named",
    [
        ({"ipam": {"type": "dhcp"}}, 7, "dhcp"),
        ({"ranges": [[{"subnet": "fd00::/64"}]]}, 7, "IPv6"),
        (
            {"ranges": [[{"subnet": "10.47.0.0/24", "rangeStart": "10.47.0.10", "rangeEnd": "10.47.0.100"}]]},
            7,
            "CIDR",
        ),
        ({"subnet": "10.54.0.1/24"}, 7, "host bits"),
        ({"mtu": "big"}, 7, "mtu"),
        ({"ipMasq": "yes"}, 7, "ipMasq"),
        ({"bridge": 5}, 7, "bridge"),
        ({"name": ""}, 7, "name"),
        ({"runtimeConfig": {"portMappings": [{"hostPort": 0, "containerPort": 80}]}}, 7, "hostPort"),
        ({"runtimeConfig": {"mac": "01:00:5e:00:00:01"}}, 7, "multicast"),
    ],
)
def test_config_errors(env: Env, changes: dict[str, Any], code: int, named: str) -> None:
    netns = env.sandboxes.new()
    outcome = env.exec("ADD", env.conf(**changes), "ctr-1", netns)
    assert outcome.exit_code != 0 and outcome.json["code"] == code and named in outcome.json["msg"], outcome
    assert ip_json("-n", ns_name(netns), "link", "show", "eth0") == []
    assert env.host_veths() == []


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
    conflist["plugins"][0]["capabilities"] = {"portMappings": True}
    netns = env.sandboxes.new()
    rc = {
        "mac": "02:33:44:55:66:77",
        "portMappings": [{"hostPort": 8084, "containerPort": 80, "protocol": "tcp"}],
    }
    result = env.rt.add(conflist, "ctr-1", netns, runtime_config=rc)
    assert result["cniVersion"] == "1.0.0"
    ip = address_of(result)
    sandbox = next(i for i in result["interfaces"] if i.get("sandbox"))
    assert sandbox["mac"] == "02:33:44:55:66:77"  # tuning changed it and said so in the result
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
        if " serving " in line and line.startswith("dockyardd")
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
