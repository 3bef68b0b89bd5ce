"""A tiny authoritative DNS server for tests: one fixed name, NXDOMAIN otherwise.

upstream_dns.py ADDRESS NAME=IP [NAME=IP...]
"""

from __future__ import annotations

import socket
import sys

from dnslib import QTYPE, RCODE, RR, A, DNSRecord


def main() -> int:
    address = sys.argv[1]
    names = {k.rstrip(".").lower() + ".": v for k, v in (a.split("=", 1) for a in sys.argv[2:])}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    print("ready", flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        query = DNSRecord.parse(data)
        reply = query.reply()
        qname = str(query.q.qname).lower()
        if qname in names and query.q.qtype == QTYPE.A:
            reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(names[qname]), ttl=60))
        elif qname not in names:
            reply.header.rcode = RCODE.NXDOMAIN
        sock.sendto(reply.pack(), peer)


if __name__ == "__main__":
    sys.exit(main())
