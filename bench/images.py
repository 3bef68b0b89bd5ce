"""A container of an image: `run --rm IMAGE true` with dockyard, Docker and Podman, and the overlay's cost.

    .venv/bin/python bench/images.py [--runs N] [--warmup N] [--mounts N] [--json PATH]
    .venv/bin/python bench/images.py --smoke     # 2 runs, 20 mounts, dockyard only: for the test suite

As root. One image for every tool: busybox-static with its applet links
(bench/_reference.py's rootfs_tar, as tests/images_lab.py makes it), imported
by each tool's own `import` (`-c "ENV PATH=/bin:/usr/bin"`); no registry is
asked. Each tool works in a throwaway lab of its own (tests/lab.py through
demo/netlab.py): dockyardd with --host-netns, a private dockerd and a
private Podman (bench/_reference.py) in their labs' host namespaces, every
daemon started and warmed up first.

1. `run --rm IMAGE true`, whole command, on each tool's default network:
   the docker CLI against dockyardd's socket (dockyard's own `run` takes no
   image: images come through the Docker API, as Compose and docker-py
   bring them), against the private dockerd (Docker 20.10), Podman 4.3 (vfs
   storage, --cgroups=disabled), and `dockyard run --rm true` without an
   image (the host's /bin/true on an overlay of the host's tree) beside
   them. Every round runs every case once, the order rotated by one each
   round.
2. The overlay's own cost: dockyard mounts a container's root in the shim's
   child, in the container's new mount namespace, between fork and exec
   (kernel/rootfs.py), and never unmounts it (the namespace ends with the
   container). Timed here with the same calls on the image's own layers (the
   LowerDir a container of it shows in inspect), in a child process of this
   one in a private mount namespace, in the lab's host namespace: the
   overlay mount alone (its upper and work directories made, as for a new
   container), its unmount, and the whole root (overlay, /proc, /sys, /dev,
   masks: rootfs.build) then its lazy unmount; --mounts times each.

Medians with p10-p90. Times are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import BenchError, rotated, summary, timed
from _reference import PrivateDocker, PrivatePodman, rootfs_tar
from _report import Goal, Plot, Report, Series, Table, spread, times
from _script import Run, ScriptLab, main, options

IMAGE = "dybench-busybox:latest"
GOAL_RATIO = 0.3  # issue 14: under 0.3x Docker's time
GOAL_MOUNT_MS = 5.0  # issue 14: the overlay mount under 5 ms
CASES = (
    ("dockyard", "image"),
    ("dockyard", "no image"),
    ("docker", "image"),
    ("podman", "image"),
)
LABELS = {
    ("dockyard", "image"): "docker run --rm IMAGE true, against dockyardd",
    ("dockyard", "no image"): "dockyard run --rm true (the host's tree, no image)",
    ("docker", "image"): "docker run --rm IMAGE true",
    ("podman", "image"): "podman run --rm IMAGE true",
}


# -- 2. the overlay's own cost -------------------------------------------------------------


def _mount_loop(lowers: list[str], work: Path, mounts: int, netns_path: str) -> dict[str, list[float]]:
    """In a child process: a private mount namespace, the lab's network namespace, then the
    rootfs calls timed `mounts` times each."""
    from dockyard.kernel import netns, rootfs

    netns.unshare(netns.CLONE_NEWNS)
    netns.mount(None, "/", None, netns.MS_REC | netns.MS_PRIVATE)
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    netns.setns(fd, netns.CLONE_NEWNET)
    os.close(fd)
    out: dict[str, list[float]] = {"mount_ms": [], "umount_ms": [], "build_ms": [], "build_umount_ms": []}
    for i in range(mounts):
        layer = work / f"c{i}" / rootfs.LAYER
        target = layer / "merged"
        target.mkdir(parents=True)
        t0 = time.perf_counter()
        rootfs._overlay(lowers, str(layer), str(target))
        t1 = time.perf_counter()
        netns.umount(str(target), 0)
        t2 = time.perf_counter()
        out["mount_ms"].append((t1 - t0) * 1000)
        out["umount_ms"].append((t2 - t1) * 1000)
        shutil.rmtree(work / f"c{i}")

        container = work / f"b{i}"
        container.mkdir()
        t0 = time.perf_counter()
        new_root = rootfs.build(str(container), [], [], False, lowers=lowers)
        t1 = time.perf_counter()
        netns.umount(new_root)  # MNT_DETACH: the whole tree under it
        t2 = time.perf_counter()
        out["build_ms"].append((t1 - t0) * 1000)
        out["build_umount_ms"].append((t2 - t1) * 1000)
        shutil.rmtree(container)
    return out


def overlay_cost(lowers: list[str], work: Path, mounts: int, netns_path: str) -> dict[str, list[float]]:
    """_mount_loop in a forked child (its mount namespace dies with it); its figures."""
    work.mkdir()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(r)
        try:
            data = json.dumps(_mount_loop(lowers, work, mounts, netns_path)).encode()
            status = 0
        except BaseException as e:  # said to the parent, whatever it was
            data, status = json.dumps({"error": f"{type(e).__name__}: {e}"}).encode(), 1
        with os.fdopen(w, "wb") as f:
            f.write(data)
        os._exit(status)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    shutil.rmtree(work, ignore_errors=True)
    got = json.loads(data or b'{"error": "the child said nothing"}')
    if "error" in got:
        raise BenchError(f"the overlay micro-benchmark failed: {got['error']}")
    return got


# -- 1. run --rm IMAGE true ------------------------------------------------------------


def docker_client() -> str:
    """The docker CLI (Debian's, which matches its dockerd, first)."""
    if os.access("/usr/bin/docker", os.X_OK):
        return "/usr/bin/docker"
    found = shutil.which("docker")
    if found is None:
        raise BenchError("no docker client to run an image on dockyard (apt-get install docker.io)")
    return found


def measure(run: Run, args: argparse.Namespace) -> tuple[Report, dict[str, Any]]:
    tar = rootfs_tar(run.work / "image.tar")
    lab: ScriptLab = run.lab(daemon=True)
    lab.dy_ok("import", "-c", "ENV PATH=/bin:/usr/bin", str(tar), IMAGE, timeout=300)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env |= {"DOCKER_HOST": f"unix://{lab.root}/dockyard.sock", "DOCKER_CONFIG": str(run.work / "docker-cli")}
    argv: dict[tuple[str, str], tuple[list[str], dict[str, str] | None]] = {
        ("dockyard", "image"): ([docker_client(), "run", "--rm", IMAGE, "true"], env),
        ("dockyard", "no image"): (lab.dy_cmd("run", "--rm", "true"), None),
    }
    if run.can_run("docker", PrivateDocker, args.no_docker):
        docker = run.docker()
        docker.import_image(tar, IMAGE)
        argv[("docker", "image")] = (docker.argv("run", "--rm", IMAGE, "true"), docker.env)
    if run.can_run("podman", PrivatePodman, args.no_podman):
        podman = run.podman()
        podman.import_image(tar, IMAGE)
        argv[("podman", "image")] = (
            podman.argv("run", "--rm", "--cgroups=disabled", IMAGE, "true"),
            podman.env,
        )
    cases = [c for c in CASES if c in argv]
    print(
        f"images: {len(cases)} cases, {args.warmup} warm-up and {args.runs} timed runs each ...", flush=True
    )
    for _ in range(args.warmup):
        for case in cases:
            timed(argv[case][0], LABELS[case], timeout=120, env=argv[case][1])
    ms: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
    for r in range(args.runs):
        for case in rotated(cases, r):
            ms[case].append(timed(argv[case][0], LABELS[case], timeout=120, env=argv[case][1]))

    # The image's layers, as a container of it has them.
    made = subprocess.run(
        [docker_client(), "run", "-d", "--name", "layers", IMAGE, "sleep", "100000"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    if made.returncode != 0:
        raise BenchError(f"docker run -d on dockyard exited {made.returncode}: {made.stderr.strip()}")
    lab.remember_container("layers")
    lowers = json.loads(lab.dy_ok("inspect", "layers"))[0]["GraphDriver"]["Data"]["LowerDir"].split(":")
    print(f"  the overlay: {args.mounts} mounts on the image's {len(lowers)} layer(s) ...", flush=True)
    cost = overlay_cost(lowers, run.work / "mounts", args.mounts, f"/run/netns/{lab.host}")
    raw = {
        "runs": args.runs,
        "warmup": args.warmup,
        "mounts": args.mounts,
        "cases": [
            {"tool": t, "case": c, "argv": argv[(t, c)][0], "ms": ms[(t, c)], **summary(ms[(t, c)])}
            for t, c in cases
        ],
        "overlay": {**cost, "lowers": lowers, "summaries": {k: summary(v) for k, v in cost.items()}},
    }
    return build_report(ms, cost, args, len(lowers)), raw


# -- the report ------------------------------------------------------------------------


def build_report(
    ms: dict[tuple[str, str], list[float]],
    cost: dict[str, list[float]],
    args: argparse.Namespace,
    layers: int,
) -> Report:
    med = {case: statistics.median(v) for case, v in ms.items()}
    ours = med[("dockyard", "image")]
    rows = [
        [LABELS[case], spread(ms[case]), times(med[case] / ours), times(ours / med[case])]
        for case in CASES
        if case in ms
    ]
    mount = statistics.median(cost["mount_ms"])
    cost_rows = [
        ["overlay mount (upper and work made)", spread(cost["mount_ms"], 2, 2)],
        ["its unmount", spread(cost["umount_ms"], 2, 2)],
        ["the whole root: overlay, /proc, /sys, /dev, masks (rootfs.build)", spread(cost["build_ms"], 2, 2)],
        ["its lazy unmount", spread(cost["build_umount_ms"], 2, 2)],
    ]
    goals = []
    if ("docker", "image") in med:
        docker = med[("docker", "image")]
        podman = f", Podman {med[('podman', 'image')]:.1f} ms" if ("podman", "image") in med else ""
        goals.append(
            Goal(
                f"`run --rm IMAGE true` under {GOAL_RATIO:.1f}x Docker's time",
                ours < GOAL_RATIO * docker,
                f"{ours:.1f} ms ({times(ours / docker)} Docker)",
                f"Docker {docker:.1f} ms{podman}",
            )
        )
    goals.append(
        Goal(
            f"the overlay mount under {GOAL_MOUNT_MS:.0f} ms",
            mount < GOAL_MOUNT_MS,
            f"{mount:.2f} ms",
            f"the whole root {statistics.median(cost['build_ms']):.2f} ms",
        )
    )
    notes = [] if ("docker", "image") in med else ["no Docker run: the 0.3x goal is not judged"]
    return Report(
        key="images",
        title="Containers of an image",
        method=(
            "One busybox-static image (its applet links, imported by each tool's own `import`). "
            f"`run --rm IMAGE true`, whole command, daemons up and warmed, {args.runs} rounds, each "
            "running every case once, rotated; each tool in a throwaway host namespace of its own. "
            f"The overlay: kernel/rootfs.py's calls on the image's {layers} layer(s), {args.mounts} "
            "times each, in a private mount namespace of a child of the benchmark."
        ),
        tables=[
            Table(
                "run --rm IMAGE true (ms, p10-p90)",
                ["case", "ms", "against dockyard", "dockyard against it"],
                rows,
            ),
            Table("the root's making, kernel/rootfs.py's calls (ms, p10-p90)", ["step", "ms"], cost_rows),
        ],
        goals=goals,
        notes=notes,
        plots=[
            Plot(
                "images_run",
                "run --rm IMAGE true: whole command (median, p10-p90)",
                "bar",
                "",
                "ms",
                [Series.of("run --rm", [f"{t} {c}" for t, c in ms], list(ms.values()))],
            )
        ],
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = options(__doc__, "2 runs, 1 warm-up, 20 mounts, dockyard only", ("docker", "podman"))
    p.add_argument("--runs", type=int, default=20, help="timed runs per case (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per case first (default 3)")
    p.add_argument("--mounts", type=int, default=200, help="times each rootfs call is timed (default 200)")
    args = p.parse_args(argv)
    if args.smoke:
        args.runs, args.warmup, args.mounts, args.no_docker, args.no_podman = 2, 1, 20, True, True
    if args.runs < 1 or args.warmup < 0 or args.mounts < 1:
        p.error("--runs and --mounts must be at least 1, --warmup at least 0")
    return args


if __name__ == "__main__":
    arguments = parse_args(None)
    sys.exit(main("images", arguments, lambda run: measure(run, arguments)))
