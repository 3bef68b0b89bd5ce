"""The answer to one query, from the store: local names and PTR, or where to forward it.

What a query gets:
- A: the addresses of the containers with an active endpoint that match by
  name, by an alias of their endpoint (all of them when several share it)
  or by 12-hex short id (a full id is 64 characters, longer than a DNS label
  may be); case does not matter. Searched on every user network the asker
  is attached to, the network the query arrived on first, then the others
  in the order the asker joined them; the first network that knows the name
  answers (Docker's order). `name.<network>` (a network of the asker) and
  `name.<search domain of the asker>` too. Read fresh from the store on
  every query, so a container that joins or leaves is resolvable or gone at
  once. TTL 600, as Docker's.
- AAAA: likewise, the IPv6 addresses of those containers on networks with
  IPv6 (the same name, alias and network rules); other types of a local
  name, and AAAA where it has no IPv6: an empty NOERROR answer.
- PTR of an address (IPv4, or IPv6 under ip6.arpa) of one of those
  networks: the container's name.
- Anything else is forwarded (upstreams.py); none answering is SERVFAIL. A
  single-label name that matches nothing here is NXDOMAIN at once, never
  forwarded (no public resolver knows one); with no server at all, a longer
  one is SERVFAIL. Nothing is forwarded for an asker with no way out: one
  whose networks are all internal (or, for an unknown asker, a query that
  arrived on an internal network): DNS must not become its way out.
- A query from outside the subnet of the network it arrived on: no answer
  at all (may_ask; serving.py drops it before it is even parsed).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from dnslib import AAAA, OPCODE, PTR, QTYPE, RCODE, RR, A, DNSError, DNSRecord

from dockyard.dns.messages import Address, pack, ptr_address, reply_to
from dockyard.dns.stats import Stats
from dockyard.dns.upstreams import Upstreams
from dockyard.errors import DockyardError
from dockyard.model import Container, Network
from dockyard.store import Store

log = logging.getLogger(__name__)

LOCAL_TTL = 600


def may_ask(network: Network, source: Address) -> bool:
    """Whether `source` may ask the resolver on `network`'s gateway: one of the network's own.

    A container asks a gateway from its address on that gateway's network
    (the route to it is the network's own), including a container on
    several networks, which any of its gateways answers for all of them
    (Docker's rule, in Query.networks). The host asks from the gateway
    address itself, which is in the subnet. Anything else (another
    network's member, the LAN) is not this network's business.
    """
    return any(source in c.subnet for c in network.subnet_configs(source.version))


def has_names(network: Network) -> bool:
    """A network with DNS by name: a user network (not the default bridge) with a gateway
    (an IPv6-only network has only its IPv6 one).

    The same rule as Store.dns_networks, which picks the gateways to serve.
    """
    return network.name != "bridge" and (network.gateway is not None or network.gateway6 is not None)


@dataclass
class Query:
    """One query, with what it takes to answer it."""

    network: Network  # the network whose gateway it was sent to
    source: Address
    data: bytes
    request: DNSRecord
    tcp: bool
    store: Store

    @functools.cached_property
    def asker(self) -> Container | None:
        """The container that sent the query, found by its address on the network."""
        return self.store.dns_container_at(self.network.id, self.source)

    @functools.cached_property
    def attached(self) -> list[Network]:
        """Every bridge network of the asker (the default one too), in the order it joined them."""
        return self.store.dns_networks_of(self.asker.id) if self.asker is not None else []

    @functools.cached_property
    def networks(self) -> list[Network]:
        """The networks whose names the query sees: the arrival one first, then the asker's others."""
        others = [n for n in self.attached if has_names(n) and n.id != self.network.id]
        return [self.network, *others]

    @property
    def way_out(self) -> bool:
        """Whether the asker reaches the outside, so that other names may be forwarded for it."""
        if self.asker is None:
            return not self.network.internal
        return any(not n.internal for n in self.attached)

    def reply(self, rcode: int = RCODE.NOERROR, aa: int = 1) -> bytes:
        return pack(reply_to(self.request, rcode, aa), self.request, self.tcp)


@dataclass(frozen=True)
class Forward:
    """The query goes upstream: to these servers, in order."""

    query: Query
    servers: tuple[Address, ...]


class Resolver:
    """Answers queries from the store; says where to forward the rest."""

    def __init__(self, store: Store, upstreams: Upstreams) -> None:
        self.store = store
        self.upstreams = upstreams
        self.stats: Stats | None = None  # counts for the metrics (serving.py sets it)

    def resolve(self, network: Network, source: Address, data: bytes, tcp: bool) -> bytes | Forward | None:
        """The reply to one query, or what to forward, or None for what deserves no answer."""
        if not may_ask(network, source):
            return None
        try:
            request = DNSRecord.parse(data)
        except DNSError:
            return None
        if request.header.qr:
            return None
        query = Query(network, source, data, request, tcp, self.store)
        if request.header.opcode != OPCODE.QUERY:
            return query.reply(RCODE.NOTIMP, aa=0)
        if len(request.questions) != 1:
            return query.reply(RCODE.FORMERR, aa=0)
        try:
            return self._answer(query)
        except DockyardError as e:  # the store turns sqlite3's errors into these
            log.warning("cannot read the store for %s: %s", request.q.qname, e)
        except Exception:  # one odd query must not stop the resolver of every container
            log.exception("cannot answer %s", request.q.qname)
        return query.reply(RCODE.SERVFAIL, aa=0)

    def _answer(self, query: Query) -> bytes | Forward:
        question = query.request.q
        name = str(question.qname).rstrip(".").lower()
        if question.qtype == QTYPE.PTR and (address := ptr_address(name)) is not None:
            for network in query.networks:
                if network.config_of(address) is not None:
                    return self._reverse(query, network, address)
        elif name and (addresses := self._lookup(query, name)):
            reply = reply_to(query.request)
            for address in addresses:
                if address.version == 4 and question.qtype in (QTYPE.A, QTYPE.ANY):
                    reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(str(address)), ttl=LOCAL_TTL))
                if address.version == 6 and question.qtype in (QTYPE.AAAA, QTYPE.ANY):
                    reply.add_answer(RR(question.qname, QTYPE.AAAA, rdata=AAAA(str(address)), ttl=LOCAL_TTL))
            return pack(reply, query.request, query.tcp)
        if name and "." not in name and question.qtype != QTYPE.PTR:
            # A single label is a container's kind of name: ours to answer, and
            # no public resolver knows one (nor should hear of it).
            return query.reply(RCODE.NXDOMAIN, aa=1)
        servers = self.upstreams.servers(query.asker) if query.way_out else ()
        if servers:
            return Forward(query, servers)
        rcode = RCODE.NXDOMAIN if name and "." not in name else RCODE.SERVFAIL
        return query.reply(rcode, aa=int(rcode == RCODE.NXDOMAIN))

    def _first(self, networks: list[Network], name: str) -> list[Address]:
        """The addresses (IPv4, then IPv6) `name` has on the first of these networks that knows it."""
        for network in networks:
            found = self.store.dns_addresses(network.id, name)
            if found:
                return found
        return []

    def _lookup(self, query: Query, name: str) -> list[Address]:
        found = self._first(query.networks, name)
        if found or "." not in name:
            return found
        # name.<network> (as Docker): on that network only, one of the asker's.
        for network in query.networks:
            suffix = "." + network.name.lower()
            if name.endswith(suffix):
                found = self._first([network], name[: -len(suffix)])
                if found:
                    return found
        # name.<a search domain of the asker>: on every network of the asker.
        for domain in query.asker.config.dns_search if query.asker is not None else ():
            suffix = "." + domain.strip(".").lower()
            if suffix != "." and name.endswith(suffix):
                found = self._first(query.networks, name[: -len(suffix)])
                if found:
                    return found
        return []

    def _reverse(self, query: Query, network: Network, address: Address) -> bytes:
        container = self.store.dns_container_at(network.id, address)
        if container is None:
            return query.reply(RCODE.NXDOMAIN)
        reply = reply_to(query.request)
        qname = query.request.q.qname
        reply.add_answer(RR(qname, QTYPE.PTR, rdata=PTR(container.name + "."), ttl=LOCAL_TTL))
        return pack(reply, query.request, query.tcp)

    def forward(self, fwd: Forward) -> bytes:
        """The first upstream answer, relayed unchanged; SERVFAIL when none comes."""
        answer = self.upstreams.ask(fwd.query.data, fwd.servers, fwd.query.tcp)
        if self.stats is not None:
            self.stats.forward(answer is not None)
        return answer if answer is not None else fwd.query.reply(RCODE.SERVFAIL, aa=0)
