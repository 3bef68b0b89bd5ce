"""The container log's json-file format and the relay's pure parts: framing, detach keys.

The log must give back exactly the bytes a container wrote (non UTF-8
included), one entry per line with its stream and time, read by Docker's
tools as json-file; the attach stream's frames are Docker's 8-byte headers.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.engine.containers.logs import LogQuery
from dockyard.kernel import logfile
from dockyard.kernel.relay import Attachment, detach_keys, frame


def _write(path: Path, chunks: list[tuple[int, bytes]]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    w = logfile.Writer(fd)
    for stream, data in chunks:
        w.write(stream, data)
    w.close()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, 2]), st.binary(max_size=300)), max_size=20))
def test_what_is_written_is_read_back_byte_for_byte_per_stream(
    tmp_path_factory: pytest.TempPathFactory, chunks: list[tuple[int, bytes]]
) -> None:
    path = tmp_path_factory.mktemp("log") / "container.log"
    _write(path, chunks)
    entries = list(logfile.Reader(str(path)).read_end())
    for stream in (1, 2):
        assert b"".join(e.data for e in entries if e.stream == stream) == b"".join(
            d for s, d in chunks if s == stream
        )
    # One entry per line: only an entry's end may hold a newline.
    assert all(b"\n" not in e.data[:-1] for e in entries)
    # Each line of the file is a json-file entry Docker's tools read.
    for line in path.read_text().splitlines():
        record = json.loads(line)
        assert set(record) == {"log", "stream", "time"} and record["stream"] in ("stdout", "stderr")


def test_a_long_line_is_split_into_partial_entries(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    _write(path, [(1, b"x" * (logfile.MAX_LINE * 2 + 10) + b"\n")])
    sizes = [len(e.data) for e in logfile.Reader(str(path)).read()]
    assert sizes == [logfile.MAX_LINE, logfile.MAX_LINE, 11]


def test_a_raw_log_of_an_older_dockyard_reads_as_stdout(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    path.write_bytes(b"hello\n{not json\nend")
    entries = list(logfile.Reader(str(path)).read_end())
    assert [(e.stream, e.data) for e in entries] == [(1, b"hello\n"), (1, b"{not json\n"), (1, b"end")]


def test_timestamps_round_trip_with_nanoseconds() -> None:
    ns = 1_700_000_000_123_456_789
    text = logfile.timestamp(ns)
    assert text == "2023-11-14T22:13:20.123456789Z"
    assert logfile.parse_timestamp(text) == ns


def test_a_query_selects_streams_and_times_and_stamps_lines() -> None:
    entry = logfile.Entry(2, b"oops\n", 1_700_000_000_000_000_000)
    assert not LogQuery(stderr=False).wants(entry)
    assert LogQuery(stdout=False).wants(entry)
    assert not LogQuery(since_ns=entry.time_ns + 1).wants(entry)
    assert not LogQuery(until_ns=entry.time_ns - 1).wants(entry)
    assert LogQuery(timestamps=True).render(entry) == b"2023-11-14T22:13:20.000000000Z oops\n"


def test_frames_are_dockers_multiplexed_stream() -> None:
    assert frame(2, b"abc") == b"\x02\x00\x00\x00\x00\x00\x00\x03abc"
    assert struct.unpack(">BxxxL", frame(1, b"x" * 70000)[:8]) == (1, 70000)


def test_detach_keys_in_dockers_spelling() -> None:
    assert detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert detach_keys("a,ctrl-@,ctrl-_") == b"a\x00\x1f"
    for bad in ("ctrl-", "ctrl-1", "ab", ""):
        with pytest.raises(ValueError):
            detach_keys(bad)


def test_the_detach_keys_are_found_across_reads_and_kept_when_not_whole() -> None:
    a = Attachment.__new__(Attachment)
    a.keys, a.matched = b"\x10\x11", 0
    assert a.escape(b"ab\x10") == (b"ab", False)
    assert a.escape(b"c") == (b"\x10c", False)  # not the sequence: given back to the process
    assert a.escape(b"x\x10") == (b"x", False)
    assert a.escape(b"\x11rest") == (b"", True)
