"""Published ports' elements go to the kernel over netlink (kernel/nftnl.py), not
through libnftables: what lands is what libnftables itself would have added,
comments included, as libnftables reads it back; a batch is one transaction."""

from __future__ import annotations

import json
import re
import sys
import textwrap

from dockyard.drivers import bridge
from dockyard.policy import rules
from lab import Lab

SCRIPT = textwrap.dedent("""
    import ipaddress, json
    from dockyard.drivers.bridge import publish_changes
    from dockyard.errors import KernelError
    from dockyard.kernel.nft import Nft
    from dockyard.kernel.nftnl import encode
    from dockyard.model import PortBinding, Protocol
    from dockyard.policy import rules

    nft = Nft()
    nft.apply_text(rules.TABLE_TEXT, "make the table")
    addr = ipaddress.IPv4Address("10.48.0.7")
    host = ipaddress.IPv4Address("198.51.100.9")
    addr6 = ipaddress.IPv6Address("fd48::7")
    host6 = ipaddress.IPv6Address("2001:db8::9")

    def published(b):
        return rules.publish_elements(addr, b, addr6)

    def listed(owner=None):
        el = rules.parse_listed_elements(nft.list_table(rules.FAMILY, rules.TABLE) or [], owner)
        maps = (el.publish_any, el.publish_addr, el.publish_any6, el.publish_addr6)
        return [text for part in maps for text in sorted(map(str, part.items()))]

    def attempt(f):
        try:
            f()
            return "ok"
        except KernelError as e:
            return f"error: {e}"

    bindings = (
        PortBinding(80, Protocol.TCP, 8080),
        PortBinding(53, Protocol.UDP, 5353),
        PortBinding(9, Protocol.SCTP, 9009),
        PortBinding(443, Protocol.TCP, 8443, host),
        PortBinding(54, Protocol.UDP, 5354, host),
        PortBinding(443, Protocol.TCP, 8444, host6),
    )
    # What libnftables adds from the same bindings, for comparison.
    via_json = rules.element_commands("add", published(bindings), "lab")
    nft.apply(via_json, "add over json")
    expected = listed("lab")
    nft.apply(rules.element_commands("delete", published(bindings)), "delete over json")
    print(json.dumps(listed()))

    nft.change_elements(True, publish_changes(published(bindings), True), "lab")
    print(json.dumps([listed("lab") == expected, listed("other") == [], len(listed())]))
    # Added again with the same data: no change, as nft's `add element`.
    print(attempt(lambda: nft.change_elements(True, publish_changes(published(bindings), True), "lab")))
    nft.change_elements(False, publish_changes(published(bindings), False))
    print(json.dumps(listed()))
    # Deleting what is not there fails, and the batch deletes nothing.
    nft.change_elements(True, publish_changes(published(bindings[:1]), True), "lab")
    print(attempt(lambda: nft.change_elements(False, publish_changes(published(bindings), False))))
    print(len(listed()))
    nft.change_elements(False, publish_changes(published(bindings[:1]), False))

    # 3,000 elements span several messages of one batch: one bad key at the end
    # (a length the map does not have) and none of them is added.
    many = tuple(PortBinding(p, Protocol.TCP, p) for p in range(20000, 23000))
    changes = publish_changes(published(many), True)
    family, table, name, elements = changes[0]
    bad = [*elements, (encode(["inet_service"], [1]), elements[0][1])]
    print(attempt(lambda: nft.change_elements(True, [(family, table, name, bad)], "lab")))
    print(len(listed()))
    nft.change_elements(True, changes, "lab")
    print(len(listed("lab")))
    nft.change_elements(False, publish_changes(published(many), False))
    print(len(listed()))
    # A value of the wrong kind is refused before anything is sent.
    print(attempt(lambda: encode(["ipv4_addr"], ["not an address"])))
    nft.apply(rules.delete_table_commands(), "drop the tables")
""")


def test_elements_over_netlink_are_what_libnftables_adds(lab: Lab) -> None:
    r = lab.in_host(sys.executable, "-c", SCRIPT, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert json.loads(lines[0]) == []
    # The same nine elements (a port on every address on both families), with the owner's
    # comment (and no other owner's).
    assert json.loads(lines[1]) == [True, True, 9], lines[1]
    assert lines[2] == "ok"
    assert json.loads(lines[3]) == []
    assert lines[4].startswith("error: nftables refused to delete elements from inet dockyard publish_any"), (
        lines[4]
    )
    assert lines[4].endswith("No such file or directory"), lines[4]
    assert lines[5] == "2"
    assert lines[6].startswith("error: nftables refused to add elements to inet dockyard publish_any"), lines[
        6
    ]
    assert lines[7] == "0"
    assert lines[8] == "6000"
    assert lines[9] == "0"
    assert lines[10] == "error: not an ipv4_addr: not an address", lines[10]


def test_the_publish_maps_types_are_the_tables() -> None:
    declared = dict(re.findall(r"(?:map|set) (publish_\w+|routed6) \{ type ([^;]+);", rules.TABLE_TEXT))
    assert declared == {
        name: " . ".join(key) + (" : " + " . ".join(data) if data else "")
        for name, key, data in bridge.PUBLISHED
    }
