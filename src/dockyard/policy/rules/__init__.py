"""The `inet dockyard` and `bridge dockyard` nftables tables, as data.

Pure: this module renders libnftables JSON commands and never applies them
(kernel/nft.py does). The table's rules are few and fixed; what changes per
network, endpoint or published port is an element of a set or a map, so
every change is an element add or delete whatever the count, and rules stay
flat as containers grow.

Sets and maps of `inet dockyard` (a name ending in 6 is its IPv6 twin, ipv6_addr for ipv4_addr):
    bridges       ifname               every dockyard bridge
    masq_nets(6)  ipv4_addr (interval) subnets whose outbound traffic is masqueraded (NAT44, NAT66)
    bridge_nets(6) ipv4_addr . ifname  (subnet . its bridge): to masquerade DNAT back into the same bridge
    icc_pairs     ifname . ifname      (bridge . bridge) of networks whose members may talk
    dns_gateways(6) ipv4_addr          gateways where dockyard's resolver answers: port 53 never DNATed
    internal      ifname               bridges of --internal networks: nothing in or out
    routed6       ipv6_addr . proto . port  container ports of routed IPv6 networks, open from outside
    publish_any(6)  proto . port -> addr . port         ports published on every host address
    publish_addr(6) addr . proto . port -> addr . port  ports published on one host address

Sets of `bridge dockyard`:
    guarded_ports ifname               every endpoint's bridge port: what it sends is checked
    port_macs     ifname . ether_addr  (port . its endpoint's MAC): the only source MAC it may send
    port_addrs    ifname . ipv4_addr   (port . its endpoint's address): the only IPv4 and ARP sender
    port_addrs6   ifname . ipv6_addr   (port . its IPv6 and link-local addresses): the only IPv6 sender
    port_targets6 ifname . integer     the same pairs: the only targets of its neighbour advertisements
    no_icc_ports  ifname               ports of networks with icc off: nothing bridged port to port

Rules are rendered in the form `nft -j list` prints them, so the table read
back from the kernel can be compared with this rendering.

    table.py     the fixed sets, maps, chains and rules, and the text that loads them
    elements.py  Elements: what varies, its add/delete commands, reading it back
    forward.py   neighbours: our accept rules in iptables' FORWARD chain
    expr.py      the JSON expression builders they share

Every public name is importable from dockyard.policy.rules.
"""

from dockyard.policy.rules.elements import (
    BRIDGE_SETS_NAMES,
    GATEWAY_MODE_IPV6,
    MAPS,
    Elements,
    PublishAddr6Key,
    PublishAddrKey,
    PublishAnyKey,
    Target,
    Target6,
    check_gateway_mode6,
    element_commands,
    elements_of_network,
    endpoint_elements,
    endpoint_publish_elements,
    link_local,
    network_elements,
    owner_mark,
    parse_listed_elements,
    publish_elements,
    routed6,
)
from dockyard.policy.rules.expr import Json
from dockyard.policy.rules.forward import (
    IPTABLES_FORWARD,
    delete_rule_commands,
    forward_accept_commands,
    forward_policy_drop,
    forward_rules_of,
)
from dockyard.policy.rules.table import (
    BRIDGE_FAMILY,
    BRIDGE_LISTING,
    BRIDGE_TABLE_TEXT,
    CHAINS,
    FAMILY,
    LOOPBACK_NET,
    RULES,
    SETS,
    TABLE,
    TABLE_TEXT,
    TABLES,
    delete_table_commands,
    expected_listing,
    strip_listing,
)

__all__ = [
    "BRIDGE_FAMILY",
    "BRIDGE_LISTING",
    "BRIDGE_SETS_NAMES",
    "BRIDGE_TABLE_TEXT",
    "CHAINS",
    "FAMILY",
    "GATEWAY_MODE_IPV6",
    "IPTABLES_FORWARD",
    "LOOPBACK_NET",
    "MAPS",
    "RULES",
    "SETS",
    "TABLE",
    "TABLES",
    "TABLE_TEXT",
    "Elements",
    "Json",
    "PublishAddr6Key",
    "PublishAddrKey",
    "PublishAnyKey",
    "Target",
    "Target6",
    "check_gateway_mode6",
    "delete_rule_commands",
    "delete_table_commands",
    "element_commands",
    "elements_of_network",
    "endpoint_elements",
    "endpoint_publish_elements",
    "expected_listing",
    "forward_accept_commands",
    "forward_policy_drop",
    "forward_rules_of",
    "link_local",
    "network_elements",
    "owner_mark",
    "parse_listed_elements",
    "publish_elements",
    "routed6",
    "strip_listing",
]
