"""containers/create's fields and Docker's container filters, as pure code: what is honoured,
what is refused (by name), and what the docker CLI's zero values mean (nothing)."""

from __future__ import annotations

import json
import time

import pytest

from dockyard.daemon.api import docker
from dockyard.errors import InvalidArgument
from dockyard.model import Container, ContainerConfig, ContainerState, RestartName
from dockyard.policy.container_filters import ContainerFacts, ContainerFilter, PruneFilter, parse_timestamp

# What the docker CLI 28 sends for `docker run -d --name x busybox sleep 1` (captured).
CLI_BODY = json.loads(
    '{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,'
    '"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,'
    '"Cmd":["sleep","1"],"Image":"busybox","Volumes":{},"WorkingDir":"","Entrypoint":null,'
    '"OnBuild":null,"Labels":{},"HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":'
    '{"Type":"","Config":{}},"NetworkMode":"default","PortBindings":{},"RestartPolicy":{"Name":"no",'
    '"MaximumRetryCount":0},"AutoRemove":false,"VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],'
    '"CapAdd":null,"CapDrop":null,"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],'
    '"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,'
    '"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,"SecurityOpt":null,'
    '"UTSMode":"","UsernsMode":"","ShmSize":0,"Isolation":"","CpuShares":0,"Memory":0,"NanoCpus":0,'
    '"CgroupParent":"","BlkioWeight":0,"BlkioWeightDevice":[],"BlkioDeviceReadBps":[],'
    '"BlkioDeviceWriteBps":[],"BlkioDeviceReadIOps":[],"BlkioDeviceWriteIOps":[],"CpuPeriod":0,'
    '"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"",'
    '"Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,"MemoryReservation":0,"MemorySwap":0,'
    '"MemorySwappiness":-1,"OomKillDisable":false,"PidsLimit":0,"Ulimits":[],"CpuCount":0,'
    '"CpuPercent":0,"IOMaximumIOps":0,"IOMaximumBandwidth":0,"MaskedPaths":null,"ReadonlyPaths":null},'
    '"NetworkingConfig":{"EndpointsConfig":{"default":{"IPAMConfig":null,"Links":null,"Aliases":null,'
    '"MacAddress":"","DriverOpts":null,"GwPriority":0,"NetworkID":"","EndpointID":"","Gateway":"",'
    '"IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,'
    '"DNSNames":null}}}}'
)


def _with(**changes: object) -> dict:
    body = json.loads(json.dumps(CLI_BODY))
    for path, value in changes.items():
        where = body
        *parents, leaf = path.split("__")
        for p in parents:
            where = where[p]
        where[leaf] = value
    return body


def test_the_docker_clis_zero_values_are_accepted_and_mean_docker_defaults() -> None:
    cfg, _ = docker.container_config(CLI_BODY)
    assert cfg.cmd == ("sleep", "1") and cfg.image == "busybox"
    assert cfg.labels == () and cfg.mounts == () and cfg.restart.name is RestartName.NO
    assert cfg.networks == () and cfg.mac == "" and cfg.stop_timeout is None


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"HostConfig__Memory": 67108864}, "HostConfig.Memory is not supported by dockyard: --memory"),
        ({"HostConfig__NanoCpus": 1000000000}, "HostConfig.NanoCpus"),
        ({"HostConfig__ReadonlyRootfs": True}, "HostConfig.ReadonlyRootfs"),
        ({"HostConfig__Tmpfs": {"/x": ""}}, "HostConfig.Tmpfs"),
        ({"HostConfig__Links": ["db:db"]}, "HostConfig.Links"),
        ({"HostConfig__MemorySwappiness": 10}, "MemorySwappiness"),
        ({"HostConfig__LogConfig": {"Type": "syslog", "Config": {}}}, "LogConfig.Type"),
        ({"HostConfig__Frob": 1}, "HostConfig.Frob is not a field dockyard knows"),
        ({"Frob": "x"}, "Frob is not a field dockyard knows"),
        ({"Volumes": {"/data": {}}}, "Volumes is not supported"),
        ({"Healthcheck": {"Test": ["CMD", "true"]}}, "Healthcheck"),
        ({"HostConfig__Binds": ["named:/data"]}, "named volumes are not supported"),
        ({"HostConfig__Binds": ["/src:relative"]}, "must be absolute"),
        ({"HostConfig__Binds": ["/src:/data:shared"]}, "option 'shared'"),
        ({"HostConfig__Mounts": [{"Type": "volume", "Target": "/v"}]}, "of type 'volume'"),
        ({"HostConfig__Sysctls": {"kernel.shmmax": "1"}}, "sysctl 'kernel.shmmax'"),
        ({"HostConfig__RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}}, "maximum retry count"),
        ({"HostConfig__ExtraHosts": ["db"]}, "invalid --add-host"),
        ({"HostConfig__ExtraHosts": ["db:not-an-ip"]}, "is not an IP address"),
        ({"MacAddress": "01:00:5e:00:00:01"}, "multicast"),
        ({"StopSignal": "SIGNOPE"}, "invalid signal"),
        ({"NetworkingConfig__EndpointsConfig__default__DriverOpts": {"a": "b"}}, "DriverOpts"),
        (
            {"NetworkingConfig__EndpointsConfig__default__IPAMConfig": {"LinkLocalIPs": ["fe80::1"]}},
            "LinkLocalIPs",
        ),
        (
            {"NetworkingConfig__EndpointsConfig__default__IPAMConfig": {"IPv6Address": "2001:db8::9"}},
            "user specified IP",
        ),
        (
            {"NetworkingConfig__EndpointsConfig__default__IPAMConfig": {"IPv6Address": "10.0.0.1"}},
            "invalid --ip6",
        ),
        (
            {"NetworkingConfig__EndpointsConfig__default__IPAMConfig": {"IPv4Address": "172.17.0.9"}},
            "user specified IP",
        ),
    ],
)
def test_fields_asking_for_what_dockyard_does_not_do_are_refused_by_name(change: dict, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment.replace(".", r"\.").replace("(", r"\(")):
        docker.container_config(_with(**change))


def test_the_honoured_fields_are_parsed() -> None:
    cfg, _ = docker.container_config(
        _with(
            Labels={"b": "2", "a": ""},
            MacAddress="02:42:AC:11:00:05",
            StopSignal="usr1",
            StopTimeout=3,
            HostConfig__Binds=["/srv//data/:/data:ro", "/tmp:/t"],
            HostConfig__Mounts=[{"Type": "bind", "Source": "/opt", "Target": "/o", "ReadOnly": True}],
            HostConfig__ExtraHosts=["db:10.0.0.5", "gw=host-gateway"],
            HostConfig__Sysctls={"net.ipv4.ip_forward": "1"},
            HostConfig__RestartPolicy={"Name": "on-failure", "MaximumRetryCount": 4},
            HostConfig__NetworkMode="front",
            NetworkingConfig={
                "EndpointsConfig": {
                    "front": {"Aliases": ["web"], "IPAMConfig": {"IPv4Address": "10.1.0.5"}},
                    "back": {"MacAddress": "02:00:00:00:00:01", "IPAMConfig": {"IPv4Address": "10.2.0.5"}},
                }
            },
        )
    )
    assert cfg.labels == (("a", ""), ("b", "2"))
    assert cfg.mac == "02:42:ac:11:00:05" and cfg.stop_signal == "SIGUSR1" and cfg.stop_timeout == 3
    assert [(m.source, m.target, m.read_only) for m in cfg.mounts] == [
        ("/srv/data", "/data", True),
        ("/tmp", "/t", False),
        ("/opt", "/o", True),
    ]
    assert cfg.extra_hosts == (("db", "10.0.0.5"), ("gw", "host-gateway"))
    assert cfg.sysctls == (("net.ipv4.ip_forward", "1"),)
    assert str(cfg.restart) == "on-failure:4"
    assert str(cfg.ip) == "10.1.0.5" and cfg.aliases == ("web",)
    assert [(r.network, str(r.ip), r.mac) for r in cfg.networks] == [
        ("back", "10.2.0.5", "02:00:00:00:00:01")
    ]


def test_sysctls_and_further_networks_need_a_network_of_the_containers_own() -> None:
    with pytest.raises(InvalidArgument, match="host network mode"):
        docker.container_config(_with(HostConfig__NetworkMode="host", HostConfig__Sysctls={"net.a": "1"}))
    body = _with(HostConfig__NetworkMode="none")
    body["NetworkingConfig"]["EndpointsConfig"] = {"front": {}}
    with pytest.raises(InvalidArgument, match="cannot be connected to network front"):
        docker.container_config(body)


def _container(name: str, state: ContainerState, created: str, code: int = 0, **cfg: object) -> Container:
    config = ContainerConfig(cmd=("true",), **cfg)  # type: ignore[arg-type]
    started = "2026-01-01T00:00:01.000000Z" if state is not ContainerState.CREATED else ""
    return Container(
        id=name * 8,
        name=name,
        config=config,
        state=state,
        exit_code=code,
        created=created,
        started_at=started,
    )


CONTAINERS = [
    _container("aa", ContainerState.RUNNING, "2026-01-01T00:00:01.000000Z", labels=(("tier", "web"),)),
    _container("bb", ContainerState.EXITED, "2026-01-01T00:00:02.000000Z", 3, image="busybox"),
    _container("cc", ContainerState.CREATED, "2026-01-01T00:00:03.000000Z", labels=(("tier", "db"),)),
]


def _select(filters: dict, before: Container | None = None, since: Container | None = None) -> list[str]:
    wanted = ContainerFilter.parse(json.dumps(filters))
    facts = ContainerFacts((("front", "f" * 64),))
    return [c.name for c in CONTAINERS if wanted.matches(c, facts, before, since)]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"status": ["exited"]}, ["bb"]),
        ({"status": ["running", "created"]}, ["aa", "cc"]),
        ({"exited": ["3"]}, ["bb"]),
        ({"exited": ["0"]}, []),  # a created container never exited
        ({"label": ["tier"]}, ["aa", "cc"]),
        ({"label": ["tier=db"]}, ["cc"]),
        ({"label": ["tier", "tier=web"]}, ["aa"]),  # one key's values: any; but label's: all
        ({"name": ["^/b"]}, ["bb"]),
        ({"id": ["cccc"]}, ["cc"]),
        ({"network": ["front"]}, ["aa", "bb", "cc"]),
        ({"network": ["ffff"]}, ["aa", "bb", "cc"]),
        ({"network": ["back"]}, []),
        ({"ancestor": ["busybox"]}, ["bb"]),
        ({"ancestor": ["busybox:latest"]}, ["bb"]),
        ({"health": ["none"]}, ["aa", "bb", "cc"]),
        ({"health": ["healthy"]}, []),
        ({"status": ["exited"], "label": ["tier"]}, []),
    ],
)
def test_container_filters(filters: dict, expected: list[str]) -> None:
    assert _select(filters) == expected


def test_before_and_since_compare_creation() -> None:
    assert _select({}, before=CONTAINERS[2]) == ["aa", "bb"]
    assert _select({}, since=CONTAINERS[0]) == ["bb", "cc"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"color": ["red"]}', "invalid filter 'color'"),
        ('{"status": ["sleepy"]}', "invalid filter 'status=sleepy'"),
        ('{"exited": ["x"]}', "invalid filter 'exited=x'"),
        ('{"publish": ["http"]}', "invalid port filter"),
        ('{"name": "x"}', "must be a list of strings"),
        ("[1]", "expected a JSON object"),
    ],
)
def test_bad_container_filters_are_clear_errors(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        ContainerFilter.parse(text)


def test_prune_filters_label_not_label_and_until() -> None:
    now = time.time()
    old, new = "2020-01-01T00:00:00.000000Z", time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(now))
    keep = (("keep", "yes"),)
    assert PruneFilter.parse('{"label": ["keep=yes"]}').matches(keep, new)
    assert not PruneFilter.parse('{"label": ["keep=no"]}').matches(keep, new)
    assert not PruneFilter.parse('{"label!": ["keep"]}').matches(keep, new)
    assert PruneFilter.parse('{"label!": ["keep=no"]}').matches(keep, new)
    assert PruneFilter.parse('{"until": ["24h"]}', now).matches((), old)
    assert not PruneFilter.parse('{"until": ["24h"]}', now).matches((), new)
    with pytest.raises(InvalidArgument, match="invalid filter 'dangling'"):
        PruneFilter.parse('{"dangling": ["true"]}')


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1700000000", 1700000000.0),
        ("1700000000.5", 1700000000.5),
        ("2023-11-14T22:13:20Z", 1700000000.0),
        ("2023-11-14T22:13:20.123456789Z", 1700000000.123456),
        ("2023-11-14T23:13:20+01:00", 1700000000.0),
        ("2023-11-14", 1699920000.0),
    ],
)
def test_docker_times(text: str, seconds: float) -> None:
    assert parse_timestamp(text) == pytest.approx(seconds, abs=1e-3)
    assert parse_timestamp("1h30m", now=10_000.0) == 10_000.0 - 5400
    with pytest.raises(InvalidArgument, match="invalid time"):
        parse_timestamp("yesterday")
