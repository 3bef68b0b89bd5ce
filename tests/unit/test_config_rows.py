"""A container's config row: every field survives the text, and the config just written
is read back without a parse (store/configs.py keeps it as its text's parse)."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from dockyard.model import (
    BindMount,
    ContainerConfig,
    EndpointRequest,
    ModeKind,
    NetworkMode,
    PortRequest,
    Protocol,
    RestartName,
    RestartPolicy,
)
from dockyard.store.configs import config_from_json, config_to_json, parse_config

EVERY_FIELD = ContainerConfig(
    cmd=("sh", "-c", "sleep 1"),
    env=("A=1",),
    workdir="/srv",
    hostname="box",
    auto_remove=True,
    network_mode=NetworkMode(ModeKind.NETWORK, "front"),
    ports=(
        PortRequest(80, Protocol.TCP, 8080, ipaddress.IPv4Address("192.0.2.1")),
        PortRequest(53, Protocol.UDP, 0, ipaddress.IPv6Address("2001:db8::1")),
        PortRequest(443, Protocol.TCP, 9000, None, 9010),
        *(PortRequest(10000 + i, Protocol.TCP, 20000 + i) for i in range(5)),
        *(PortRequest(7000 + i, Protocol.UDP) for i in range(3)),
    ),
    ip=ipaddress.IPv4Address("10.1.0.5"),
    ip6=ipaddress.IPv6Address("fd00::5"),
    detach=True,
    aliases=("web",),
    dns=(ipaddress.IPv4Address("192.0.2.53"), ipaddress.IPv6Address("2001:db8::53")),
    dns_search=("example.org",),
    dns_options=("ndots:2",),
    user="1000:1000",
    group_add=("users",),
    cap_add=("CAP_NET_ADMIN",),
    cap_drop=("ALL",),
    privileged=True,
    no_new_privileges=True,
    init=True,
    pids_limit=7,
    image="busybox",
    image_id="sha256:" + "c" * 64,
    labels=(("a", "b"),),
    mounts=(BindMount("/src", "/dst", True),),
    extra_hosts=(("db", "192.0.2.9"),),
    sysctls=(("net.ipv4.ip_forward", "1"),),
    restart=RestartPolicy(RestartName.ON_FAILURE, 3),
    networks=(
        EndpointRequest(
            "back",
            ipaddress.IPv4Address("10.2.0.5"),
            ("api",),
            "02:42:0a:02:00:05",
            ipaddress.IPv6Address("fd01::5"),
        ),
    ),
    mac="02:42:0a:01:00:05",
    stop_signal="SIGINT",
    stop_timeout=3,
    network_left=True,
    tty=True,
    open_stdin=True,
    stdin_once=True,
    console_size=(24, 80),
)


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (an equal value of another type, such
    as 1 for True or a list for a tuple, would behave differently somewhere)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if dataclasses.is_dataclass(a):
        return all(_same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return bool(a == b)


def test_the_config_of_every_field_is_its_text_parsed_afresh() -> None:
    # Each field differs from its default: a field the text forgot would come back as it.
    default = ContainerConfig(cmd=())
    unset = [
        f.name
        for f in dataclasses.fields(ContainerConfig)
        if getattr(EVERY_FIELD, f.name) == getattr(default, f.name)
    ]
    assert unset == []
    again = parse_config(config_to_json(EVERY_FIELD))
    assert again is not EVERY_FIELD
    assert _same(again, EVERY_FIELD)


def test_a_config_written_is_read_back_without_a_parse() -> None:
    cfg = dataclasses.replace(EVERY_FIELD, hostname="written")
    assert config_from_json(config_to_json(cfg)) is cfg


def test_a_text_never_written_here_is_parsed() -> None:
    text = config_to_json(dataclasses.replace(EVERY_FIELD, hostname="elsewhere"))
    foreign = text.replace('"elsewhere"', '"other"')
    read = config_from_json(foreign)
    assert read.hostname == "other" and _same(read, dataclasses.replace(EVERY_FIELD, hostname="other"))


def test_rows_from_before_confinement_read_as_dockers_defaults() -> None:
    old = json.loads(config_to_json(ContainerConfig(cmd=("sleep", "1"))))
    for key in (
        "user",
        "group_add",
        "cap_add",
        "cap_drop",
        "privileged",
        "no_new_privileges",
        "init",
        "pids_limit",
    ):
        del old[key]
    assert parse_config(json.dumps(old)) == ContainerConfig(cmd=("sleep", "1"))


def test_a_range_is_one_entry_of_the_text_and_rows_before_runs_still_read() -> None:
    cfg = ContainerConfig(
        cmd=("true",), ports=tuple(PortRequest(10000 + i, Protocol.TCP, 10000 + i) for i in range(1000))
    )
    text = config_to_json(cfg)
    assert json.loads(text)["ports"] == [[10000, "tcp", 10000, "", 0, 1000]]
    # A row written before runs: one five-field entry per request.
    old = json.loads(text)
    old["ports"] = [[80, "tcp", 8080, "192.0.2.1", 0], [81, "udp", 0, "", 0]]
    assert parse_config(json.dumps(old)).ports == (
        PortRequest(80, Protocol.TCP, 8080, ipaddress.IPv4Address("192.0.2.1")),
        PortRequest(81, Protocol.UDP),
    )


_REQUESTS = st.lists(
    st.builds(
        PortRequest,
        # Few values: neighbours that nearly make a run are common.
        st.integers(1, 4),
        st.sampled_from([Protocol.TCP, Protocol.UDP]),
        st.integers(0, 4),
        st.sampled_from([None, ipaddress.IPv4Address("192.0.2.1"), ipaddress.IPv6Address("2001:db8::1")]),
        st.sampled_from([0, 0, 0, 6]),
    ),
    max_size=12,
)


_IP4 = ipaddress.IPv4Address("192.0.2.1")


@given(_REQUESTS)
# Neighbours one field short of a run, each field in turn:
@example([PortRequest(1, Protocol.TCP, 1), PortRequest(2, Protocol.TCP, 2, _IP4)])
@example([PortRequest(1, Protocol.TCP, 1), PortRequest(2, Protocol.UDP, 2)])
@example([PortRequest(1, Protocol.TCP, 1), PortRequest(2, Protocol.TCP, 3)])
@example([PortRequest(1, Protocol.TCP, 1), PortRequest(3, Protocol.TCP, 2)])
@example([PortRequest(1, Protocol.TCP, 0), PortRequest(2, Protocol.TCP, 1)])
@example([PortRequest(1, Protocol.TCP, 1), PortRequest(2, Protocol.TCP, 2, None, 6)])
@example([PortRequest(1, Protocol.TCP, 1, None, 6), PortRequest(2, Protocol.TCP, 2)])
def test_any_requests_come_back_from_the_text_in_order(requests: list[PortRequest]) -> None:
    cfg = ContainerConfig(cmd=("true",), ports=tuple(requests))
    assert _same(parse_config(config_to_json(cfg)).ports, tuple(requests))
