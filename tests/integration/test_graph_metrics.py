"""`dockyard graph` and the daemon's metrics, against the kernel and the records.

The graph's nodes and edges are compared with `ip -j link` in the host and
in each container's namespace and with `dockyard ps`; its SVG and PNG are
drawn by Graphviz and parsed. The metrics are scraped over `metrics-addr`
and over the API socket and parsed with prometheus_client's text parser,
and each value is compared with what the records and the kernel hold.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from lab import HOST_ADDR, Lab

SVG = "{http://www.w3.org/2000/svg}"


def _links(lab: Lab, pid: int | None = None) -> list[dict]:
    cmd = ["ip", "-j", "-d", "link"]
    r = lab.in_host(*cmd) if pid is None else lab.in_host("nsenter", f"--net=/proc/{pid}/ns/net", *cmd)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _inode(lab: Lab, pid: int) -> str:
    return lab.in_host("stat", "-L", "-c", "%i", f"/proc/{pid}/ns/net").stdout.strip()


def test_the_graph_is_what_ip_link_and_the_records_show(lab: Lab, tmp_path: Path) -> None:
    lab.dy_ok("network", "create", "--subnet", "10.31.0.0/24", "front")
    lab.serve("--name", "web", "--net", "front", "-p", "8080:80")
    lab.serve("--name", "other")
    lab.run_d("--name", "side", "--net", "container:web", "sleep", "300")
    lab.run_d("--name", "onhost", "--net", "host", "sleep", "300")
    g = json.loads(lab.dy_ok("graph", "--format", "json"))
    nodes = {n["id"]: n for n in g["nodes"]}
    edges = {(e["a"], e["b"], e["kind"]) for e in g["edges"]}

    # The host's links: every bridge and veth of `ip link` is a node, by index and name,
    # and each port's edge goes to the bridge `ip link` names as its master.
    host = _links(lab)
    by_name = {lk["ifname"]: lk for lk in host}
    kinds = {lk["ifname"]: lk.get("linkinfo", {}).get("info_kind", "") for lk in host}
    drawn = {n["name"]: n for n in g["nodes"] if n["namespace"] == "host" and n["name"]}
    for name, kind in kinds.items():
        if kind in ("bridge", "veth"):
            assert name in drawn and drawn[name]["index"] == by_name[name]["ifindex"], name
            assert drawn[name]["kind"] == kind
    masters = {
        (f"host/{lk['ifindex']}", f"host/{by_name[lk['master']]['ifindex']}") for lk in host if "master" in lk
    }
    assert masters and masters == {(a, b) for a, b, k in edges if k == "master"}

    # Each container's namespace is a cluster named by its inode, with its eth0, and a veth
    # edge joins eth0 to the host link whose peer it is.
    infos = {name: lab.inspect(name) for name in ("web", "other", "side", "onhost")}
    for name in ("web", "other"):
        pid = infos[name]["State"]["Pid"]
        cluster = f"net:[{_inode(lab, pid)}]"
        eth0 = next(lk for lk in _links(lab, pid) if lk["ifname"] == "eth0")
        node = f"{cluster}/{eth0['ifindex']}"
        assert nodes[node]["name"] == "eth0"
        peer = next(lk for lk in host if lk["ifindex"] == eth0["link_index"])
        assert peer["link_index"] == eth0["ifindex"] and kinds[peer["ifname"]] == "veth"
        assert (f"host/{peer['ifindex']}", node, "veth") in edges
        assert nodes[f"container/{infos[name]['Id']}"]["namespace"] == cluster
    # side shares web's namespace; onhost sits in the host's.
    web_cluster = nodes[f"container/{infos['web']['Id']}"]["namespace"]
    assert nodes[f"container/{infos['side']['Id']}"]["namespace"] == web_cluster
    assert nodes[f"container/{infos['onhost']['Id']}"]["namespace"] == "host"
    # Every running container of `ps` is drawn, and nothing else.
    running = set(lab.dy_ok("ps", "-q", "--no-trunc").split())
    assert {n["id"].split("/", 1)[1] for n in g["nodes"] if n["kind"] == "container"} == running
    # The published port: the map's element, to web's eth0.
    web_ip = infos["web"]["NetworkSettings"]["Networks"]["front"]["IPAddress"]
    assert ["tcp", 8080] in [item[0]["concat"] for item in lab.map_elements("publish_any")]
    port = next(e for e in g["edges"] if e["kind"] == "publish")
    assert port["a"] == "port/0.0.0.0:8080/tcp" and nodes[port["b"]]["namespace"] == web_cluster
    assert port["label"] == f"DNAT {web_ip}:80"

    # One network only: its bridge, its ports and members, not the default bridge's.
    front = json.loads(lab.dy_ok("graph", "front", "--format", "json"))
    names = {n["name"] for n in front["nodes"] if n["name"]}
    assert "dockyard0" not in names and any(n.startswith("dy-") for n in names)

    # DOT, drawn by Graphviz: the SVG parses and has a node for each of the graph's.
    dot = lab.dy_ok("graph")
    assert dot.startswith('graph "dockyard: host topology" {')
    out = tmp_path / "topology.svg"
    lab.dy_ok("graph", "-o", str(out))  # the format from the file's name
    svg = ET.parse(out).getroot()
    assert svg.tag == f"{SVG}svg"
    titles = {t.text for t in svg.iter(f"{SVG}title")}
    assert set(nodes) <= titles, set(nodes) - titles
    png = tmp_path / "topology.png"
    lab.dy_ok("graph", "--format", "png", "-o", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = lab.dy("graph", "nosuch")
    assert r.returncode == 125 and r.stderr.startswith("dockyard: "), r.stderr


def _scrape(lab: Lab, *url: str) -> dict[str, dict[tuple, float]]:
    r = lab.in_host("curl", "-sS", "--fail", *url)
    assert r.returncode == 0, r.stderr
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(r.stdout):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_metrics_count_what_the_records_and_the_kernel_hold(lab: Lab) -> None:
    lab.root.mkdir(parents=True, exist_ok=True)
    (lab.root / "daemon.json").write_text(json.dumps({"metrics-addr": "127.0.0.1:9323"}))
    lab.dy_ok("network", "create", "--subnet", "10.31.0.0/24", "front")
    lab.serve("--name", "web", "--net", "front", "-p", "8080:80", "-p", "5353:53/udp")
    lab.run_d("--name", "client", "--net", "front", "sleep", "300")
    lab.run_d("--name", "gone", "true")
    lab.eventually(lambda: lab.inspect("gone")["State"]["Status"] == "exited", timeout=10, what="gone exited")
    # Two names asked of the resolver: one of the records, one it forwards (nobody answers).
    assert lab.dy("exec", "client", "getent", "hosts", "web").returncode == 0
    lab.dy("exec", "client", "getent", "hosts", "example.invalid")
    url = "http://127.0.0.1:9323/metrics"

    def dns_counted() -> bool:
        m = _scrape(lab, url)
        return any(dict(k).get("network") == "front" for k in m.get("dockyard_dns_queries_total", {}))

    lab.eventually(dns_counted, timeout=10, what="the resolver's counts reach the metrics")
    m = _scrape(lab, url)

    def one(name: str, **labels: str) -> float:
        return m[name][tuple(sorted(labels.items()))]

    assert one("dockyard_containers", state="running") == 2
    assert one("dockyard_containers", state="exited") == 1
    assert one("dockyard_endpoints", network="front") == 2
    assert one("dockyard_published_ports", protocol="tcp") == 1
    assert one("dockyard_published_ports", protocol="udp") == 1
    # The elements are read from the kernel: as many as `nft list` shows.
    assert (
        one("dockyard_nft_elements", table="inet dockyard", set="publish_any")
        == len(lab.map_elements("publish_any"))
        == 2
    )
    assert one("dockyard_nft_elements", table="bridge dockyard", set="guarded_ports") == len(
        lab.map_elements("guarded_ports", "bridge")
    )
    answered = sum(
        v
        for k, v in m["dockyard_dns_queries_total"].items()
        if dict(k)["network"] == "front" and dict(k)["outcome"] == "answered"
    )
    assert answered >= 1
    # The API's requests: a counter and a histogram by route, never by path.
    creates = one("dockyard_api_requests_total", method="POST", route="/containers/create", code="201")
    assert creates == 3
    assert one("dockyard_api_request_duration_seconds_count", method="POST", route="/containers/create") == 3
    assert (
        one(
            "dockyard_api_request_duration_seconds_bucket",
            method="POST",
            route="/containers/create",
            le="+Inf",
        )
        == 3
    )
    assert not any("/containers/web" in dict(k).get("route", "") for k in m["dockyard_api_requests_total"])
    assert one("dockyard_reconcile_runs_total") == 1
    # A `system gc` is a reconciliation too.
    lab.dy_ok("system", "gc")
    # The same text on the API socket.
    m = _scrape(lab, "--unix-socket", str(lab.root / "dockyard.sock"), "http://dockyard/metrics")
    assert m["dockyard_reconcile_runs_total"][()] == 2
    # Nothing else is served on the metrics address.
    r = lab.in_host(
        "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:9323/containers/json"
    )
    assert r.stdout == "404"
    # The address is loopback only: the outside cannot scrape it.
    r = lab.in_up("curl", "-s", "--max-time", "2", f"http://{HOST_ADDR}:9323/metrics")
    assert r.returncode != 0
