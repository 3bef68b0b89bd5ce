"""`network ls --filter`, parsed and matched in networks.py (the API only hands the query over)."""

from __future__ import annotations

import json

import pytest

from dockyard.engine.networks.service import NetworkFilter
from dockyard.errors import InvalidArgument
from dockyard.model import DriverName, Network

NETWORKS = [
    Network(id="a" * 64, name="bridge", driver=DriverName.BRIDGE),
    Network(id="b" * 64, name="host", driver=DriverName.HOST),
    Network(id="c" * 64, name="none", driver=DriverName.NONE),
    Network(id="1234" + "d" * 60, name="front", driver=DriverName.BRIDGE, labels=(("team", "web"),)),
    Network(
        id="5678" + "e" * 60, name="back", driver=DriverName.BRIDGE, labels=(("team", "db"), ("tier", ""))
    ),
]


def _names(filters: object) -> list[str]:
    wanted = NetworkFilter.parse(json.dumps(filters))
    return [n.name for n in NETWORKS if wanted.matches(n)]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["bridge", "host", "none", "front", "back"]),
        ({"name": ["ro"]}, ["front"]),  # a part of the name
        ({"name": ["ro", "ack"]}, ["front", "back"]),  # values of one key: any
        ({"name": {"front": True}}, ["front"]),  # Docker's older shape
        ({"id": ["1234"]}, ["front"]),
        ({"id": ["ddd"]}, ["front"]),  # a part of the id
        ({"driver": ["bridge"]}, ["bridge", "front", "back"]),
        ({"driver": ["bridg"]}, []),  # the driver exactly
        ({"type": ["builtin"]}, ["bridge", "host", "none"]),
        ({"type": ["custom"]}, ["front", "back"]),
        ({"label": ["team"]}, ["front", "back"]),
        ({"label": ["team=db"]}, ["back"]),
        ({"label": ["tier="]}, ["back"]),
        ({"label": ["team=db", "team=web"]}, ["front", "back"]),
        ({"driver": ["bridge"], "type": ["builtin"]}, ["bridge"]),  # keys: every one
        ({"name": ["o"], "label": ["team=web"]}, ["front"]),
        ({"name": []}, ["bridge", "host", "none", "front", "back"]),
    ],
)
def test_filters_match_as_dockers(filters: object, expected: list[str]) -> None:
    assert _names(filters) == expected


def test_dangling_and_scope() -> None:
    def names(filters: object, used: set[str]) -> list[str]:
        wanted = NetworkFilter.parse(json.dumps(filters))
        return [n.name for n in NETWORKS if wanted.matches(n, n.name in used)]

    # Dangling: custom networks no container is on; the pre-defined ones never are.
    assert names({"dangling": ["true"]}, {"front"}) == ["back"]
    assert names({"dangling": ["false"]}, {"front"}) == ["bridge", "host", "none", "front"]
    assert names({"scope": ["local"]}, set()) == [n.name for n in NETWORKS]
    assert names({"scope": ["swarm"]}, set()) == []


def test_no_filters_at_all() -> None:
    for text in (None, ""):
        assert all(NetworkFilter.parse(text).matches(n) for n in NETWORKS)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not json", "expected a JSON object"),
        ('["name"]', "expected a JSON object"),
        ('{"color": ["red"]}', "invalid filter 'color'"),
        ('{"scope": ["galaxy"]}', "invalid filter 'scope'"),
        ('{"dangling": ["maybe"]}', "invalid filter 'dangling=maybe'"),
        ('{"name": "front"}', "must be a list of strings"),  # not split into letters
        ('{"name": [5]}', "must be a list of strings"),
        ('{"name": {"front": false}}', "must be a list of strings"),
        ('{"type": ["user"]}', "use builtin or custom"),
        ("[" * 100_000, "expected a JSON object"),
    ],
)
def test_bad_filters_are_clear_errors(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        NetworkFilter.parse(text)
