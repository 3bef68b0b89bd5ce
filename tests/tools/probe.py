"""A tiny network probe for tests: serve and ask over TCP or UDP, stdlib only.

    probe.py serve tcp|udp PORT [--bind IP]   answer each request with
                                              "peer=IP:PORT local=IP:PORT name=NAME"
                                              (IPv6 as [IP]:PORT); without --bind on
                                              0.0.0.0 and, where the host has IPv6, ::
    probe.py ask tcp|udp HOST PORT            print the answer; exit 1 on failure

The answer carries the peer address as the server saw it, so tests can
assert masquerading and source-address preservation.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import socket
import sys


def _text(addr: tuple) -> str:  # type: ignore[type-arg]
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


def _bound(proto: str, bind: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    srv = socket.socket(family, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if proto == "tcp":
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((bind, port))
    if proto == "tcp":
        srv.listen(64)
    return srv


def serve(proto: str, port: int, bind: str | None, name: str) -> None:
    socks = [_bound(proto, bind, port)] if bind else [_bound(proto, "0.0.0.0", port)]
    if not bind and socket.has_ipv6 and os.path.exists("/proc/net/if_inet6"):
        with contextlib.suppress(OSError):  # IPv6 off in this namespace
            socks.append(_bound(proto, "::", port))
    sel = selectors.DefaultSelector()
    for srv in socks:
        sel.register(srv, selectors.EVENT_READ)
    print(f"listening {proto} {bind or '0.0.0.0'}:{port}", flush=True)
    while True:
        for key, _ in sel.select():
            srv = key.fileobj  # type: ignore[assignment]
            if proto == "tcp":
                conn, peer = srv.accept()
                conn.sendall(f"peer={_text(peer)} local={_text(conn.getsockname())} name={name}\n".encode())
                conn.close()
            else:
                _data, peer = srv.recvfrom(2048)
                answer = f"peer={_text(peer)} local={_text(srv.getsockname())} name={name}\n"
                srv.sendto(answer.encode(), peer)


def ask(proto: str, host: str, port: int, timeout: float) -> int:
    try:
        if proto == "tcp":
            with socket.create_connection((host, port), timeout=timeout) as s:
                data = s.recv(4096)
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as s:
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
    s.add_argument("--bind", default=None)
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
