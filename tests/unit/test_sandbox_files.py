"""sandbox.py's pure part: the resolv.conf and hosts files a container gets."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.engine.sandbox import FALLBACK_NAMESERVERS, HOSTS_HEADER, hosts_file, resolv_conf

IP = ipaddress.IPv4Address

FALLBACK = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"


def _nameservers(text: str) -> list[str]:
    return [line.split()[1] for line in text.splitlines() if line.startswith("nameserver")]


# --- resolv.conf ----------------------------------------------------------------------------------


def test_host_nameservers_are_kept_in_order() -> None:
    host = "nameserver 192.0.2.53\nnameserver 198.51.100.53\n"
    assert resolv_conf(host) == host


def test_loopback_nameservers_are_dropped() -> None:
    host = "nameserver 127.0.0.53\nnameserver 192.0.2.53\nnameserver 127.0.0.1\n"
    assert resolv_conf(host) == "nameserver 192.0.2.53\n"


def test_ipv6_nameservers_are_dropped() -> None:
    host = "nameserver 2001:db8::53\nnameserver fe80::1%eth0\nnameserver 192.0.2.53\nnameserver ::1\n"
    assert resolv_conf(host) == "nameserver 192.0.2.53\n"


def test_falls_back_to_public_resolvers_when_none_is_left() -> None:
    # systemd-resolved's stub: the usual case on a desktop.
    host = "# This is /run/systemd/resolve/stub-resolv.conf\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n"
    assert resolv_conf(host) == "options edns0 trust-ad\nsearch lan\n" + FALLBACK
    assert FALLBACK_NAMESERVERS == ("8.8.8.8", "8.8.4.4")


def test_empty_or_missing_host_file_falls_back() -> None:
    assert resolv_conf("") == FALLBACK
    assert resolv_conf("nameserver ::1\nnameserver\n") == FALLBACK


def test_comments_blank_lines_and_garbage_are_dropped() -> None:
    host = (
        "; a comment\n# another\n\n   \nnameserver not-an-address\nsortlist 10.0.0.0\nnameserver 192.0.2.53\n"
    )
    assert resolv_conf(host) == "nameserver 192.0.2.53\n"


def test_search_domain_and_options_are_kept() -> None:
    host = (
        "domain corp.example\nsearch a.example b.example\noptions ndots:2 timeout:1\nnameserver 192.0.2.53\n"
    )
    assert resolv_conf(host) == (
        "search corp.example\nsearch a.example b.example\noptions ndots:2 timeout:1\nnameserver 192.0.2.53\n"
    )


def test_explicit_dns_replaces_the_host_nameservers_and_keeps_the_rest() -> None:
    host = "nameserver 192.0.2.53\nsearch lan\noptions ndots:2\n"
    got = resolv_conf(host, dns=[IP("203.0.113.1"), IP("203.0.113.2")])
    assert got == "nameserver 203.0.113.1\nnameserver 203.0.113.2\nsearch lan\noptions ndots:2\n"


def test_explicit_dns_is_used_even_when_only_loopback_is_on_the_host() -> None:
    assert resolv_conf("nameserver 127.0.0.53\n", dns=[IP("203.0.113.1")]) == "nameserver 203.0.113.1\n"


def test_explicit_search_and_options_replace_the_hosts() -> None:
    host = "nameserver 192.0.2.53\nsearch lan\noptions ndots:2\n"
    got = resolv_conf(host, search=["x.example", "y.example"], options=["ndots:5", "attempts:3"])
    assert got == "nameserver 192.0.2.53\nsearch x.example y.example\noptions ndots:5 attempts:3\n"


def test_everything_explicit_ignores_the_host_file() -> None:
    host = "nameserver 192.0.2.53\nsearch lan\noptions ndots:2\n"
    got = resolv_conf(host, dns=[IP("203.0.113.1")], search=["x.example"], options=["ndots:5"])
    assert got == "nameserver 203.0.113.1\nsearch x.example\noptions ndots:5\n"


_resolv_lines = st.lists(
    st.one_of(
        st.builds(lambda a: f"nameserver {a}", st.ip_addresses(v=4) | st.ip_addresses(v=6)),
        st.sampled_from(["search lan", "options ndots:1", "# c", "", "nameserver", "domain x"]),
        st.text(
            alphabet=st.characters(exclude_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), max_size=20
        ),
    ),
    max_size=10,
)


@settings(max_examples=200, deadline=None)
@given(_resolv_lines)
def test_every_nameserver_written_is_a_usable_ipv4_address(lines: list[str]) -> None:
    text = resolv_conf("\n".join(lines))
    servers = _nameservers(text)
    assert servers, "a container always gets a nameserver"
    for server in servers:
        address = ipaddress.ip_address(server)
        assert address.version == 4 and not address.is_loopback
    assert text.endswith("\n")


# --- hosts ----------------------------------------------------------------------------------------


def test_hosts_file_names_the_container() -> None:
    text = hosts_file(IP("172.17.0.2"), ["c0ffee", "web", "web.alias"])
    assert text == HOSTS_HEADER + "172.17.0.2\tc0ffee web web.alias\n"
    assert text.startswith("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")


def test_hosts_file_drops_empty_and_repeated_names_keeping_order() -> None:
    text = hosts_file(IP("10.0.0.5"), ["box", "", "alias", "box", "alias"])
    assert text.splitlines()[-1] == "10.0.0.5\tbox alias"


def test_hosts_file_without_address_or_names_is_the_header() -> None:
    # network none or host: no address of its own
    assert hosts_file(None, ["box"]) == HOSTS_HEADER
    assert hosts_file(IP("10.0.0.5"), []) == HOSTS_HEADER
    assert hosts_file(IP("10.0.0.5"), ["", ""]) == HOSTS_HEADER
