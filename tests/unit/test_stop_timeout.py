"""`stop`'s grace period: the API passes the client's t on, and without one the engine waits 10 s.

Docker's default, checked here without waiting it out: the engine's stop
service (ContainerStop) is built with stand-ins for the store and the exits
it waits on, and its signals are recorded in place of being sent. (The
CLI's request, with and without -t, is checked on the wire in
tests/integration/test_lifecycle.py; the SIGKILL after the grace, with
`stop -t 1`, in test_stop_sends_sigterm_then_sigkill.)
"""

from __future__ import annotations

import signal
import threading
from types import SimpleNamespace
from typing import Any, cast

import pytest

from dockyard.daemon.api.http import Request
from dockyard.daemon.api.routes import Api
from dockyard.engine import STOP_TIMEOUT
from dockyard.engine.containers.stop import ContainerStop


class RecordingStop(ContainerStop):
    """ContainerStop with its signals recorded instead of sent."""

    def __init__(self, calls: list[tuple[str, object]]) -> None:
        config = SimpleNamespace(stop_signal="", stop_timeout=None)
        container = SimpleNamespace(id="c1", running=True, config=config)
        store = SimpleNamespace(get_container=lambda ref: container, find_container=lambda cid: container)
        # The container stays up through the grace, as one ignoring SIGTERM would.
        exits = SimpleNamespace(wait_exit=lambda cid, grace: calls.append(("wait", grace)) and False)
        events = SimpleNamespace(container=lambda *args, **attributes: None)
        restarts = SimpleNamespace(stopped_by_user=lambda cid: None)
        super().__init__(
            cast(Any, store),
            threading.RLock(),
            cast(Any, None),
            cast(Any, None),
            cast(Any, exits),
            cast(Any, events),
            cast(Any, restarts),
        )
        self.calls = calls

    def send(self, c: Any, sig: int) -> None:
        self.calls.append(("signal", sig))


def test_the_engine_waits_10_s_then_kills_when_no_grace_is_given() -> None:
    calls: list[tuple[str, object]] = []
    RecordingStop(calls).stop("c1")
    assert STOP_TIMEOUT == 10
    assert calls == [
        ("signal", signal.SIGTERM),
        ("wait", 10),
        ("signal", signal.SIGKILL),
        ("wait", None),
    ]


def test_the_engine_uses_the_grace_it_is_given() -> None:
    calls: list[tuple[str, object]] = []
    RecordingStop(calls).stop("c1", 1)
    assert calls[:2] == [("signal", signal.SIGTERM), ("wait", 1)]


@pytest.mark.parametrize(
    ("query", "grace"), [({}, None), ({"t": ""}, None), ({"t": "1"}, 1), ({"t": "0"}, 0)]
)
def test_the_api_passes_t_on_and_no_t_as_none(query: dict[str, str], grace: int | None) -> None:
    seen: list[object] = []
    api = SimpleNamespace(
        e=SimpleNamespace(
            get=lambda ref: SimpleNamespace(id="c1", running=True),
            stop=lambda cid, timeout: seen.append(timeout),
        )
    )
    request = Request("POST", "/containers/c1/stop", query, {}, b"")
    assert Api.stop(api, request, "c1").status == 204  # type: ignore[arg-type]
    assert seen == [grace]
