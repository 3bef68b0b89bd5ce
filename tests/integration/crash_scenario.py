"""The operations the crash tests break: every mutating command, in order."""

from __future__ import annotations

import sys
from collections.abc import Callable

from lab import PROBE, Lab

Step = Callable[[Lab, dict[str, str]], object]
# A process that ignores SIGTERM, so that `stop` goes on to SIGKILL; it says
# when its trap is set.
STUBBORN = ("sh", "-c", "trap '' TERM; echo ready; sleep 300 & wait")


def _run(lab: Lab, ctx: dict[str, str], family: str = "ipv4") -> None:
    # --init: the probe is not PID 1, so stop's SIGTERM ends it (143), as before PID namespaces.
    ip = ("--ip", "10.88.0.10") if family != "ipv6only" else ()
    ip6 = ("--ip6", "fd00:88::10") if family != "ipv4" else ()
    out = lab.dy_ok(
        "run", "-d", "--init", "--name", "web", "--net", "n1", "-p", "8080:80", *ip, *ip6,
        sys.executable, PROBE, "serve", "tcp", "80",
    )  # fmt: skip
    ctx["cid"] = out.strip().splitlines()[-1]
    lab.init_ready(ctx["cid"])


def _run_stubborn(lab: Lab, ctx: dict[str, str]) -> None:
    lab.dy_ok("run", "-d", "--rm", "--name", "stubborn", "--net", "none", *STUBBORN)
    lab.eventually(lambda: "ready" in lab.dy_ok("logs", "stubborn"), what="the trap set")


def _subnets(family: str, subnet: str, subnet6: str) -> tuple[str, ...]:
    """A network's subnets: IPv4's; IPv6's beside it in the dual-stack variant (every endpoint
    with both); IPv6's alone in the IPv6-only one (every endpoint without IPv4)."""
    four = ("--subnet", subnet) if family != "ipv6only" else ("--ipv4=false",)
    return (*four, "--ipv6", "--subnet", subnet6) if family != "ipv4" else four


def scenario(family: str = "ipv4") -> list[tuple[str, Step]]:
    """The scenario on IPv4 networks, on dual-stack ones (family "dual") or IPv6-only ones ("ipv6only")."""
    return [
        (
            "network create",
            lambda lab, ctx: lab.dy_ok(
                "network", "create", *_subnets(family, "10.88.0.0/24", "fd00:88::/64"), "n1"
            ),
        ),
        ("run", lambda lab, ctx: _run(lab, ctx, family)),
        (
            "network create 2",
            lambda lab, ctx: lab.dy_ok(
                "network", "create", *_subnets(family, "10.89.0.0/24", "fd00:89::/64"), "n2"
            ),
        ),
        ("network connect", lambda lab, ctx: lab.dy_ok("network", "connect", "n2", ctx["cid"])),
        ("network disconnect", lambda lab, ctx: lab.dy_ok("network", "disconnect", "n2", ctx["cid"])),
        ("stop", lambda lab, ctx: lab.dy_ok("stop", "-t", "1", ctx["cid"])),
        ("rm", lambda lab, ctx: lab.dy_ok("rm", ctx["cid"])),
        # --rm: the container goes when it ends (foreground), or when it is stopped.
        ("run --rm", lambda lab, ctx: lab.dy_ok("run", "--rm", "--name", "once", "--net", "none", "true")),
        ("run -d --rm", _run_stubborn),
        ("stop, to SIGKILL", lambda lab, ctx: lab.dy_ok("stop", "-t", "0", "stubborn")),
        (
            "run -d",
            lambda lab, ctx: lab.dy_ok("run", "-d", "--name", "doomed", "--net", "none", "sleep", "300"),
        ),
        ("rm -f", lambda lab, ctx: lab.dy_ok("rm", "-f", "doomed")),
        ("network rm 2", lambda lab, ctx: lab.dy_ok("network", "rm", "n2")),
        ("network rm", lambda lab, ctx: lab.dy_ok("network", "rm", "n1")),
    ]


SCENARIO = scenario()
