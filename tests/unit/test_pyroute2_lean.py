"""The daemon's lean pyroute2 (kernel/pyroute2_lean.py): IPRoute without the rest of
the library or ssl, and everything still there for whoever asks for it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, sys
    from dockyard.kernel import pyroute2_lean
    out = {"lean": pyroute2_lean.install()}
    from dockyard.kernel.netlink import Netlink
    out["loaded"] = sorted(m for m in ("pyroute2.ndb.main", "pyroute2.ipdb", "pyroute2.conntrack", "_ssl")
                           if m in sys.modules)
    import http.client, ssl
    out["ssl_after_import"] = "_ssl" in sys.modules
    ssl.create_default_context()
    http.client.HTTPSConnection("localhost", 1)
    out["ssl_after_use"] = "_ssl" in sys.modules
    from pyroute2 import NDB, IPRoute
    from pyroute2.iproute.linux import IPRoute as Linux
    out["whole"] = IPRoute is Linux and NDB.__name__ == "NDB"
    out["again"] = pyroute2_lean.install()
    print(json.dumps(out))
""")


def test_iproute_alone_then_the_whole_library_on_demand() -> None:
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {
        "lean": True,
        # IPRoute without NDB, IPDB, conntrack, and without loading ssl.
        "loaded": [],
        "ssl_after_import": False,
        # ssl loads when a name of it is used, and works.
        "ssl_after_use": True,
        # A lookup on the package itself gets the whole library.
        "whole": True,
        "again": False,
    }
