"""Forged VXLAN for tests, stdlib only.

vxlan_probe.py listen PORT
    print "got PAYLOAD from IP" for each UDP datagram to PORT
vxlan_probe.py inject SRC VTEP VNI MAC IP PORT PAYLOAD
    send, from SRC to VTEP:4789, one VXLAN packet (id VNI) carrying an Ethernet
    frame to MAC, holding an IPv4/UDP datagram to IP:PORT from 10.255.255.254
    (a source no container has); print the bytes sent
"""

from __future__ import annotations

import socket
import struct
import sys

FORGED_SOURCE = "10.255.255.254"


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(mac: str, ip: str, port: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
    total = 20 + len(udp)
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 64, 17, 0,
        socket.inet_aton(FORGED_SOURCE), socket.inet_aton(ip),
    )  # fmt: skip
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    eth = bytes.fromhex(mac.replace(":", "")) + bytes.fromhex("02aabbccddee") + b"\x08\x00"
    return eth + header + udp


def main() -> int:
    if sys.argv[1] == "listen":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", int(sys.argv[2])))
        print("listening", flush=True)
        while True:
            data, peer = s.recvfrom(2048)
            print(f"got {data.decode(errors='replace')} from {peer[0]}", flush=True)
    src, vtep, vni, mac, ip, port, payload = sys.argv[2:9]
    vxlan = struct.pack("!II", 0x08000000, int(vni) << 8)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    print(s.sendto(vxlan + frame(mac, ip, int(port), payload.encode()), (vtep, 4789)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
