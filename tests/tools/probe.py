"""A tiny network probe for tests: serve and ask over TCP or UDP, stdlib only.

    probe.py serve tcp|udp PORT [--bind IP]   answer each request with
                                              "peer=IP:PORT local=IP:PORT name=NAME"
    probe.py ask tcp|udp HOST PORT            print the answer; exit 1 on failure

The answer carries the peer address as the server saw it, so tests can
assert masquerading and source-address preservation.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys


def serve(proto: str, port: int, bind: str, name: str) -> None:
    if proto == "tcp":
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((bind, port))
        srv.listen(64)
        print(f"listening tcp {bind}:{port}", flush=True)
        while True:
            conn, peer = srv.accept()
            local = conn.getsockname()
            conn.sendall(f"peer={peer[0]}:{peer[1]} local={local[0]}:{local[1]} name={name}\n".encode())
            conn.close()
    else:
        srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        srv.bind((bind, port))
        print(f"listening udp {bind}:{port}", flush=True)
        while True:
            _data, peer = srv.recvfrom(2048)
            local = srv.getsockname()
            srv.sendto(f"peer={peer[0]}:{peer[1]} local={local[0]}:{local[1]} name={name}\n".encode(), peer)


def ask(proto: str, host: str, port: int, timeout: float) -> int:
    try:
        if proto == "tcp":
            with socket.create_connection((host, port), timeout=timeout) as s:
                data = s.recv(4096)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(timeout)
                s.sendto(b"hello", (host, port))
                data, _ = s.recvfrom(4096)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(data.decode())
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("proto", choices=["tcp", "udp"])
    s.add_argument("port", type=int)
    s.add_argument("--bind", default="0.0.0.0")
    s.add_argument("--name", default=os.uname().nodename)
    a = sub.add_parser("ask")
    a.add_argument("proto", choices=["tcp", "udp"])
    a.add_argument("host")
    a.add_argument("port", type=int)
    a.add_argument("--timeout", type=float, default=2.0)
    args = p.parse_args()
    if args.cmd == "serve":
        serve(args.proto, args.port, args.bind, args.name)
        return 0
    return ask(args.proto, args.host, args.port, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
