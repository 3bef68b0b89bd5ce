"""A container's log in Docker's json-file format: written by the shim, read for `logs`.

One JSON object per line, as Docker's json-file driver writes it:
`{"log": "hello\\n", "stream": "stdout", "time": "2024-01-02T03:04:05.123456789Z"}`.
Each entry is one line of the container's output, its newline kept; a line
longer than MAX_LINE, or the rest of the output when the stream ends
without a newline, is an entry of its own without one (Docker's partial
messages). Bytes that are not UTF-8 are kept as lone surrogates
(surrogateescape), so the reader gives back exactly what was written.

Why json-file: Docker's clients decide from `HostConfig.LogConfig.Type`
whether logs can be read (docker-py's non-detached `run` reads them only
for json-file), and every entry needs its stream and time for `logs`
(stdout and stderr apart, `--since`, `--until`, `-t`).

A log written by a dockyard before this format holds the raw output: a line
that is not such an object is read as stdout, stamped with the file's
modification time. Stdlib only (the shim imports it).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

MAX_LINE = 16 * 1024  # Docker's: a longer line is split into partial entries
STREAMS = ("stdin", "stdout", "stderr")  # index = Docker's stream number


def timestamp(ns: int) -> str:
    """RFC 3339 with nanoseconds, in UTC (Docker's `time` and `logs -t`)."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def parse_timestamp(text: str) -> int:
    """Nanoseconds since the epoch of a `time` this module wrote (or any RFC 3339 UTC time)."""
    import calendar

    main, _, rest = text.rstrip("Z").partition(".")
    seconds = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    digits = "".join(ch for ch in rest if ch.isdigit())[:9]
    return seconds * 1_000_000_000 + int(digits.ljust(9, "0") or 0)


@dataclass(frozen=True)
class Entry:
    stream: int  # 1 stdout, 2 stderr
    data: bytes
    time_ns: int


def encode(entry: Entry) -> bytes:
    text = entry.data.decode("utf-8", "surrogateescape")
    record = {"log": text, "stream": STREAMS[entry.stream], "time": timestamp(entry.time_ns)}
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes, fallback_ns: int) -> Entry:
    """One line of the file, without its newline."""
    try:
        record = json.loads(line)
        text = record["log"]
        stream = STREAMS.index(record["stream"])
        stamp = parse_timestamp(record["time"])
        if not isinstance(text, str) or stream == 0:
            raise ValueError
        return Entry(stream, text.encode("utf-8", "surrogateescape"), stamp)
    except (ValueError, KeyError, TypeError, AttributeError):
        # An older dockyard's raw log: its lines are stdout.
        return Entry(1, line + b"\n", fallback_ns)


class Writer:
    """Splits one container's output into entries and appends them to the log (the shim's)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.partial: dict[int, bytes] = {1: b"", 2: b""}

    def write(self, stream: int, data: bytes) -> None:
        buf = self.partial[stream] + data
        out = []
        now = time.time_ns()
        while buf:
            cut = buf.find(b"\n", 0, MAX_LINE)
            if cut < 0:
                if len(buf) < MAX_LINE:
                    break
                cut = MAX_LINE - 1
            out.append(encode(Entry(stream, buf[: cut + 1], now)))
            buf = buf[cut + 1 :]
        self.partial[stream] = buf
        self._append(b"".join(out))

    def flush(self) -> None:
        """The output ended: what is left of a line becomes an entry of its own."""
        now = time.time_ns()
        rest = [encode(Entry(s, data, now)) for s, data in sorted(self.partial.items()) if data]
        self.partial = {1: b"", 2: b""}
        self._append(b"".join(rest))

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except OSError:
                return  # a full disk loses log lines, never the container's output to attached clients

    def close(self) -> None:
        self.flush()
        os.close(self.fd)
        self.fd = -1


class Reader:
    """Entries of a log file from an offset on; follows a file that grows."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0
        self.rest = b""

    def read(self) -> Iterator[Entry]:
        """The whole entries written since the last read."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            st = os.fstat(fd)
            fallback = st.st_mtime_ns
            if st.st_size < self.offset:  # replaced (the container was recreated): from the start
                self.offset, self.rest = 0, b""
            while True:
                chunk = os.pread(fd, 1 << 20, self.offset)
                if not chunk:
                    break
                self.offset += len(chunk)
                lines = (self.rest + chunk).split(b"\n")
                self.rest = lines.pop()
                for line in lines:
                    yield decode(line, fallback)
        finally:
            os.close(fd)

    def read_end(self) -> Iterator[Entry]:
        """What read() gives, then a last line without its newline (an older raw log's end)."""
        yield from self.read()
        if self.rest:
            rest, self.rest = self.rest, b""
            yield Entry(1, rest, time.time_ns())
