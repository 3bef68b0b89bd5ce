"""A process's stdio held by the shim: its log, and the clients attached to it.

Why the shim: the process's pipes (or its pty's master) must have a reader
whatever the daemon does, or the process blocks on a full pipe or dies of
SIGPIPE when the daemon restarts. So the shim, the process's parent,
holds them: it appends the output to the container's json-file log
(logfile.py) and copies it to every attached client, and copies what
attached clients send to the process's stdin.

An attached client is the socket of a hijacked API connection (Docker's
attach protocol), handed over by the daemon with SCM_RIGHTS after it sent
`101 UPGRADED`: the shim speaks to the client directly, so a daemon
restart does not cut a session. Without a TTY, output is Docker's
multiplexed stream (an 8-byte header per frame: stream, 3 zero bytes, the
length, big-endian); with one, the raw bytes. A client that closes its
writing side (the docker CLI after stdin's end) keeps receiving; with
StdinOnce the process's stdin is closed then. On a TTY, Docker's detach
keys (ctrl-p ctrl-q unless the client names others) end that client's
session without touching the process.

Everything is non-blocking in the shim's one selector: a client that
reads slowly holds back the process's output once HIGH bytes wait for it
(Docker's behaviour: the attach stream is not lossy), and stdin waiting
for a process that does not read it stops the reading of clients. When the
process has exited, what it wrote is read to the end (the output is whole
before its exit is reported), and each client's socket is closed once its
queue is sent (at most LINGER seconds later). Stdlib only.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import selectors
import socket
import struct
import termios
import time
from collections.abc import Callable

from dockyard.kernel import logfile

HIGH = 1 << 20  # bytes queued for one client (or for stdin) before reading stops
LINGER = 30.0  # seconds a client may take to read the end of the output
READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE
DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p, ctrl-q


class Watches:
    """One registration per descriptor in the shim's selector, its events changed in place."""

    def __init__(self, sel: selectors.BaseSelector) -> None:
        self.sel = sel
        self.events: dict[int, int] = {}

    def set(self, fd: int, events: int, handler: Callable[[int], None]) -> None:
        current = self.events.get(fd, 0)
        if events == current:
            return
        if not events:
            self.sel.unregister(fd)
            del self.events[fd]
        elif not current:
            self.sel.register(fd, events, handler)
            self.events[fd] = events
        else:
            self.sel.modify(fd, events, handler)
            self.events[fd] = events

    def drop(self, fd: int) -> None:
        if self.events.pop(fd, 0):
            self.sel.unregister(fd)


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


class Attachment:
    def __init__(
        self, sock: socket.socket, stdin: bool, stdout: bool, stderr: bool, raw: bool, keys: bytes
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.stdin, self.raw = stdin, raw
        self.streams = {1} if stdout else set()
        if stderr:
            self.streams.add(2)
        self.keys = keys
        self.matched = 0  # bytes of the detach keys seen so far
        self.out = bytearray()
        self.reading = True
        self.closing_at = 0.0  # when set: closes once `out` is sent, or at this time
        self.closed = False

    def queue(self, stream: int, data: bytes) -> None:
        if stream in self.streams and data:
            self.out += data if self.raw else frame(stream, data)

    def escape(self, data: bytes) -> tuple[bytes, bool]:
        """Stdin without the detach keys, and whether they were typed (docker's escapeProxy)."""
        if not self.keys:
            return data, False
        out = bytearray()
        for byte in data:
            if byte == self.keys[self.matched]:
                self.matched += 1
                if self.matched == len(self.keys):
                    self.matched = 0
                    return bytes(out), True
                continue
            out += self.keys[: self.matched]
            self.matched = 0
            if byte == self.keys[0]:
                self.matched = 1
            else:
                out.append(byte)
        return bytes(out), False


class Relay:
    """The stdio of one process (a container's or an exec's) and its attached clients."""

    def __init__(
        self,
        watches: Watches,
        tty: bool,
        stdin_fd: int,
        outputs: dict[int, int],
        log: logfile.Writer | None,
        stdin_once: bool,
    ) -> None:
        self.w = watches
        self.tty = tty
        self.stdin_fd = stdin_fd  # -1: none (the process has /dev/null)
        self.outputs = dict(outputs)  # fd -> stream number (a pty's master: 1)
        self.log = log
        self.stdin_once = stdin_once
        self.stdin_buf = bytearray()
        self.stdin_closing = False
        self.attachments: list[Attachment] = []
        self.paused = False
        self.ended = False
        self.log_path = ""  # where `logs` replays come from (the shim's to set)
        self.master = stdin_fd if tty else -1
        for fd in {*self.outputs, self.stdin_fd} - {-1}:
            os.set_blocking(fd, False)
            self._update(fd)

    # -- the process's side --------------------------------------------------

    def _update(self, fd: int) -> None:
        events = 0
        if fd in self.outputs and not self.paused:
            events |= READ
        if fd == self.stdin_fd and self.stdin_buf:
            events |= WRITE
        self.w.set(fd, events, functools.partial(self._on_process, fd))

    def _on_process(self, fd: int, mask: int) -> None:
        if mask & WRITE:
            self._write_stdin()
        if mask & READ and fd in self.outputs:
            self._read_output(fd)

    def _read_output(self, fd: int) -> bool:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return False
        except OSError:  # EIO: a pty whose every slave is closed
            data = b""
        if not data:
            self._close_output(fd)
            return False
        stream = self.outputs[fd]
        if self.log is not None:
            self.log.write(stream, data)
        for a in list(self.attachments):  # a failed send drops one
            a.queue(stream, data)
            self._flush(a)
        if any(len(a.out) > HIGH for a in self.attachments) and not self.paused:
            self.paused = True
            for out_fd in self.outputs:
                self._update(out_fd)
        return True

    def _close_output(self, fd: int) -> None:
        del self.outputs[fd]
        if fd == self.stdin_fd:  # a pty: its master is stdin too
            self.stdin_fd = -1
        self.w.drop(fd)
        os.close(fd)

    def _write_stdin(self) -> None:
        if self.stdin_fd < 0:
            self.stdin_buf.clear()
            return
        try:
            n = os.write(self.stdin_fd, self.stdin_buf)
            del self.stdin_buf[:n]
        except BlockingIOError:
            pass
        except OSError:  # the process closed its stdin: what comes is dropped, as with a pipe
            self.stdin_buf.clear()
        if not self.stdin_buf:
            if self.stdin_closing:
                self._close_stdin()
                return
            for a in list(self.attachments):
                self._update_client(a)
        if self.stdin_fd >= 0:
            self._update(self.stdin_fd)

    def _close_stdin(self) -> None:
        fd, self.stdin_fd = self.stdin_fd, -1
        if fd >= 0 and fd not in self.outputs:
            self.w.drop(fd)
            os.close(fd)

    def resize(self, height: int, width: int) -> None:
        if self.master >= 0 and self.master in self.outputs:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    # -- the clients' side ---------------------------------------------------

    def attach(
        self,
        sock: socket.socket,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        keys: bytes | None,
        pending: bytes = b"",
        replay: list[logfile.Entry] | None = None,
    ) -> None:
        a = Attachment(
            sock,
            stdin and self.stdin_fd >= 0,
            stdout,
            stderr,
            self.tty,
            (DEFAULT_DETACH_KEYS if keys is None else keys) if self.tty else b"",
        )
        for entry in replay or ():
            a.queue(entry.stream, entry.data)
        self.attachments.append(a)
        if pending:
            self._from_client(a, pending)
        if self.ended:
            a.closing_at = time.monotonic() + LINGER
        self._flush(a)

    def _update_client(self, a: Attachment) -> None:
        if a.closed:
            return
        events = 0
        if a.reading and len(self.stdin_buf) <= HIGH:
            events |= READ
        if a.out:
            events |= WRITE
        self.w.set(a.fd, events, functools.partial(self._on_client, a))

    def _on_client(self, a: Attachment, mask: int) -> None:
        if mask & READ:
            try:
                data = a.sock.recv(65536)
            except BlockingIOError:
                data = None
            except OSError:
                self._drop(a)
                return
            if data == b"":
                self._client_eof(a)
            elif data:
                self._from_client(a, data)
                if len(self.stdin_buf) > HIGH:  # the process reads slowly: so do its clients
                    for other in list(self.attachments):
                        self._update_client(other)
        if not a.closed and mask & WRITE:
            self._flush(a)

    def _from_client(self, a: Attachment, data: bytes) -> None:
        if not a.stdin:
            return  # a client not attached to stdin sends nothing that matters
        data, detach = a.escape(data)
        if data and self.stdin_fd >= 0 and not self.stdin_closing:
            self.stdin_buf += data
            self._write_stdin()
        if detach:
            self._drop(a)

    def _client_eof(self, a: Attachment) -> None:
        # A half-close (the docker CLI closes its writing side at its stdin's end,
        # or at once without stdin) or a client gone: only a send can tell.
        a.reading = False
        if not a.stdin:
            self._update_client(a)
            return
        if self.stdin_once and not self.tty:
            self.stdin_closing = True
            if not self.stdin_buf:
                self._close_stdin()
        self._update_client(a)

    def _flush(self, a: Attachment) -> None:
        if a.closed:
            return
        if a.out:
            try:
                n = a.sock.send(a.out)
                del a.out[:n]
            except BlockingIOError:
                pass
            except OSError:
                self._drop(a)
                return
        if not a.out and a.closing_at:
            self._drop(a, graceful=True)
            return
        self._update_client(a)
        if self.paused and all(len(x.out) <= HIGH // 2 for x in self.attachments):
            self.paused = False
            for fd in self.outputs:
                self._update(fd)

    def _drop(self, a: Attachment, graceful: bool = False) -> None:
        if a.closed:
            return
        a.closed = True
        self.w.drop(a.fd)
        if graceful:
            with contextlib.suppress(OSError):
                a.sock.shutdown(socket.SHUT_WR)
        a.sock.close()
        self.attachments.remove(a)
        if a.stdin and self.stdin_once and not self.tty and not self.ended:
            self.stdin_closing = True
            if not self.stdin_buf:
                self._close_stdin()
        if self.paused and all(len(x.out) <= HIGH // 2 for x in self.attachments):
            self.paused = False
            for fd in self.outputs:
                self._update(fd)

    # -- the end -------------------------------------------------------------

    def drain(self) -> None:
        """The process has exited: read what it wrote to the end (or to what is there now)."""
        self.paused = False
        for fd in list(self.outputs):
            while fd in self.outputs and self._read_output(fd):
                pass
        if self.log is not None:
            self.log.flush()

    def end(self) -> None:
        """After drain and the exit's report: no more input, each client closes once served."""
        self.ended = True
        for fd in list(self.outputs):
            self._close_output(fd)
        self.stdin_buf.clear()
        self._close_stdin()
        if self.log is not None:
            with contextlib.suppress(OSError):
                self.log.close()
            self.log = None
        deadline = time.monotonic() + LINGER
        for a in list(self.attachments):
            a.closing_at = deadline
            a.reading = False
            self._flush(a)

    def expire(self, now: float) -> None:
        for a in list(self.attachments):
            if a.closing_at and now >= a.closing_at:
                self._drop(a)

    @property
    def done(self) -> bool:
        return self.ended and not self.attachments


def detach_keys(text: str) -> bytes:
    """Docker's --detach-keys: `ctrl-<letter>` or single characters, comma-separated."""
    out = bytearray()
    for part in text.split(","):
        part = part.strip()
        if len(part) == 1:
            out.append(ord(part))
        elif part.lower().startswith("ctrl-") and len(part) == 6:
            ch = part[5].lower()
            codes = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
            elif ch in codes:
                out.append(codes[ch])
            else:
                raise ValueError(f"invalid detach keys {text!r}: unknown key {part!r}")
        else:
            raise ValueError(f"invalid detach keys {text!r}: unknown key {part!r}")
    return bytes(out)
