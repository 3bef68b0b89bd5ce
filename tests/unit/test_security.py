"""Capabilities, users and security options as Docker spells them (policy/security.py,
kernel/users.py, the API's fields and the CLI's flags), without root."""

from __future__ import annotations

import io
from contextlib import redirect_stderr
from pathlib import Path

import pytest

import dockyard.clients.cli
from dockyard.daemon.api import docker
from dockyard.errors import InvalidArgument
from dockyard.kernel import users
from dockyard.model import ContainerConfig
from dockyard.policy import security

DEFAULT = set(security.DEFAULT_CAPABILITIES)


def test_dockers_default_set_is_its_known_mask() -> None:
    # What `grep CapEff /proc/self/status` shows in a default Docker container.
    assert security.capability_mask(security.DEFAULT_CAPABILITIES) == 0xA80425FB
    assert len(DEFAULT) == 14


@pytest.mark.parametrize("name", ["net_admin", "NET_ADMIN", "CAP_NET_ADMIN", "cap_net_admin", "Net_Admin"])
def test_capability_names_with_or_without_cap_in_any_case(name: str) -> None:
    assert security.normalize_capability(name) == "CAP_NET_ADMIN"


def test_cap_add_and_cap_drop_follow_moby() -> None:
    assert set(security.capabilities(("NET_ADMIN",), ("NET_RAW",), False)) == DEFAULT - {"CAP_NET_RAW"} | {
        "CAP_NET_ADMIN"
    }
    assert security.capabilities(("kill",), ("all",), False) == ("CAP_KILL",)
    assert set(security.capabilities(("ALL",), ("SYS_ADMIN",), False)) == set(security.CAPABILITIES) - {
        "CAP_SYS_ADMIN"
    }
    assert set(security.capabilities((), ("ALL",), False)) == set()
    assert set(security.capabilities((), ("NET_RAW",), True)) == set(security.CAPABILITIES)
    # By number order, whatever the order given.
    chosen = security.capabilities(("SYS_TIME", "NET_ADMIN"), (), False)
    assert list(chosen) == sorted(chosen, key=security.CAPABILITIES.__getitem__)


@pytest.mark.parametrize("name", ["NET_WIZARD", "", "CAP_", "net admin", "CAP_ALL"])
def test_an_unknown_capability_is_one_line(name: str) -> None:
    with pytest.raises(InvalidArgument, match="unknown capability") as e:
        security.capabilities((name,), (), False)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("text", "user", "group"),
    [
        ("", "", ""),
        ("nobody", "nobody", ""),
        ("1000", "1000", ""),
        ("1000:1000", "1000", "1000"),
        ("a:b", "a", "b"),
    ],
)
def test_user_spec(text: str, user: str, group: str) -> None:
    assert security.parse_user(text) == security.UserSpec(user, group)


@pytest.mark.parametrize("text", ["nobody:", ":1000", "a b", "a:b:c", "99999999999", "x\0"])
def test_bad_user_spec_is_refused(text: str) -> None:
    with pytest.raises(InvalidArgument):
        security.parse_user(text)


@pytest.mark.parametrize(
    ("options", "value"),
    [
        ([], False),
        (["no-new-privileges"], True),
        (["no-new-privileges:true"], True),
        (["no-new-privileges=true"], True),
        (["no-new-privileges", "no-new-privileges:false"], False),
    ],
)
def test_no_new_privileges(options: list[str], value: bool) -> None:
    assert security.no_new_privileges(options) is value


def test_other_security_options_are_refused_by_name() -> None:
    with pytest.raises(InvalidArgument) as e:
        security.no_new_privileges(["seccomp=unconfined", "no-new-privileges", "apparmor=x"])
    assert str(e.value) == (
        "unsupported --security-opt: 'seccomp=unconfined', 'apparmor=x' (dockyard implements no-new-privileges only)"
    )
    with pytest.raises(InvalidArgument):
        security.no_new_privileges(["no-new-privileges:maybe"])


@pytest.fixture
def root(tmp_path: Path) -> str:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        "app:x:1001:1001::/home/app:/bin/sh\n"
        "broken:x:abc:1:::\n"
    )
    (etc / "group").write_text(
        "root:x:0:\nusers:x:100:app\nadm:x:4:app,other\nnogroup:x:65534:\napp:x:1001:\n"
    )
    return str(tmp_path)


def test_users_resolve_in_the_containers_files(root: str) -> None:
    assert users.resolve(root, "") == users.ExecUser(0, 0, (), "/root")
    assert users.resolve(root, "nobody") == users.ExecUser(65534, 65534, (), "/nonexistent")
    # Named without a group: the groups that list it (runc's implicit form).
    assert users.resolve(root, "app") == users.ExecUser(1001, 1001, (100, 4), "/home/app")
    # user:group: that group only, plus --group-add.
    assert users.resolve(root, "app", "nogroup", ("adm", "4242")) == users.ExecUser(
        1001, 65534, (4, 4242), "/home/app"
    )
    # A number needs no entry: gid 0 and HOME / (as Docker).
    assert users.resolve(root, "1000") == users.ExecUser(1000, 0, (), "/")
    assert users.resolve(root, "1000", "1000") == users.ExecUser(1000, 1000, (), "/")


@pytest.mark.parametrize(
    ("user", "group", "add", "message"),
    [
        ("ghost", "", (), "unable to find user ghost"),
        ("nobody", "ghosts", (), "unable to find group ghosts"),
        ("nobody", "", ("ghosts",), "unable to find group ghosts"),
        ("broken", "", (), "malformed"),
    ],
)
def test_unknown_users_and_groups(
    root: str, user: str, group: str, add: tuple[str, ...], message: str
) -> None:
    with pytest.raises(users.UnknownUser, match=message):
        users.resolve(root, user, group, add)


def test_the_api_fields_reach_the_config() -> None:
    cfg, _ = docker.container_config(
        {
            "Cmd": ["true"],
            "User": "nobody:nogroup",
            "HostConfig": {
                "CapAdd": ["net_admin"],
                "CapDrop": ["CAP_NET_RAW"],
                "Privileged": False,
                "GroupAdd": ["users"],
                "SecurityOpt": ["no-new-privileges"],
                "Init": True,
                "PidsLimit": 50,
                # What the docker CLI sends for flags not given: their zero values.
                "PidMode": "",
                "Ulimits": None,
                "Devices": [],
                "ReadonlyRootfs": False,
            },
        }
    )
    assert (cfg.user, cfg.cap_add, cfg.cap_drop, cfg.group_add) == (
        "nobody:nogroup",
        ("CAP_NET_ADMIN",),
        ("CAP_NET_RAW",),
        ("users",),
    )
    assert cfg.no_new_privileges and cfg.init and cfg.pids_limit == 50 and not cfg.privileged
    inspect = docker.container_inspect(_container(cfg), [], [], "", "")
    assert inspect["Config"]["User"] == "nobody:nogroup"
    host = inspect["HostConfig"]
    assert host["CapAdd"] == ["CAP_NET_ADMIN"] and host["PidsLimit"] == 50 and host["Init"] is True
    assert host["SecurityOpt"] == ["no-new-privileges"]


def _container(cfg: ContainerConfig):  # type: ignore[no-untyped-def]
    from dockyard.model import Container

    return Container(id="a" * 64, name="c1", config=cfg)


@pytest.mark.parametrize(
    ("host", "fragment"),
    [
        ({"PidMode": "host"}, "HostConfig.PidMode is not supported"),
        ({"ReadonlyRootfs": True}, "HostConfig.ReadonlyRootfs is not supported"),
        ({"CapAdd": "NET_ADMIN"}, "HostConfig.CapAdd must be a list"),
        ({"Privileged": "yes"}, "HostConfig.Privileged must be true or false"),
        ({"PidsLimit": "10"}, "HostConfig.PidsLimit must be an integer"),
    ],
)
def test_api_fields_refused_with_a_reason(host: dict, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        docker.container_config({"Cmd": ["true"], "HostConfig": host})


@pytest.mark.parametrize("limit", [None, 0, -1, -5])
def test_pids_limit_zero_or_negative_is_unlimited(limit: int | None) -> None:
    cfg, _ = docker.container_config({"Cmd": ["true"], "HostConfig": {"PidsLimit": limit}})
    assert cfg.pids_limit == 0


class FakeClient:
    def __init__(self) -> None:
        self.body: dict = {}

    def create(self, body: dict, name: str | None) -> dict:
        self.body = body
        raise InvalidArgument("stop here")


def test_the_cli_flags_are_dockers_and_reach_the_body() -> None:
    from dockyard.clients.cli import run

    fake = FakeClient()
    parser = dockyard.clients.cli.build_parser()
    args = parser.parse_args(
        [
            "run", "-u", "nobody", "--group-add", "users", "--cap-add", "NET_ADMIN", "--cap-drop", "ALL",
            "--privileged", "--security-opt", "no-new-privileges", "--init", "--pids-limit", "10", "true",
        ]
    )  # fmt: skip
    with pytest.raises(InvalidArgument):
        run.cmd_run(fake, args)
    host = fake.body["HostConfig"]
    assert fake.body["User"] == "nobody"
    assert (host["GroupAdd"], host["CapAdd"], host["CapDrop"]) == (["users"], ["NET_ADMIN"], ["ALL"])
    assert host["Privileged"] and host["Init"] and host["PidsLimit"] == 10
    assert host["SecurityOpt"] == ["no-new-privileges"]
    err = io.StringIO()
    with redirect_stderr(err):
        assert dockyard.clients.cli.main(["run", "--pids-limit", "many", "true"]) == 125
    assert err.getvalue().startswith("dockyard: ") and err.getvalue().count("\n") == 1
