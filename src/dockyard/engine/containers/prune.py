"""Which containers a filter selects (docker ps -f, docker container prune), and the prune itself.

The filters' rules are policy/container_filters.py's; this module hands them
what only the store knows: the networks a container is on (its endpoints
while it runs, the networks its config names otherwise), its image's id, and
the containers `before=` and `since=` name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dockyard.errors import InvalidArgument, NotFound
from dockyard.model import Container
from dockyard.policy.container_filters import ContainerFacts, ContainerFilter, PruneFilter


def configured_networks(c: Container) -> list[str]:
    """The networks c's config puts it on, in the order it joins them."""
    first = c.config.network_mode.network_name
    return ([first] if first and not c.config.network_left else []) + [r.network for r in c.config.networks]


def facts(engine: Any, c: Container, with_image: bool = False) -> ContainerFacts:
    store = engine.store
    networks: dict[str, str] = {}
    for ep in store.endpoints(container_id=c.id):
        n = store.find_network(ep.network_id)
        if n is not None:
            networks[n.name] = n.id
    for name in configured_networks(c):
        if name not in networks:
            n = store.find_network(name)
            networks[name] = n.id if n is not None else ""
    image_id = c.config.image_id
    if with_image and c.config.image and not image_id:
        try:
            image_id = engine.images.get(c.config.image).id
        except (NotFound, InvalidArgument):  # an image gone since, or a name the store never had
            image_id = ""
    return ContainerFacts(tuple(networks.items()), image_id)


def select(engine: Any, wanted: ContainerFilter, show_all: bool, limit: int = -1) -> Iterator[Container]:
    """containers/json: newest first, as Docker lists them, one at a time (a listing
    keeps what it shows of each, not every container)."""
    store = engine.store
    before = store.get_container(wanted.get("before")[0]) if wanted.get("before") else None
    since = store.get_container(wanted.get("since")[0]) if wanted.get("since") else None
    show_all = show_all or wanted.implies_all or limit > 0 or before is not None or since is not None
    taken = 0
    for c in store.iter_containers():
        if not show_all and not c.running:
            continue
        if wanted.values and not wanted.matches(
            c, facts(engine, c, bool(wanted.get("ancestor"))), before, since
        ):
            continue
        yield c
        taken += 1
        if 0 < limit <= taken:
            return


def prune(engine: Any, wanted: PruneFilter) -> list[str]:
    """Remove every container not running that `wanted` selects; their ids."""
    removed = []
    for c in engine.store.containers():
        if c.running or not wanted.matches(c.config.labels, c.created):
            continue
        try:
            engine.remove(c.id)
        except NotFound:  # removed meanwhile (--rm, another prune)
            continue
        removed.append(c.id)
    return removed
