"""A rollback that fails is reported, never dropped: logged with the failure that made it run, and named in the error.

Undo.rollback runs the undo steps in reverse after a failure; an undo step
that fails too is logged (the original failure's traceback with it) and
named in the original error's message, which is what the user sees
("rollback also failed: ..."). A named undo step passes through the fault
injection of engine/steps.py as `undo.<name>` (tests/integration/test_crash.py
injects one in a real start).
"""

from __future__ import annotations

import logging

import pytest

from dockyard.engine import steps
from dockyard.engine.steps import Undo
from dockyard.errors import Conflict, KernelError


def _fail(message: str) -> None:
    raise KernelError(message)


def test_a_failed_undo_step_is_named_in_the_error_and_logged_with_the_original_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []
    undo = Undo()
    undo.push(lambda: ran.append("records"), "run.records")
    undo.push(lambda: _fail("cannot remove pin of c1"), "run.sandbox")
    undo.push(lambda: ran.append("process"), "run.process")
    error = Conflict("address 10.0.0.2 is already in use")
    try:
        raise error
    except Conflict:
        with caplog.at_level(logging.ERROR, logger="dockyard.engine.steps"):
            failed = undo.rollback(error, "start of container web")
    assert [str(e) for e in failed] == ["cannot remove pin of c1"]
    # The user sees the failure, and what could not be undone.
    assert str(error) == (
        "address 10.0.0.2 is already in use (rollback also failed: cannot remove pin of c1; "
        "`dockyard system gc` finishes it)"
    )
    assert error.message == str(error) and error.args == (str(error),)
    # Every other step still ran, in reverse order.
    assert ran == ["process", "records"]
    assert undo.steps == []
    # The daemon's log has the whole chain: the original failure's traceback, and the undo step's.
    first, second = caplog.records
    assert "start of container web failed (address 10.0.0.2 is already in use)" in first.getMessage()
    assert "rollback also failed: cannot remove pin of c1" in first.getMessage()
    assert first.exc_info is not None and first.exc_info[1] is error
    assert second.exc_info is not None and str(second.exc_info[1]) == "cannot remove pin of c1"


def test_an_error_that_is_not_dockyards_gets_a_note(caplog: pytest.LogCaptureFixture) -> None:
    undo = Undo()
    undo.push(lambda: _fail("cannot delete veth1234567"))
    error = RuntimeError("boom")
    with caplog.at_level(logging.ERROR, logger="dockyard.engine.steps"):
        undo.rollback(error, "connect of container web")
    assert str(error) == "boom"
    assert error.__notes__ == [
        "rollback also failed: cannot delete veth1234567; `dockyard system gc` finishes it"
    ]


def test_a_rollback_that_succeeds_changes_nothing_and_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[int] = []
    undo = Undo()
    undo.push(lambda: ran.append(1))
    undo.push(lambda: ran.append(2))
    error = KernelError("injected failure at step run.spawn")
    with caplog.at_level(logging.DEBUG, logger="dockyard.engine.steps"):
        assert undo.rollback(error, "start of container web") == []
    assert ran == [2, 1]
    assert str(error) == "injected failure at step run.spawn"
    assert caplog.records == []


def test_a_named_undo_step_can_be_made_to_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """`undo.<name>` is a step like any: DOCKYARD_FAULT can name it, beside the failure it undoes."""
    monkeypatch.setattr(steps, "_faults_at", steps._faults("run.spawned:error,undo.run.sandbox:error"))
    monkeypatch.setattr(steps, "_passages", {})
    removed: list[str] = []
    undo = Undo()
    undo.push(lambda: removed.append("pin"), "run.sandbox")
    undo.push(lambda: removed.append("cgroup"), "run.cgroup")
    with pytest.raises(KernelError) as caught:
        try:
            steps.step("run.spawned")
        except KernelError as e:
            undo.rollback(e, "start of container web")
            raise
    assert removed == ["cgroup"]  # the pin's removal is the step that failed
    assert "rollback also failed: injected failure at step undo.run.sandbox" in str(caught.value)


def test_faults_are_parsed_apart_by_commas() -> None:
    assert steps._faults("") == {}
    assert steps._faults("run.veth") == {"run.veth": (1, "")}
    assert steps._faults("stop.sigterm@2, undo.run.sandbox:error") == {
        "stop.sigterm": (2, ""),
        "undo.run.sandbox": (1, "error"),
    }
