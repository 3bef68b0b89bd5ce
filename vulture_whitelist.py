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

# The CNI plugin's _Decoding is the context of json's C scanner (`make_scanner`),
# which reads these attributes from C.
_.strict
_.object_hook
_.object_pairs_hook
_.parse_float
_.parse_int
_.parse_constant

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
