"""bench/scale.py's figures and report when a start fails part-way through a batch: the
failure is reported with the daemon's error, the batches that ran to their end are
reported, and nothing raises (an IndexError once hid the daemon's error)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import scale  # noqa: E402

ERROR = "dockyard: no free address left in network bridge (172.17.0.0/16)"


class FailingSide(scale.Side):
    """Starts that succeed until the `fail_at`th, which fails as the CLI does, with the daemon's error."""

    name = "dockyard"
    core_parts = ("dockyardd",)

    def __init__(self, containers: int, batch: int, fail_at: int) -> None:
        super().__init__(None, containers, batch)  # type: ignore[arg-type]
        self.fail_at = fail_at
        self.tried = 0

    def start_argv(self, name: str) -> list[str]:
        self.tried += 1
        if self.tried == self.fail_at:
            return ["sh", "-c", f"echo '{ERROR}' >&2; exit 125"]
        return ["true"]

    def rm_argv(self, name: str) -> list[str]:
        return ["true"]

    def parts(self) -> dict[str, list[int]]:
        return {"dockyardd": [os.getpid()], "own": []}


@pytest.mark.parametrize("fail_at", [7, 5, 1])  # in the second batch, at its first start, at the very first
def test_a_failed_start_is_reported_with_the_daemons_error(
    fail_at: int, capsys: pytest.CaptureFixture[str]
) -> None:
    m = scale.Measured(FailingSide(containers=10, batch=5, fail_at=fail_at))
    m.idle = scale.read_memory(m.side, "idle", 0)
    scale.interleaved([m], "start")
    assert ERROR in m.failure
    assert f"start batch {(fail_at - 1) // 5 + 1}" in m.failure
    assert ERROR in capsys.readouterr().err

    report, figures = scale.build_report([m])
    fig = figures["dockyard"]
    if fail_at <= 5:  # no batch ran to its end: no figures, no goals
        assert fig is None
        assert not report.goals
    else:  # the first batch's five starts, and only those
        assert fig["n"] == 5
        assert len(fig["start_all_ms"]) == 5
    assert report.text()
