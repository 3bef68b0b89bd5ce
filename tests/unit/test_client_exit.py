"""The clients leave without the interpreter's finalization (clients.leave): what
they printed still arrives whole, and their exit status is the one sys.exit gives."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Output buffered as a user's shell has it, whatever the suite's environment says.
BUFFERED = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
PRINT = "import sys; sys.stdout.write('x' * 200000); print('e', file=sys.stderr, end=''); "
LEAVE = "from dockyard.clients import leave; leave({code})"
EXIT = "sys.exit({code})"


def _python(script: str, **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", script], env=BUFFERED, **kwargs)  # type: ignore[call-overload]


@pytest.mark.parametrize("code", [0, 3, 125, 255, 256, -1])
def test_buffered_output_arrives_whole_and_the_status_is_sys_exits(code: int) -> None:
    seen = []
    for end in (LEAVE, EXIT):
        proc = _python(PRINT + end.format(code=code), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate()
        seen.append((proc.returncode, out, err))
    assert seen[0] == seen[1]
    assert len(seen[0][1]) == 200000 and seen[0][2] == b"e"


def test_a_flush_that_fails_is_reported_as_the_interpreter_reports_it() -> None:
    # The reader of stdout is gone when the client flushes: sys.exit's own report and status.
    seen = []
    for end in (LEAVE, EXIT):
        # A few bytes stay in the buffer; the line on stdin says when the reader has gone.
        script = "import sys; sys.stdout.write('x' * 10); sys.stdin.readline(); " + end.format(code=0)
        proc = _python(script, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        err = proc.stderr.read().decode()
        seen.append((proc.wait(), "BrokenPipeError" in err))
    assert seen[0] == seen[1] and seen[0][0] != 0 and seen[0][1], seen
