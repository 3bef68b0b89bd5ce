"""dockyard-cni's config checks name the JSON path of the bad value, and tell the daemon where
the keys it folds came from, so that the daemon's errors name the runtime's path too."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.clients.cni import plugin
from dockyard.daemon.api import cni as api
from dockyard.engine.cni.networks import CniError
from dockyard.wire.cni import CODE_INVALID_CONFIG, SOURCES


@pytest.mark.parametrize(
    ("conf", "path"),
    [
        ({"ipam": {"ranges": [[{"subnet": 5}]]}}, "ipam.ranges[0][0].subnet: must be"),
        ({"ipam": {"ranges": [[{"subnet": "10.1.0.0/24"}], "x"]}}, "ipam.ranges[1]: must be a list"),
        ({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]}, "ranges[0][1].subnet: IPv6"),
        ({"ipam": {"ranges": []}}, "ipam.ranges: must be a list of range sets"),
        ({"ipam": {"gateway": 7}}, "ipam.gateway: must be a string"),
        ({"ipam": {"type": "dhcp"}}, "ipam.type: 'dhcp' is not supported"),
        ({"ipam": {"routes": {}}}, "ipam.routes: must be a list"),
        ({"mtu": True}, "mtu: must be a number"),
        (
            {"subnet": "10.1.0.0/24", "ipam": {"ranges": [[{"subnet": "10.2.0.0/24"}]]}},
            "ipam.ranges[0][0].subnet: 10.2",
        ),
    ],
)
def test_the_plugin_names_the_json_path(conf: dict[str, Any], path: str) -> None:
    with pytest.raises(plugin.PluginError) as refused:
        plugin.network_of({"name": "n", **conf})
    assert refused.value.code == CODE_INVALID_CONFIG and refused.value.msg.startswith(path), refused.value.msg


def test_folded_keys_say_where_they_came_from() -> None:
    net = plugin.network_of(
        {
            "name": "n",
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.1.0.0/24", "gateway": "10.1.0.9"}]]},
        }
    )
    assert net["subnet"] == "10.1.0.0/24" and net["gateway"] == "10.1.0.9"
    assert net[SOURCES] == {"subnet": "ipam.ranges[0][0].subnet", "gateway": "ipam.ranges[0][0].gateway"}
    env = {"CNI_ARGS": "IP=10.1.0.7"}
    conf = {"runtimeConfig": {"ips": ["10.1.0.5/24"]}, "args": {"cni": {"ips": ["10.1.0.6"]}}}
    attachment = plugin.attachment_of(conf, env)
    assert attachment["ips"] == ["10.1.0.5/24", "10.1.0.6", "10.1.0.7"]
    assert attachment[SOURCES]["ips"] == ["runtimeConfig.ips[0]", "args.cni.ips[0]", "CNI_ARGS IP"]


@pytest.mark.parametrize(
    ("conf", "changes", "path"),
    [
        ({"ipam": {"ranges": [[{"subnet": "10.1.0.1/24"}]]}}, {}, "ipam.ranges[0][0].subnet: invalid subnet"),
        (
            {"ipam": {"subnet": "10.1.0.0/24", "rangeStart": "10.9.0.1"}},
            {},
            "ipam.rangeStart: 10.9.0.1 is not within",
        ),
        (
            {"subnet": "10.1.0.0/24"},
            {"portMappings": [{"hostPort": 80, "containerPort": 0}]},
            "runtimeConfig.portMappings[0].containerPort",
        ),
        ({"subnet": "10.1.0.0/24"}, {"ips": ["10.1.0.5", "bad"]}, "runtimeConfig.ips[1]: invalid address"),
        ({"subnet": "10.1.0.0/24"}, {"mac": "zz"}, "runtimeConfig.mac: invalid MAC"),
        (
            {"subnet": "10.1.0.0/24", "ipam": {"routes": [{"dst": "x"}]}},
            {},
            "ipam.routes[0].dst: invalid dst",
        ),
    ],
)
def test_the_daemon_names_the_runtimes_json_path(
    conf: dict[str, Any], changes: dict[str, Any], path: str
) -> None:
    body = {
        "network": plugin.network_of({"name": "n", **conf}),
        **plugin.attachment_of({"runtimeConfig": changes}, {}),
    }
    with pytest.raises(CniError) as refused:
        api.attach_request(body)
    assert refused.value.code == CODE_INVALID_CONFIG and str(refused.value).startswith(path), str(
        refused.value
    )


def test_port_mappings_keys_are_read_in_any_case_as_go_plugins_read_them() -> None:
    # containerd's go-cni sends its PortMapping struct untagged: {"HostPort": ..., "HostIP": ...}.
    mapping = {"HostPort": 8080, "ContainerPort": 80, "Protocol": "udp", "HostIP": "10.1.0.9"}
    body = {
        "network": plugin.network_of({"name": "n", "subnet": "10.1.0.0/24"}),
        **plugin.attachment_of({"runtimeConfig": {"portMappings": [mapping]}}, {}),
    }
    (port,) = api.attach_request(body).ports
    assert (port.host_port, port.container_port, port.proto.value, str(port.host_ip)) == (
        8080,
        80,
        "udp",
        "10.1.0.9",
    )
    # The exact key wins over another case of it.
    body["portMappings"] = [{"hostPort": 8081, "HOSTPORT": 1, "containerPort": 80}]
    assert [p.host_port for p in api.attach_request(body).ports] == [8081]
