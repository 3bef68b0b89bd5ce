"""python -m dockyard: the CLI."""

from dockyard.cli import entry

entry()
