"""The clients' console scripts, written over pip's so that they start isolated and without site.

    python -m dockyard.clients.entry_scripts BIN_DIR     # make deps: BIN_DIR is the venv's bin

pip's console scripts cannot pass the interpreter a flag, so every `dockyard`
and `dockyard-cni` paid `site`: the venv's .pth files (setuptools' distutils
hack among them) and the site-packages scan, ~2 ms of CPU a command on these
machines, which a client needs none of: it imports the stdlib and dockyard
only. These scripts run the same entry points under `python -I -S`, with
dockyard's own directory put first on the path, as found when they are
written. Isolated mode also keeps a command run as root from importing what
PYTHONPATH, PYTHONSTARTUP or the current directory would put in its way.

The daemon's script (dockyardd) is left as pip wrote it: it imports from
site-packages, and it starts once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Script name -> the module whose entry() it runs.
CLIENTS = {
    "dockyard": "dockyard.clients.cli",
    "dockyard-cni": "dockyard.clients.cni.plugin",
}


def script_text(python: str, package_parent: str, module: str) -> str:
    # The interpreter's flags go in the #! line as one word: Linux passes what
    # follows the interpreter's path as a single argument.
    return (
        f"#!{python} -IS\n"
        "# Written by dockyard.clients.entry_scripts (make deps) in place of pip's console script:\n"
        "# isolated (-I) and without site (-S), so a client pays no site-packages it never imports.\n"
        "import sys\n"
        f"sys.path.insert(0, {package_parent!r})\n"
        f"from {module} import entry\n"
        "sys.exit(entry())\n"
    )


def write_scripts(bin_dir: Path, python: str, package_parent: str) -> list[Path]:
    """Each client's script in bin_dir, replaced atomically; the paths written."""
    written = []
    for name, module in CLIENTS.items():
        path = bin_dir / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(script_text(python, package_parent, module))
        tmp.chmod(0o755)
        os.replace(tmp, path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m dockyard.clients.entry_scripts BIN_DIR", file=sys.stderr)
        return 2
    import dockyard

    package_parent = str(Path(dockyard.__file__).resolve().parent.parent)
    for path in write_scripts(Path(args[0]), sys.executable, package_parent):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
