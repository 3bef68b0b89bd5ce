"""settings.py: daemon.json (Docker's key names) and the daemon's flags."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.errors import InvalidArgument
from dockyard.settings import (
    DEFAULT_BRIDGE,
    DEFAULT_POOLS,
    KNOWN_KEYS,
    AddressPool,
    DaemonSettings,
    load_settings,
    parse_bip,
    parse_bridge_name,
)

NET = ipaddress.IPv4Network
IP = ipaddress.IPv4Address


def _write(root: Path, data: object) -> None:
    (root / "daemon.json").write_text(json.dumps(data))


def test_without_daemon_json_the_defaults_apply(tmp_path: Path) -> None:
    s = load_settings(tmp_path)
    assert s == DaemonSettings(root=tmp_path)
    assert s.bridge == DEFAULT_BRIDGE == "dockyard0"
    assert s.bip is None and s.mtu == 1500 and s.icc and s.ip_masq and s.dns == ()
    assert s.default_address_pools == tuple(AddressPool(NET(b), n) for b, n in DEFAULT_POOLS)
    assert s.default_address_pools[0] == AddressPool(NET("172.17.0.0/16"), 16)
    assert s.paths.daemon_json == tmp_path / "daemon.json"


def test_daemon_json_with_dockers_key_names(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "bridge": "br-json",
            "bip": "10.77.0.1/16",
            "mtu": 1400,
            "icc": False,
            "ip-masq": False,
            "dns": ["192.0.2.53", "198.51.100.53"],
            "default-address-pools": [
                {"base": "10.123.0.0/16", "size": 24},
                {"base": "10.124.0.0/15", "size": 20},
            ],
        },
    )
    s = load_settings(tmp_path, host_netns="lab-host")
    assert s == DaemonSettings(
        root=tmp_path,
        host_netns="lab-host",
        bridge="br-json",
        bip=ipaddress.IPv4Interface("10.77.0.1/16"),
        mtu=1400,
        icc=False,
        ip_masq=False,
        dns=(IP("192.0.2.53"), IP("198.51.100.53")),
        default_address_pools=(AddressPool(NET("10.123.0.0/16"), 24), AddressPool(NET("10.124.0.0/15"), 20)),
    )


def test_the_apis_own_keys(tmp_path: Path) -> None:
    s = load_settings(tmp_path)
    assert (s.api_max_connections, s.api_idle_timeout) == (None, 60.0)  # None: from the descriptor limit
    _write(tmp_path, {"api-max-connections": 64, "api-idle-timeout": 2.5})
    s = load_settings(tmp_path)
    assert (s.api_max_connections, s.api_idle_timeout) == (64, 2.5)
    _write(tmp_path, {"api-idle-timeout": 30})
    assert load_settings(tmp_path).api_idle_timeout == 30.0


def test_unknown_keys_are_refused_by_name_as_dockerd_does(tmp_path: Path) -> None:
    # A misspelt key would otherwise be dropped, and its setting silently not made.
    _write(tmp_path, {"log-level": "debug", "mtu": 9000, "bridg": "br-typo"})
    with pytest.raises(InvalidArgument) as e:
        load_settings(tmp_path)
    assert str(e.value) == (
        "daemon.json: the following directives don't match any configuration option: bridg, log-level"
    )
    _write(tmp_path, {"a\nb": 1})
    with pytest.raises(InvalidArgument) as e:
        load_settings(tmp_path)
    assert str(e.value).endswith("option: 'a\\nb'") and "\n" not in str(e.value)


def test_every_key_the_daemon_knows_is_accepted(tmp_path: Path) -> None:
    every = {
        "bridge": "br-json",
        "bip": "10.77.0.1/16",
        "mtu": 1400,
        "icc": False,
        "ip-masq": False,
        "dns": ["192.0.2.53"],
        "default-address-pools": [{"base": "10.123.0.0/16", "size": 24}],
        "insecure-registries": ["registry.lab:5000"],
        "metrics-addr": "127.0.0.1:9323",
        "cluster-store": "etcd://192.0.2.10:2379",
        "cluster-advertise": "192.0.2.1",
        "cluster-store-opts": {"kv.prefix": "/lab"},
        "api-max-connections": 64,
        "api-idle-timeout": 2.5,
        "docker-plugin": True,
        "docker-plugin-socket": "/run/docker/plugins/dockyard.sock",
        "ipv6": True,
        "fixed-cidr-v6": "2001:db8:7::/64",
        "ip6tables": True,
    }
    assert sorted(every) == sorted(KNOWN_KEYS)
    _write(tmp_path, every)
    s = load_settings(tmp_path)
    assert (s.bridge, s.metrics_addr, s.cluster_store, s.docker_plugin) == (
        "br-json",
        ("127.0.0.1", 9323),
        "etcd://192.0.2.10:2379",
        True,
    )
    assert (s.ipv6, str(s.fixed_cidr_v6)) == (True, "2001:db8:7::/64")


def test_flags_override_daemon_json(tmp_path: Path) -> None:
    _write(tmp_path, {"bridge": "br-json", "bip": "10.77.0.1/16", "mtu": 1400})
    s = load_settings(tmp_path, bridge="br-flag", bip="10.88.0.1/24")
    assert s.bridge == "br-flag"
    assert s.bip == ipaddress.IPv4Interface("10.88.0.1/24")
    assert s.mtu == 1400  # no flag for it: daemon.json still counts


def test_flags_alone(tmp_path: Path) -> None:
    s = load_settings(tmp_path, bridge="br-flag", bip="192.168.50.1/24")
    assert (s.bridge, s.bip) == ("br-flag", ipaddress.IPv4Interface("192.168.50.1/24"))


def test_a_bad_flag_is_an_error_even_over_a_good_daemon_json(tmp_path: Path) -> None:
    _write(tmp_path, {"bip": "10.77.0.1/16"})
    with pytest.raises(InvalidArgument, match=r"invalid --bip '10\.88\.0\.0/24'"):
        load_settings(tmp_path, bip="10.88.0.0/24")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{", "is not valid JSON"),
        ("", "is not valid JSON"),
        ('{"bridge": "x",}', "is not valid JSON"),
        ("[]", "must hold a JSON object"),
        ('"bridge"', "must hold a JSON object"),
        ("[" * 100_000, "is not valid JSON"),
    ],
)
def test_unreadable_daemon_json(tmp_path: Path, content: str, fragment: str) -> None:
    (tmp_path / "daemon.json").write_text(content)
    with pytest.raises(InvalidArgument) as info:
        load_settings(tmp_path)
    assert fragment in str(info.value)
    assert str(tmp_path / "daemon.json") in str(info.value)


def test_daemon_json_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "daemon.json").write_bytes(b'{"bridge": "br\xff"}')
    with pytest.raises(InvalidArgument, match="is not valid UTF-8"):
        load_settings(tmp_path)


def test_daemon_json_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "daemon.json").mkdir()
    with pytest.raises(InvalidArgument, match="cannot read"):
        load_settings(tmp_path)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"bip": "10.0.0.1"}, "the prefix length is missing"),
        ({"bip": "10.0.0.300/24"}, "give the bridge's address with a prefix"),
        ({"bip": "10.0.0.0/24"}, "cannot be the subnet's network or broadcast address"),
        ({"bip": "10.0.0.255/24"}, "cannot be the subnet's network or broadcast address"),
        ({"bip": "10.0.0.1/31"}, "must be /30 or larger"),
        ({"bip": "127.0.0.1/8"}, "invalid --bip '127.0.0.1/8': it is 127.0.0.0/8 (the loopback range)"),
        ({"bip": "169.254.0.1/24"}, "it lies in 169.254.0.0/16 (the link-local range)"),
        ({"bip": "224.0.0.1/24"}, "it lies in 224.0.0.0/4 (the multicast range)"),
        ({"bip": 10}, "bip must be a string"),
        ({"bridge": "a-bridge-name-16"}, "1 to 15 bytes"),
        ({"bridge": "brüü-012345678"}, "1 to 15 bytes"),  # 14 characters, 16 bytes
        ({"bridge": ""}, "1 to 15 bytes"),
        ({"bridge": "br/0"}, "may not contain"),
        ({"bridge": "br 0"}, "may not contain"),
        ({"bridge": "br\r0"}, "may not contain"),
        ({"bridge": "br\x000"}, "may not contain"),
        ({"bridge": ".."}, "may not contain"),
        ({"bridge": "\ud800"}, "not valid UTF-8"),
        ({"bridge": ["br0"]}, "bridge must be a string"),
        ({"bridge": True}, "bridge must be a string"),
        ({"mtu": 67}, "mtu must be an integer from 68 to 65535"),
        ({"mtu": 65536}, "mtu must be an integer"),
        ({"mtu": "1500"}, "mtu must be an integer"),
        ({"mtu": 1500.5}, "mtu must be an integer"),
        ({"icc": "false"}, "icc must be true or false"),
        ({"ip-masq": 0}, "ip-masq must be true or false"),
        ({"dns": "8.8.8.8"}, "dns must be a list"),
        ({"dns": ["8.8.8"]}, "daemon.json: dns:"),
        ({"api-max-connections": 0}, "api-max-connections must be an integer from 1"),
        ({"api-max-connections": "64"}, "api-max-connections must be an integer"),
        ({"api-max-connections": 64.0}, "api-max-connections must be an integer"),
        ({"api-max-connections": True}, "api-max-connections must be an integer"),
        ({"api-idle-timeout": 0}, "api-idle-timeout must be a number of seconds"),
        ({"api-idle-timeout": -5}, "api-idle-timeout must be a number of seconds"),
        ({"api-idle-timeout": "60"}, "api-idle-timeout must be a number of seconds"),
        ({"api-idle-timeout": False}, "api-idle-timeout must be a number of seconds"),
        ({"api-idle-timeout": 1e9}, "api-idle-timeout must be a number of seconds"),
    ],
)
def test_bad_values_in_daemon_json(tmp_path: Path, data: dict[str, object], fragment: str) -> None:
    _write(tmp_path, data)
    with pytest.raises(InvalidArgument) as info:
        load_settings(tmp_path)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("pools", "fragment"),
    [
        ([], "must be a non-empty list"),
        ({"base": "10.0.0.0/8", "size": 24}, "must be a non-empty list"),
        (["10.0.0.0/8"], 'needs "base" and "size"'),
        ([{"base": "10.0.0.0/8"}], 'needs "base" and "size"'),
        ([{"size": 24}], 'needs "base" and "size"'),
        ([{"base": "10.0.0.0/33", "size": 24}], "invalid address pool"),
        ([{"base": "10.0.0.1/8", "size": 24}], "invalid address pool"),  # host bits set
        ([{"base": "10.0.0.0/8", "size": "x"}], "invalid address pool"),
        ([{"base": "10.0.0.0/8", "size": "24"}], "invalid address pool"),
        ([{"base": "10.0.0.0/8", "size": 24.5}], "invalid address pool"),
        ([{"base": "10.0.0.0/8", "size": True}], "invalid address pool"),
        ([{"base": "10.0.0.0/8", "size": None}], "invalid address pool"),
        ([{"base": ["10.0.0.0/8"], "size": 24}], "invalid address pool"),
        ([{"base": "10.0.0.0/16", "size": 8}], "pool 10.0.0.0/16 cannot be cut into /8 subnets"),
        ([{"base": "10.0.0.0/16", "size": 31}], "cannot be cut into /31 subnets"),
        (
            [{"base": "10.0.0.0/8", "size": 24}, {"base": "127.0.0.0/8", "size": 24}],
            "invalid address pool 127.0.0.0/8: it is 127.0.0.0/8 (the loopback range)",
        ),
        ([{"base": "0.0.0.0/0", "size": 24}], 'it holds 0.0.0.0/8 (the "this network" range)'),
        ([{"base": "240.0.0.0/8", "size": 24}], "it lies in 240.0.0.0/4 (the reserved range"),
    ],
)
def test_bad_address_pools(tmp_path: Path, pools: object, fragment: str) -> None:
    _write(tmp_path, {"default-address-pools": pools})
    with pytest.raises(InvalidArgument) as info:
        load_settings(tmp_path)
    assert fragment in str(info.value)


def test_an_infinite_pool_size_is_invalid(tmp_path: Path) -> None:
    # Python's json reads 1e400 as float('inf'), which int() cannot convert.
    (tmp_path / "daemon.json").write_text(
        '{"default-address-pools": [{"base": "10.0.0.0/8", "size": 1e400}]}'
    )
    with pytest.raises(InvalidArgument, match="invalid address pool"):
        load_settings(tmp_path)


def test_parse_bridge_name_accepts_fifteen_bytes() -> None:
    assert parse_bridge_name("a" * 15) == "a" * 15
    with pytest.raises(InvalidArgument, match="invalid bridge name"):
        parse_bridge_name("a" * 16)


def test_parse_bip_keeps_the_address_and_prefix() -> None:
    iface = parse_bip("10.10.0.1/24")
    assert iface.ip == IP("10.10.0.1") and iface.network == NET("10.10.0.0/24")
    assert parse_bip("10.10.0.2/30").network == NET("10.10.0.0/30")


# --- property: any JSON object gives settings or InvalidArgument --------------------------------

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    # Values that parse in part: near-valid addresses, names, sizes.
    st.sampled_from(["10.0.0.1/16", "10.0.0.0/8", "172.17.0.1/16", "8.8.8.8", "br0", "10.0.0.1", "24", "0"]),
    st.integers(min_value=0, max_value=40),
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["base", "size", "x"]) | st.text(max_size=5), inner, max_size=4),
    ),
    max_leaves=12,
)
_keys = st.sampled_from(
    [
        "bridge",
        "bip",
        "mtu",
        "icc",
        "ip-masq",
        "dns",
        "default-address-pools",
        "api-max-connections",
        "api-idle-timeout",
    ]
) | st.text(max_size=8)
_pool_entries = st.lists(
    st.fixed_dictionaries(
        {"base": st.sampled_from(["10.0.0.0/8", "10.1.0.0/16", "10.2.3.0/24", "x"]) | st.text(max_size=6)},
        optional={
            "size": st.integers(min_value=-1, max_value=33)
            | st.sampled_from([float("inf"), float("-inf"), 24.0, "24"])
            | _json_scalars
        },
    ),
    max_size=3,
)
_daemon_json = st.dictionaries(_keys, _json_values, max_size=7) | st.fixed_dictionaries(
    {},
    optional={
        "bridge": st.text(max_size=17) | _json_values,
        "bip": _json_values,
        "mtu": st.integers(min_value=60, max_value=70000),
        "icc": st.booleans(),
        "dns": st.lists(st.sampled_from(["8.8.8.8", "1.1.1.1", "::1", "x"]), max_size=3),
        "default-address-pools": _pool_entries,
    },
)


_DOCKER_KEYS = ("bridge", "bip", "mtu", "icc", "ip-masq", "dns", "default-address-pools")


def _load_or_invalid(root: Path, data: dict[str, object], ensure_ascii: bool = True) -> None:
    """load_settings gives sound settings or raises InvalidArgument, never another exception."""
    (root / "daemon.json").write_text(json.dumps(data, ensure_ascii=ensure_ascii), errors="surrogatepass")
    try:
        s = load_settings(root)
    except InvalidArgument as e:
        assert "\n" not in str(e)
        return
    assert isinstance(s, DaemonSettings)
    assert 1 <= len(s.bridge.encode()) <= 15
    assert 68 <= s.mtu <= 65535
    assert isinstance(s.icc, bool) and isinstance(s.ip_masq, bool)
    assert all(isinstance(a, ipaddress.IPv4Address | ipaddress.IPv6Address) for a in s.dns)
    assert s.default_address_pools
    for pool in s.default_address_pools:
        assert pool.base.prefixlen <= pool.size <= 30
    assert s.api_max_connections is None or 1 <= s.api_max_connections <= 1_000_000
    assert 0.1 <= s.api_idle_timeout <= 86400


_fixture_ok = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_fixture_ok
@given(data=_daemon_json, ensure_ascii=st.booleans())
def test_any_json_object_gives_settings_or_invalid_argument(
    tmp_path: Path, data: dict[str, object], ensure_ascii: bool
) -> None:
    _load_or_invalid(tmp_path, data, ensure_ascii)


@_fixture_ok
@given(key=st.sampled_from(_DOCKER_KEYS), value=_json_values | _pool_entries, ensure_ascii=st.booleans())
def test_any_value_under_one_docker_key_gives_settings_or_invalid_argument(
    tmp_path: Path, key: str, value: object, ensure_ascii: bool
) -> None:
    # One key at a time, so that each key's checks are reached, not only the first ones.
    _load_or_invalid(tmp_path, {key: value}, ensure_ascii)


# -- the cluster (overlay networks) ------------------------------------------------------------------


def test_without_cluster_options_there_is_no_cluster(tmp_path: Path) -> None:
    s = load_settings(tmp_path)
    assert (s.cluster_store, s.cluster_advertise, s.cluster_store_opts) == (None, None, ())


def test_cluster_options_from_daemon_json_and_flags(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "cluster-store": "etcd://10.0.0.1:2379,10.0.0.2:2379",
            "cluster-advertise": "eth0",
            "cluster-store-opts": {"kv.cacertfile": "/etc/ca.pem", "kv.prefix": "lab"},
        },
    )
    s = load_settings(tmp_path)
    assert s.cluster_store == "etcd://10.0.0.1:2379,10.0.0.2:2379"
    assert s.cluster_advertise == "eth0"
    assert s.cluster_store_opts == (("kv.cacertfile", "/etc/ca.pem"), ("kv.prefix", "lab"))
    # A flag wins over daemon.json; an option flag adds to (or replaces one of) daemon.json's.
    s = load_settings(
        tmp_path, cluster_advertise="192.0.2.7", cluster_store_opts=["kv.prefix=other", "kv.username=dy"]
    )
    assert s.cluster_advertise == "192.0.2.7"
    assert dict(s.cluster_store_opts) == {
        "kv.cacertfile": "/etc/ca.pem",
        "kv.prefix": "other",
        "kv.username": "dy",
    }


@pytest.mark.parametrize(
    ("data", "flags", "fragment"),
    [
        ({"cluster-store": "etcd://h:2379"}, {}, "needs --cluster-advertise"),
        ({"cluster-advertise": "eth0"}, {}, "need --cluster-store"),
        ({}, {"cluster_store_opts": ["kv.prefix=x"]}, "need --cluster-store"),
        ({"cluster-store": 5, "cluster-advertise": "eth0"}, {}, "cluster-store must be a non-empty string"),
        ({"cluster-store": "etcd://h", "cluster-advertise": "eth0", "cluster-store-opts": []}, {}, "object"),
        (
            {
                "cluster-store": "etcd://h",
                "cluster-advertise": "eth0",
                "cluster-store-opts": {"kv.path": "/x"},
            },
            {},
            "cluster store option kv.path is not supported",
        ),
        (
            {"cluster-store": "etcd://h", "cluster-advertise": "eth0"},
            {"cluster_store_opts": ["x"]},
            "KEY=VALUE",
        ),
    ],
)
def test_bad_cluster_options_are_refused(tmp_path: Path, data: dict, flags: dict, fragment: str) -> None:
    _write(tmp_path, data)
    with pytest.raises(InvalidArgument, match=fragment):
        load_settings(tmp_path, **flags)


def test_the_docker_plugin_is_off_unless_asked(tmp_path: Path) -> None:
    s = load_settings(tmp_path)
    assert (s.docker_plugin, s.docker_plugin_socket) == (False, Path("/run/docker/plugins/dockyard.sock"))
    assert load_settings(tmp_path, docker_plugin=True).docker_plugin  # --docker-plugin
    _write(tmp_path, {"docker-plugin": True, "docker-plugin-socket": "/srv/plugins/dy.sock"})
    s = load_settings(tmp_path)
    assert (s.docker_plugin, s.docker_plugin_socket) == (True, Path("/srv/plugins/dy.sock"))


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"docker-plugin": "yes"}, "docker-plugin must be true or false"),
        ({"docker-plugin-socket": "plugins/dy.sock"}, "docker-plugin-socket must be an absolute path"),
        ({"docker-plugin-socket": "/run/docker/plugins/dy"}, "ending in .sock"),
        ({"docker-plugin-socket": 7}, "docker-plugin-socket must be"),
    ],
)
def test_bad_docker_plugin_keys(tmp_path: Path, data: dict[str, object], fragment: str) -> None:
    _write(tmp_path, data)
    with pytest.raises(InvalidArgument, match=fragment):
        load_settings(tmp_path)
