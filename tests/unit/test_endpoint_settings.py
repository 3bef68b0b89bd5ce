"""Docker's EndpointSettings, one parser for create's NetworkingConfig and network connect: each
field honoured, or refused by name with its JSON path; network connect's and disconnect's bodies."""

from __future__ import annotations

import ipaddress
import json

import pytest

from dockyard.daemon.api import docker, endpoint_settings
from dockyard.errors import InvalidArgument
from dockyard.model import EndpointRequest, NetworkMode

# What the docker CLI 28 sends in each endpoint (captured: every field at its zero value).
CLI_ENDPOINT = json.loads(
    '{"IPAMConfig":null,"Links":null,"Aliases":null,"MacAddress":"","DriverOpts":null,"GwPriority":0,'
    '"NetworkID":"","EndpointID":"","Gateway":"","IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"",'
    '"GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"DNSNames":null}'
)


def _one_line(e: InvalidArgument) -> str:
    text = str(e)
    assert "\n" not in text
    return text


def test_zero_values_of_every_field_are_accepted() -> None:
    assert endpoint_settings.endpoint_request(CLI_ENDPOINT, "net", "EndpointConfig") == EndpointRequest("net")
    assert endpoint_settings.endpoint_request(None, "net", "EndpointConfig") == EndpointRequest("net")
    # docker-py's shape: only what was asked, IPAMConfig with an empty list of link-local IPs.
    got = endpoint_settings.endpoint_request(
        {"IPAMConfig": {"IPv4Address": "10.9.0.5", "LinkLocalIPs": []}}, "net", "EndpointConfig"
    )
    assert got.ip == ipaddress.IPv4Address("10.9.0.5")


def test_honoured_fields() -> None:
    body = {
        **CLI_ENDPOINT,
        "IPAMConfig": {"IPv4Address": "10.9.0.5", "IPv6Address": "fd00:9::5"},
        "Aliases": ["web", "web.internal"],
        "MacAddress": "02:42:0A:09:00:05",
    }
    got = endpoint_settings.endpoint_request(body, "net", "EndpointConfig")
    assert got == EndpointRequest(
        "net",
        ipaddress.IPv4Address("10.9.0.5"),
        ("web", "web.internal"),
        "02:42:0a:09:00:05",
        ipaddress.IPv6Address("fd00:9::5"),
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("Links", ["db:db"], "EndpointConfig.Links is not supported by dockyard: --link"),
        ("DriverOpts", {"a": "b"}, "EndpointConfig.DriverOpts is not supported by dockyard"),
        ("GwPriority", 10, "EndpointConfig.GwPriority is not supported by dockyard: --gw-priority"),
        ("IPAddress", "10.9.0.7", "EndpointConfig.IPAddress is not supported by dockyard: an output field"),
        ("NetworkID", "abc", "EndpointConfig.NetworkID is not supported by dockyard: an output field"),
        ("DNSNames", ["x"], "EndpointConfig.DNSNames is not supported by dockyard: an output field"),
        ("Frob", 1, "EndpointConfig.Frob is not a field dockyard knows"),
        (
            "IPAMConfig",
            {"LinkLocalIPs": ["169.254.1.1"]},
            "EndpointConfig.IPAMConfig.LinkLocalIPs is not supported by dockyard: --link-local-ip",
        ),
        ("IPAMConfig", {"Frob": "x"}, "EndpointConfig.IPAMConfig.Frob is not a field dockyard knows"),
        ("IPAMConfig", {"IPv4Address": "10.9.0.300"}, "invalid --ip '10.9.0.300' for network 'net'"),
        ("IPAMConfig", {"IPv4Address": "fd00::1"}, "invalid --ip 'fd00::1' for network 'net'"),
        ("IPAMConfig", {"IPv6Address": "10.9.0.3"}, "invalid --ip6 '10.9.0.3' for network 'net'"),
        ("IPAMConfig", {"IPv6Address": "fe80::1%eth0"}, "invalid --ip6 'fe80::1%eth0'"),
        ("IPAMConfig", {"IPv4Address": 5}, "EndpointConfig.IPAMConfig.IPv4Address must be a string"),
        ("IPAMConfig", ["x"], "EndpointConfig.IPAMConfig must be a JSON object"),
        ("Aliases", ["ok", "bad name"], "invalid network alias name 'bad name'"),
        ("Aliases", ["a\nb"], "invalid network alias name"),
        ("Aliases", "web", "EndpointConfig.Aliases must be a list of strings"),
        ("MacAddress", "02:42:0a:09:00", "invalid MAC address '02:42:0a:09:00'"),
        ("MacAddress", "01:00:5e:00:00:01", "a multicast address"),
    ],
)
def test_fields_refused_by_name(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        endpoint_settings.endpoint_request({**CLI_ENDPOINT, field: value}, "net", "EndpointConfig")
    assert message in _one_line(info.value)


def test_create_and_connect_share_the_parser() -> None:
    """The same refusal from create's NetworkingConfig, with create's JSON path."""
    mode = NetworkMode.parse("front")
    body = {"EndpointsConfig": {"front": {"Links": ["db"]}}}
    with pytest.raises(InvalidArgument) as info:
        endpoint_settings.endpoint_requests(body, mode)
    assert "NetworkingConfig.EndpointsConfig['front'].Links is not supported" in _one_line(info.value)
    cfg, aliases = docker.container_config(
        {
            "Cmd": ["true"],
            "HostConfig": {"NetworkMode": "front"},
            "NetworkingConfig": {
                "EndpointsConfig": {
                    "front": {"Aliases": ["web"], "IPAMConfig": {"IPv4Address": "10.9.0.5"}},
                    "back": {"MacAddress": "02:42:0a:09:00:06", "IPAMConfig": {"IPv6Address": "fd00::6"}},
                }
            },
        }
    )
    assert aliases == ["web"] and cfg.ip == ipaddress.IPv4Address("10.9.0.5")
    assert cfg.networks == (
        EndpointRequest("back", None, (), "02:42:0a:09:00:06", ipaddress.IPv6Address("fd00::6")),
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "Container is required"),
        ({"Container": 5}, "Container must be a string"),
        ({"Container": "c", "EndpointConfig": {"Links": ["x"]}}, "EndpointConfig.Links is not supported"),
        ({"Container": "c", "Force": True}, "Force is not a field dockyard knows"),
        ([], "body must be a JSON object"),
    ],
)
def test_connect_bodies_refused(body: object, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        endpoint_settings.connect_body(body, "net")
    assert message in _one_line(info.value)


def test_disconnect_bodies() -> None:
    assert endpoint_settings.disconnect_body({"Container": "c"}) == ("c", False)
    assert endpoint_settings.disconnect_body({"Container": "c", "Force": True}) == ("c", True)
    for body, message in [
        ({"Force": True}, "Container is required"),
        ({"Container": "c", "Force": "yes"}, "Force must be true or false"),
        (
            {"Container": "c", "EndpointConfig": {"Aliases": ["x1"]}},
            "EndpointConfig is not a field dockyard knows",
        ),
    ]:
        with pytest.raises(InvalidArgument) as info:
            endpoint_settings.disconnect_body(body)
        assert message in _one_line(info.value)


@pytest.mark.parametrize("mode", ["bridge", "host", "none", "container:other"])
def test_aliases_only_on_user_networks(mode: str) -> None:
    body = {
        "Cmd": ["true"],
        "HostConfig": {"NetworkMode": mode},
        "NetworkingConfig": {"EndpointsConfig": {mode: {"Aliases": ["web"]}}},
    }
    with pytest.raises(InvalidArgument) as info:
        docker.container_config(body)
    assert "network-scoped aliases are only supported for user-defined networks" in _one_line(info.value)
