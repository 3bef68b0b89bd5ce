"""daemon/memory.py: the heap a request grew is given back once it is answered, and only then;
the store frees SQLite's unused cache unless another thread is using the connection."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from dockyard.daemon.api.http import Response
from dockyard.daemon.api.server import UnixHTTPServer
from dockyard.store import Store

SCRIPT = textwrap.dedent("""
    import json
    from dockyard.daemon.memory import MemoryRelease
    calls = []
    memory = MemoryRelease(lambda: calls.append(1))
    memory.after_request()
    out = {"quiet": len(calls)}
    # 30 MB of objects over 512 bytes (glibc's heap, not Python's pools), one in 16 of them
    # kept: the others are freed in holes between those, which glibc keeps.
    junk = [b"x" * 1000 + str(i).encode() for i in range(30000)]
    stays = junk[::16]
    del junk
    kept = memory.rss()
    memory.after_request()
    out["released"] = len(calls)
    out["given_back_mb"] = (kept - memory.rss()) / 1e6
    memory.after_request()
    out["again"] = len(calls)
    print(json.dumps(out))
""")


def test_the_heap_a_request_grew_is_given_back_once() -> None:
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["quiet"] == 0, "nothing grew: nothing released"
    assert out["released"] == 1
    assert out["given_back_mb"] > 10, out
    assert out["again"] == 1, "nothing grew since: nothing released again"


def test_the_server_calls_after_request_once_the_answer_is_out(tmp_path: Path) -> None:
    answered = threading.Event()
    path = tmp_path / "api.sock"
    server = UnixHTTPServer(
        path,
        lambda req: Response(200, {"path": req.path}),
        lambda e: Response(500),
        after_request=answered.set,
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(20)
            sock.connect(str(path))
            sock.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and b'"path": "/x"' in answer
        assert answered.wait(20), "after_request was not called"
    finally:
        server.shutdown()


def test_the_store_frees_its_cache_unless_the_connection_is_in_use(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    try:
        assert store.release_memory()
        from_another: list[bool] = []
        with store.transaction():
            worker = threading.Thread(target=lambda: from_another.append(store.release_memory()))
            worker.start()
            worker.join(20)
        assert from_another == [False], "a write under way is never waited for"
        assert store.release_memory()
    finally:
        store.close()
