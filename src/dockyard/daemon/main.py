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
import logging
import os
import resource
import shutil
import signal
import sys
import threading
import time

from dockyard.errors import DockyardError
from dockyard.kernel import files
from dockyard.settings import DaemonSettings, Paths, load_settings, root_from_env

# How often the monitor does the cheap check without a request (seconds);
# DOCKYARD_MONITOR_INTERVAL changes it, for tests that need it out of the way.
MONITOR_INTERVAL = float(os.environ.get("DOCKYARD_MONITOR_INTERVAL") or 2.0)


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


def _log_warnings() -> None:
    """Warnings of the layers below (loggers under "dockyard") go to stderr, the daemon log."""
    log = logging.getLogger("dockyard")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("dockyardd: %(levelname)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.WARNING)
        log.propagate = False


class Daemon:
    def __init__(self, settings: DaemonSettings) -> None:
        self.settings = settings
        self.paths = settings.paths
        self._stop = threading.Event()
        self.server = None
        self.metrics_listener = None

    def run(self) -> None:
        try:
            from dockyard.daemon.api.routes import Api
            from dockyard.daemon.api.server import Limits, UnixHTTPServer, default_max_connections
            from dockyard.daemon.metrics import Metrics, MetricsListener
            from dockyard.engine import Engine
            from dockyard.engine.explain import Explainer
            from dockyard.engine.reconcile import Reconciler
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

        _log_warnings()
        kernel = Kernel(Netlink(), Nft(), PortHolds(), LegacyForward())
        store = Store(self.paths.database)
        engine = Engine(self.settings, store, kernel)
        # Before restore looks at the pins: an older root's move under the new mount.
        engine.sandboxes.prepare()
        try:
            reconciler = Reconciler(engine)
            reconciler.startup()
            report = reconciler.report
            report.removed += engine.images.gc()
            report.removed += Explainer(engine).gc()
            for line in report.removed + report.restored:
                print(f"dockyardd: restore: {line}", file=sys.stderr, flush=True)
            for line in report.not_removed:
                print(f"dockyardd: restore: not removed: {line}", file=sys.stderr, flush=True)
            # For the first `system gc`, often the very command that started this daemon.
            engine.startup_report = report
            engine.shim.connect()
            engine.dns = DnsProcess(self.paths)
            engine.networks_changed()
            info = {"HostNetns": self.settings.host_netns or "", "DaemonPid": os.getpid()}
            metrics = Metrics(engine)
            metrics.repairs(len(report.removed), len(report.restored), len(report.not_removed))
            api = Api(engine, self.request_stop, info, metrics.text)
            metrics.know(api.routes)
            limits = Limits(
                self.settings.api_max_connections or default_max_connections(),
                self.settings.api_idle_timeout,
            )
            self.server = UnixHTTPServer(self.paths.socket, metrics.wrap(api.handle), api.error, limits)
            if self.settings.metrics_addr is not None:
                self.metrics_listener = MetricsListener(self.settings.metrics_addr, metrics.text)
        except BaseException:
            # A start refused (a bridge of another root, a subnet taken) leaves the root as
            # it found it: no mount of the pins' directory while nothing is pinned.
            with contextlib.suppress(Exception):
                engine.sandboxes.release()
            raise
        monitor = threading.Thread(target=self._monitor, args=(engine,), name="monitor", daemon=True)
        monitor.start()
        print(f"dockyardd {os.getpid()} serving {self.paths.socket}", file=sys.stderr, flush=True)
        serving = threading.Thread(target=self.server.serve_forever, name="api", daemon=True)
        serving.start()
        if self.metrics_listener is not None:
            self.metrics_listener.start()
        self._stop.wait()
        if self.metrics_listener is not None:
            self.metrics_listener.close()
        self.server.shutdown()
        # The resolver, like the shim, lives on only for containers that do.
        if not any(c.running for c in store.containers()):
            with contextlib.suppress(Exception):
                engine.dns.stop()
            # The cgroups' parent too: a root with nothing running leaves none.
            engine.cgroups.remove_parent()
        engine.close()
        # Kept while pins are (running containers); else the root holds no mount.
        try:
            engine.sandboxes.release()
        except DockyardError as e:
            print(f"dockyardd: {e}", file=sys.stderr, flush=True)
        store.close()
        kernel.netlink.close()
        if info.get("reset"):
            self._forget_state()

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

    def _monitor(self, engine) -> None:  # type: ignore[no-untyped-def]
        """The cheap check when no command comes: exits the shim could not
        report (for instance after the shim died), releases that failed."""
        while not self._stop.wait(MONITOR_INTERVAL):
            with contextlib.suppress(Exception):
                engine.check()
            # A resolver that died comes back.
            with contextlib.suppress(Exception):
                engine.ensure_dns()
            # Another tool may set iptables' FORWARD policy to DROP at any time.
            with contextlib.suppress(Exception):
                for change in engine.sync_forward():
                    print(f"dockyardd: {change}", file=sys.stderr, flush=True)

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
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
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
        settings = load_settings(root, args.host_netns, args.bridge, args.bip)
        lock_fd = _lock_root(paths)
        _raise_fd_limit()
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
        print(f"dockyardd: {e}", file=sys.stderr)
        return 125
    return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    start = time.monotonic()
    sys.exit(main())
