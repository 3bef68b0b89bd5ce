"""The Engine API's streams: attach, exec, logs, resize (Docker's attach protocol).

A client asks for `Connection: Upgrade` / `Upgrade: tcp` and is answered
`101 UPGRADED` (200 without the upgrade, as Docker does); from there the
connection carries the process's stdio: Docker's multiplexed stream
without a TTY (`application/vnd.docker.multiplexed-stream`: frames with an
8-byte header, stream 1 stdout, 2 stderr), the raw bytes with one
(`application/vnd.docker.raw-stream`). The hijacked socket goes to the
shim (engine/containers/attach.py, kernel/relay.py), which serves it until
the process ends. Logs are sent the same way, framed or raw by the
container's Tty, on a connection that closes after them.

The dockyard CLI's foreground exec passes its own descriptors with the
request (SCM_RIGHTS) and reads `{"ExitCode": N}` as the body; that path is
kept.

Parses and formats only; the use cases are the engine's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from dockyard.daemon.api import create_fields
from dockyard.daemon.api.http import Request, Response
from dockyard.daemon.api.json_types import flag, strings, text
from dockyard.engine import Engine
from dockyard.engine.containers.attach import Client, check_detach_keys
from dockyard.engine.containers.execs import ExecInstance, ExecOptions
from dockyard.engine.containers.logs import LogQuery
from dockyard.errors import Conflict, DockyardError, InvalidArgument

MUX = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"
SEND_TIMEOUT = 60.0  # seconds a logs client may take nothing before it is dropped
FLUSH_AT = 64 * 1024
# POST /containers/{id}/exec's fields, all read; Detach is the docker CLI's `exec -d`, which
# takes effect at the exec's start (its body says it again), as in Docker; Container is the
# old API's (docker-py sends it), which must name the path's container.
EXEC_FIELDS = (
    "Cmd", "Env", "WorkingDir", "User", "Privileged", "Tty", "ConsoleSize", "AttachStdin",
    "AttachStdout", "AttachStderr", "DetachKeys", "Detach", "Container",
)  # fmt: skip
EXEC_START_FIELDS = ("Detach", "Tty", "ConsoleSize")


def _frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def _flag(req: Request, name: str, default: bool = False) -> bool:
    value = req.query.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise InvalidArgument(f"invalid value {value!r} for {name}: expected 1/true or 0/false")


def unix_ns(text: str, name: str) -> int:
    """Docker's since/until: seconds since the epoch, with an optional fraction; 0: none."""
    seconds, _, fraction = text.partition(".")
    if not seconds.lstrip("-").isdigit() or (fraction and not fraction.isdigit()):
        raise InvalidArgument(f"invalid value {text!r} for {name}: expected a UNIX timestamp")
    return int(seconds) * 1_000_000_000 + int(fraction[:9].ljust(9, "0") or 0)


Hijack = Callable[[socket.socket, bytes, Callable[[], None]], None]


def _upgrade(req: Request, raw: bool, hijack: Hijack) -> Response:
    """Docker's answer to a stream request: 101 when the client asked to upgrade, else 200."""
    content_type = RAW if raw else MUX
    if req.headers.get("upgrade", "").lower() == "tcp":
        return Response(
            101, content_type=content_type, headers={"Connection": "Upgrade", "Upgrade": "tcp"}, hijack=hijack
        )
    return Response(200, content_type=content_type, hijack=hijack)


def _own(sock: socket.socket) -> socket.socket:
    """A socket of our own on the hijacked connection (the server closes its one)."""
    dup = socket.socket(fileno=os.dup(sock.fileno()))
    dup.setblocking(True)
    return dup


# A client may lose what follows the head it reads: docker-py parses the head through a
# buffered reader and then reads the raw socket, so output arriving with the head stays in
# that buffer, unseen. Docker hides the race behind an exec's slow start; ours starts in
# milliseconds, so an exec starts once the client has taken the head (a unix socket's
# SIOCOUTQ counts what the peer has not read yet), or after HEAD_READ_BOUND seconds.
SIOCOUTQ = 0x5411
HEAD_READ_BOUND = 5.0


def _head_taken(sock: socket.socket) -> None:
    if sock.family != socket.AF_UNIX:
        return
    deadline = time.monotonic() + HEAD_READ_BOUND
    with contextlib.suppress(OSError):
        while struct.unpack("i", fcntl.ioctl(sock.fileno(), SIOCOUTQ, b"\0\0\0\0"))[0]:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.001)


def _gone(sock: socket.socket) -> bool:
    """Whether the client has closed its connection (what it may have sent is ignored)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(65536, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class AttachRoutes:
    def __init__(self, engine: Engine) -> None:
        self.e = engine

    def register(self, r: Callable[[str, str, Callable[..., Response]], None]) -> None:
        r("POST", r"/containers/(?P<ref>[^/]+)/attach", self.attach)
        r("POST", r"/containers/(?P<ref>[^/]+)/resize", self.resize)
        r("GET", r"/containers/(?P<ref>[^/]+)/logs", self.logs)
        r("POST", r"/containers/(?P<ref>[^/]+)/exec", self.exec_create)
        r("POST", r"/exec/(?P<ref>[^/]+)/start", self.exec_start)
        r("POST", r"/exec/(?P<ref>[^/]+)/resize", self.exec_resize)
        r("GET", r"/exec/(?P<ref>[^/]+)/json", self.exec_inspect)

    # -- containers ------------------------------------------------------------

    def attach(self, req: Request, ref: str) -> Response:
        c = self.e.get(ref)
        keys = check_detach_keys(req.query.get("detachKeys", ""))
        stream, logs = _flag(req, "stream"), _flag(req, "logs")
        stdin, stdout, stderr = _flag(req, "stdin"), _flag(req, "stdout"), _flag(req, "stderr")
        if stream:
            self.e.attaching.check(c)
        tty = c.config.tty

        def hijack(sock: socket.socket, ahead: bytes, head: Callable[[], None]) -> None:
            if not stream:  # the log, then the end
                head()
                _head_taken(sock)
                sock.settimeout(SEND_TIMEOUT)
                self._send_logs(c, LogQuery(stdout=stdout, stderr=stderr), sock, tty)
                return
            client = Client(_own(sock), stdin, stdout, stderr, logs, keys, ahead)
            # The answer goes out once the client is in place: the docker CLI starts the
            # container as soon as it has it, and must not miss its first output.
            self.e.attaching.attach(c.id, client, head)

        return _upgrade(req, tty, hijack)

    def resize(self, req: Request, ref: str) -> Response:
        c = self.e.get(ref)
        if not c.running:
            raise Conflict(f"container {c.id} is not running")
        self.e.attaching.resize(c.id, *self._size(req))
        return Response(200, b"", "text/plain")

    @staticmethod
    def _size(req: Request) -> tuple[int, int]:
        try:
            return int(req.query.get("h") or 0), int(req.query.get("w") or 0)
        except ValueError:
            raise InvalidArgument("invalid terminal size: h and w must be numbers") from None

    def logs(self, req: Request, ref: str) -> Response:
        c = self.e.get(ref)
        tail_text = req.query.get("tail", "all") or "all"
        if tail_text != "all" and not tail_text.lstrip("-").isdigit():
            raise InvalidArgument(f"invalid value {tail_text!r} for tail: expected a number or 'all'")
        tail = None if tail_text == "all" or int(tail_text) < 0 else int(tail_text)
        query = LogQuery(
            stdout=_flag(req, "stdout"),
            stderr=_flag(req, "stderr"),
            follow=_flag(req, "follow"),
            tail=tail,
            since_ns=unix_ns(req.query.get("since") or "0", "since"),
            until_ns=unix_ns(req.query.get("until") or "0", "until"),
            timestamps=_flag(req, "timestamps"),
            details=_flag(req, "details"),
        )
        if not query.stdout and not query.stderr:
            raise InvalidArgument("Bad parameters: you must choose at least one stream")
        tty = c.config.tty

        def hijack(sock: socket.socket, _ahead: bytes, head: Callable[[], None]) -> None:
            head()
            sock.settimeout(SEND_TIMEOUT)
            self._send_logs(c, query, sock, tty)

        return Response(200, content_type=RAW if tty else MUX, hijack=hijack)

    def _send_logs(self, c: Any, query: LogQuery, sock: socket.socket, tty: bool) -> None:
        buf = bytearray()

        def write(stream: int, data: bytes) -> None:
            buf.extend(data if tty else _frame(stream, data))
            if len(buf) >= FLUSH_AT:
                flush()

        def flush() -> None:
            if buf:
                sock.sendall(buf)
                buf.clear()

        self.e.logs.read(c, query, write, lambda: _gone(sock), flush)
        flush()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    # -- exec --------------------------------------------------------------------

    def exec_create(self, req: Request, ref: str) -> Response:
        body = req.json()
        if not isinstance(body, dict):
            raise InvalidArgument("the request body must be a JSON object")
        create_fields.refuse("", body, EXEC_FIELDS, {})
        flag(body.get("Detach"), "Detach")
        env = tuple(strings(body.get("Env"), "Env"))
        for item in env:
            if "=" not in item or item.startswith("="):
                raise InvalidArgument(f"invalid environment variable {item!r}: expected KEY=VALUE")
        options = ExecOptions(
            cmd=tuple(strings(body.get("Cmd"), "Cmd", one_string=True)),
            env=env,
            workdir=text(body.get("WorkingDir"), "WorkingDir"),
            user=text(body.get("User"), "User"),
            privileged=flag(body.get("Privileged"), "Privileged"),
            tty=flag(body.get("Tty"), "Tty"),
            stdin=flag(body.get("AttachStdin"), "AttachStdin"),
            stdout=flag(body.get("AttachStdout"), "AttachStdout", True),
            stderr=flag(body.get("AttachStderr"), "AttachStderr", True),
            detach_keys=check_detach_keys(text(body.get("DetachKeys"), "DetachKeys")),
            console_size=create_fields.console_size(body.get("ConsoleSize"), "ConsoleSize"),
        )
        if options.user:
            from dockyard.policy import security

            security.parse_user(options.user)
        c = self.e.get(ref)
        named = text(body.get("Container"), "Container")
        if named and self.e.get(named).id != c.id:
            raise InvalidArgument(f"Container {named!r} is not the container of the path, {ref!r}")
        inst = self.e.execs.create(c, options.cmd, options=options)
        return Response(201, {"Id": inst.id})

    def exec_start(self, req: Request, ref: str) -> Response:
        fds = req.take_fds()
        if fds:  # the dockyard CLI: its own descriptors, the exit code as the body
            try:
                self.e.exec_start(ref, fds)
            finally:
                for fd in fds:
                    os.close(fd)
            return Response(200, deferred=lambda: {"ExitCode": self.e.exec_wait(ref)})
        body = req.json() or {}
        if not isinstance(body, dict):
            raise InvalidArgument("the request body must be a JSON object")
        create_fields.refuse("", body, EXEC_START_FIELDS, {})
        inst = self.e.execs.get(ref)
        size = body.get("ConsoleSize")
        size = None if size is None else create_fields.console_size(size, "ConsoleSize")
        if flag(body.get("Tty"), "Tty", inst.opts.tty) != inst.opts.tty:
            raise InvalidArgument("Tty at exec start differs from the exec's own")
        if inst.started:
            raise Conflict(f"exec instance {inst.id} has already been started")
        c = self.e.get(inst.container_id)
        if not c.running:
            raise Conflict(f"container {c.id} is not running")
        if size is not None:  # the size at start wins over the one at create
            inst.options = dataclasses.replace(inst.opts, console_size=size)
        opts = inst.opts
        if flag(body.get("Detach"), "Detach"):
            self.e.exec_start(ref, None, [])
            return Response(200, b"", "text/plain")

        def hijack(sock: socket.socket, ahead: bytes, head: Callable[[], None]) -> None:
            head()
            _head_taken(sock)
            client = Client(_own(sock), opts.stdin, opts.stdout, opts.stderr, False, opts.detach_keys, ahead)
            out = _own(sock)
            try:
                self.e.exec_start(ref, None, [client])
            except DockyardError as e:
                # Docker's way: the failure is written to the stream, its exit code kept.
                text = f"{e.message}\r\n".encode()
                with contextlib.suppress(OSError):
                    out.sendall(text if opts.tty else _frame(1, text))
            finally:
                out.close()

        return _upgrade(req, opts.tty, hijack)

    def exec_resize(self, req: Request, ref: str) -> Response:
        inst = self.e.execs.get(ref)
        if not inst.running:
            raise Conflict(f"exec {inst.id} is not running")
        from dockyard.engine.containers.execs import exec_key

        self.e.attaching.resize(exec_key(inst.container_id, inst.id), *self._size(req))
        return Response(200, b"", "text/plain")

    def exec_inspect(self, req: Request, ref: str) -> Response:
        inst = self.e.execs.settled(self.e.execs.get(ref))
        return Response(200, exec_json(inst))


def exec_json(inst: ExecInstance) -> dict[str, Any]:
    opts = inst.opts
    return {
        "ID": inst.id,
        "Running": inst.running,
        "ExitCode": inst.exit_code,
        "ProcessConfig": {
            "tty": opts.tty,
            "entrypoint": inst.cmd[0] if inst.cmd else "",
            "arguments": list(inst.cmd[1:]),
            "privileged": opts.privileged,
            "user": opts.user,
        },
        "OpenStdin": opts.stdin,
        "OpenStderr": opts.stderr,
        "OpenStdout": opts.stdout,
        "CanRemove": False,
        "ContainerID": inst.container_id,
        "DetachKeys": opts.detach_keys,
        "Pid": inst.pid,
    }
