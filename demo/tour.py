"""The dockyard tour: Docker's four network drivers, one container each, in a
throwaway lab (`make demo`, or `.venv/bin/python demo/tour.py`, as root),
then one overlay network across three hosts (demo/multihost.py; leave it out
with --no-multihost).

It builds a host namespace where dockyardd runs and an upstream namespace
that plays the outside world (TEST-NET addresses, never linked to a real
network), starts one container per driver and prints what each sees: its
interfaces, addresses and routes, a request out to the upstream with the
address the upstream saw, and, for the bridge, a request in through a
published port. Each section opens with one line on what it shows, and
each claim is checked: the tour exits 1 when one does not hold, 130 when
interrupted. It removes everything it made, also on Ctrl-C.

At each step `dockyard explain` tells the path of the new container's
packets as the kernel shows it (the tour checks that it agrees with the
records and with what the requests did), and, with `--pictures DIR` (or
$DOCKYARD_TOUR_PICTURES), `dockyard graph` draws the host's topology into
DIR/<step>.svg: `make demo` keeps them in demo/pictures, `make pictures`
draws docs/pictures, which the README and docs/usage.md show.

It owns the narration and the checks; the lab is the integration tests'
(tests/lab.py, through demo/netlab.py), and demo/httpecho.py the HTTP ends
that report addresses.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

DEMO = Path(__file__).resolve().parent
sys.path.insert(0, str(DEMO))

from multihost import MultiHostTour  # noqa: E402
from narrate import ECHO, PY, StepFailed, echo_output, heading, note, section, shown  # noqa: E402
from netlab import (  # noqa: E402
    HOST_ADDR,
    UP_ADDR,
    Interrupted,
    LabError,
    ScriptLab,
    raise_on_termination,
    wait_for_line,
)

UP_PORT = 8000
UP_URL = f"http://{UP_ADDR}:{UP_PORT}/"
BRIDGE_NET = ipaddress.IPv4Network("172.17.0.0/16")
GATEWAY = "172.17.0.1"
PUBLISHED = 8080


# -- the tour ------------------------------------------------------------------


class Tour:
    def __init__(self, lab: ScriptLab, pictures: Path | None = None) -> None:
        self.lab = lab
        self.pictures = pictures
        self.failures: list[str] = []

    # Commands, printed as they run, with their output.

    def dy(self, *args: str, fail: bool = False) -> str:
        """`dockyard ARGS`, shown; a non-zero exit is a failed step (a zero one when fail=True)."""
        print(f"$ dockyard {shown(list(args))}")
        r = self.lab.dy(*args)
        echo_output(r.stdout + r.stderr)
        if fail and r.returncode == 0:
            raise StepFailed(f"`dockyard {shown(list(args))}` should have failed, but it worked")
        if not fail and r.returncode != 0:
            raise StepFailed(f"`dockyard {shown(list(args))}` exited {r.returncode}")
        if fail:
            note(f"exit {r.returncode}, as expected")
        return r.stdout

    def in_ns(self, where: str, ns: str, *cmd: str) -> str:
        print(f"({where}) $ {shown(list(cmd))}")
        r = self.lab.in_ns(ns, *cmd)
        echo_output(r.stdout + r.stderr)
        if r.returncode != 0:
            raise StepFailed(f"`{shown(list(cmd))}` in the {where} namespace exited {r.returncode}")
        return r.stdout

    def check(self, ok: bool, claim: str) -> None:
        if not ok:
            raise StepFailed(claim)

    def quiet_inspect(self, name: str) -> dict[str, object]:
        info = json.loads(self.lab.dy_ok("inspect", name))[0]
        assert isinstance(info, dict)
        return info

    def address_of(self, name: str) -> tuple[str, str]:
        """(IPAddress, MacAddress) from inspect."""
        settings = self.quiet_inspect(name)["NetworkSettings"]
        assert isinstance(settings, dict)
        return str(settings["IPAddress"]), str(settings["MacAddress"])

    def start(self, *args: str) -> None:
        self.dy("run", "-d", *args)
        self.lab.remember_container(args[args.index("--name") + 1])

    def wait_for_web(self, addr: str, port: int) -> None:
        """Poll from the host namespace until the container's server answers (quietly)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            url = f"http://{addr}:{port}/"
            r = self.lab.in_ns(self.lab.host, PY, ECHO, "get", url, "--timeout", "0.5")
            if r.returncode == 0:
                return
            time.sleep(0.05)
        raise StepFailed(f"the server in the container did not answer on {addr}:{port} within 10 s")

    def explain(self, *args: str) -> str:
        """`dockyard explain ARGS`, shown; the kernel must match the records."""
        out = self.dy("explain", *args)
        self.check(
            out.rstrip().endswith("the kernel matches the records"),
            f"`dockyard explain {' '.join(args)}` found the kernel and the records apart",
        )
        return out

    def picture(self, name: str) -> None:
        """The host's topology at this step, drawn by `dockyard graph` (with --pictures)."""
        if self.pictures is None:
            return
        path = self.pictures / f"{name}.svg"
        self.dy("graph", "-o", str(path))
        self.check(path.read_bytes().lstrip().startswith(b"<?xml"), f"{path} should be an SVG picture")
        note(f"the topology at this step, drawn by Graphviz: {path}")

    # Sections.

    def run_section(self, title: str, shows: str, body: Callable[[], None], picture: str = "") -> None:
        section(title, shows)
        try:
            body()
            if picture:
                self.picture(picture)
        except (StepFailed, LabError) as e:
            print(f"  !! FAILED: {e}")
            self.failures.append(f"{title}: {e}")

    def lab_intro(self) -> None:
        heading("dockyard tour: Docker's four network drivers")
        lab = self.lab
        print(f"A throwaway lab, made for this tour and removed at its end (state in {lab.root}):")
        print(f"  host namespace     {lab.host}: up0 {HOST_ADDR}/24, default route via {UP_ADDR};")
        print("                     dockyardd runs here as if it were this machine")
        print(f"  upstream namespace {lab.up}: eth0 {UP_ADDR}/24, plays the outside world;")
        print(f"                     an HTTP server on {UP_ADDR}:{UP_PORT} answers with the address it saw")
        print(f"Every `dockyard` below is `{shown(lab.dockyard)} --root {lab.root} --host-netns {lab.host}`.")
        print()
        server = lab.spawn_in(lab.up, PY, ECHO, "serve", str(UP_PORT), "upstream", "--bind", UP_ADDR)
        wait_for_line(server, timeout=10)
        print("$ dockyard daemon run &        # any command would also start it; the tour keeps its PID")
        lab.start_daemon()
        self.dy("daemon", "status")

    def none(self) -> None:
        self.start("--name", "tour-none", "--net", "none", "sleep", "infinity")
        names = link_names(self.dy("exec", "tour-none", "ip", "-br", "addr"))
        self.check(names == ["lo"], f"--net none should have only lo, it has {names}")
        routes = self.dy("exec", "tour-none", "ip", "route")
        self.check(routes.strip() == "", "--net none should have no routes")
        note("only lo, and no route at all")
        self.dy("exec", "tour-none", PY, ECHO, "get", UP_URL, fail=True)
        note("nothing outside the container can be reached")
        out = self.explain("tour-none")
        self.check("only lo" in out, "explain should say that tour-none has only lo")
        note("explain reads the same from the kernel: a namespace of its own with only lo")

    def bridge(self) -> None:
        self.start("--name", "tour-web", "-p", f"{PUBLISHED}:80", PY, ECHO, "serve", "80", "tour-web")
        addr, _mac = self.address_of("tour-web")
        self.wait_for_web(addr, 80)
        inside = self.dy("exec", "tour-web", "ip", "-br", "addr")
        names = link_names(inside)
        self.check(names == ["lo", "eth0"], f"--net bridge should have lo and eth0, it has {names}")
        eth0 = addresses_of(inside, "eth0")
        self.check(
            len(eth0) == 1 and ipaddress.IPv4Address(eth0[0]) in BRIDGE_NET,
            f"eth0 should have one address in {BRIDGE_NET}, it has {eth0}",
        )
        routes = self.dy("exec", "tour-web", "ip", "route")
        self.check(
            routes.startswith(f"default via {GATEWAY} dev eth0"), f"the default route should be via {GATEWAY}"
        )
        note(f"eth0 has {eth0[0]} from {BRIDGE_NET}; the default route goes to the bridge at {GATEWAY}")
        host_side = self.in_ns("host", self.lab.host, "ip", "-br", "link", "show", "master", "dockyard0")
        self.check(host_side.startswith("veth"), "the veth's host end should be on dockyard0")
        note("its veth's host end hangs on the bridge dockyard0 in the host namespace")
        self.dy("port", "tour-web")

        out = self.dy("exec", "tour-web", PY, ECHO, "get", UP_URL)
        self.check(f"from {eth0[0]}:" in out, f"the request should leave from {eth0[0]}")
        self.check(f"saw {HOST_ADDR}:" in out, f"the upstream should see {HOST_ADDR} (masqueraded)")
        note(f"out: it left from {eth0[0]}, the upstream saw {HOST_ADDR}: masqueraded to the host's address")

        answer = self.in_ns("upstream", self.lab.up, PY, ECHO, "get", f"http://{HOST_ADDR}:{PUBLISHED}/")
        self.check(f"tour-web at {addr}:80 " in answer, f"the request should reach {addr}:80")
        self.check(f"saw {UP_ADDR}:" in answer, f"tour-web should see the upstream's own address {UP_ADDR}")
        note(f"in: {HOST_ADDR}:{PUBLISHED} was DNATed to {addr}:80, which saw {UP_ADDR}, the upstream itself")

        out = self.explain("tour-web", "--port", f"{PUBLISHED}/tcp", "--from", UP_ADDR)
        element = f"inet dockyard map publish_any {{ tcp . {PUBLISHED} : {addr} . 80 }}"
        said = " ".join(out.split())
        self.check(
            f"to {HOST_ADDR}:{PUBLISHED}/tcp: REACHES {addr}:80, answered: {element}" in said,
            f"explain should say that {UP_ADDR} reaches {HOST_ADDR}:{PUBLISHED} by the element {element}",
        )
        self.check(
            f"to {addr}:80/tcp: DOES NOT REACH it" in said,
            f"explain should say that {UP_ADDR} cannot reach {addr}:80 directly",
        )
        note(f"explain names the element that DNATs {HOST_ADDR}:{PUBLISHED}, the one the request above took,")
        note(f"and the rule that drops a packet sent straight at {addr} from outside")

    def host(self) -> None:
        self.start("--name", "tour-host", "--net", "host", "sleep", "infinity")
        inside = self.dy("exec", "tour-host", "ip", "-br", "addr")
        theirs = self.lab.in_ns(self.lab.host, "ip", "-br", "addr").stdout
        self.check(
            link_names(inside) == link_names(theirs),
            f"--net host should see the host's interfaces {link_names(theirs)}, it sees {link_names(inside)}",
        )
        self.check("up0" in link_names(inside), "--net host should see up0")
        note("the host namespace's own interfaces: up0, the bridge dockyard0 and tour-web's veth")
        self.dy("exec", "tour-host", "ip", "route")
        out = self.dy("exec", "tour-host", PY, ECHO, "get", UP_URL)
        self.check(
            f"from {HOST_ADDR}:" in out and f"saw {HOST_ADDR}:" in out,
            f"the request should leave from and be seen from {HOST_ADDR}",
        )
        note(f"out: it left from {HOST_ADDR} and the upstream saw {HOST_ADDR}: no NAT, no veth, no bridge")
        out = self.explain("tour-host")
        self.check("uses the host's network namespace" in out, "explain should say tour-host uses the host's")
        note("explain: the host's own namespace, nothing of dockyard's tables concerns it")

    def container(self) -> None:
        web_addr, web_mac = self.address_of("tour-web")
        self.start("--name", "tour-side", "--net", "container:tour-web", "sleep", "infinity")
        inside = self.dy("exec", "tour-side", "ip", "-br", "addr")
        self.check(
            addresses_of(inside, "eth0") == [web_addr],
            f"tour-side's eth0 should have tour-web's address {web_addr}",
        )
        link = self.dy("exec", "tour-side", "ip", "-br", "link", "show", "eth0")
        self.check(web_mac in link, f"tour-side's eth0 should have tour-web's MAC {web_mac}")
        note(f"the same eth0 as tour-web: address {web_addr}, MAC {web_mac}")
        routes = self.dy("exec", "tour-side", "ip", "route")
        theirs = self.lab.dy_ok("exec", "tour-web", "ip", "route")
        self.check(
            routes == theirs and routes.startswith(f"default via {GATEWAY} dev eth0"),
            f"tour-side should have tour-web's routes, the default one via {GATEWAY}",
        )
        note(f"and the same routes: the default one via the bridge at {GATEWAY}")
        out = self.dy("exec", "tour-side", PY, ECHO, "get", UP_URL)
        self.check(f"from {web_addr}:" in out, f"the request should leave from tour-web's address {web_addr}")
        self.check(f"saw {HOST_ADDR}:" in out, f"the upstream should see {HOST_ADDR} (masqueraded)")
        note(f"out: it left from {web_addr}, tour-web's own address, and was masqueraded to {HOST_ADDR}")
        out = self.dy("exec", "tour-side", PY, ECHO, "get", "http://127.0.0.1:80/")
        self.check(
            "tour-web at 127.0.0.1:80 " in out, "tour-side should reach tour-web's server on 127.0.0.1"
        )
        note("tour-side reaches tour-web's server on 127.0.0.1: one network namespace, two containers")
        out = self.explain("tour-side")
        self.check(
            "shares the network namespace of tour-web" in out and web_addr in out,
            "explain should say tour-side shares tour-web's namespace, eth0 and address",
        )
        note("explain: tour-side's path is tour-web's, read from the one namespace they share")

    def tour(self) -> None:
        self.lab_intro()
        self.run_section(
            "1. --net none",
            "a network namespace with only lo in it: no route, a request out fails.",
            self.none,
            "1-none",
        )
        self.run_section(
            "2. --net bridge (the default)",
            f"eth0 in {BRIDGE_NET}, default route via {GATEWAY}, requests out masqueraded to "
            f"{HOST_ADDR}, and -p {PUBLISHED}:80 reached from the upstream with its own address kept.",
            self.bridge,
            "2-bridge",
        )
        self.run_section(
            "3. --net host",
            "the host namespace itself: the host's interfaces and routes, and no NAT on the way out.",
            self.host,
            "3-host",
        )
        self.run_section(
            "4. --net container:tour-web",
            "a second container in tour-web's namespace: the same eth0, address and routes, the same way "
            "out, and talking to tour-web over 127.0.0.1.",
            self.container,
            "4-container",
        )
        self.run_section("All four", "each driver's container, side by side.", self.all_four, "all-four")

    def all_four(self) -> None:
        self.dy("ps")


def link_names(brief: str) -> list[str]:
    """Interface names from `ip -br addr|link` output (without the @peer suffix)."""
    return [line.split()[0].split("@")[0] for line in brief.splitlines() if line.strip()]


def addresses_of(brief: str, name: str) -> list[str]:
    """The IPv4 addresses of one interface in `ip -br addr` output."""
    for line in brief.splitlines():
        words = line.split()
        if words and words[0].split("@")[0] == name:
            return [w.split("/")[0] for w in words[2:] if "." in w]
    return []


def main(argv: list[str] | None = None) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    p = argparse.ArgumentParser(description="Docker's four network drivers, in a throwaway lab.")
    p.add_argument(
        "--pictures",
        default=os.environ.get("DOCKYARD_TOUR_PICTURES", ""),
        metavar="DIR",
        help="draw the topology at each step into DIR/<step>.svg (needs Graphviz)",
    )
    p.add_argument(
        "--no-multihost",
        dest="multihost",
        action="store_false",
        help="leave out part 2, the overlay network across three hosts (an etcd cluster)",
    )
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("tour: needs root (it makes network namespaces); try: sudo make demo", file=sys.stderr)
        return 1
    pictures = Path(args.pictures).resolve() if args.pictures else None
    if pictures is not None:
        pictures.mkdir(parents=True, exist_ok=True)
    raise_on_termination()
    lab = ScriptLab("dytour")
    tour = Tour(lab, pictures)
    multi = MultiHostTour(pictures) if args.multihost else None
    status = 0
    try:
        lab.setup()
        tour.tour()
        if multi is not None:
            multi.tour()
    except (StepFailed, LabError) as e:
        print(f"  !! FAILED: {e}")
        tour.failures.append(str(e))
    except KeyboardInterrupt:
        print("\ninterrupted")
        status = 130
    except Interrupted as e:
        print(f"\ninterrupted ({e})")
        status = 128 + e.signum
    finally:
        heading("Cleaning up")
        print("$ dockyard rm -f <every container>;  dockyard daemon stop")
        print(f"$ ip netns del {lab.host};  ip netns del {lab.up};  rm -r {lab.tmp}")
        problems = lab.teardown()
        if multi is not None:
            problems += multi.teardown()
            tour.failures += multi.failures
        for problem in problems:
            print(f"  !! {problem}")
        if not problems:
            print("nothing left behind: no namespace, process, mount or state directory of this tour remains")
    if status:
        return status
    if tour.failures or problems:
        print(f"\nthe tour FAILED: {len(tour.failures) + len(problems)} problem(s)")
        for failure in tour.failures:
            print(f"  - {failure}")
        return 1
    print("\nall four drivers behaved as described")
    if multi is not None:
        print("and one overlay network spanned three hosts, as described")
    return 0


if __name__ == "__main__":
    sys.exit(main())
