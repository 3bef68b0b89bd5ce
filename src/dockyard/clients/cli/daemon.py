"""dockyard daemon run|start|stop|status, and dockyard system gc."""

from __future__ import annotations

import argparse
import os
import sys

from dockyard.errors import InvalidArgument

TYPE_CHECKING = False  # typing is not imported at run time: clients start faster
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any) -> None:
    d = sub.add_parser("daemon", help="manage dockyardd, the engine daemon")
    dsub = d.add_subparsers(dest="daemon_command", metavar="COMMAND", parser_class=type(d))
    d.set_defaults(func=lambda client, args: (d.print_help(), 0)[1])
    dsub.add_parser("run", help="run the daemon in the foreground (for systemd)").set_defaults(func=cmd_run)
    dsub.add_parser("start", help="start the daemon in the background").set_defaults(func=cmd_start)
    dsub.add_parser("stop", help="stop the daemon (containers keep running)").set_defaults(func=cmd_stop)
    dsub.add_parser("status", help="is the daemon running?").set_defaults(func=cmd_status)

    s = sub.add_parser("system", help="manage dockyard's state")
    ssub = s.add_subparsers(dest="system_command", metavar="COMMAND", parser_class=type(s))
    s.set_defaults(func=lambda client, args: (s.print_help(), 0)[1])
    ssub.add_parser("gc", help="remove what no record owns; print what was removed").set_defaults(func=cmd_gc)
    reset = ssub.add_parser("reset", help="remove every container, network and kernel object of this root")
    reset.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    reset.set_defaults(func=cmd_reset)


def cmd_run(client: Any, args: argparse.Namespace) -> int:
    argv = client.daemon_args()
    os.execv(argv[0], argv)
    return 0  # not reached


def cmd_start(client: Any, args: argparse.Namespace) -> int:
    state, why = client.daemon_state()
    if state != "stopped":
        busy = f"; it does not answer now: {why}" if state != "answers" else ""
        print(f"dockyardd is already running (pid {_pid(client)}) for {client.paths.root}{busy}")
        return 0
    client.start_daemon()
    print(f"dockyardd started (pid {client.daemon_pid()}) for {client.paths.root}")
    return 0


def cmd_stop(client: Any, args: argparse.Namespace) -> int:
    if client.stop_daemon():
        print("dockyardd stopped")
    else:
        print("dockyardd is not running")
    return 0


def cmd_status(client: Any, args: argparse.Namespace) -> int:
    """Running means holding the root's lock with a live process, answering or not."""
    state, why = client.daemon_state()
    if state == "answers":
        print(f"dockyardd is running (pid {_pid(client)}) for {client.paths.root}")
        return 0
    if state in ("busy", "silent"):
        # Busy (every connection it may open is serving) or silent: running all the same.
        where = f"(pid {_pid(client)}) for {client.paths.root}"
        print(f"dockyardd is running {where}, but does not answer now: {why}")
        return 0
    print(f"dockyardd is not running for {client.paths.root}", file=sys.stderr)
    return 1


def _pid(client: Any) -> int | None:
    return client.lock_holder() or client.daemon_pid()


def cmd_gc(client: Any, args: argparse.Namespace) -> int:
    report = client.gc_report()
    for line in report["Removed"]:
        print(line)
    if not report["Removed"]:
        print("nothing to remove")
    for line in report["Restored"]:
        print(line)
    for line in report["NotRemoved"]:
        print(f"not removed: {line}")
    return 0


def cmd_reset(client: Any, args: argparse.Namespace) -> int:
    if not args.force:
        if not sys.stdin.isatty():
            raise InvalidArgument("system reset removes every container and network: confirm with --force")
        prompt = f"This removes every container and network of {client.paths.root}. Are you sure? [y/N] "
        answer = input(prompt)
        if answer.strip().lower() not in ("y", "yes"):
            return 0
    result = client.request("POST", "/system/reset")
    for line in result.get("Removed") or []:
        print(line)
    client.close()
    client.stop_daemon_wait()
    return 0
