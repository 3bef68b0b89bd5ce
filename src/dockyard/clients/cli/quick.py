"""`dockyard run` command lines read without argparse, when they are plain.

argparse costs a `run` its import (with gettext and locale) and the building
of run's ~45 options, ~8 ms of a ~75 ms command on a slow day. This reads
the plain forms people type: exact option names, `--opt=value`, `-p 80`,
`-p80`, clusters of flags (`-dit`), `--pids-limit -1`, then the command
and its arguments, untouched. It gives the very namespace argparse gives
(tests/unit/test_cli_quick.py holds it to that, line by line against the
parser), or None for anything else: --help, an abbreviated or unknown
option, `--`, a value that begins with "-", a bad number, a command line
without a command. argparse then reads it, with its errors and its help.
"""

from __future__ import annotations

from dockyard.clients.cli.top_help import OPTIONS

TYPE_CHECKING = False  # typing is not imported at run time: clients start faster
if TYPE_CHECKING:
    from types import SimpleNamespace

FLAG, VALUE, APPEND, INT = "flag", "value", "append", "int"
# Every option of the top-level parser (parser.py makes it from the same table): dest and
# kind; a flag's default is False, a value's None.
GLOBAL = {
    option: (option[2:].replace("-", "_"), VALUE if metavar is not None else FLAG)
    for option, metavar, _ in OPTIONS
}
GLOBAL_DEFAULTS = {dest: None if kind == VALUE else False for dest, kind in GLOBAL.values()}
# Every option of run's parser (clients/cli/run.py and run_fields.py): dest and kind.
RUN = {
    "--name": ("name", VALUE),
    "-d": ("detach", FLAG),
    "--detach": ("detach", FLAG),
    "--rm": ("rm", FLAG),
    "--net": ("network", APPEND),
    "--network": ("network", APPEND),
    "-p": ("publish", APPEND),
    "--publish": ("publish", APPEND),
    "-P": ("publish_all", FLAG),
    "--publish-all": ("publish_all", FLAG),
    "--expose": ("expose", APPEND),
    "--hostname": ("hostname", VALUE),
    "-h": ("hostname", VALUE),
    "--ip": ("ip", VALUE),
    "--ip6": ("ip6", VALUE),
    "--network-alias": ("network_alias", APPEND),
    "--dns": ("dns", APPEND),
    "--dns-search": ("dns_search", APPEND),
    "--dns-option": ("dns_option", APPEND),
    "-e": ("env", APPEND),
    "--env": ("env", APPEND),
    "-w": ("workdir", VALUE),
    "--workdir": ("workdir", VALUE),
    "-u": ("user", VALUE),
    "--user": ("user", VALUE),
    "--group-add": ("group_add", APPEND),
    "--cap-add": ("cap_add", APPEND),
    "--cap-drop": ("cap_drop", APPEND),
    "--privileged": ("privileged", FLAG),
    "--security-opt": ("security_opt", APPEND),
    "--init": ("init", FLAG),
    "--pids-limit": ("pids_limit", INT),
    "-i": ("interactive", FLAG),
    "--interactive": ("interactive", FLAG),
    "-t": ("tty", FLAG),
    "--tty": ("tty", FLAG),
    "-l": ("label", APPEND),
    "--label": ("label", APPEND),
    "-v": ("volume", APPEND),
    "--volume": ("volume", APPEND),
    "--mount": ("mount", APPEND),
    "--restart": ("restart", VALUE),
    "--add-host": ("add_host", APPEND),
    "--sysctl": ("sysctl", APPEND),
    "--mac-address": ("mac_address", VALUE),
    "--stop-signal": ("stop_signal", VALUE),
    "--stop-timeout": ("stop_timeout", INT),
}
# Their defaults; a list default is copied for each parse, as argparse copies it.
RUN_DEFAULTS: dict[str, object] = {
    "name": None,
    "detach": False,
    "rm": False,
    "network": None,
    "publish": [],
    "publish_all": False,
    "expose": [],
    "hostname": "",
    "ip": "",
    "ip6": "",
    "network_alias": [],
    "dns": [],
    "dns_search": [],
    "dns_option": [],
    "env": [],
    "workdir": "",
    "user": "",
    "group_add": [],
    "cap_add": [],
    "cap_drop": [],
    "privileged": False,
    "security_opt": [],
    "init": False,
    "pids_limit": None,
    "interactive": False,
    "tty": False,
    "label": [],
    "volume": [],
    "mount": [],
    "restart": "no",
    "add_host": [],
    "sysctl": [],
    "mac_address": "",
    "stop_signal": "",
    "stop_timeout": None,
}


class _Decline(Exception):
    """Not a plain command line: argparse's to read."""


def _negative_number(text: str) -> bool:
    # What argparse takes for a value although it begins with "-" (its _negative_number_matcher).
    digits = text[1:]
    if digits.startswith("."):
        digits = digits[1:]
    elif "." in digits:
        whole, _, frac = digits.partition(".")
        if not whole.isdigit() or not frac.isdigit():
            return False
        return whole.isascii() and frac.isascii()
    return digits.isdigit() and digits.isascii()


def _value(argv: list[str], i: int) -> str:
    if i >= len(argv):
        raise _Decline
    value = argv[i]
    if value.startswith("-") and not _negative_number(value):
        raise _Decline
    return value


def _store(ns: dict[str, object], dest: str, kind: str, value: str | None) -> None:
    if kind == FLAG:
        if value is not None:
            raise _Decline
        ns[dest] = True
        return
    if value is None or value == "--":  # "--" as a value is refused by the parser (parser.py)
        raise _Decline
    if kind == APPEND:
        items = ns[dest]
        ns[dest] = [*items, value] if isinstance(items, list) else [value]
    elif kind == INT:
        try:
            ns[dest] = int(value)
        except ValueError:
            raise _Decline from None
    else:
        ns[dest] = value


def _take(argv: list[str], i: int, ns: dict[str, object], dest: str, kind: str, attached: str | None) -> int:
    """Store the option at argv[i], with its attached value, or none (a flag), or the next
    word; where reading goes on."""
    if attached is not None or kind == FLAG:
        _store(ns, dest, kind, attached)
        return i + 1
    _store(ns, dest, kind, _value(argv, i + 1))
    return i + 2


def _options(argv: list[str], i: int, table: dict[str, tuple[str, str]], ns: dict[str, object]) -> int:
    """Read options from argv[i]; the index of the first word that is not one."""
    while i < len(argv):
        word = argv[i]
        if word == "--" or not word.startswith("-") or word == "-":
            return i
        if word.startswith("--"):
            name, eq, attached = word.partition("=")
            if name not in table:
                raise _Decline
            dest, kind = table[name]
            i = _take(argv, i, ns, dest, kind, attached if eq else None)
            continue
        if "=" in word or " " in word:
            raise _Decline
        # -d, -dit, -p80:80, -dp80:80: flags, then at most one option that takes the rest.
        j = 1
        while j < len(word):
            short = "-" + word[j]
            if short not in table:
                raise _Decline
            dest, kind = table[short]
            if kind == FLAG:
                _store(ns, dest, kind, None)
                j += 1
                continue
            i = _take(argv, i, ns, dest, kind, word[j + 1 :] or None)
            break
        else:
            i += 1
    return i


def _ambiguous(words: list[str], options: set[str]) -> bool:
    """Whether argparse would stop at one of words as an ambiguous abbreviation (`--ne`,
    `--=x`): it sorts every word of the line, the command's too, before it parses."""
    for word in words:
        if not word.startswith("--") or word in options:
            continue
        prefix = word.split("=", 1)[0]
        if prefix in options:
            continue
        if sum(1 for option in options if option.startswith(prefix)) > 1:
            return True
    return False


TOP_OPTIONS = {*GLOBAL, "-h", "--help"}
RUN_OPTIONS = {*RUN, "--help"}


def parse_run(argv: list[str]) -> SimpleNamespace | None:
    """argparse's namespace for a plain `run` command line; None for any other."""
    from types import SimpleNamespace

    ns: dict[str, object] = dict(GLOBAL_DEFAULTS)
    try:
        i = _options(argv, 0, GLOBAL, ns)
        if i >= len(argv) or argv[i] != "run":
            return None
        ns.update({k: (list(v) if isinstance(v, list) else v) for k, v in RUN_DEFAULTS.items()})
        i = _options(argv, i + 1, RUN, ns)
    except _Decline:
        return None
    command = argv[i:]
    if not command or command[0] in ("", "--") or command[0].startswith("-") or "--" in command:
        return None
    if _ambiguous(argv, TOP_OPTIONS) or _ambiguous(command, RUN_OPTIONS):
        return None
    from dockyard.clients.cli.run import cmd_run

    ns["command"] = command
    ns["func"] = cmd_run
    return SimpleNamespace(**ns)
