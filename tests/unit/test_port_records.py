"""PortRequest and PortBinding write their own __init__ (model.py, for speed): it must take
exactly the dataclass's fields, in order, with the same defaults, and the instances stay
frozen dataclasses."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from dockyard.model import PortBinding, PortRequest, Protocol


@pytest.mark.parametrize("cls", [PortRequest, PortBinding])
def test_the_hand_written_init_takes_the_fields_as_declared(cls: type) -> None:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    declared = [
        (f.name, inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default)
        for f in dataclasses.fields(cls)
    ]
    assert [(p.name, p.default) for p in params] == declared


@pytest.mark.parametrize("cls", [PortRequest, PortBinding])
def test_the_instances_are_frozen_equal_by_value_and_hashable(cls: type) -> None:
    a, b = cls(80, Protocol.TCP, 8080), cls(80, Protocol.TCP, 8080)
    assert a == b and hash(a) == hash(b) and dataclasses.astuple(a) == dataclasses.astuple(b)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.host_port = 1  # type: ignore[misc]
    assert dataclasses.replace(a, host_port=9090).host_port == 9090
