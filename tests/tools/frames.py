"""Watch the frames on one interface, for tests: stdlib only.

    frames.py watch IFACE [--until TEXT] [--timeout S] [--outgoing]

Prints "ready" once its packet socket is bound, then one line per frame
received on IFACE (and sent from it, with --outgoing), in the namespace it
runs in:

    arp src=MAC op=1|2 sha=MAC spa=IP tha=MAC tpa=IP
    ip src=MAC from=IP to=IP proto=N [udp dport=N data=TEXT]
    ip6 src=MAC from=IP to=IP nh=N [icmp6 type=N [target=IP]] [udp dport=N data=TEXT]
    ether src=MAC type=0xNNNN

It exits 0 after printing the first line that contains TEXT, or 1 after S
seconds (300 by default: a test bounds its own wait from the moment it has
sent its marker, since a sender such as scapy may take long to start on a
loaded machine). A capture sees a frame before any hook of the
namespace it is in: on a bridge port, what the attached sender sent; on a
bridge device, what the bridge passed up to the host.
"""

from __future__ import annotations

import argparse
import ipaddress
import select
import socket
import sys
import time

ETH_P_ALL = 0x0003


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def describe(frame: bytes) -> str:
    src = _mac(frame[6:12])
    etype = int.from_bytes(frame[12:14], "big")
    body = frame[14:]
    if etype == 0x0806 and len(body) >= 28:
        op = int.from_bytes(body[6:8], "big")
        return (
            f"arp src={src} op={op} sha={_mac(body[8:14])} spa={socket.inet_ntoa(body[14:18])} "
            f"tha={_mac(body[18:24])} tpa={socket.inet_ntoa(body[24:28])}"
        )
    if etype == 0x0800 and len(body) >= 20:
        proto = body[9]
        line = f"ip src={src} from={socket.inet_ntoa(body[12:16])} to={socket.inet_ntoa(body[16:20])} proto={proto}"
        l4 = body[(body[0] & 15) * 4 :]
        if proto == 17 and len(l4) >= 8:
            data = l4[8:].decode("ascii", "replace")
            line += f" udp dport={int.from_bytes(l4[2:4], 'big')} data={data}"
        return line
    if etype == 0x86DD and len(body) >= 40:
        nh = body[6]
        line = (
            f"ip6 src={src} from={ipaddress.IPv6Address(body[8:24])} "
            f"to={ipaddress.IPv6Address(body[24:40])} nh={nh}"
        )
        if nh == 58 and len(body) > 40:
            line += f" icmp6 type={body[40]}"
            if body[40] in (135, 136) and len(body) >= 64:  # neighbour solicitation, advertisement
                line += f" target={ipaddress.IPv6Address(body[48:64])}"
        if nh == 17 and len(body) >= 48:
            line += (
                f" udp dport={int.from_bytes(body[42:44], 'big')} data={body[48:].decode('ascii', 'replace')}"
            )
        return line
    return f"ether src={src} type=0x{etype:04x}"


def watch(iface: str, until: str | None, timeout: float, outgoing: bool) -> int:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    print("ready", flush=True)
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        if not select.select([s], [], [], left)[0]:
            break
        frame, addr = s.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING and not outgoing:
            continue
        line = describe(frame)
        print(line, flush=True)
        if until is not None and until in line:
            return 0
    return 1


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("watch")
    w.add_argument("iface")
    w.add_argument("--until")
    w.add_argument("--timeout", type=float, default=300.0)
    w.add_argument("--outgoing", action="store_true")
    args = p.parse_args()
    return watch(args.iface, args.until, args.timeout, args.outgoing)


if __name__ == "__main__":
    sys.exit(main())
