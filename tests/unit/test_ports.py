"""ports.py: `docker run -p` / `--expose` parsing and the choice of host ports."""

from __future__ import annotations

import dataclasses
import ipaddress
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.errors import Conflict, InvalidArgument
from dockyard.model import BindStatus, PortBinding, PortRequest, Protocol
from dockyard.policy.ports import (
    PORT_MAX,
    HostPortChooser,
    PortSpec,
    overlaps,
    parse_expose,
    parse_port_spec,
    publish_all,
    refused,
)

IP = ipaddress.IPv4Address
IP6 = ipaddress.IPv6Address
TCP, UDP, SCTP = Protocol.TCP, Protocol.UDP, Protocol.SCTP


# --- parse_port_spec: every form docker run -p takes ---------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("80", PortSpec(80, 80, TCP)),
        ("8080:80", PortSpec(80, 80, TCP, 8080, 8080)),
        ("127.0.0.1:8080:80", PortSpec(80, 80, TCP, 8080, 8080, IP("127.0.0.1"))),
        ("127.0.0.1::80", PortSpec(80, 80, TCP, 0, 0, IP("127.0.0.1"))),
        ("7000-7002", PortSpec(7000, 7002, TCP)),
        ("8000-8002:7000-7002", PortSpec(7000, 7002, TCP, 8000, 8002)),
        ("10.0.0.5:8000-8002:7000-7002", PortSpec(7000, 7002, TCP, 8000, 8002, IP("10.0.0.5"))),
        ("8000-8010:80", PortSpec(80, 80, TCP, 8000, 8010)),
        # Docker's 0.0.0.0 is every IPv4 address (and only IPv4), :: every IPv6 address.
        ("0.0.0.0:8080:80", PortSpec(80, 80, TCP, 8080, 8080, IP("0.0.0.0"))),
        ("[::]:8080:80", PortSpec(80, 80, TCP, 8080, 8080, IP6("::"))),
        ("[2001:db8::1]:8080:80", PortSpec(80, 80, TCP, 8080, 8080, IP6("2001:db8::1"))),
        ("[::1]::80/udp", PortSpec(80, 80, UDP, 0, 0, IP6("::1"))),
        ("[fd00::5]:9000-9001:80-81", PortSpec(80, 81, TCP, 9000, 9001, IP6("fd00::5"))),
        # Host port 0: choose one, as with no host port at all.
        ("0:80", PortSpec(80, 80, TCP)),
        ("1:65535", PortSpec(65535, 65535, TCP, 1, 1)),
    ],
)
def test_port_spec_forms(spec: str, expected: PortSpec) -> None:
    assert parse_port_spec(spec) == expected


@pytest.mark.parametrize(
    ("suffix", "proto"),
    [("", TCP), ("/tcp", TCP), ("/udp", UDP), ("/sctp", SCTP), ("/UDP", UDP)],
)
@pytest.mark.parametrize("body", ["53", "5353:53", "127.0.0.1:5353:53", "127.0.0.1::53", "53-54"])
def test_protocol_suffix_applies_to_every_form(body: str, suffix: str, proto: Protocol) -> None:
    spec = parse_port_spec(body + suffix)
    assert spec.proto is proto
    # Only the protocol differs from the same spec without a suffix.
    assert spec == dataclasses.replace(parse_port_spec(body), proto=proto)
    assert spec.container_start == 53


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("70000", "outside 1-65535"),
        ("0", "outside 1-65535"),
        ("80:", "no container port"),
        ("a:b", "invalid container port 'b'"),
        ("a:80", "invalid host port 'a'"),
        ("80:b", "invalid container port 'b'"),
        ("8000-8002:80-81", "host range has 3 ports and the container range 2"),
        ("8000:80-81", "host range has 1 ports and the container range 2"),
        ("80/icmp", "unknown protocol 'icmp'"),
        ("/icmp", "unknown protocol 'icmp'"),
        ("/tcp", "no container port given"),
        ("80/", "unknown protocol ''"),
        ("", "no container port given"),
        (":80", "no host port before ':'"),
        ("1.2.3:80:80", "invalid host address '1.2.3'"),
        ("::80", "invalid host address ''"),
        ("1.2.3.4:80:80:80", "expected [IP:][HOSTPORT:]CONTAINERPORT[/PROTO]"),
        ("::1:80:80", "put an IPv6 address in brackets"),
        ("2001:db8::1:8080:80", "put an IPv6 address in brackets"),
        ("[::1]:80", "expected [IPv6]:HOSTPORT:CONTAINERPORT"),
        ("[::1]8080:80", "expected [IPv6]:HOSTPORT:CONTAINERPORT"),
        ("[::1:8080:80", "expected [IPv6]:HOSTPORT:CONTAINERPORT"),
        ("[10.0.0.1]:8080:80", "invalid host address '10.0.0.1'"),
        ("[::ffff:10.0.0.1]:8080:80", "is not supported"),
        ("[fe80::1%eth0]:8080:80", "is not supported"),
        ("[ff02::1]:8080:80", "multicast"),
        ("[nope]:8080:80", "invalid host address 'nope'"),
        ("81-80", "ends before it starts"),
        ("0-5:80", "invalid host port '0-5'"),
        ("80-", "invalid container port '80-'"),
        ("-80", "invalid container port '-80'"),
        ("+80", "invalid container port '+80'"),
        (" 80", "invalid container port ' 80'"),
        ("8_0", "invalid container port '8_0'"),
        # Non-ASCII digits: int() would read these as 80.
        ("\u0668\u0660", "invalid container port"),
        ("8080:80\n", "invalid container port"),
    ],
)
def test_malformed_specs_raise_one_line_invalid_argument(spec: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_port_spec(spec)
    message = str(info.value)
    assert fragment in message
    assert message.startswith(f"invalid port spec {spec!r}")
    assert "\n" not in message


# --- requests: what the engine is asked to publish -------------------------------------------------


def test_container_range_without_host_ports_asks_to_choose_each() -> None:
    assert parse_port_spec("7000-7002/udp").requests() == [
        PortRequest(7000, UDP),
        PortRequest(7001, UDP),
        PortRequest(7002, UDP),
    ]


def test_equal_ranges_pair_up_port_by_port() -> None:
    assert parse_port_spec("10.0.0.5:8000-8001:7000-7001").requests() == [
        PortRequest(7000, TCP, 8000, IP("10.0.0.5")),
        PortRequest(7001, TCP, 8001, IP("10.0.0.5")),
    ]


def test_host_range_for_one_container_port_stays_a_range() -> None:
    assert parse_port_spec("8000-8010:80").requests() == [
        PortRequest(80, TCP, 8000, None, host_port_end=8010)
    ]


# --- --expose -----------------------------------------------------------------------------------------


def test_parse_expose() -> None:
    assert parse_expose("80") == [(80, TCP)]
    assert parse_expose("53/udp") == [(53, UDP)]
    assert parse_expose("7000-7002/sctp") == [(7000, SCTP), (7001, SCTP), (7002, SCTP)]


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("", "no port given"),
        ("0", "outside"),
        ("70000", "outside"),
        ("80/icmp", "unknown protocol"),
        ("8080:80", "invalid port"),
        ("90-80", "ends before it starts"),
    ],
)
def test_parse_expose_rejects(spec: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        parse_expose(spec)


# --- property: any text parses into valid ports or raises InvalidArgument ----------------------------

_port_text = st.one_of(
    st.integers(min_value=-2, max_value=70000).map(str),
    st.text(alphabet="0123456789-", max_size=7),
)
_spec_like = st.builds(
    lambda ip, host, cont, proto: "".join(x for x in (ip, host, cont, proto) if x is not None),
    st.sampled_from(
        [None, "", "127.0.0.1:", "0.0.0.0:", "1.2.3:", "[::1]:", "[::]:", "[2001:db8::1]:", "::1:", "[", ":"]
    ),
    st.one_of(st.none(), _port_text.map(lambda t: t + ":")),
    _port_text,
    st.sampled_from([None, "/tcp", "/udp", "/sctp", "/icmp", "/", "/TCP"]),
)


def _assert_port_spec_or_invalid(text: str) -> None:
    try:
        spec = parse_port_spec(text)
    except InvalidArgument as e:
        assert "\n" not in str(e)
        return
    assert 1 <= spec.container_start <= spec.container_end <= PORT_MAX
    if spec.host_start == 0:
        assert spec.host_end == 0
    else:
        assert 1 <= spec.host_start <= spec.host_end <= PORT_MAX
    for req in spec.requests():
        assert 1 <= req.container_port <= PORT_MAX
        assert 0 <= req.host_port <= PORT_MAX
        assert req.host_port_end == 0 or req.host_port <= req.host_port_end <= PORT_MAX


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_gives_valid_ports_or_invalid_argument(text: str) -> None:
    _assert_port_spec_or_invalid(text)


@settings(max_examples=200, deadline=None)
@given(_spec_like)
def test_spec_shaped_text_gives_valid_ports_or_invalid_argument(text: str) -> None:
    _assert_port_spec_or_invalid(text)


@settings(max_examples=200, deadline=None)
@given(
    st.ip_addresses(v=6).filter(lambda a: not a.is_multicast and a.ipv4_mapped is None),
    st.integers(min_value=0, max_value=PORT_MAX),
    st.integers(min_value=1, max_value=PORT_MAX),
    st.sampled_from(["", "/tcp", "/udp", "/sctp"]),
)
def test_any_ipv6_host_address_in_brackets_is_kept(
    address: ipaddress.IPv6Address, host: int, container: int, suffix: str
) -> None:
    """Whichever way the address is written (compressed or not), it comes back as itself."""
    for text in (address.compressed, address.exploded):
        spec = parse_port_spec(f"[{text}]:{host or ''}:{container}{suffix}")
        assert (spec.host_ip, spec.host_start, spec.container_start) == (address, host, container)
        assert all(r.host_ip == address for r in spec.requests())


# --- HostPortChooser -------------------------------------------------------------------------------


FREE, IN_USE, NOT_LOCAL = BindStatus.FREE, BindStatus.IN_USE, BindStatus.NOT_LOCAL


def _always(_ip: object, _port: int, _proto: Protocol) -> BindStatus:
    return FREE


def _free_unless(test):  # type: ignore[no-untyped-def]
    """A probe that finds a port in use where test(port) holds."""

    def probe(_ip: object, port: int, _proto: Protocol) -> BindStatus:
        return IN_USE if test(port) else FREE

    return probe


def _chooser(
    taken: dict[tuple[int, Protocol], list[ipaddress.IPv4Address | None]] | None = None,
    probe=_always,
    local_range: tuple[int, int] = (40000, 40099),
    seed: int = 0,
) -> HostPortChooser:
    held = taken or {}
    return HostPortChooser(lambda key: held.get(key, ()), probe, local_range, random.Random(seed))


def test_explicit_port_is_given_as_asked() -> None:
    got = _chooser().choose([PortRequest(80, TCP, 8080, IP("127.0.0.1"))])
    assert got == (PortBinding(80, TCP, 8080, IP("127.0.0.1")),)


def test_explicit_port_already_published_is_a_conflict() -> None:
    chooser = _chooser({(8080, TCP): [None]})
    with pytest.raises(Conflict) as info:
        chooser.choose([PortRequest(80, TCP, 8080)])
    assert str(info.value) == "Bind for 0.0.0.0:8080/tcp failed: port is already allocated"


def test_same_port_other_protocol_is_free() -> None:
    got = _chooser({(8080, TCP): [None]}).choose([PortRequest(80, UDP, 8080)])
    assert got == (PortBinding(80, UDP, 8080),)


@pytest.mark.parametrize(
    ("held", "asked", "clash"),
    [
        (None, None, True),
        (None, IP("10.0.0.1"), True),  # every address includes this one
        (IP("10.0.0.1"), None, True),  # every address includes the held one
        (IP("10.0.0.1"), IP("10.0.0.1"), True),
        (IP("10.0.0.1"), IP("10.0.0.2"), False),
        # Every address of one family (0.0.0.0, ::) overlaps that family only.
        (IP("0.0.0.0"), IP("10.0.0.1"), True),
        (IP("0.0.0.0"), IP6("::"), False),
        (IP6("::"), IP6("2001:db8::1"), True),
        (IP6("::"), IP("10.0.0.1"), False),
        (IP6("::1"), IP6("::1"), True),
        (IP6("::1"), IP6("2001:db8::1"), False),
        (None, IP6("::1"), True),  # every address of both families
        (IP6("::"), None, True),
        (IP("127.0.0.1"), IP6("::1"), False),
    ],
)
def test_every_address_overlaps_a_specific_one(
    held: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
    asked: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
    clash: bool,
) -> None:
    assert overlaps(held, asked) is clash
    chooser = _chooser({(8080, TCP): [held]})
    request = [PortRequest(80, TCP, 8080, asked)]
    if clash:
        with pytest.raises(Conflict, match="port is already allocated"):
            chooser.choose(request)
    else:
        assert chooser.choose(request) == (PortBinding(80, TCP, 8080, asked),)


def test_two_requests_for_one_host_port_in_one_call_conflict() -> None:
    with pytest.raises(Conflict, match=r"Bind for 0.0.0.0:8080/tcp failed: port is already allocated"):
        _chooser().choose([PortRequest(80, TCP, 8080), PortRequest(81, TCP, 8080)])


def test_explicit_port_the_host_cannot_bind_is_a_conflict() -> None:
    refuse_8080 = _free_unless(lambda port: port == 8080)
    with pytest.raises(Conflict, match="address already in use by another process") as info:
        _chooser(probe=refuse_8080).choose([PortRequest(80, TCP, 8080, IP("127.0.0.1"))])
    assert "127.0.0.1:8080/tcp" in str(info.value)


def test_port_53_in_use_on_every_address_hints_at_the_resolver() -> None:
    with pytest.raises(Conflict, match=r"resolver listens on port 53 of each gateway"):
        _chooser(probe=_free_unless(lambda port: port == 53)).choose([PortRequest(53, UDP, 53)])
    with pytest.raises(Conflict) as info:
        _chooser(probe=_free_unless(lambda port: port == 53)).choose(
            [PortRequest(53, UDP, 53, IP("10.0.0.1"))]
        )
    assert "resolver" not in str(info.value)


def _not_local(counted: list[int]):  # type: ignore[no-untyped-def]
    """A probe for an address the host does not have: every port is refused alike."""

    def probe(_ip: object, port: int, _proto: Protocol) -> BindStatus:
        counted.append(port)
        return NOT_LOCAL

    return probe


NOT_LOCAL_MESSAGE = (
    "cannot publish on 10.9.9.9: it is not an address of this host (cannot assign requested address)"
)


@pytest.mark.parametrize(
    "request_",
    [
        PortRequest(80, TCP, 8080, IP("10.9.9.9")),  # 10.9.9.9:8080:80
        PortRequest(80, TCP, 0, IP("10.9.9.9")),  # 10.9.9.9::80
        PortRequest(80, UDP, 8000, IP("10.9.9.9"), host_port_end=8999),  # 10.9.9.9:8000-8999:80/udp
    ],
)
def test_an_address_the_host_lacks_fails_at_the_first_probe(request_: PortRequest) -> None:
    probed: list[int] = []
    chooser = _chooser(probe=_not_local(probed), local_range=(32768, 60999))
    with pytest.raises(InvalidArgument) as info:
        chooser.choose([request_])
    assert str(info.value) == NOT_LOCAL_MESSAGE
    assert len(probed) == 1  # no scan of the range


def test_an_address_the_host_lacks_is_not_taken_for_a_full_range() -> None:
    # The same probe answering "in use" instead: the whole range is tried, then it is full.
    probed: list[int] = []

    def in_use(_ip: object, port: int, _proto: Protocol) -> BindStatus:
        probed.append(port)
        return IN_USE

    with pytest.raises(Conflict, match="no free host port left in 40000-40099"):
        _chooser(probe=in_use).choose([PortRequest(80, TCP, 0, IP("10.9.9.9"))])
    assert sorted(probed) == list(range(40000, 40100))


def test_probe_is_asked_with_the_request_address_and_protocol() -> None:
    asked: list[tuple[object, int, Protocol]] = []

    def record(ip: object, port: int, proto: Protocol) -> BindStatus:
        asked.append((ip, port, proto))
        return FREE

    _chooser(probe=record).choose([PortRequest(53, UDP, 5353, IP("127.0.0.1"))])
    assert asked == [(IP("127.0.0.1"), 5353, UDP)]


@pytest.mark.parametrize("seed", range(20))
def test_random_port_comes_from_the_local_range(seed: int) -> None:
    (binding,) = _chooser(local_range=(40000, 40009), seed=seed).choose([PortRequest(80, TCP)])
    assert 40000 <= binding.host_port <= 40009
    assert binding.container_port == 80 and binding.host_ip is None


@pytest.mark.parametrize("seed", range(20))
def test_random_port_skips_taken_and_unbindable_ports(seed: int) -> None:
    taken: dict[tuple[int, Protocol], list[ipaddress.IPv4Address | None]] = {
        (p, TCP): [None] for p in range(40000, 40010, 2)
    }

    only_40007 = _free_unless(lambda port: port != 40007 and port % 2 == 1)
    (binding,) = _chooser(taken, only_40007, (40000, 40009), seed).choose([PortRequest(80, TCP)])
    assert binding.host_port == 40007


def test_random_ports_in_one_call_are_distinct() -> None:
    chooser = _chooser(local_range=(40000, 40004), seed=3)
    got = chooser.choose([PortRequest(p, TCP) for p in range(80, 85)])
    assert sorted(b.host_port for b in got) == [40000, 40001, 40002, 40003, 40004]


def test_random_port_range_exhausted_is_a_conflict() -> None:
    taken: dict[tuple[int, Protocol], list[ipaddress.IPv4Address | None]] = {(40000, TCP): [None]}
    with pytest.raises(Conflict, match="no free host port left in 40000-40001"):
        _chooser(taken, local_range=(40000, 40001)).choose([PortRequest(80, TCP), PortRequest(81, TCP)])


def test_random_port_on_one_address_may_reuse_a_port_held_on_another() -> None:
    taken: dict[tuple[int, Protocol], list[ipaddress.IPv4Address | None]] = {(40000, TCP): [IP("10.0.0.1")]}
    (binding,) = _chooser(taken, local_range=(40000, 40000)).choose([PortRequest(80, TCP, 0, IP("10.0.0.2"))])
    assert binding == PortBinding(80, TCP, 40000, IP("10.0.0.2"))


def test_host_range_picks_the_first_free_port() -> None:
    taken: dict[tuple[int, Protocol], list[ipaddress.IPv4Address | None]] = {
        (8000, TCP): [None],
        (8001, TCP): [IP("127.0.0.1")],
    }

    not_8002 = _free_unless(lambda port: port == 8002)
    (binding,) = _chooser(taken, not_8002).choose(parse_port_spec("8000-8010:80").requests())
    assert binding == PortBinding(80, TCP, 8003)


def test_host_range_requests_in_one_call_take_successive_ports() -> None:
    requests = parse_port_spec("8000-8010:80").requests() + parse_port_spec("8000-8010:81").requests()
    got = _chooser().choose(requests)
    assert [(b.container_port, b.host_port) for b in got] == [(80, 8000), (81, 8001)]


def test_full_host_range_is_a_conflict() -> None:
    taken: dict[tuple[int, Protocol], list[ipaddress.IPv4Address | None]] = {
        (8000, TCP): [None],
        (8001, TCP): [None],
    }
    with pytest.raises(Conflict, match=r"0.0.0.0:8000-8001/tcp failed: every port of the range"):
        _chooser(taken).choose(parse_port_spec("8000-8001:80").requests())


def test_chooser_does_not_change_the_taken_map_it_was_given() -> None:
    taken: dict[tuple[int, Protocol], list[ipaddress.IPv4Address | None]] = {(8000, TCP): [None]}
    _chooser(taken).choose([PortRequest(80, TCP, 8001), PortRequest(80, UDP, 8000)])
    assert taken == {(8000, TCP): [None]}


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    held=st.sets(st.integers(min_value=40000, max_value=40031), max_size=24),
    refused=st.sets(st.integers(min_value=40000, max_value=40031), max_size=8),
    count=st.integers(min_value=1, max_value=8),
)
def test_random_choices_are_free_distinct_and_in_range(
    seed: int, held: set[int], refused: set[int], count: int
) -> None:
    taken: dict[tuple[int, Protocol], list[ipaddress.IPv4Address | None]] = {(p, TCP): [None] for p in held}

    chooser = _chooser(taken, _free_unless(lambda port: port in refused), (40000, 40031), seed)
    requests = [PortRequest(80 + i, TCP) for i in range(count)]
    free = 32 - len(held | refused)
    if count > free:
        with pytest.raises(Conflict):
            chooser.choose(requests)
        return
    ports = [b.host_port for b in chooser.choose(requests)]
    assert len(set(ports)) == count
    assert all(40000 <= p <= 40031 and p not in held and p not in refused for p in ports)


def _one_by_one(
    taken: dict[tuple[int, Protocol], list[ipaddress.IPv4Address | None]],
    probe,  # type: ignore[no-untyped-def]
    requests: list[PortRequest],
) -> tuple[PortBinding, ...] | str:
    """The walk the chooser's fixed ports must decide as: each request in turn, checked
    against what is published and what came before it, then probed."""
    mine: dict[tuple[int, Protocol], list[ipaddress.IPv4Address | None]] = {}
    out = []
    for r in requests:
        key = (r.host_port, r.proto)
        if any(overlaps(r.host_ip, o) for o in (*taken.get(key, ()), *mine.get(key, ()))):
            where = f"{r.host_ip or '0.0.0.0'}:{r.host_port}"
            return f"Bind for {where}/{r.proto} failed: port is already allocated"
        status = probe(r.host_ip, r.host_port, r.proto)
        if status is not FREE:
            return str(refused(r.host_ip, r.host_port, r.proto, status))
        mine.setdefault(key, []).append(r.host_ip)
        out.append(PortBinding(r.container_port, r.proto, r.host_port, r.host_ip))
    return tuple(out)


@settings(max_examples=300, deadline=None)
@given(
    asked=st.lists(
        st.tuples(
            st.integers(min_value=8000, max_value=8011),
            st.sampled_from([TCP, UDP]),
            st.sampled_from([None, IP("127.0.0.1"), IP("10.0.0.1")]),
        ),
        min_size=1,
        max_size=12,
    ),
    held=st.dictionaries(
        st.tuples(st.integers(min_value=8000, max_value=8011), st.sampled_from([TCP, UDP])),
        st.lists(st.sampled_from([None, IP("127.0.0.1")]), min_size=1, max_size=2),
        max_size=4,
    ),
    in_use=st.sets(st.integers(min_value=8000, max_value=8011), max_size=3),
    batch=st.booleans(),
)
def test_fixed_ports_decide_as_the_one_by_one_walk(
    asked: list[tuple[int, Protocol, ipaddress.IPv4Address | None]],
    held: dict[tuple[int, Protocol], list[ipaddress.IPv4Address | None]],
    in_use: set[int],
    batch: bool,
) -> None:
    """Runs of fixed ports are checked in order and probed in one call: the same
    bindings, or the same first refusal (in use, or already allocated), as port by port."""
    requests = [PortRequest(80 + i, proto, port, ip) for i, (port, proto, ip) in enumerate(asked)]
    probe = _free_unless(lambda port: port in in_use)

    def probe_many(ip, ports, proto):  # type: ignore[no-untyped-def]
        for i, port in enumerate(ports):
            if probe(ip, port, proto) is not FREE:
                return i, probe(ip, port, proto)
        return None

    chooser = HostPortChooser(
        lambda key: held.get(key, ()), probe, (40000, 40099), probe_many=probe_many if batch else None
    )
    expected = _one_by_one(held, probe, requests)
    if isinstance(expected, str):
        with pytest.raises(Conflict) as info:
            chooser.choose(requests)
        assert str(info.value) == expected
    else:
        assert chooser.choose(requests) == expected


def test_a_range_of_fixed_ports_is_probed_in_one_call_in_order() -> None:
    calls: list[tuple[object, list[int], Protocol]] = []

    def probe_many(ip, ports, proto):  # type: ignore[no-untyped-def]
        calls.append((ip, list(ports), proto))
        return None

    def probe(_ip: object, _port: int, _proto: Protocol) -> BindStatus:
        raise AssertionError("a fixed port is probed one by one")

    chooser = HostPortChooser(lambda key: (), probe, (40000, 40099), probe_many=probe_many)
    got = chooser.choose(parse_port_spec("10000-10999:20000-20999/udp").requests())
    assert calls == [(None, list(range(10000, 11000)), UDP)]
    assert got == tuple(PortBinding(20000 + i, UDP, 10000 + i) for i in range(1000))


def test_a_refusal_in_a_range_names_the_port_the_probe_stopped_at() -> None:
    chooser = HostPortChooser(
        lambda key: (), _always, (40000, 40099), probe_many=lambda ip, ports, proto: (3, IN_USE)
    )
    with pytest.raises(Conflict) as info:
        chooser.choose(parse_port_spec("127.0.0.1:9000-9009:9000-9009").requests())
    assert str(info.value) == "cannot publish 127.0.0.1:9003/tcp: address already in use by another process"


# --- -P: publish_all ---------------------------------------------------------------------------------


def test_publish_all_adds_each_exposed_port_not_published_yet() -> None:
    given_ = tuple(parse_port_spec("8080:80").requests())
    got = publish_all(given_, [(80, TCP), (80, UDP), (443, TCP)])
    assert got == (PortRequest(80, TCP, 8080), PortRequest(80, UDP), PortRequest(443, TCP))


def test_publish_all_takes_a_port_exposed_twice_once() -> None:
    # --expose 80-81 --expose 81: Docker's ExposedPorts is a set.
    exposed = parse_expose("80-81") + parse_expose("81")
    assert publish_all((), exposed) == (PortRequest(80, TCP), PortRequest(81, TCP))


def test_publish_all_keeps_every_explicit_binding() -> None:
    given_ = (*parse_port_spec("127.0.0.1:8080:80").requests(), *parse_port_spec("8081:80").requests())
    assert publish_all(given_, [(80, TCP)]) == given_


# --- the words a user reads ---------------------------------------------------------------------


def test_refused_words_in_use_and_not_local_apart() -> None:
    in_use = refused(IP("127.0.0.1"), 8080, UDP, IN_USE)
    assert isinstance(in_use, Conflict)
    assert str(in_use) == "cannot publish 127.0.0.1:8080/udp: address already in use by another process"
    far = refused(IP("10.9.9.9"), 8080, TCP, NOT_LOCAL)
    assert isinstance(far, InvalidArgument) and str(far) == NOT_LOCAL_MESSAGE


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("80:", "invalid port spec '80:': no container port given"),
        ("80:/udp", "invalid port spec '80:/udp': no container port given"),
        ("1.2.3.4:80:", "invalid port spec '1.2.3.4:80:': no container port given"),
        ("1.2.3.4::", "invalid port spec '1.2.3.4::': no container port given"),
        ("/tcp", "invalid port spec '/tcp': no container port given"),
        ("", "invalid port spec '': no container port given"),
        (":80", "invalid port spec ':80': no host port before ':'"),
    ],
)
def test_the_cli_leaves_the_check_to_the_daemon_in_the_same_words(spec: str, message: str) -> None:
    """`dockyard run -p SPEC`: the CLI's PortBindings, as the daemon reads them."""
    from dockyard.clients.cli.run import _port_bindings
    from dockyard.daemon.api.docker import port_requests

    with pytest.raises(InvalidArgument) as info:
        port_requests(_port_bindings([spec]))
    assert str(info.value) == message
    with pytest.raises(InvalidArgument) as direct:
        parse_port_spec(spec)
    assert str(direct.value) == message
