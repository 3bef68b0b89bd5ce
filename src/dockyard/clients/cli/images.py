"""dockyard images|pull|load|import|save|tag|rmi and image ls|inspect|history|prune|rm|...

Docker's flags and columns. Thin: the daemon does the work (images/ in the
API); this module parses, sends and prints.
"""

from __future__ import annotations

import argparse
import sys
import time

from dockyard.clients.cli import output
from dockyard.errors import DockyardError, InvalidArgument

TYPE_CHECKING = False  # typing is not imported at run time: clients start faster
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any) -> None:
    _ls_args(sub.add_parser("images", help="list images"))
    _pull_args(sub.add_parser("pull", help="pull an image from a registry"))
    _load_args(sub.add_parser("load", help="load images from a docker save archive or an OCI layout"))
    _import_args(sub.add_parser("import", help="make an image from a root file system tarball"))
    _save_args(sub.add_parser("save", help="write images to a tar archive (standard output by default)"))
    _tag_args(sub.add_parser("tag", help="give an image another name"))
    _rm_args(sub.add_parser("rmi", help="remove images"))

    img = sub.add_parser("image", help="manage images")
    isub = img.add_subparsers(dest="image_command", metavar="COMMAND", parser_class=type(img))
    img.set_defaults(func=lambda client, args: (img.print_help(), 0)[1])
    _ls_args(isub.add_parser("ls", aliases=["list"], help="list images"))
    _rm_args(isub.add_parser("rm", aliases=["remove"], help="remove images"))
    _pull_args(isub.add_parser("pull", help="pull an image from a registry"))
    _load_args(isub.add_parser("load", help="load images from an archive"))
    _import_args(isub.add_parser("import", help="make an image from a tarball"))
    _save_args(isub.add_parser("save", help="write images to a tar archive"))
    _tag_args(isub.add_parser("tag", help="give an image another name"))
    p = isub.add_parser("inspect", help="images as JSON")
    p.add_argument("-f", "--format", default="", help="only 'json' (the default) is supported")
    p.add_argument("refs", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_inspect)
    p = isub.add_parser("history", help="an image's layers and how they were made")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-H", "--human", default="true", help="sizes and dates for humans (true|false)")
    p.add_argument("--format", default="", help="only 'json' is supported, besides the table")
    p.add_argument("ref", metavar="IMAGE")
    p.set_defaults(func=cmd_history)
    p = isub.add_parser("prune", help="remove unused images (dangling only, unless -a)")
    p.add_argument("-a", "--all", action="store_true", help="every image no container uses")
    p.add_argument("-f", "--force", action="store_true", help="do not ask (dockyard never asks)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE", help="label")
    p.set_defaults(func=cmd_prune)


def _pull_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--platform", default="", metavar="OS/ARCH[/VARIANT]")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-a", "--all-tags", action="store_true", help="refused: give a tag")
    p.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    p.set_defaults(func=cmd_pull)


def _load_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", default="", metavar="FILE", help="read from FILE, not standard input")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_load)


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION")
    p.add_argument("-m", "--message", default="")
    p.add_argument("--platform", default="")
    p.add_argument("file", metavar="FILE|-")
    p.add_argument("repo", nargs="?", default="", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=cmd_import)


def _save_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default="", metavar="FILE")
    p.add_argument("names", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_save)


def _tag_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    p.set_defaults(func=cmd_tag)


def _ls_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--digests", action="store_true")
    p.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dangling, reference, label, before, since",
    )
    p.add_argument("--format", default="", help="only 'json' is supported, besides the table")
    p.add_argument("reference", nargs="?", default="", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=cmd_images)


def _rm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--no-prune", action="store_true")
    p.add_argument("refs", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_rmi)


def _filters(items: list[str]) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for f in items:
        key, sep, value = f.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"invalid filter {f!r}: expected KEY=VALUE")
        filters.setdefault(key, []).append(value)
    return filters


def _size(n: int) -> str:
    """Docker's sizes: decimal units, three significant digits."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.3g}{unit}"
        value /= 1000
    return f"{n}B"


def _ago(epoch: int) -> str:
    seconds = max(0, int(time.time()) - int(epoch))
    if seconds < 1:
        return "Less than a second ago"
    for span, unit in (
        (86400 * 365, "year"),
        (86400 * 30, "month"),
        (86400 * 7, "week"),
        (86400, "day"),
        (3600, "hour"),
        (60, "minute"),
        (1, "second"),
    ):
        if seconds >= span * (2 if unit in ("hour", "day") else 1):
            count = seconds // span
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return f"{seconds} seconds ago"


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _split(name: str) -> tuple[str, str]:
    """`repo:tag` at the last colon after the last slash (a registry's port stays in repo)."""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, "<none>"


def cmd_images(client: Any, args: argparse.Namespace) -> int:
    filters = _filters(args.filter)
    if args.reference:
        filters.setdefault("reference", []).append(args.reference)
    images = client.images(filters or None, args.all)
    if args.format not in ("", "json"):
        raise InvalidArgument(f"--format {args.format!r} is not supported: give json, or none for the table")
    if args.quiet:
        seen = set()
        for i in images:
            shown = i["Id"] if args.no_trunc else _short(i["Id"])
            if shown not in seen:
                seen.add(shown)
                print(shown)
        return 0
    if args.format == "json":
        output.json_array(images, sys.stdout)
        return 0
    rows = []
    for i in images:
        shown_id = i["Id"] if args.no_trunc else _short(i["Id"])
        names = [_split(t) for t in i.get("RepoTags") or []] or [("<none>", "<none>")]
        digests = {d.partition("@")[0]: d.partition("@")[2] for d in i.get("RepoDigests") or []}
        if not i.get("RepoTags"):
            names = [(repo, "<none>") for repo in digests] or names
        for repo, tag in names:
            row = [repo, tag]
            if args.digests:
                row.append(digests.get(repo, "<none>"))
            row += [shown_id, _ago(i.get("Created", 0)), _size(int(i.get("Size", 0)))]
            rows.append(row)
    headers = ["REPOSITORY", "TAG", *(["DIGEST"] if args.digests else []), "IMAGE ID", "CREATED", "SIZE"]
    output.table(headers, rows, sys.stdout)
    return 0


def cmd_inspect(client: Any, args: argparse.Namespace) -> int:
    if args.format not in ("", "json"):
        raise InvalidArgument(f"--format {args.format!r} is not supported: the output is JSON")
    found, missing = [], []
    for ref in args.refs:
        try:
            found.append(client.image_inspect(ref))
        except DockyardError as e:
            missing.append(str(e))
    output.json_array(found, sys.stdout)
    for message in missing:
        print(f"dockyard: {output.one_line(message)}", file=sys.stderr)
    return 1 if missing else 0


def cmd_history(client: Any, args: argparse.Namespace) -> int:
    items = client.image_history(args.ref)
    if args.format == "json":
        output.json_array(items, sys.stdout)
        return 0
    if args.format:
        raise InvalidArgument(f"--format {args.format!r} is not supported: give json, or none for the table")
    if args.quiet:
        for h in items:
            print(h["Id"] if args.no_trunc or h["Id"] == "<missing>" else _short(h["Id"]))
        return 0
    human = args.human.lower() not in ("false", "0")
    rows = []
    for h in items:
        shown = h["Id"] if args.no_trunc or h["Id"] == "<missing>" else _short(h["Id"])
        created_by = h.get("CreatedBy", "")
        if not args.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        created = _ago(h.get("Created", 0)) if human else str(h.get("Created", 0))
        size = _size(h.get("Size", 0)) if human else str(h.get("Size", 0))
        rows.append([shown, created, created_by, size, h.get("Comment", "")])
    output.table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], rows, sys.stdout)
    return 0


def cmd_tag(client: Any, args: argparse.Namespace) -> int:
    client.image_tag(args.source, args.target)
    return 0


def cmd_rmi(client: Any, args: argparse.Namespace) -> int:
    status = 0
    for ref in args.refs:
        try:
            records = client.image_remove(ref, args.force, args.no_prune)
        except DockyardError as e:
            print(f"dockyard: {output.one_line(e)}", file=sys.stderr)
            status = 1
            continue
        for r in records:
            for key, value in r.items():
                print(f"{key}: {value}")
    if status and len(args.refs) == 1:
        return 125
    return status


def cmd_prune(client: Any, args: argparse.Namespace) -> int:
    filters = _filters(args.filter)
    if args.all:
        filters["dangling"] = ["false"]
    answer = client.image_prune(filters or None)
    deleted = answer.get("ImagesDeleted") or []
    if deleted:
        print("Deleted Images:")
        for r in deleted:
            for key, value in r.items():
                print(f"{key.lower()}: {value}")
        print()
    print(f"Total reclaimed space: {_size(int(answer.get('SpaceReclaimed') or 0))}")
    return 0


def cmd_pull(client: Any, args: argparse.Namespace) -> int:
    if args.all_tags:
        raise InvalidArgument("pulling every tag of a repository (-a) is not supported; give a tag")
    name = args.name
    if "@" not in name and ":" not in name.rpartition("/")[2]:
        if not args.quiet:
            print("Using default tag: latest")
        name += ":latest"

    def show(m: dict[str, Any]) -> None:
        status = str(m.get("status", ""))
        if args.quiet or status in ("Downloading", "Extracting"):
            return
        print(f"{m['id']}: {status}" if m.get("id") else status, flush=True)

    client.image_pull(name, platform=args.platform, on_message=show)
    first, slash, _ = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        print(name)
    else:
        print(f"docker.io/{name}" if slash else f"docker.io/library/{name}")
    return 0


def cmd_load(client: Any, args: argparse.Namespace) -> int:
    if args.input:
        with open(args.input, "rb") as f:
            messages = client.image_load(f, args.quiet)
    else:
        if sys.stdin.isatty():
            raise InvalidArgument("requested load from stdin, but stdin is empty (give -i FILE or a pipe)")
        messages = client.image_load(sys.stdin.buffer, args.quiet)
    for m in messages:
        if "stream" in m:
            sys.stdout.write(str(m["stream"]))
    return 0


def cmd_import(client: Any, args: argparse.Namespace) -> int:
    repo, tag = "", ""
    if args.repo:
        repo, tag = _split(args.repo)
        tag = "" if tag == "<none>" else tag
    if args.platform:
        raise InvalidArgument("--platform is not supported by dockyard import: the image is for this host")
    if args.file == "-":
        image_id = client.image_import(sys.stdin.buffer, repo, tag, args.message, args.change)
    else:
        with open(args.file, "rb") as f:
            image_id = client.image_import(f, repo, tag, args.message, args.change)
    print(image_id)
    return 0


def cmd_save(client: Any, args: argparse.Namespace) -> int:
    if args.output:
        import os

        tmp = f"{args.output}.part"
        try:
            with open(tmp, "wb") as f:
                client.image_save(args.names, f)
            os.replace(tmp, args.output)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return 0
    if sys.stdout.isatty():
        raise InvalidArgument("cowardly refusing to save to a terminal: use -o FILE or redirect the output")
    sys.stdout.flush()
    client.image_save(args.names, sys.stdout.buffer)
    sys.stdout.buffer.flush()
    return 0
