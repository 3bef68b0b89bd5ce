"""The DNS resolver of user networks: `python -m dockyard.dns --root ROOT`.

Containers on a user-defined network find each other by container name,
network alias or id; other names are forwarded to upstream resolvers. This
package is that resolver, a process of its own that the daemon starts and
stops (kernel/dns_process.py); it reads the store and nothing else. The
default `bridge` network gets no DNS by name, as in Docker.

Where it listens, and why: on each user network's GATEWAY address, port 53,
UDP and TCP, in the host namespace (aardvark-dns's way), not on 127.0.0.11
inside every container (Docker's way). The gateway is already the address
every member reaches, so there is no per-container socket and no DNAT rule
to make and undo, and it survives container restarts, since nothing of it
lives in a container. A query from outside the subnet of the gateway it was
sent to gets nothing (UDP dropped, TCP closed at accept): every gateway is
a local address of the host, so a member of another network, or the LAN,
could otherwise ask this network's gateway and take the resolver's time.

Whose names a query sees: those of every user network the asking container
is attached to (Docker's rule), the asker being found by its source address
on the network the query arrived on; names of the other networks never
resolve. A source that is no container's (a CNI attachment, say) sees the
names of the arrival network only.

The modules, one job each:
- messages.py: DNS message shapes (replies, truncation, PTR names, TCP framing)
- answers.py: the answer to one query from the store, or where to forward it
- upstreams.py: the servers other names go to, and asking them
- serving.py: the sockets on the gateways and the event loop
- process.py: the process: pid file, signals, command line

This file imports no DNS library: tests and tools may read PID_FILE from
it cheaply. The daemon's side (kernel/dns_process.py) imports nothing of
this package and never pays for dnslib.
"""

PID_FILE = "dns.pid"  # under $ROOT; kernel/dns_process.py uses the same name
