"""Tables and JSON the way Docker prints them."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: clients start faster
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any, TextIO


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], out: TextIO) -> None:
    rows = [list(r) for r in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    for row in [list(headers), *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        out.write("   ".join(cells).rstrip() + "\n")


def one_line(text: object) -> str:
    """A message as one line: line breaks and other unprintable characters escaped.

    Errors quote what the user gave (a name, a reference), which may hold anything.
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def json_array(items: list[Any], out: TextIO) -> None:
    import json  # only inspect prints JSON: the other commands do not pay for it

    out.write(json.dumps(items, indent=4) + "\n")


def quote(text: str) -> str:
    """A name in a request's path. The API client's, loaded by the time a command runs;
    not at import (`--help` stays light)."""
    from dockyard.clients.wire import quote as url_quote

    return url_quote(text)


def quoted_command(command: str, width: int = 20) -> str:
    if len(command) > width:
        command = command[: width - 1] + "…"
    return f'"{command}"'


def ports_text(ports: list[dict[str, Any]]) -> str:
    """Docker's PORTS column: 0.0.0.0:8080->80/tcp, consecutive ports as ranges."""
    items = sorted(
        ((p.get("IP", ""), p["Type"], p.get("PublicPort", 0), p["PrivatePort"]) for p in ports),
    )
    out: list[str] = []
    i = 0
    while i < len(items):
        ip, proto, pub, priv = items[i]
        ip = f"[{ip}]" if ":" in ip else ip
        j = i
        while (
            j + 1 < len(items)
            and items[j + 1][:2] == (ip, proto)
            and items[j + 1][2] == items[j][2] + 1
            and items[j + 1][3] == items[j][3] + 1
        ):
            j += 1
        if j > i:
            out.append(f"{ip}:{pub}-{items[j][2]}->{priv}-{items[j][3]}/{proto}")
        else:
            out.append(f"{ip}:{pub}->{priv}/{proto}")
        i = j + 1
    return ", ".join(out)
