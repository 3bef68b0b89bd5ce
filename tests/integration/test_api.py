"""The API on $ROOT/dockyard.sock as other HTTP clients see it: http.client and the docker CLI."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from lab import Lab


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket: a real HTTP/1.1 client, keep-alive included."""

    def __init__(self, path: Path) -> None:
        super().__init__("dockyard", timeout=30)
        self.socket_path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.socket_path)


def _raw(path: Path, request: str) -> tuple[str, bytes]:
    """One request with Connection: close; the response's head and every byte after it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(path))
        s.sendall(request.encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, data
    return head.decode("latin-1"), rest


def test_head_and_bodiless_statuses_carry_no_body(lab: Lab) -> None:
    lab.dy_ok("ps")
    sock = lab.root / "dockyard.sock"
    conn = UnixHTTPConnection(sock)
    conn.request("HEAD", "/_ping")
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b""
    assert r.getheader("Api-Version") == "1.41"
    # The same connection answers the next request: nothing of the HEAD's was left on it.
    conn.request("GET", "/_ping")
    r = conn.getresponse()
    assert (r.status, r.read(), r.getheader("Api-Version")) == (200, b"OK", "1.41")
    conn.close()

    # On the wire: no byte after the head, for HEAD (whatever the status), 204 and 304.
    head, rest = _raw(sock, "HEAD /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert head.startswith("HTTP/1.1 200 ") and rest == b""
    head, rest = _raw(sock, "HEAD /no/such/page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert head.startswith("HTTP/1.1 404 ") and rest == b""
    post = "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    head, rest = _raw(sock, post.format("/dockyard/settle"))
    assert head.startswith("HTTP/1.1 204 ") and rest == b""
    assert "content-length" not in head.lower()
    lab.dy_ok("run", "--name", "done", "true")
    head, rest = _raw(sock, post.format("/containers/done/stop"))
    assert head.startswith("HTTP/1.1 304 ") and rest == b""


def test_wait_answers_in_chunks_so_the_last_one_says_the_answer_is_whole(lab: Lab) -> None:
    # Docker's wait answers chunked too; the client needs no close to know it has it all.
    assert lab.dy("run", "--name", "three", "sh", "-c", "exit 3").returncode == 3
    sock = lab.root / "dockyard.sock"
    head, rest = _raw(sock, "POST /containers/three/wait HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert head.startswith("HTTP/1.1 200 ") and "transfer-encoding: chunked" in head.lower(), head
    size, _, tail = rest.partition(b"\r\n")
    body, last = tail[: int(size, 16)], tail[int(size, 16) :]
    assert last == b"\r\n0\r\n\r\n", rest
    assert json.loads(body) == {"StatusCode": 3, "Error": None}
    conn = UnixHTTPConnection(sock)
    conn.request("POST", "/containers/three/wait")
    r = conn.getresponse()
    assert (r.status, json.loads(r.read())["StatusCode"]) == (200, 3)
    conn.close()


def _docker_client() -> str | None:
    found = shutil.which("docker")
    if found:
        return found
    return "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else None


DOCKER = _docker_client()


@pytest.mark.skipif(DOCKER is None, reason="no docker client: neither docker on PATH nor /usr/bin/docker")
def test_the_docker_cli_works_against_dockyard(lab: Lab, tmp_path: Path) -> None:
    assert DOCKER is not None
    cid = lab.run_d("--name", "seen", "-p", "8080:80", "sleep", "300")
    # No user config, context or DOCKER_HOST: only -H says where the engine is.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = str(tmp_path / "docker-config")

    def docker(*args: str) -> str:
        r = subprocess.run(
            [DOCKER, "-H", f"unix://{lab.root}/dockyard.sock", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert r.returncode == 0, (args, r.stderr)
        # Go's HTTP client logs "Unsolicited response received on idle HTTP channel"
        # when a response brings bytes it did not ask for (a body on HEAD).
        assert r.stderr == "", (args, r.stderr)
        return r.stdout

    # The client negotiated dockyard's API version from the ping's Api-Version header.
    assert docker("version", "--format", "{{.Server.APIVersion}} {{.Client.APIVersion}}").split() == [
        "1.41",
        "1.41",
    ]
    assert docker("ps", "--format", "{{.ID}} {{.Names}} {{.Ports}}").splitlines() == [
        f"{cid[:12]} seen 0.0.0.0:8080->80/tcp"
    ]
    assert sorted(docker("network", "ls", "--format", "{{.Name}} {{.Driver}}").splitlines()) == [
        "bridge bridge",
        "host host",
        "none null",
    ]
