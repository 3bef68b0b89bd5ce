"""An overlay's FDB and neighbour entries are set and removed over rtnetlink by kernel/neighnl.py
(through kernel/vxlan.py's Vxlan.apply), one event's entries in one write: what lands is what
`bridge fdb` and `ip neigh` show, a MAC re-pointed keeps one VTEP, a device made again
under the same name is found again, and the listings the reconcile compares (over the same
socket) are the device's own entries."""

from __future__ import annotations

import json
import sys
import textwrap

from lab import Lab

SCRIPT = textwrap.dedent("""
    import ipaddress, json, subprocess
    from dockyard.errors import KernelError
    from dockyard.kernel.netlink import Netlink
    from dockyard.kernel.vxlan import Vxlan

    A = ipaddress.ip_address
    vx = Vxlan(Netlink())

    def ip(*args):
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def made():
        ip("link", "add", "vxt0", "type", "vxlan", "id", "4242", "dstport", "4789", "nolearning", "proxy")
        ip("link", "set", "vxt0", "up")

    def shown():
        out = subprocess.run(["bridge", "-j", "fdb", "show", "dev", "vxt0"], capture_output=True, text=True)
        fdb = sorted([e["mac"], e["dst"]] for e in json.loads(out.stdout or "[]") if e.get("dst"))
        neigh = []
        for family in ("-4", "-6"):
            out = subprocess.run(["ip", "-j", family, "neigh", "show", "dev", "vxt0"], capture_output=True, text=True)
            neigh += sorted([e["dst"], e.get("lladdr"), e.get("state")] for e in json.loads(out.stdout or "[]"))
        return {"fdb": fdb, "neigh": neigh}

    def attempt(f):
        try:
            f()
            return "ok"
        except KernelError as e:
            return f"error: {e}"

    made()
    m2, m3 = "02:00:00:00:00:02", "02:00:00:00:00:03"
    vx.apply("vxt0", {m2: A("192.0.2.12"), m3: A("192.0.2.13")}, {A("10.1.0.2"): m2, A("fd00:1::2"): m2})
    print(json.dumps(shown()))
    # Re-pointed: the MAC to another VTEP, the address to another MAC; the rest stays.
    vx.apply("vxt0", {m2: A("192.0.2.14")}, {A("10.1.0.2"): m3})
    print(json.dumps(shown()))
    # Removed, with entries that are not there: no error.
    vx.apply("vxt0", {m2: None, "02:00:00:00:00:09": None}, {A("10.1.0.2"): None, A("fd00:1::2"): None, A("10.1.0.9"): None})
    print(json.dumps(shown()))
    # The device deleted and made again (a new index): found again.
    ip("link", "del", "vxt0")
    made()
    vx.apply("vxt0", {m2: A("192.0.2.12")}, {A("10.1.0.2"): m2})
    print(json.dumps(shown()))
    # No such device: nothing to do.
    ip("link", "del", "vxt0")
    print(attempt(lambda: vx.apply("vxt0", {m2: A("192.0.2.12")}, {A("10.1.0.2"): m2})))
    # An entry the kernel refuses is an error naming it (IPv6 off on the device).
    made()
    subprocess.run(["sysctl", "-qw", "net.ipv6.conf.vxt0.disable_ipv6=1"], check=True)
    print(attempt(lambda: vx.apply("vxt0", {}, {A("fd00:1::2"): m2})))
    ip("link", "del", "vxt0")

    # Listed as the kernel shows them: the device's own entries with a VTEP, not its bridge's
    # (a port's learned and static entries), and permanent neighbour entries only.
    made()
    ip("link", "add", "brt0", "type", "bridge")
    ip("link", "set", "vxt0", "master", "brt0")
    ip("link", "set", "brt0", "up")
    subprocess.run(["bridge", "fdb", "add", "02:00:00:00:00:0b", "dev", "vxt0", "master", "static"], check=True)
    ip("neigh", "add", "10.1.0.11", "lladdr", "02:00:00:00:00:0b", "dev", "vxt0", "nud", "stale")
    vx.apply("vxt0", {m2: A("192.0.2.12"), m3: A("192.0.2.13")}, {A("10.1.0.2"): m2, A("fd00:1::3"): m3})
    print(json.dumps([sorted([m, str(v)] for m, v in vx.fdb("vxt0").items()), sorted([str(a), m] for a, m in vx.neighbours("vxt0").items())]))
    print(json.dumps([vx.fdb("absent0"), vx.neighbours("absent0")]))
    ip("link", "del", "vxt0")
    ip("link", "del", "brt0")
""")


def test_entries_over_netlink_are_what_bridge_and_ip_show(lab: Lab) -> None:
    r = lab.in_host(sys.executable, "-c", SCRIPT, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    m2, m3 = "02:00:00:00:00:02", "02:00:00:00:00:03"
    assert json.loads(lines[0]) == {
        "fdb": [[m2, "192.0.2.12"], [m3, "192.0.2.13"]],
        "neigh": [["10.1.0.2", m2, ["PERMANENT"]], ["fd00:1::2", m2, ["PERMANENT"]]],
    }, lines[0]
    assert json.loads(lines[1]) == {
        "fdb": [[m2, "192.0.2.14"], [m3, "192.0.2.13"]],
        "neigh": [["10.1.0.2", m3, ["PERMANENT"]], ["fd00:1::2", m2, ["PERMANENT"]]],
    }, lines[1]
    assert json.loads(lines[2]) == {"fdb": [[m3, "192.0.2.13"]], "neigh": []}, lines[2]
    assert json.loads(lines[3]) == {
        "fdb": [[m2, "192.0.2.12"]],
        "neigh": [["10.1.0.2", m2, ["PERMANENT"]]],
    }, lines[3]
    assert lines[4] == "ok"
    assert lines[5].startswith("error: cannot add neighbour fd00:1::2 on vxt0: "), lines[5]
    assert json.loads(lines[6]) == [
        [[m2, "192.0.2.12"], [m3, "192.0.2.13"]],
        [["10.1.0.2", m2], ["fd00:1::3", m3]],
    ], lines[6]
    assert json.loads(lines[7]) == [{}, {}]
