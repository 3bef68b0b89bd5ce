"""dockyard.wire.http: the one HTTP/1.1 framing of the daemon, the API client and dockyard-cni.

Heads and chunked bodies round-trip whatever their content and however the
bytes are split on the way; what would let two ends disagree on where a
message ends is refused; descriptors travel with a message; and the
daemon's connection and the client's connection both frame through it
(a malformed request is answered 400, a chunked answer is read).
"""

from __future__ import annotations

import json
import os
import socket
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.clients.wire import Connection
from dockyard.daemon.api.http import Conn, Response, serve
from dockyard.wire import http
from dockyard.wire.cni import path as json_path

TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(alphabet=TCHARS, min_size=1, max_size=20)
# Field values: visible latin-1 and inner spaces (leading and trailing whitespace is not part of a value).
values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=40
).map(lambda v: v.strip(" \t"))
targets = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60)
fields = st.dictionaries(tokens, values, max_size=8).map(
    # Names differing only in case would be one field, joined: keep one of each.
    lambda d: {k: v for k, v in {k.lower(): (k, v) for k, v in d.items()}.values()}
)


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in [*points, len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


# -- heads ----------------------------------------------------------------------------------


@given(tokens, targets, fields)
def test_a_request_head_round_trips(method: str, target: str, sent: dict[str, str]) -> None:
    head = http.request_head(method, target, sent)
    assert head.endswith(b"\r\n\r\n")
    got_method, got_target, version, got = http.parse_request_head(head[:-4])
    assert (got_method, got_target, version) == (method, target, "HTTP/1.1")
    assert got == {k.lower(): v for k, v in sent.items()}


@given(st.integers(100, 599), fields)
def test_a_response_head_round_trips(status: int, sent: dict[str, str]) -> None:
    got_status, got = http.parse_response_head(http.response_head(status, sent)[:-4])
    assert got_status == status and got == {k.lower(): v for k, v in sent.items()}


def test_repeated_fields_are_joined_and_names_fold_case() -> None:
    _m, _t, _v, got = http.parse_request_head(b"GET / HTTP/1.1\r\nX-A: 1\r\nx-a: 2\r\nHOST:  d ")
    assert got == {"x-a": "1, 2", "host": "d"}


@pytest.mark.parametrize(
    "head",
    [
        b"GET /\r\nHost: d",  # no version
        b"GET / HTTP/2.0\r\nHost: d",
        b"GET  / HTTP/1.1",  # two spaces
        b"G(T / HTTP/1.1",
        b"GET / HTTP/1.1\r\nHost : d",  # whitespace before the colon
        b"GET / HTTP/1.1\r\nX-A: 1\r\n folded",  # obsolete line folding
        b"GET / HTTP/1.1\r\nno colon",
        b"GET / HTTP/1.1\r\nX-A: a\rb",
    ],
)
def test_malformed_request_heads_are_refused(head: bytes) -> None:
    with pytest.raises(http.FramingError):
        http.parse_request_head(head)


@pytest.mark.parametrize("line", [b"HTTP/1.1 20 OK", b"HTTP/1.1 2000 OK", b"HTTP/1.1 abc", b"ICY 200 OK"])
def test_malformed_status_lines_are_refused(line: bytes) -> None:
    with pytest.raises(http.FramingError):
        http.parse_response_head(line)


def test_a_field_that_would_inject_a_line_is_not_sent() -> None:
    with pytest.raises(ValueError):
        http.request_head("GET", "/", {"X-Registry-Auth": "a\r\nX-Evil: 1"})
    with pytest.raises(ValueError):
        http.request_head("GET", "/ HTTP/1.1\r\nX-Evil: 1\r\n", {})


# -- where a body ends ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "response", "length"),
    [
        ({}, False, 0),
        ({}, True, http.UNTIL_CLOSE),
        ({"content-length": "12"}, False, 12),
        ({"content-length": "12, 12"}, False, 12),  # the same length twice (RFC 9110 8.6)
        ({"transfer-encoding": "chunked"}, False, http.CHUNKED),
        ({"transfer-encoding": "Chunked"}, True, http.CHUNKED),
    ],
)
def test_body_length(sent: dict[str, str], response: bool, length: int) -> None:
    assert http.body_length(sent, response) == length


@pytest.mark.parametrize(
    "sent",
    [
        {"content-length": "12", "transfer-encoding": "chunked"},
        {"content-length": "12, 13"},
        {"content-length": "-1"},
        {"content-length": "+12"},
        {"content-length": "1_2"},
        {"content-length": "١٢"},  # digits, but not ASCII ones
        {"content-length": "9" * 19},
        {"transfer-encoding": "gzip, chunked"},
        {"transfer-encoding": "chunked, chunked"},
        {"transfer-encoding": "identity"},
    ],
)
def test_lengths_two_ends_could_read_differently_are_refused(sent: dict[str, str]) -> None:
    with pytest.raises(http.FramingError):
        http.body_length(sent)


# -- chunked bodies ------------------------------------------------------------------------------


@settings(max_examples=300)
@given(
    st.lists(st.binary(max_size=300), max_size=8),
    st.lists(st.integers(0, 10_000), max_size=12),
    st.binary(max_size=30),
    st.booleans(),
)
def test_a_chunked_body_decodes_however_it_is_split(
    pieces: list[bytes], cuts: list[int], after: bytes, extras: bool
) -> None:
    if extras:  # chunk extensions and trailer fields, which a decoder reads past
        encoded = b"".join(b"%x;name=value\r\n" % len(p) + p + b"\r\n" for p in pieces if p)
        encoded += b"0;last\r\nX-Trailer: 1\r\n\r\n"
    else:
        encoded = http.encode_chunked(pieces)
    decoder = http.ChunkedDecoder()
    out = b""
    for part in _splits(encoded + after, cuts):
        out += decoder.feed(part)
    assert out == b"".join(pieces) and decoder.done and decoder.rest == after


@pytest.mark.parametrize(
    "encoded",
    [
        b"zz\r\nab\r\n0\r\n\r\n",  # not hex
        b"\r\n0\r\n\r\n",  # no size
        b"2\r\nabc\r\n0\r\n\r\n",  # more data than its size
        b"-2\r\nab\r\n0\r\n\r\n",
        b"0x2\r\nab\r\n0\r\n\r\n",
        b"1" * 17 + b"\r\n",  # a size past 64 bits
        b"2" + b" " * (http.MAX_CHUNK_LINE + 1),  # a size line without end
    ],
)
def test_malformed_chunked_bodies_are_refused(encoded: bytes) -> None:
    with pytest.raises(http.FramingError):
        http.ChunkedDecoder().feed(encoded)


def test_an_empty_piece_sends_no_chunk() -> None:
    assert http.chunk(b"") == b"" and http.encode_chunked([b"", b"ab", b""]) == b"2\r\nab\r\n0\r\n\r\n"


# -- a socket's messages ------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=200_000), st.booleans())
def test_a_stream_reads_a_message_by_length_or_chunked(body: bytes, chunked: bool) -> None:
    a, b = socket.socketpair()
    with a, b:
        if chunked:
            sent = {"Transfer-Encoding": "chunked"}
            data = http.encode_chunked(body[i : i + 7000] for i in range(0, len(body), 7000))
        else:
            sent = {"Content-Length": str(len(body))}
            data = body
        message = http.request_head("POST", "/x", sent) + data + b"GET /next HTTP/1.1\r\n\r\n"
        writer = threading.Thread(target=a.sendall, args=(message,))
        writer.start()
        stream = http.Stream(b)
        head = stream.read_head()
        assert head is not None
        *_, got = http.parse_request_head(head)
        assert stream.read_body(http.body_length(got)) == body
        assert stream.read_head() == b"GET /next HTTP/1.1"
        writer.join()


def test_descriptors_travel_with_a_message_and_a_cut_message_is_incomplete() -> None:
    a, b = socket.socketpair()
    r, w = os.pipe()
    try:
        with a, b:
            http.send_message(a, http.request_head("POST", "/x", {"Content-Length": "10"}) + b"12345", [w])
            a.shutdown(socket.SHUT_WR)
            stream = http.Stream(b, max_fds=http.MAX_FDS)
            assert stream.read_head() is not None
            (fd,) = stream.fds
            try:
                assert os.path.sameopenfile(fd, w)
                assert os.get_inheritable(fd) is False  # close-on-exec, as the daemon spawns
            finally:
                os.close(fd)
            with pytest.raises(http.Incomplete):
                stream.read_exact(10)
    finally:
        os.close(r)
        os.close(w)


def test_a_large_message_with_descriptors_is_sent_whole() -> None:
    a, b = socket.socketpair()
    body = os.urandom(3_000_000)  # more than one sendmsg takes
    with a, b:
        r, w = os.pipe()
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(http.Stream(b, 4).read_exact(len(body))))
        reader.start()
        http.send_message(a, body, [r])
        reader.join()
        os.close(r)
        os.close(w)
        assert got == [body]


# -- the daemon's connection and the client's, through it -------------------------------------------------


def _serve_one(sock: socket.socket, handler) -> threading.Thread:  # type: ignore[no-untyped-def]
    conn = Conn(sock)
    conn.checked = True  # a socketpair's peer is this test: root or not, it is the one asking

    def serving() -> None:
        # What the server's acceptor does: serve again while the connection is kept.
        try:
            while serve(conn, handler, lambda e: Response(500, {"message": str(e)}), 5.0, lambda: None):
                pass
        finally:
            conn.close()  # as the server's worker does with a connection not kept

    thread = threading.Thread(target=serving, daemon=True)
    thread.start()
    return thread


def test_the_daemon_reads_a_chunked_json_request_and_keeps_the_connection() -> None:
    a, b = socket.socketpair()
    seen = []

    def handler(req):  # type: ignore[no-untyped-def]
        seen.append(req.json())
        return Response(200, {"n": len(seen)})

    with a, b:
        thread = _serve_one(b, handler)
        body = json.dumps({"subnet": "10.1.0.0/24"}).encode()
        head = http.request_head("POST", "/x", {"Transfer-Encoding": "chunked"})
        a.sendall(head + http.encode_chunked([body[:5], body[5:]]))
        a.sendall(http.request_head("GET", "/y", {"Connection": "close"}))
        stream = http.Stream(a)
        answers = []
        for _ in range(2):
            status, fields_ = http.parse_response_head(stream.read_head() or b"")
            answers.append((status, json.loads(stream.read_body(http.body_length(fields_, True)))))
        thread.join(5)
    assert seen == [{"subnet": "10.1.0.0/24"}, {}] and answers == [(200, {"n": 1}), (200, {"n": 2})]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /x HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\nabcd",
        b"GET /x HTTP/1.1\r\nHost : d\r\n\r\n",
        b"SMUGGLE\r\n\r\n",
    ],
)
def test_the_daemon_answers_a_request_it_cannot_frame_400_and_closes(request_bytes: bytes) -> None:
    a, b = socket.socketpair()
    called = []
    with a, b:
        thread = _serve_one(b, lambda req: called.append(req) or Response(200, {}))
        a.sendall(request_bytes)
        stream = http.Stream(a)
        status, fields_ = http.parse_response_head(stream.read_head() or b"")
        body = json.loads(stream.read_body(http.body_length(fields_, True)))
        thread.join(5)
        assert status == 400 and "malformed request" in body["message"] and fields_["connection"] == "close"
        assert stream.read_to_close() == b"" and not called


def test_the_client_reads_a_chunked_answer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "api.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def answer() -> None:
        peer, _ = listener.accept()
        with peer:
            http.Stream(peer).read_head()
            fields_ = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
            peer.sendall(http.response_head(200, fields_) + http.encode_chunked([b'{"a"', b": 1}"]))

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        conn = Connection(path, timeout=5)
        conn.send("GET", "/x")
        status, fields_ = conn.read_head(5)
        assert (status, json.loads(conn.read_body(fields_))) == (200, {"a": 1})
        conn.close()
    finally:
        thread.join(5)
        listener.close()


def test_json_paths_name_where_a_value_is() -> None:
    assert json_path("ipam", "ranges", 0, 0, "subnet") == "ipam.ranges[0][0].subnet"
    assert json_path("runtimeConfig", "portMappings", 2) == "runtimeConfig.portMappings[2]"
    assert json_path("subnet") == "subnet"
