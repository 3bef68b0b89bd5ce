"""CNI on dockyard's wire: the error codes, and the JSON paths that validation errors name.

One definition for dockyard-cni (which reports the codes to the runtime)
and the daemon (which chooses most of them): the spec's well-known codes
(SPEC.md, "Error") and dockyard's own, 100 and up (docs/cni.md).

A config error names where the bad value is in the configuration the
runtime gave, as a JSON path: `ipam.ranges[0][0].subnet: ...`,
`runtimeConfig.portMappings[1].hostPort: ...`. The plugin folds some keys
(ipam's and ranges' into the network's) before the daemon sees them, and
tells the daemon where each came from (`SOURCES`), so that the daemon's
errors name the runtime's path, not the folded one.
"""

from __future__ import annotations

# The spec's codes.
CODE_INCOMPATIBLE_VERSION = 1
CODE_UNSUPPORTED_FIELD = 2
CODE_UNKNOWN_CONTAINER = 3
CODE_INVALID_ENV = 4
CODE_IO = 5
CODE_DECODE = 6
CODE_INVALID_CONFIG = 7
CODE_TRY_AGAIN = 11
CODE_NOT_AVAILABLE = 50
CODE_LIMITED = 51
# dockyard-cni's own.
CODE_CONFLICT = 100
CODE_KERNEL = 101
CODE_CHECK_FAILED = 102
CODE_INTERNAL = 999

# The request key under which the plugin says where folded keys came from: {"subnet": "ipam.subnet"}.
SOURCES = "sources"
# The key of a range set's later ranges (after the first, folded into subnet, gateway, ...):
# [{"subnet", "gateway", "rangeStart", "rangeEnd"}, ...]; its sources are their paths, in order.
MORE_RANGES = "moreRanges"


def path(*parts: str | int) -> str:
    """A JSON path: path("ipam", "ranges", 0, 0, "subnet") == "ipam.ranges[0][0].subnet"."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += "." + part
        else:
            out = part
    return out
