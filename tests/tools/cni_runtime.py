"""A CNI runtime for tests: runs plugin chains the way libcni does.

Per the spec, a runtime execs each plugin named by a config's `type`, found
in CNI_PATH, with CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME,
CNI_ARGS and CNI_PATH in its environment and the plugin's configuration on
stdin: the plugin's own keys plus the list's `name` and `cniVersion`, the
previous result as `prevResult`, and `runtimeConfig` holding the runtime's
values for the capabilities the plugin declares. ADD runs the chain in
order and passes each result on; DEL runs it in reverse with the cached
result; CHECK, STATUS and GC run it in order (GC and STATUS from 1.1.0 on).

    rt = Runtime(["/tmp/bin", "/usr/lib/cni"], prefix=["nsenter", "--net=/run/netns/host"])
    result = rt.add(conflist, "ctr1", "/run/netns/ctr1", runtime_config={"portMappings": [...]})
    rt.delete(conflist, "ctr1", "/run/netns/ctr1", prev_result=result)

Command line, for trying a conflist by hand:

    cni_runtime.py add|del|check CONFLIST CONTAINER_ID NETNS [IFNAME]
    cni_runtime.py status|version CONFLIST
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
PLUGIN = Path(sys.executable).parent / "dockyard-cni"
REFERENCE_DIR = Path("/usr/lib/cni")

Json = dict[str, Any]


@dataclass
class Outcome:
    """One plugin execution: what the runtime sees."""

    plugin: str
    command: str
    exit_code: int
    stdout: str
    stderr: str
    seconds: float
    conf: Json = field(default_factory=dict)

    @property
    def json(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def __str__(self) -> str:
        return (
            f"{self.plugin} {self.command} exit {self.exit_code}: stdout={self.stdout.strip()!r} "
            f"stderr={self.stderr.strip()[-400:]!r}"
        )


class PluginFailed(AssertionError):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(str(outcome))
        self.outcome = outcome

    @property
    def error(self) -> Json:
        return self.outcome.json or {}


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def plugin_dir(directory: Path) -> Path:
    """A CNI_PATH directory where type "dockyard" runs this checkout's dockyard-cni."""
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / "dockyard"
    if not link.exists():
        link.symlink_to(PLUGIN)
    return directory


STUB_PLUGIN = """#!{python}
# A test plugin: its ADD prints the config's "result" in the config's version; nothing else.
import json, os, sys
conf = json.load(sys.stdin)
command = os.environ.get("CNI_COMMAND")
if command == "VERSION":
    print(json.dumps({{"cniVersion": "1.1.0", "supportedVersions": ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]}}))
elif command == "ADD":
    print(json.dumps({{**conf["result"], "cniVersion": conf["cniVersion"]}}))
"""


def stub_plugin(directory: Path, name: str = "stub") -> Path:
    """A plugin `name` in directory whose ADD prints the `result` of its config, touching
    nothing: for a chain where dockyard is not first (DEL, CHECK, GC, STATUS succeed)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(STUB_PLUGIN.format(python=sys.executable))
    path.chmod(0o755)
    return path


class Runtime:
    def __init__(
        self,
        bin_dirs: list[str | Path],
        prefix: list[str] | None = None,
        timeout: float = 60,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.bin_dirs = [str(d) for d in bin_dirs]
        self.prefix = list(prefix or [])
        self.timeout = timeout
        self.preexec = preexec  # run in each plugin's process before its exec (bench: unshare -m)
        self.log: list[Outcome] = []

    # -- one execution ------------------------------------------------------------

    def find(self, plugin_type: str) -> str:
        for d in self.bin_dirs:
            path = os.path.join(d, plugin_type)
            if os.access(path, os.X_OK):
                return path
        raise FileNotFoundError(f"plugin {plugin_type!r} not found in CNI_PATH {self.bin_dirs}")

    def env(
        self, command: str, container_id: str = "", netns: str = "", ifname: str = "", args: str = ""
    ) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        env.update(
            CNI_COMMAND=command,
            CNI_CONTAINERID=container_id,
            CNI_NETNS=netns,
            CNI_IFNAME=ifname,
            CNI_ARGS=args,
            CNI_PATH=os.pathsep.join(self.bin_dirs),
        )
        return env

    def popen(self, plugin_type: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*self.prefix, self.find(plugin_type)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={k: v for k, v in env.items() if v != "" or k == "CNI_COMMAND"},
            preexec_fn=self.preexec,
        )

    def start(self, plugin_type: str, env: dict[str, str], stdin: Json) -> subprocess.Popen[bytes]:
        """Exec a plugin without waiting (a test may kill it mid-way)."""
        proc = self.popen(plugin_type, env)
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(stdin).encode())
        proc.stdin.close()
        return proc

    def exec(self, plugin_type: str, env: dict[str, str], stdin: bytes | Json) -> Outcome:
        """Exec a plugin as a runtime does; empty variables are left out of its environment."""
        data = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode()
        t0 = time.monotonic()
        proc = self.popen(plugin_type, env)
        try:
            out, err = proc.communicate(data, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        outcome = Outcome(
            plugin_type,
            env.get("CNI_COMMAND", ""),
            proc.returncode,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
            time.monotonic() - t0,
            stdin if isinstance(stdin, dict) else {},
        )
        self.log.append(outcome)
        return outcome

    # -- configs as libcni builds them ----------------------------------------------

    @staticmethod
    def plugin_conf(
        conflist: Json, plugin: Json, prev_result: Json | None, runtime_config: Json | None
    ) -> Json:
        conf = dict(plugin)
        conf["name"] = conflist["name"]
        conf["cniVersion"] = conflist["cniVersion"]
        if prev_result is not None:
            conf["prevResult"] = prev_result
        caps = {k for k, v in (plugin.get("capabilities") or {}).items() if v}
        rc = {k: v for k, v in (runtime_config or {}).items() if k in caps}
        if rc:
            conf["runtimeConfig"] = rc
        return conf

    # -- the verbs --------------------------------------------------------------------

    def add(
        self,
        conflist: Json,
        container_id: str,
        netns: str,
        ifname: str = "eth0",
        runtime_config: Json | None = None,
        args: str = "",
    ) -> Json:
        result: Json | None = None
        for plugin in conflist["plugins"]:
            conf = self.plugin_conf(conflist, plugin, result, runtime_config)
            outcome = self.exec(plugin["type"], self.env("ADD", container_id, netns, ifname, args), conf)
            if not outcome.ok:
                raise PluginFailed(outcome)
            result = outcome.json
        assert result is not None
        return result

    def delete(
        self,
        conflist: Json,
        container_id: str,
        netns: str = "",
        ifname: str = "eth0",
        prev_result: Json | None = None,
        runtime_config: Json | None = None,
        args: str = "",
    ) -> None:
        for plugin in reversed(conflist["plugins"]):
            conf = self.plugin_conf(conflist, plugin, prev_result, runtime_config)
            outcome = self.exec(plugin["type"], self.env("DEL", container_id, netns, ifname, args), conf)
            if not outcome.ok:
                raise PluginFailed(outcome)

    def check(
        self,
        conflist: Json,
        container_id: str,
        netns: str,
        ifname: str = "eth0",
        prev_result: Json | None = None,
        runtime_config: Json | None = None,
    ) -> None:
        for plugin in conflist["plugins"]:
            conf = self.plugin_conf(conflist, plugin, prev_result, runtime_config)
            outcome = self.exec(plugin["type"], self.env("CHECK", container_id, netns, ifname), conf)
            if not outcome.ok:
                raise PluginFailed(outcome)

    def gc(self, conflist: Json, valid: list[tuple[str, str]]) -> None:
        attachments = [{"containerID": c, "ifname": i} for c, i in valid]
        for plugin in conflist["plugins"]:
            conf = self.plugin_conf(conflist, plugin, None, None)
            conf["cni.dev/valid-attachments"] = attachments
            outcome = self.exec(plugin["type"], self.env("GC"), conf)
            if not outcome.ok:
                raise PluginFailed(outcome)

    def status(self, conflist: Json) -> None:
        for plugin in conflist["plugins"]:
            outcome = self.exec(
                plugin["type"], self.env("STATUS"), self.plugin_conf(conflist, plugin, None, None)
            )
            if not outcome.ok:
                raise PluginFailed(outcome)

    def version(self, plugin_type: str, cni_version: str = "1.0.0") -> Json:
        outcome = self.exec(plugin_type, self.env("VERSION"), {"cniVersion": cni_version})
        if not outcome.ok:
            raise PluginFailed(outcome)
        return outcome.json


# -- for the test suite: containers' namespaces and equivalent configs ------------------


class Sandboxes:
    """Network namespaces standing for containers: made with `ip netns add`, deleted by name."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.names: list[str] = []

    def new(self) -> str:
        """A fresh namespace; its path, as a runtime passes CNI_NETNS."""
        name = f"{self.prefix}{len(self.names)}"
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
        self.names.append(name)
        return f"/run/netns/{name}"

    def remove(self, path: str) -> None:
        name = os.path.basename(path)
        if name in self.names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)

    def close(self) -> None:
        for name in self.names:
            if os.path.exists(f"/run/netns/{name}"):
                subprocess.run(["ip", "netns", "del", name], capture_output=True)


def runtime_in_host(
    host_ns: str, data_dir: Path, bin_dir: Path, network: str
) -> tuple[Runtime, Sandboxes, Json]:
    """A runtime working in a lab host's namespace (Podman on that host, say), its pods'
    namespaces, and a conflist attaching them to dockyard's existing network `network`."""
    rt = Runtime([plugin_dir(bin_dir)], prefix=["nsenter", f"--net=/run/netns/{host_ns}"])
    conflist: Json = {
        "cniVersion": "1.0.0",
        "name": network,
        "plugins": [{"type": "dockyard", "isGateway": True, "dataDir": str(data_dir)}],
    }
    return rt, Sandboxes(f"dyt-p-{host_ns[-6:]}-"), conflist


def dockyard_conflist(
    version: str, name: str, subnet: str, bridge: str, data_dir: str | Path, **extra: Any
) -> Json:
    plugin: Json = {
        "type": "dockyard",
        "bridge": bridge,
        "subnet": subnet,
        "isGateway": True,
        "ipMasq": False,
        "dataDir": str(data_dir),
        "capabilities": {"portMappings": True, "ips": True, "mac": True},
    }
    plugin.update(extra)
    return {"cniVersion": version, "name": name, "plugins": [plugin]}


def reference_conflist(version: str, name: str, subnet: str, bridge: str, data_dir: str | Path) -> Json:
    """The reference chain doing what dockyard's plugin does alone: bridge + host-local, portmap."""
    return {
        "cniVersion": version,
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "isDefaultGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(data_dir)},
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def reference_versions() -> list[str]:
    """The versions the installed reference bridge plugin speaks ([] when it is not installed)."""
    bridge = REFERENCE_DIR / "bridge"
    if not bridge.exists():
        return []
    r = subprocess.run(
        [str(bridge)], input=b'{"cniVersion": "0.4.0"}', capture_output=True, env={"CNI_COMMAND": "VERSION"}
    )
    return list(json.loads(r.stdout)["supportedVersions"]) if r.returncode == 0 else []


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["add", "del", "check", "status", "version"])
    p.add_argument("conflist")
    p.add_argument("container_id", nargs="?", default="")
    p.add_argument("netns", nargs="?", default="")
    p.add_argument("ifname", nargs="?", default="eth0")
    p.add_argument("--path", default=os.environ.get("CNI_PATH", str(REFERENCE_DIR)))
    p.add_argument("--prev-result", help="file holding the ADD's result (del, check)")
    a = p.parse_args()
    conflist = json.loads(Path(a.conflist).read_text())
    rt = Runtime(a.path.split(os.pathsep))
    prev = json.loads(Path(a.prev_result).read_text()) if a.prev_result else None
    try:
        if a.command == "add":
            print(json.dumps(rt.add(conflist, a.container_id, a.netns, a.ifname), indent=2))
        elif a.command == "del":
            rt.delete(conflist, a.container_id, a.netns, a.ifname, prev)
        elif a.command == "check":
            rt.check(conflist, a.container_id, a.netns, a.ifname, prev)
        elif a.command == "status":
            rt.status(conflist)
        else:
            for plugin in conflist["plugins"]:
                print(json.dumps(rt.version(plugin["type"], conflist["cniVersion"])))
    except PluginFailed as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
