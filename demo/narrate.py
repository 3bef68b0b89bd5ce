"""How the tour speaks: headings, sections, commands shown as a reader would type them.

Shared by the tour's parts (demo/tour.py's four drivers on one host,
demo/multihost.py's overlay network across three), so that both read alike.
"""

from __future__ import annotations

import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent
ECHO = str(DEMO / "httpecho.py")
PY = sys.executable
INDENT = "    "


class StepFailed(Exception):
    """A claim of the tour did not hold (or a command behind it failed)."""


# -- printing ------------------------------------------------------------------


def heading(title: str) -> None:
    print()
    print(title)
    print("=" * len(title))


def section(title: str, shows: str) -> None:
    print()
    print(title)
    print("-" * len(title))
    print(f"Shows: {shows}")
    print()


def note(text: str) -> None:
    print(f"  -> {text}")


def shown(cmd: list[str]) -> str:
    """A command as a reader would type it: python3 and demo/httpecho.py, not full paths."""
    words = ["python3" if w == PY else "demo/httpecho.py" if w == ECHO else w for w in cmd]
    return " ".join(words)


def echo_output(text: str) -> None:
    lines = text.rstrip("\n").splitlines()
    for line in lines or ["(nothing)"]:
        print(f"{INDENT}{line}".rstrip())
