"""The daemon log's one format, set up once by each process that writes it.

dockyardd, its container shim and its DNS resolver all write $ROOT/daemon.log
(their stderr). Each configures logging once, at its start, with `configure`:
one line per record with the time, the level, the module and the process id
(three processes share the file). Modules log through
`logging.getLogger(__name__)`; dockyard's loggers follow the level asked for
(`dockyardd --log-level`, `--debug`), other libraries' only say warnings.
What a user reads (the CLI, the API's errors) is never logged here.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
LEVELS = ("debug", "info", "warning", "error")


class _Handler(logging.StreamHandler[TextIO]):
    """Ours, told apart from handlers others (pytest) put on the root logger."""


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    """Log to stream (stderr: the daemon log) in the one format; again replaces the setup."""
    if level not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("dockyard").setLevel(level.upper())
