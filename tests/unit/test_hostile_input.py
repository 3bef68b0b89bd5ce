"""Hostile and broken input: every parser a user's input reaches.

Property: any input gives either a valid result or one DockyardError whose
message is one line (exit 125 at the CLI); never another exception, never a
traceback, and never a change (a request body is not altered, the CLI's
$ROOT stays empty). ports.parse_port_spec and daemon.json already have
their own properties (test_ports.py, test_settings.py); this file adds what
they leave out: --expose, text from a shell's bytes, subnets, addresses,
names, network modes, the API's request bodies, bridge options, the
daemon's flags and the CLI's own argument handling.
"""

from __future__ import annotations

import contextlib
import copy
import io
import ipaddress
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import dockyard.clients.cli
from dockyard.clients.api import Client
from dockyard.daemon.api import docker, endpoint_settings
from dockyard.engine.networks.service import BridgeOptions, NetworkSpec
from dockyard.errors import DaemonUnavailable, DockyardError, InvalidArgument
from dockyard.model import (
    NAME_MAX,
    ContainerConfig,
    ModeKind,
    NetworkMode,
    Protocol,
    check_name,
    check_network_name,
)
from dockyard.policy import ipam, ports
from dockyard.settings import DaemonSettings, load_settings, parse_bip, parse_bridge_name

T = TypeVar("T")
Json = dict[str, Any]
IFNAME_BAD = re.compile(r"[/:%\0\s]")
DOCKER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
fast = settings(max_examples=150, deadline=None)
with_tmp = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def assert_one_line(e: BaseException) -> None:
    assert isinstance(e, DockyardError), f"{type(e).__name__}: {e!r}"
    message = str(e)
    assert message.strip(), "an empty error message"
    assert len(message.splitlines()) == 1, f"a message of several lines: {message!r}"
    assert e.exit_code == 125


def valid_or_refused(fn: Callable[..., T], *args: Any) -> T | None:
    """fn's result, or None after a one-line DockyardError; any other exception fails the test."""
    try:
        return fn(*args)
    except DockyardError as e:
        assert_one_line(e)
        return None


# -- strategies ------------------------------------------------------------------------------------

# What a shell hands over: any bytes, decoded as Python decodes argv (lone surrogates for non-UTF-8).
shell_text = st.binary(max_size=24).map(os.fsdecode)
any_text = st.text(max_size=40) | shell_text
hostile = st.sampled_from(
    [
        "",
        " ",
        "..",
        ".",
        "/",
        "../etc",
        "a/b",
        "a\0b",
        "web\n",
        "a\nb",
        "a\r",
        "x" * 200,
        "\udcff",
        "%d",
        "a%d",
        "$(id)",
        "a;b",
        "'",
        '"',
        "\\",
        "-x",
        "--help",
        "--",
        "é",
        "\u2028",
        "\x85",
    ]
)
text = any_text | hostile

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | hostile
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


def maybe_junk(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The field's own type most of the time, else any JSON value."""
    return st.one_of(strategy, strategy, json_values)


octet = st.integers(min_value=0, max_value=255).map(str) | st.sampled_from(
    ["256", "-1", "01", "", "1e2", " 1"]
)
addresses = (
    st.ip_addresses(v=4).map(str)
    | st.builds(".".join, st.lists(octet, min_size=3, max_size=5))
    | st.ip_addresses(v=6).map(str)
    | st.sampled_from(["0.0.0.0", "255.255.255.255", "10.0.0.1/24", "10.0.0.1\n", "localhost"])
    | text
)
networks_v4 = st.builds(
    lambda a, p: ipaddress.IPv4Network(f"{a}/{p}", strict=False),
    st.ip_addresses(v=4),
    st.integers(min_value=0, max_value=32),
)
networks_v6 = st.builds(
    lambda a, p: ipaddress.IPv6Network(f"{a}/{p}", strict=False),
    st.ip_addresses(v=6),
    st.integers(min_value=0, max_value=128),
)
cidrs = (
    st.builds(lambda a, p: f"{a}/{p}", st.ip_addresses(v=4), st.integers(min_value=-1, max_value=40))
    | st.builds(
        lambda n, p: f"{n.network_address}/{p}",
        networks_v4,
        st.sampled_from(["255.255.0.0", "0.0.255.255", "24 ", "024", "+24", "", "2_4"]),
    )
    | networks_v4.map(str)
    | networks_v6.map(str)
    | addresses
)
names = (
    st.from_regex(DOCKER_NAME, fullmatch=True).filter(lambda n: len(n) <= NAME_MAX)
    | st.text(alphabet="ab09_.-/\n\0 %:", min_size=0, max_size=6)
    | text
)
port_text = st.integers(min_value=-2, max_value=70000).map(str) | st.text(alphabet="0123456789-", max_size=7)
port_specs = (
    st.builds(
        lambda ip, host, cont, proto: "".join(x for x in (ip, host, cont, proto) if x is not None),
        st.sampled_from([None, "127.0.0.1:", "0.0.0.0:", "1.2.3:", "[::1]:", ":"]),
        st.none() | port_text.map(lambda t: t + ":"),
        port_text,
        st.sampled_from([None, "/tcp", "/udp", "/sctp", "/icmp", "/", "/UDP"]),
    )
    | text
)
bridge_names = st.sampled_from(["br0", "a" * 15, "a" * 16, "br%d", "é" * 8, "dockyard0"]) | text
BRIDGE_KEYS = (
    "com.docker.network.bridge.name",
    "com.docker.network.bridge.enable_icc",
    "com.docker.network.bridge.enable_ip_masquerade",
    "com.docker.network.bridge.host_binding_ipv4",
    "com.docker.network.driver.mtu",
)
option_values = (
    bridge_names
    | addresses
    | st.sampled_from(
        [
            "true",
            "false",
            "1",
            "0",
            "yes",
            " TRUE ",
            "maybe",
            "1500",
            "67",
            "65536",
            "1_500",
            "\u0661\u0665\u0660\u0660",
            " 1500",
            "9" * 5000,
        ]
    )
    | st.integers(min_value=-10, max_value=70000).map(str)
)
keys = st.sampled_from(["a", "com.example.x", "", " ", "a b", "a\nb", "a\0b"]) | text

endpoint = st.fixed_dictionaries(
    {},
    optional={
        "IPAMConfig": maybe_junk(st.fixed_dictionaries({}, optional={"IPv4Address": maybe_junk(addresses)})),
        "Aliases": maybe_junk(st.lists(maybe_junk(names), max_size=3)),
    },
)
port_bindings = st.dictionaries(
    port_specs,
    maybe_junk(
        st.lists(
            maybe_junk(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "HostIp": maybe_junk(addresses),
                        "HostPort": maybe_junk(port_text | port_specs),
                    },
                )
            ),
            max_size=2,
        )
    ),
    max_size=3,
)
host_config = st.fixed_dictionaries(
    {},
    optional={
        "NetworkMode": maybe_junk(
            st.sampled_from(
                [
                    "bridge",
                    "none",
                    "host",
                    "default",
                    "container:",
                    "container:web",
                    "container:a\nb",
                    "container:../x",
                    "n1",
                    "../x",
                    "a/b",
                ]
            )
            | names.map(lambda n: "container:" + n)
            | names
        ),
        "PortBindings": maybe_junk(port_bindings),
        "Dns": maybe_junk(st.lists(maybe_junk(addresses), max_size=3)),
        "DnsSearch": maybe_junk(st.lists(maybe_junk(text | st.just("example.com")), max_size=2)),
        "DnsOptions": maybe_junk(st.lists(maybe_junk(text | st.just("ndots:2")), max_size=2)),
        "AutoRemove": maybe_junk(st.booleans()),
        "PublishAllPorts": maybe_junk(st.booleans()),
    },
)
container_bodies = st.fixed_dictionaries(
    {},
    optional={
        "Cmd": maybe_junk(st.lists(text, max_size=3) | text),
        "Entrypoint": maybe_junk(st.lists(text, max_size=2)),
        "Env": maybe_junk(
            st.lists(st.sampled_from(["A=1", "=x", "NOEQ", "A=\n", "A=\0", "A="]) | text, max_size=3)
        ),
        "Hostname": maybe_junk(st.sampled_from(["web", "a\n1.2.3.4 evil", "h" * 65, "h" * 64, "a b"]) | text),
        "WorkingDir": maybe_junk(text),
        "AttachStdout": maybe_junk(st.booleans()),
        "ExposedPorts": maybe_junk(st.dictionaries(port_specs, st.just({}), max_size=2)),
        "HostConfig": maybe_junk(host_config),
        "NetworkingConfig": maybe_junk(
            st.fixed_dictionaries(
                {},
                optional={
                    "EndpointsConfig": maybe_junk(st.dictionaries(names, maybe_junk(endpoint), max_size=2))
                },
            )
        ),
    },
)
ipam_config = st.fixed_dictionaries(
    {},
    optional={
        "Subnet": maybe_junk(cidrs),
        "Gateway": maybe_junk(addresses),
        "IPRange": maybe_junk(cidrs),
        "AuxiliaryAddresses": maybe_junk(st.dictionaries(keys, maybe_junk(addresses), max_size=2)),
    },
)
network_bodies = st.fixed_dictionaries(
    {"Name": maybe_junk(names)},
    optional={
        "Driver": maybe_junk(st.sampled_from(["bridge", "macvlan", "", "null"])),
        "Internal": maybe_junk(st.booleans()),
        "IPAM": maybe_junk(
            st.fixed_dictionaries(
                {},
                optional={
                    "Driver": st.just("default"),
                    "Config": maybe_junk(st.lists(maybe_junk(ipam_config), max_size=2)),
                },
            )
        ),
        "Labels": maybe_junk(st.dictionaries(keys, maybe_junk(text), max_size=3)),
        "Options": maybe_junk(
            st.dictionaries(st.sampled_from(BRIDGE_KEYS) | keys, maybe_junk(option_values), max_size=4)
        ),
    },
)


# -- what a valid result looks like ------------------------------------------------------------------


def assert_valid_name(name: str) -> None:
    assert DOCKER_NAME.fullmatch(name) and len(name) <= NAME_MAX, name


# libnetwork's: word characters at the ends, spaces, dots and dashes between (or Docker's container rule).
NETWORK_NAME = re.compile(r"[a-zA-Z0-9_]+[ .a-zA-Z0-9_-]*[a-zA-Z0-9_]+")


def assert_valid_network_name(name: str) -> None:
    assert (NETWORK_NAME.fullmatch(name) or DOCKER_NAME.fullmatch(name)) and len(name) <= NAME_MAX, name


def assert_valid_ifname(name: str) -> None:
    assert 1 <= len(name.encode()) <= 15 and not IFNAME_BAD.search(name) and name not in (".", ".."), name


def assert_valid_mode(mode: NetworkMode) -> None:
    assert isinstance(mode.kind, ModeKind)
    if mode.kind is ModeKind.NETWORK:
        assert_valid_network_name(mode.target)
    elif mode.kind is ModeKind.CONTAINER:
        assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", mode.target) and len(mode.target) <= NAME_MAX
    else:
        assert mode.target == ""
    # What a mode prints is what parses back to it (inspect's HostConfig.NetworkMode).
    assert NetworkMode.parse(str(mode)) == mode


def is_address(a: object) -> bool:
    """An address of either family (IPv6 came with issue 15), an IPv6 one without a zone."""
    return isinstance(a, ipaddress.IPv4Address) or (
        isinstance(a, ipaddress.IPv6Address) and a.scope_id is None
    )


def assert_valid_requests(requests: tuple[Any, ...] | list[Any]) -> None:
    for r in requests:
        assert 1 <= r.container_port <= ports.PORT_MAX
        assert 0 <= r.host_port <= ports.PORT_MAX
        assert r.host_port_end == 0 or r.host_port <= r.host_port_end <= ports.PORT_MAX
        assert isinstance(r.proto, Protocol)
        assert r.host_ip is None or is_address(r.host_ip)


def assert_valid_config(cfg: ContainerConfig, aliases: list[str]) -> None:
    for word in cfg.cmd:
        assert isinstance(word, str) and "\0" not in word
    for item in cfg.env:
        assert isinstance(item, str) and "=" in item and not item.startswith("=") and "\0" not in item
    assert isinstance(cfg.workdir, str) and "\0" not in cfg.workdir
    # The host name goes into /etc/hosts and /etc/hostname: one word, at most the kernel's 64 bytes.
    assert cfg.hostname == "" or (
        re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", cfg.hostname) and len(cfg.hostname) <= 64
    )
    for flag in (cfg.auto_remove, cfg.detach):
        assert isinstance(flag, bool)
    assert_valid_mode(cfg.network_mode)
    assert_valid_requests(cfg.ports)
    assert cfg.ip is None or isinstance(cfg.ip, ipaddress.IPv4Address)
    assert cfg.ip6 is None or (isinstance(cfg.ip6, ipaddress.IPv6Address) and is_address(cfg.ip6))
    assert list(cfg.aliases) == aliases
    for alias in aliases:
        assert_valid_name(alias)
    assert all(is_address(a) for a in cfg.dns)
    for word in (*cfg.dns_search, *cfg.dns_options):
        assert isinstance(word, str) and word and "\0" not in word and not any(c.isspace() for c in word)


def assert_valid_spec(spec: NetworkSpec) -> None:
    assert_valid_network_name(spec.name)
    assert isinstance(spec.driver, str) and isinstance(spec.internal, bool)
    for net in (spec.subnet, spec.ip_range):
        assert net is None or (isinstance(net, ipaddress.IPv4Network) and net.prefixlen <= 30)
    assert spec.gateway is None or isinstance(spec.gateway, ipaddress.IPv4Address)
    for net6 in (spec.subnet6, spec.ip_range6):
        assert net6 is None or isinstance(net6, ipaddress.IPv6Network)
    assert spec.gateway6 is None or (
        isinstance(spec.gateway6, ipaddress.IPv6Address) and is_address(spec.gateway6)
    )
    for pairs in (spec.labels, spec.options, spec.aux_addresses):
        for key, value in pairs:
            assert isinstance(key, str) and key and "\0" not in key and not any(c.isspace() for c in key)
            assert isinstance(value, str) or is_address(value)
    assert_valid_options(spec.options)


def assert_valid_options(options: tuple[tuple[str, str], ...]) -> None:
    opts = valid_or_refused(BridgeOptions.parse, options)
    if opts is not None:
        if opts.bridge:
            assert_valid_ifname(opts.bridge)
        assert opts.mtu == 0 or 68 <= opts.mtu <= 65535
        assert isinstance(opts.icc, bool) and isinstance(opts.masquerade, bool)
        assert opts.host_binding is None or isinstance(opts.host_binding, ipaddress.IPv4Address)


def unchanged(fn: Callable[[Any], T], body: Any) -> T | None:
    """fn(body) valid or refused, and body as it was: a parser never writes into its input."""
    before = json.dumps(body, sort_keys=True)
    snapshot = copy.deepcopy(body)
    result = valid_or_refused(fn, body)
    assert json.dumps(body, sort_keys=True) == before
    assert json.dumps(snapshot, sort_keys=True) == before
    return result


# -- ports: --expose and text from a shell (parse_port_spec's text is in test_ports.py) ---------------


@fast
@given(port_specs)
@example("80\n")
@example("\u0668\u0660/udp")
def test_expose_gives_ports_or_one_line_error(spec: str) -> None:
    got = valid_or_refused(ports.parse_expose, spec)
    if got is not None:
        assert got and all(1 <= p <= ports.PORT_MAX and isinstance(proto, Protocol) for p, proto in got)
        assert [p for p, _ in got] == list(range(got[0][0], got[-1][0] + 1))


@fast
@given(shell_text)
def test_port_spec_from_shell_bytes_gives_ports_or_one_line_error(spec: str) -> None:
    got = valid_or_refused(ports.parse_port_spec, spec)
    if got is not None:
        assert_valid_requests(got.requests())


# -- ipam: subnets and addresses ------------------------------------------------------------------------

# Loopback, link-local, multicast, "this network", reserved (with the broadcast address): no network's.
NO_CONTAINERS_ADDRESSES = [
    ipaddress.IPv4Network(n)
    for n in ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4")
]


@fast
@given(cidrs)
@example("10.0.0.0/24\n")
@example("10.0.0.0/255.255.255.0")
@example("10.1.2.3/16")
def test_subnet_gives_a_network_or_one_line_error(text_: str) -> None:
    net = valid_or_refused(ipam.parse_subnet, text_, "--subnet")
    if net is not None:
        assert isinstance(net, ipaddress.IPv4Network) and net.prefixlen <= 30
        # Exactly what was written: no host bits dropped in silence.
        assert ipaddress.IPv4Interface(text_).ip == net.network_address
        assert not any(net.overlaps(special) for special in NO_CONTAINERS_ADDRESSES), net


@fast
@given(addresses)
def test_address_gives_an_address_or_one_line_error(text_: str) -> None:
    addr = valid_or_refused(ipam.parse_address, text_, "--ip")
    if addr is not None:
        assert addr == ipaddress.IPv4Address(text_)


@pytest.mark.parametrize("value", [5, 2**32 - 1, True, (167772160, 24), b"\n\0\0\1", None, ["10.0.0.0/8"]])
def test_subnet_and_address_take_only_text(value: object) -> None:
    # ipaddress takes ints, tuples and packed bytes: an API body's 5 is not "0.0.0.5".
    for fn in (ipam.parse_subnet, ipam.parse_address):
        with pytest.raises(InvalidArgument) as info:
            fn(value, "--subnet")  # type: ignore[arg-type]
        assert_one_line(info.value)


# -- names and network modes -----------------------------------------------------------------------------


@fast
@given(names)
@example("web\n")
@example("..")
@example("a" * (NAME_MAX + 1))
def test_name_is_dockers_rule_or_one_line_error(name: str) -> None:
    got = valid_or_refused(check_name, name, "container")
    assert (got is not None) == (DOCKER_NAME.fullmatch(name) is not None and len(name) <= NAME_MAX)
    if got is not None:
        assert got == name


@pytest.mark.parametrize(
    "name",
    [
        "web\n",
        "..",
        ".",
        "../x",
        "a/b",
        "/",
        "a\0b",
        "a b",
        "-web",
        "_web",
        ".web",
        "w",
        "",
        "a%d",
        "a;b",
        "é1",
        "a\u2028b",
        "\udcffab",
        "a" * (NAME_MAX + 1),
    ],
)
def test_names_that_escape_root_or_inject_text_are_refused(name: str) -> None:
    for what in ("container", "network", "network alias"):
        with pytest.raises(InvalidArgument) as info:
            check_name(name, what)
        assert_one_line(info.value)
    # "" is the default mode; "a b" and "_web" are network names (libnetwork's rule).
    if name and name not in ("a b", "_web"):
        with pytest.raises(InvalidArgument):
            NetworkMode.parse(name)


@pytest.mark.parametrize("name", ["a b", "_web", "test 01", "x_", "net.1"])
def test_network_names_docker_takes(name: str) -> None:
    assert check_network_name(name) == name and NetworkMode.parse(name).target == name


@pytest.mark.parametrize(
    "name", ["a ", " a", "a\tb", "a\nb", "-a b", "a b-", "w", "a/b", "a" * (NAME_MAX + 1)]
)
def test_network_names_docker_refuses(name: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_network_name(name)
    assert_one_line(info.value)


@fast
@given(
    names | names.map(lambda n: "container:" + n) | st.sampled_from(["container:", "host", "none", "default"])
)
@example("container:a\nb")
@example("container:../x")
@example("container:web\n")
def test_network_mode_is_a_mode_or_one_line_error(value: str) -> None:
    mode = valid_or_refused(NetworkMode.parse, value)
    if mode is not None:
        assert_valid_mode(mode)


# -- the API's bodies: POST /containers/create ------------------------------------------------------------


@fast
@given(json_values)
def test_any_json_as_a_container_body(body: Any) -> None:
    got = unchanged(docker.container_config, body)
    if got is not None:
        assert_valid_config(*got)


@fast
@given(
    key=st.sampled_from(
        [
            "Cmd",
            "Entrypoint",
            "Env",
            "Hostname",
            "WorkingDir",
            "AttachStdout",
            "ExposedPorts",
            "HostConfig",
            "NetworkingConfig",
            "User",
        ]
    ),
    value=json_values,
)
def test_any_json_under_one_container_field(key: str, value: Any) -> None:
    got = unchanged(docker.container_config, {"Cmd": ["true"], key: value})
    if got is not None:
        assert_valid_config(*got)


@fast
@given(
    key=st.sampled_from(
        [
            "NetworkMode",
            "PortBindings",
            "Dns",
            "DnsSearch",
            "DnsOptions",
            "AutoRemove",
            "PublishAllPorts",
            "CapAdd",
            "CapDrop",
            "Privileged",
            "GroupAdd",
            "SecurityOpt",
            "Init",
            "PidsLimit",
            "PidMode",
        ]
    ),
    value=json_values,
)
def test_any_json_under_one_host_config_field(key: str, value: Any) -> None:
    got = unchanged(docker.container_config, {"Cmd": ["true"], "HostConfig": {key: value}})
    if got is not None:
        assert_valid_config(*got)


@settings(max_examples=300, deadline=None)
@given(container_bodies)
@example({"Hostname": "a\n1.2.3.4 evil"})
@example({"Hostname": "h" * 65})
@example({"Cmd": ["tr\0ue"]})
@example({"Env": ["A=\0"]})
@example({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "127.0.0.1:8080"}]}}})
@example({"HostConfig": {"PortBindings": {"8080:80/tcp": None}}})
@example({"NetworkingConfig": {"EndpointsConfig": {"n1": {"IPAMConfig": {"IPv4Address": 167772161}}}}})
@example({"NetworkingConfig": {"EndpointsConfig": {"\n": {"IPAMConfig": {"IPv4Address": "0"}}}}})
@example({"HostConfig": {"Dns": ["::"]}})
@example({"HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "::", "HostPort": "8080"}]}}})
@example({"NetworkingConfig": {"EndpointsConfig": {"n1": {"IPAMConfig": {"IPv6Address": "fd00::5"}}}}})
@example({"HostConfig": {"Dns": ["fe80::1%eth0"]}})
def test_docker_shaped_container_bodies(body: Json) -> None:
    got = unchanged(docker.container_config, body)
    if got is not None:
        assert_valid_config(*got)


def test_a_good_container_body_parses() -> None:
    body = {
        "Cmd": ["sleep", "60"],
        "Env": ["A=1"],
        "Hostname": "web.local",
        "ExposedPorts": {"53/udp": {}},
        "HostConfig": {
            "NetworkMode": "n1",
            "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]},
            "PublishAllPorts": True,
            "Dns": ["10.0.0.53"],
            "DnsSearch": ["example.com"],
            "AutoRemove": True,
        },
        "NetworkingConfig": {
            "EndpointsConfig": {"n1": {"IPAMConfig": {"IPv4Address": "10.1.0.9"}, "Aliases": ["db"]}}
        },
    }
    cfg, aliases = docker.container_config(body)
    assert_valid_config(cfg, aliases)
    assert cfg.network_mode == NetworkMode(ModeKind.NETWORK, "n1") and cfg.ip == ipaddress.IPv4Address(
        "10.1.0.9"
    )
    assert [(r.container_port, r.host_port) for r in cfg.ports] == [(80, 8080), (53, 0)]
    assert aliases == ["db"] and cfg.auto_remove and cfg.hostname == "web.local"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"Hostname": "a\n1.2.3.4 evil"}, "invalid hostname"),
        ({"Hostname": "h" * 65}, "invalid hostname"),
        ({"Cmd": ["tr\0ue"]}, "may not contain NUL"),
        ({"Cmd": 5}, "Cmd must be a list of strings"),
        ({"Env": ["A=\0"]}, "may not contain NUL"),
        ({"HostConfig": []}, "HostConfig must be a JSON object"),
        ({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "127.0.0.1:8080"}]}}}, "invalid HostPort"),
        ({"HostConfig": {"AutoRemove": "false"}}, "AutoRemove must be true or false"),
        (
            {"NetworkingConfig": {"EndpointsConfig": {"n1": {"IPAMConfig": {"IPv4Address": 1}}}}},
            "must be a string",
        ),
        ({"ExposedPorts": {"nope": {}}}, "invalid port spec"),
        ({"HostConfig": {"NetworkMode": "container:a\nb"}}, "invalid network mode"),
    ],
)
def test_container_bodies_refused_with_a_reason(body: Json, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        docker.container_config({"Cmd": ["true"], **body} if "Cmd" not in body else body)
    assert fragment in str(info.value)
    assert_one_line(info.value)


@fast
@given(json_values)
def test_any_json_as_a_requested_endpoint(value: Any) -> None:
    # POST /networks/{id}/connect's EndpointConfig (and each of create's EndpointsConfig).
    got = unchanged(lambda raw: endpoint_settings.endpoint_request(raw, "net", "EndpointConfig"), value)
    assert got is None or got.ip is None or isinstance(got.ip, ipaddress.IPv4Address)


# -- the API's bodies: POST /networks/create, and the bridge driver's options ------------------------------


@fast
@given(json_values)
def test_any_json_as_a_network_body(body: Any) -> None:
    got = unchanged(docker.network_spec, body)
    if got is not None:
        assert_valid_spec(got)


@fast
@given(key=st.sampled_from(["Name", "Driver", "Internal", "IPAM", "Labels", "Options"]), value=json_values)
def test_any_json_under_one_network_field(key: str, value: Any) -> None:
    got = unchanged(docker.network_spec, {"Name": "n1", key: value})
    if got is not None:
        assert_valid_spec(got)


@fast
@given(key=st.sampled_from(["Subnet", "Gateway", "IPRange", "AuxiliaryAddresses"]), value=json_values)
def test_any_json_under_one_ipam_field(key: str, value: Any) -> None:
    got = unchanged(docker.network_spec, {"Name": "n1", "IPAM": {"Config": [{key: value}]}})
    if got is not None:
        assert_valid_spec(got)


@settings(max_examples=300, deadline=None)
@given(network_bodies)
@example({"Name": "n1", "IPAM": {"Config": [{"Subnet": True}]}})
@example({"Name": "n1", "IPAM": {"Config": [{"AuxiliaryAddresses": {"\r": "x"}}]}})
@example({"Name": "n1", "Options": {"com.docker.network.bridge.name": "br%d"}})
@example({"Name": "n1", "Options": {"com.docker.network.driver.mtu": "1_500"}})
@example({"Name": "n1\n"})
@example(
    {
        "Name": "n1",
        "EnableIPv6": True,
        "IPAM": {"Config": [{"Subnet": "fd00:1::/64", "AuxiliaryAddresses": {"r": "fd00:1::9"}}]},
    }
)
def test_docker_shaped_network_bodies(body: Json) -> None:
    got = unchanged(docker.network_spec, body)
    if got is not None:
        assert_valid_spec(got)


@fast
@given(st.lists(st.tuples(st.sampled_from(BRIDGE_KEYS), option_values), max_size=5))
def test_bridge_options_give_options_or_one_line_error(options: list[tuple[str, str]]) -> None:
    assert_valid_options(tuple(options))


@pytest.mark.parametrize("name", ["br%d", "x%s", "a" * 16, "a/b", "a:b", "..", "a b", "a\0b", "\udcff", ""])
def test_bridge_names_the_kernel_would_change_or_refuse(name: str) -> None:
    # "br%d" is a template to the kernel, which would make "br0": dockyard would lose track of it.
    with pytest.raises(InvalidArgument) as info:
        BridgeOptions.parse((("com.docker.network.bridge.name", name),))
    assert_one_line(info.value)


@pytest.mark.parametrize("mode", ["nat-unprotected", "isolated", "", "NAT", "routed "])
def test_an_ipv6_gateway_mode_is_refused_when_the_options_are_parsed(mode: str) -> None:
    """Before anything is recorded: create_network parses the options first of all."""
    key = "com.docker.network.bridge.gateway_mode_ipv6"
    with pytest.raises(InvalidArgument) as info:
        BridgeOptions.parse(((key, mode),))
    assert_one_line(info.value)
    assert key in str(info.value) and repr(mode) in str(info.value)
    for good in ("nat", "routed"):
        assert BridgeOptions.parse(((key, good),)) == BridgeOptions()


@pytest.mark.parametrize(
    "mtu", ["1_500", " 1500", "1500 ", "\u0661\u0665\u0660\u0660", "+1500", "1e3", "9" * 5000]
)
def test_mtu_option_takes_only_ascii_digits(mtu: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        BridgeOptions.parse((("com.docker.network.driver.mtu", mtu),))
    assert_one_line(info.value)


# -- the daemon's settings: what test_settings.py leaves out -------------------------------------------------


@with_tmp
@given(st.binary(max_size=64) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_daemon_json_file_gives_settings_or_one_line_error(tmp_path: Path, content: bytes) -> None:
    # Any bytes, and any JSON document (not only objects).
    (tmp_path / "daemon.json").write_bytes(content)
    got = valid_or_refused(load_settings, tmp_path)
    assert got is None or isinstance(got, DaemonSettings)


@with_tmp
@given(bridge=st.none() | bridge_names, bip=st.none() | cidrs)
def test_daemon_flags_give_settings_or_one_line_error(
    tmp_path: Path, bridge: str | None, bip: str | None
) -> None:
    got = valid_or_refused(load_settings, tmp_path, None, bridge, bip)
    if got is not None:
        assert_valid_ifname(got.bridge)
        if got.bip is not None:
            assert got.bip.network.prefixlen <= 30
            assert got.bip.ip not in (got.bip.network.network_address, got.bip.network.broadcast_address)


@fast
@given(bridge_names)
def test_bridge_name_is_an_interface_name_or_one_line_error(name: str) -> None:
    got = valid_or_refused(parse_bridge_name, name)
    if got is not None:
        assert_valid_ifname(got)


@fast
@given(cidrs)
def test_bip_is_a_gateway_with_prefix_or_one_line_error(value: str) -> None:
    got = valid_or_refused(parse_bip, value)
    if got is not None:
        assert got.network.prefixlen <= 30 and "/" in value
        assert not any(got.network.overlaps(special) for special in NO_CONTAINERS_ADDRESSES), got


# -- the CLI, in process, with no daemon to reach --------------------------------------------------------------

NO_DAEMON = "no daemon here (test)"


@pytest.fixture
def cli_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty --root and a client that fails at once instead of starting a daemon."""

    def no_daemon(self: Client) -> None:
        raise DaemonUnavailable(NO_DAEMON)

    monkeypatch.setattr(Client, "start_daemon", no_daemon)
    # The same outcome as root or not: the root check is not what is tested here.
    monkeypatch.setattr(dockyard.clients.cli, "_check_root", lambda: None)
    monkeypatch.delenv("DOCKYARD_ROOT", raising=False)
    root = tmp_path / "root"
    root.mkdir()
    yield root


def run_cli(root: Path, *argv: str) -> str:
    """dockyard.clients.cli.main(argv) in process: exit 125, one `dockyard: ` line on stderr; that line."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = dockyard.clients.cli.main(["--root", str(root), *argv])
    lines = err.getvalue().splitlines()
    assert code == 125, (argv, code, err.getvalue())
    assert len(lines) == 1 and lines[0].startswith("dockyard: "), (argv, err.getvalue())
    assert "Traceback" not in err.getvalue()
    assert out.getvalue() == ""
    # Nothing was made: no daemon, no socket, no log, no state.
    assert os.listdir(root) == []
    return lines[0]


RUN_FLAGS = ("--publish", "--ip", "--net", "--name", "--env", "--hostname", "--dns", "--expose")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(RUN_FLAGS), value=text | port_specs | addresses | names, detach=st.booleans())
@example(flag="--name", value="a\udcff", detach=True)
@example(flag="--name", value="web\n", detach=True)
@example(flag="--publish", value="80:", detach=False)
@example(flag="--env", value="=x", detach=True)
@example(flag="--publish", value="--", detach=False)  # argparse made [] of it: a traceback
@example(flag="--expose", value="--", detach=True)
def test_cli_run_flags(cli_root: Path, flag: str, value: str, detach: bool) -> None:
    line = run_cli(cli_root, "run", *(["-d"] if detach else []), f"{flag}={value}", "true")
    if flag == "--name" and value in ("web\n",):
        assert line == f"dockyard: {NO_DAEMON}"  # the daemon checks names, not the thin client


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    subnet=st.none() | cidrs,
    opt=st.none()
    | st.builds(lambda k, v: f"{k}={v}", st.sampled_from(BRIDGE_KEYS) | keys, option_values)
    | text,
    label=st.none() | st.builds(lambda k, v: f"{k}={v}", keys, text) | text,
    aux=st.none() | st.builds(lambda k, v: f"{k}={v}", keys, addresses) | text,
    name=names,
)
@example(subnet="10.0.0.0/24", opt="com.docker.network.bridge.name=br%d", label=None, aux=None, name="n1")
@example(subnet=None, opt="novalue", label=None, aux=None, name="n1")
@example(subnet=None, opt=None, label=None, aux=None, name="\udcff")
def test_cli_network_create(
    cli_root: Path, subnet: str | None, opt: str | None, label: str | None, aux: str | None, name: str
) -> None:
    args = ["network", "create"]
    for flag, value in (("--subnet", subnet), ("--opt", opt), ("--label", label), ("--aux-address", aux)):
        if value is not None:
            args.append(f"{flag}={value}")
    run_cli(cli_root, *args, "--", name)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(["--bip", "--bridge"]), value=text | cidrs | bridge_names)
@example(flag="--bip", value="10.0.0.1")
@example(flag="--bridge", value="br%d")
def test_cli_default_bridge_flags(cli_root: Path, flag: str, value: str) -> None:
    run_cli(cli_root, f"{flag}={value}", "ps")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        # The daemon checks it, in the same words (test_ports: the CLI's bindings, parsed).
        (["run", "-p", "80:", "true"], NO_DAEMON),
        (["run", "-p", ":80", "true"], "no host port before ':'"),
        (["run", "-e", "=x", "true"], "the name is empty"),
        (["run", "--name", "a\udcff", "true"], "is not valid UTF-8"),
        (["network", "rm", "\udcff"], "is not valid UTF-8"),
        (["network", "create", "-o", "novalue", "n1"], "expected KEY=VALUE"),
        (["network", "create", "--label", "=v", "n1"], "expected KEY=VALUE"),
        (["--bip", "10.0.0.1", "ps"], "the prefix length is missing"),
        (["run", "--ip"], "expected one argument"),
        (["run", "--publish=--", "true"], "expected one argument, not '--'"),
        (["run", "-e--", "true"], "expected one argument, not '--'"),
        (["stop", "-t=--", "web"], "expected one argument, not '--'"),
        (["network", "create", "--opt=--", "n1"], "expected one argument, not '--'"),
        (["run", "true", "--name"], NO_DAEMON),  # after the command: the command's own argument
        (["network", "create", "n1"], NO_DAEMON),
    ],
)
def test_cli_refuses_itself_or_reaches_the_daemon(cli_root: Path, argv: list[str], fragment: str) -> None:
    assert fragment in run_cli(cli_root, *argv)


def test_cli_error_lines_escape_line_breaks(cli_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A daemon's message may quote what the user gave (`network rm $'a\nb'`): still one line.
    def not_found(self: Client, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        raise DockyardError("network a\nb not found")

    monkeypatch.setattr(Client, "request", not_found)
    assert run_cli(cli_root, "network", "rm", "a\nb") == "dockyard: network a\\nb not found"
    assert run_cli(cli_root, "network", "create", "n1") == "dockyard: network a\\nb not found"
