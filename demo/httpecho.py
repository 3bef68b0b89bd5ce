"""A tiny HTTP echo for the tour, stdlib only: the server says which address
it saw the request come from, the client says which address it sent from.

    httpecho.py serve PORT NAME [--bind IP]   answer GET with
                                              "NAME at LOCAL saw PEER"
    httpecho.py get URL [--timeout S]         print "from LOCAL: <answer>";
                                              exit 1 with the error otherwise

Both ends print addresses as IP:PORT, so a reader can see NAT at work: a
masqueraded request leaves from the container's address and arrives from
the host's.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(port: int, name: str, bind: str) -> int:
    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            local = self.connection.getsockname()
            peer = self.client_address
            body = f"{name} at {local[0]}:{local[1]} saw {peer[0]}:{peer[1]}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # the answer says it all

    server = ThreadingHTTPServer((bind, port), Echo)
    print(f"{name} listening on {bind}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def get(url: str, timeout: float) -> int:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
    try:
        conn.connect()
        assert conn.sock is not None
        local = conn.sock.getsockname()
        conn.request("GET", parts.path or "/")
        answer = conn.getresponse().read().decode().strip()
    except OSError as e:
        print(f"error: {e.strerror or e}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    print(f"from {local[0]}:{local[1]}: {answer}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("port", type=int)
    s.add_argument("name")
    s.add_argument("--bind", default="0.0.0.0")
    g = sub.add_parser("get")
    g.add_argument("url")
    g.add_argument("--timeout", type=float, default=2.0)
    args = p.parse_args()
    if args.cmd == "serve":
        return serve(args.port, args.name, args.bind)
    return get(args.url, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
