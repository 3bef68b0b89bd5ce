"""Names vulture reports as unused that are used where it cannot see.

`make lint` and `make test` run `vulture src vulture_whitelist.py --min-confidence 60`.
This file is never imported: mentioning a name here marks it used. Each entry says
who uses it. Anything else vulture finds is dead code: remove it (and its tests).
"""

# ruff: noqa

_ = object()

# PEP 562: Python calls a module's __getattr__ for `dockyard.Engine` and
# `dockyard.Client`, which are imported lazily so that clients stay light.
from dockyard import __getattr__

__getattr__

# dnslib's DNSHeader.tc is a property: assigning it sets the TC bit of a truncated reply.
_.tc


# The cluster's counters and etcd's compaction are what tests/integration/test_cluster_store.py
# observes (a watch resumed without a full listing, a lease renewed, a compaction survived);
# EventType.PUT is etcd's event type, matched by value when a watch event is parsed.
_.compact
_.renewals
_.lists
_.streams
_.PUT

# The CNI spec's table of error codes, kept whole in dockyard.wire.cni (2 and 5 are the spec's,
# not sent by dockyard today); encode_chunked is the framing's encoder, used by its tests
# (tests/unit/test_wire_http.py) as the peer that sends chunked bodies.
_.CODE_UNSUPPORTED_FIELD
_.CODE_IO
_.encode_chunked

# explain's and trace's reports are dataclasses sent as JSON (`--format json`, the API): their
# fields are read by the CLI and by tools, not by name in src. The metrics listener is an
# http.server handler: do_GET and log_message are its hooks, daemon_threads its server's switch.
_.source_kind
_.fate
_.nat
_.do_GET
_.log_message
_.daemon_threads

# The CLI's placeholder for a command whose parser is not built: argparse calls its
# parse_known_args. The lean pyroute2's deferred ssl module: the import system reads __spec__.
_.parse_known_args
_.__spec__
