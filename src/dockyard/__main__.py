"""python -m dockyard: the CLI."""

from dockyard.clients.cli import entry

entry()
