"""A registry front that wants bearer tokens, and the token service that gives them (tests only).

    token_registry.py LISTEN_PORT UPSTREAM_PORT USER PASSWORD

Listens on 127.0.0.1:LISTEN_PORT. /token answers a GET with HTTP basic
USER:PASSWORD with {"token": ...} (401 otherwise); /v2/... without
`Authorization: Bearer <that token>` gets 401 with Docker's challenge
(Bearer realm=.../token, service, scope), and with it is passed on to the
plain registry at 127.0.0.1:UPSTREAM_PORT. Each token request is logged on
stderr, so a test can tell the flow was taken. Runs until killed.
"""

from __future__ import annotations

import base64
import http.client
import secrets
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, UPSTREAM, USER, PASSWORD = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
TOKEN = secrets.token_hex(16)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/token"):
            expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                print(f"token refused: {self.path}", file=sys.stderr, flush=True)
                self._send(401, b'{"details":"bad credentials"}', {"Content-Type": "application/json"})
                return
            print(f"token given: {self.path}", file=sys.stderr, flush=True)
            self._send(200, f'{{"token":"{TOKEN}"}}'.encode(), {"Content-Type": "application/json"})
            return
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            realm = f"http://127.0.0.1:{PORT}/token"
            challenge = f'Bearer realm="{realm}",service="test-registry"'
            if self.path.startswith("/v2/") and ("/manifests/" in self.path or "/blobs/" in self.path):
                repo = self.path[4:].split("/manifests/")[0].split("/blobs/")[0]
                challenge += f',scope="repository:{repo}:pull"'
            body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
            self._send(401, body, {"Content-Type": "application/json", "WWW-Authenticate": challenge})
            return
        upstream = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "host")}
        upstream.request("GET", self.path, headers=headers)
        resp = upstream.getresponse()
        body = resp.read()
        dropped = ("content-length", "transfer-encoding", "connection")
        passed = {k: v for k, v in resp.getheaders() if k.lower() not in dropped}
        self._send(resp.status, body, passed)
        upstream.close()


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
