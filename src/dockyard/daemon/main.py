"""dockyardd: owns the state and all kernel work, serves the API on $ROOT/dockyard.sock.

Start-up order matters: enter the host network namespace first (setns
affects the calling thread, and threads started later inherit it), take the
root's lock (one daemon per $ROOT), then restore networks and reconcile what
an earlier daemon left, then serve. Stopping the daemon leaves containers
running (they belong to the shim); the next daemon adopts them.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import logging
import os
import resource
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dockyard import logconfig
from dockyard.errors import DockyardError
from dockyard.kernel import files
from dockyard.settings import DaemonSettings, Paths, load_settings, root_from_env

if TYPE_CHECKING:
    from dockyard.daemon.metrics import MetricsListener

# How often the monitor does the cheap check without a request (seconds);
# DOCKYARD_MONITOR_INTERVAL changes it, for tests that need it out of the way.
MONITOR_INTERVAL = float(os.environ.get("DOCKYARD_MONITOR_INTERVAL") or 2.0)

# By its name, not __name__: run as `python -m dockyard.daemon.main`, this module is __main__.
log = logging.getLogger("dockyard.daemon.main")


def _one_malloc_arena() -> None:
    """One malloc arena for every thread: each request thread otherwise gets an
    arena of its own, some 3 MB of RSS kept after its first request (measured)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX


def _raise_fd_limit() -> None:
    # One held socket per published port: a 1,000-port range needs them.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _lock_root(paths: Paths) -> int:
    fd = files.open_private(paths.daemon_pid, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        other = paths.daemon_pid.read_text().strip() or "?"
        raise DockyardError(
            f"another dockyardd (pid {other}) already serves {paths.root}; "
            "stop it first ('dockyard daemon stop') or use another --root"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _make_private(paths: Paths) -> None:
    """$ROOT and the log are root's alone, even in a root made earlier with looser modes.

    The database's files are the store's to restrict (store/database.py),
    the containers' logs are made 0600 by spawn.
    """
    try:
        os.chmod(paths.root, 0o700)
    except OSError as e:
        raise DockyardError(f"cannot make {paths.root} private (mode 0700): {e.strerror}") from None
    files.restrict(paths.daemon_log, 0o600)


class Daemon:
    def __init__(self, settings: DaemonSettings) -> None:
        self.settings = settings
        self.paths = settings.paths
        self._stop = threading.Event()
        # The monitor's last failure of each check, so that a failure repeated
        # every round is told in full once, then in one line.
        self._last_failure: dict[str, str] = {}
        self.metrics_listener: MetricsListener | None = None

    def run(self) -> None:
        from dockyard.kernel import pyroute2_lean

        pyroute2_lean.install()  # before anything imports pyroute2: only what IPRoute needs
        try:
            from dockyard.daemon.api.routes import Api
            from dockyard.daemon.api.server import Limits, UnixHTTPServer, default_max_connections
            from dockyard.daemon.memory import MemoryRelease
            from dockyard.daemon.metrics import Metrics, MetricsListener
            from dockyard.engine import Engine
            from dockyard.engine.explain import Explainer
            from dockyard.kernel import Kernel
            from dockyard.kernel.dns_process import DnsProcess
            from dockyard.kernel.holds import PortHolds
            from dockyard.kernel.netlink import Netlink
            from dockyard.kernel.nft import Nft
            from dockyard.kernel.xtables import LegacyForward
            from dockyard.store import Store
        except ImportError as e:
            raise DockyardError(
                f"a dependency of the daemon is missing ({e.name}): reinstall dockyard with its "
                "dependencies (make deps, or pip install dockyard)"
            ) from e

        kernel = Kernel(Netlink(), Nft(), PortHolds(), LegacyForward())
        store = Store(self.paths.database)
        engine = Engine(self.settings, store, kernel)
        overlay = None
        if self.settings.cluster_store:
            # Only in a cluster: etcd's client and http.client stay out of other daemons.
            from dockyard.engine import cluster as engine_cluster

            # Before restore: the overlay driver makes overlay networks' kernel side again.
            overlay = engine_cluster.attach(engine)
        # Before restore looks at the pins: an older root's move under the new mount.
        engine.sandboxes.prepare()
        try:
            report = engine.restore()
            report.removed += engine.images.gc()
            report.removed += Explainer(engine).gc()
            for line in report.removed + report.restored:
                log.info("restore: %s", line)
            for line in report.not_removed:
                log.warning("restore: not removed: %s", line)
            # For the first `system gc`, often the very command that started this daemon.
            engine.startup_report = report
            engine.shim.connect()
            engine.dns = DnsProcess(self.paths)
            engine.networks_changed()
            if overlay is not None:
                overlay.start()
            info = {"HostNetns": self.settings.host_netns or "", "DaemonPid": os.getpid()}
            metrics = Metrics(engine)
            metrics.repairs(len(report.removed), len(report.restored), len(report.not_removed))
            api = Api(engine, self.request_stop, info, metrics.text)
            metrics.know(api.routes)
            limits = Limits(
                self.settings.api_max_connections or default_max_connections(),
                self.settings.api_idle_timeout,
            )
            memory = MemoryRelease(store.release_memory)
            server = UnixHTTPServer(
                self.paths.socket, metrics.wrap(api.handle), api.error, limits, memory.after_request
            )
            if self.settings.metrics_addr is not None:
                self.metrics_listener = MetricsListener(self.settings.metrics_addr, metrics.text)
            plugin_servers = self._plugin_servers(engine, limits, overlay is not None)
            # --restart: what should run does, once the daemon serves (it may take a while).
            threading.Thread(
                target=engine.restart_policies.startup, name="restore-restarts", daemon=True
            ).start()
        except BaseException:
            # A start refused (a bridge of another root, a subnet taken) leaves the root as
            # it found it: no mount of the pins' directory while nothing is pinned.
            try:
                engine.sandboxes.release()
            except Exception:  # the start's own error is the one to raise; this one is logged
                log.exception("cannot release the sandboxes' mount after a failed start")
            raise
        monitor = threading.Thread(target=self._monitor, args=(engine, overlay), name="monitor", daemon=True)
        monitor.start()
        # What the start made (modules, the engine) lives as long as the daemon: out of the
        # collector's sight, a full collection during a request scans only what requests made.
        gc.freeze()
        log.info("dockyardd %d serving %s", os.getpid(), self.paths.socket)
        serving = threading.Thread(target=server.serve_forever, name="api", daemon=True)
        serving.start()
        if self.metrics_listener is not None:
            self.metrics_listener.start()
        for plugin_server in plugin_servers:
            log.info("serving Docker's plugin protocol on %s", plugin_server.path)
            threading.Thread(target=plugin_server.serve_forever, name="docker-plugin", daemon=True).start()
        self._stop.wait()
        if self.metrics_listener is not None:
            self.metrics_listener.close()
        server.shutdown()
        if overlay is not None:
            try:
                overlay.stop()
            except Exception:  # stopping goes on: the resolver, the cgroups, the engine
                log.exception("cannot stop the overlay's watch")
        for plugin_server in plugin_servers:
            plugin_server.shutdown()
            with contextlib.suppress(OSError):
                plugin_server.path.unlink()
        # The resolver, like the shim, lives on only for containers that do.
        if not any(c.running for c in store.containers()):
            if engine.dns is not None:
                try:
                    engine.dns.stop()
                except Exception:  # stopping goes on: the cgroups, the engine, the store
                    log.exception("cannot stop the DNS resolver")
            # The cgroups' parent too: a root with nothing running leaves none.
            engine.cgroups.remove_parent()
        engine.close()
        # Kept while pins are (running containers); else the root holds no mount.
        try:
            engine.sandboxes.release()
        except DockyardError as e:
            log.error("%s", e)
        store.close()
        memory.close()
        kernel.netlink.close()
        if info.get("reset"):
            self._forget_state()

    def _plugin_servers(self, engine, limits, overlay: bool) -> list:  # type: ignore[no-untyped-def]
        """Docker's network and IPAM plugin (issue 17) on its own socket, which Docker finds;
        in a cluster, the overlay driver too, a global-scope plugin on a socket beside it."""
        if not self.settings.docker_plugin:
            return []
        from dockyard.daemon.api.server import UnixHTTPServer
        from dockyard.daemon.plugin import PluginApi, overlay_socket

        path = self.settings.docker_plugin_socket
        path.parent.mkdir(parents=True, exist_ok=True)
        apis = [(path, PluginApi(engine.docker_plugin))]
        if overlay:
            apis.append((overlay_socket(path), PluginApi(engine.docker_plugin, overlay=True)))
        return [UnixHTTPServer(where, api.handle, api.error, limits) for where, api in apis]

    def _forget_state(self) -> None:
        """After `system reset`: only daemon.json (the user's settings) and the log stay."""
        keep = {self.paths.daemon_json.name, self.paths.daemon_log.name, self.paths.daemon_pid.name}
        for entry in self.paths.root.iterdir():
            if entry.name in keep:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()

    def _monitor(self, engine, overlay) -> None:  # type: ignore[no-untyped-def]
        """The cheap check when no command comes: exits the shim could not
        report (for instance after the shim died), releases that failed; a
        resolver that died comes back; another tool may set iptables' FORWARD
        policy to DROP at any time; overlay networks' FDB and neighbour tables
        against the cluster's view."""

        def sync_forward() -> None:
            for change in engine.sync_forward():
                log.info("%s", change)

        def sync_overlay() -> None:
            if overlay is not None:
                for change in overlay.reconcile():
                    log.info("overlay: %s", change)

        checks = (
            ("recording exits and retrying releases", engine.check),
            ("restarting the DNS resolver", engine.ensure_dns),
            ("keeping iptables FORWARD in step", sync_forward),
            ("keeping overlay networks' tables in step", sync_overlay),
        )
        while not self._stop.wait(MONITOR_INTERVAL):
            for what, check in checks:
                self._monitor_step(what, check)

    def _monitor_step(self, what: str, check: Callable[[], object]) -> None:
        """One check of the monitor: whatever it raises is logged, and the monitor
        goes on (the next round tries again)."""
        try:
            check()
        except Exception as e:
            said = f"{type(e).__name__}: {e}"
            if self._last_failure.get(what) == said:
                log.error("monitor: %s failed again: %s", what, said)
            else:
                log.exception("monitor: %s failed", what)
            self._last_failure[what] = said
        else:
            if self._last_failure.pop(what, None) is not None:
                log.info("monitor: %s succeeded again", what)

    def request_stop(self) -> None:
        # Answer the request first, then stop.
        threading.Timer(0.01, self._stop.set).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dockyardd", description="the dockyard engine daemon")
    parser.add_argument(
        "--root", default=None, help="state directory (env DOCKYARD_ROOT; default /var/lib/dockyard)"
    )
    parser.add_argument(
        "--host-netns", default=None, help="work as if this network namespace (name or path) were the host"
    )
    parser.add_argument("--bridge", default=None, help="name of the default bridge (default dockyard0)")
    parser.add_argument(
        "--bip", default=None, help="the default bridge's address with prefix, e.g. 10.10.0.1/24"
    )
    parser.add_argument(
        "--cluster-store",
        default=None,
        metavar="etcd://HOST:PORT[,HOST:PORT...]",
        help="overlay networks' store",
    )
    parser.add_argument(
        "--cluster-advertise", default=None, metavar="ADDRESS|INTERFACE", help="this host's VTEP address"
    )
    parser.add_argument(
        "--cluster-store-opt",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="kv.cacertfile, kv.certfile, kv.keyfile, kv.username, kv.password, kv.prefix",
    )
    parser.add_argument(
        "--log-level",
        choices=logconfig.LEVELS,
        default="info",
        help="what the daemon log says (default info; --debug means debug)",
    )
    parser.add_argument("--debug", action="store_true", help="log at debug level; tracebacks on errors")
    parser.add_argument(
        "--docker-plugin",
        action="store_true",
        help="serve Docker's network and IPAM plugin protocol (daemon.json docker-plugin-socket)",
    )
    args = parser.parse_args(argv)
    logconfig.configure("debug" if args.debug else args.log_level)
    try:
        if os.geteuid() != 0:
            raise DockyardError("dockyardd must run as root (it manages namespaces, links and nftables)")
        root = root_from_env(args.root).resolve()
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        paths = Paths(root)
        _make_private(paths)
        if args.host_netns:
            from dockyard.kernel import netns

            target = netns.resolve(args.host_netns)
            if not target.exists():
                raise DockyardError(
                    f"host network namespace {args.host_netns} not found ({target}): create it "
                    "(ip netns add NAME) or give an existing one to --host-netns"
                )
            netns.enter_for_process(target)
        settings = load_settings(
            root,
            args.host_netns,
            args.bridge,
            args.bip,
            args.cluster_store,
            args.cluster_advertise,
            args.cluster_store_opt,
            args.docker_plugin,
        )
        lock_fd = _lock_root(paths)
        _raise_fd_limit()
        _one_malloc_arena()
        daemon = Daemon(settings)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: daemon._stop.set())
        try:
            daemon.run()
        finally:
            with contextlib.suppress(OSError):
                paths.daemon_pid.unlink()
            os.close(lock_fd)
    except DockyardError as e:
        if args.debug:
            raise
        # The daemon's last word, as a command's error: a client that started it
        # shows this line to its user (clients/daemon_control.py looks for it).
        print(f"dockyardd: {e}", file=sys.stderr)
        return 125
    return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    start = time.monotonic()
    sys.exit(main())
