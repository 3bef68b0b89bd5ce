"""What image tests need: a registry in the lab, and images made by the test itself.

The registry is Debian's docker-registry, started in the lab's host
namespace on 127.0.0.1 (where the daemon, which runs in that namespace,
reaches it; never the root namespace), with its config, storage and
htpasswd under the test's directory, and stopped by its PID (the lab's
teardown kills any process it started that is still running). skopeo,
run in the same namespace, fills it from `docker save`-format archives.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import warnings
from pathlib import Path

from lab import REPO, Lab

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # bcrypt for the registry's htpasswd (Python 3.11 has it)

BUSYBOX = "/bin/busybox"  # Debian's busybox-static
# Every applet busybox has (sh, sleep, cat, nc, httpd, ...): what tests run in containers on it.
BUSYBOX_LINKS = tuple(
    name
    for name in subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    if name != "busybox"
)
# Without it a registry answers with a converted schema 1 manifest.
ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
TOKEN_REGISTRY = str(REPO / "tests" / "tools" / "token_registry.py")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def busybox_tarball() -> bytes:
    """A root file system: /bin/busybox and links to it, /tmp."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        t.add(BUSYBOX, "bin/busybox")
        for name in BUSYBOX_LINKS:
            info = tarfile.TarInfo(f"bin/{name}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            t.addfile(info)
        info = tarfile.TarInfo("tmp")
        info.type = tarfile.DIRTYPE
        info.mode = 0o1777
        t.addfile(info)
    return buf.getvalue()


def _layer(entries: list[tuple[str, str, bytes | str]]) -> bytes:
    """A layer tar: ("dir"|"file"|"sym", name, data or link target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for kind, name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                t.addfile(info)
            elif kind == "sym":
                info.type = tarfile.SYMTYPE
                info.linkname = str(data)
                t.addfile(info)
            else:
                assert isinstance(data, bytes)
                info.size = len(data)
                info.mode = 0o644
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# Two layers: the upper one removes etc/gone (a whiteout) and replaces opq/'s
# content (an opaque directory).
LOWER = [
    ("dir", "etc", b""),
    ("file", "etc/keep", b"kept\n"),
    ("file", "etc/gone", b"removed by the upper layer\n"),
    ("dir", "opq", b""),
    ("file", "opq/old", b"hidden by the opaque directory\n"),
]
UPPER = [
    ("dir", "etc", b""),
    ("file", "etc/.wh.gone", b""),
    ("dir", "opq", b""),
    ("file", "opq/.wh..wh..opq", b""),
    ("file", "opq/new", b"new\n"),
    ("file", "etc/added", b"added\n"),
]


def multi_layer_archive(tag: str = "multi:1", base: bytes | None = None) -> tuple[bytes, str, list[str]]:
    """A `docker save`-format archive (Docker's legacy layout) of a two-layer image
    (three with `base`, a layer tar put under the two: busybox_tarball() gives it a shell).

    Returns the archive, the image id and the layers' diff ids, bottom first.
    """
    layers = [*([base] if base else []), _layer(LOWER), _layer(UPPER)]
    diff_ids = [sha256(layer) for layer in layers]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-05-01T12:00:00.123456789Z",
            "config": {
                "Cmd": ["/bin/sh"],
                "Env": ["PATH=/bin"],
                "WorkingDir": "/etc",
                "StopSignal": "SIGINT",
                "ExposedPorts": {"80/tcp": {}},
                "Labels": {"made-by": "test"},
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [
                {"created": "2024-05-01T11:00:00Z", "created_by": "/bin/sh -c #(nop) ADD lower"},
                {
                    "created": "2024-05-01T11:30:00Z",
                    "created_by": "/bin/sh -c #(nop) CMD",
                    "empty_layer": True,
                },
                {"created": "2024-05-01T12:00:00Z", "created_by": "/bin/sh -c #(nop) ADD upper"},
            ],
        },
        sort_keys=True,
    ).encode()
    image_id = sha256(config)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))

        names = []
        for diff_id, layer in zip(diff_ids, layers, strict=True):
            name = f"{diff_id[7:]}/layer.tar"
            add(name, layer)
            names.append(name)
        add(f"{image_id[7:]}.json", config)
        add(
            "manifest.json",
            json.dumps([{"Config": f"{image_id[7:]}.json", "RepoTags": [tag], "Layers": names}]).encode(),
        )
    return buf.getvalue(), image_id, diff_ids


class Registry:
    """docker-registry in the lab's host namespace, on 127.0.0.1:port."""

    def __init__(self, lab: Lab, port: int = 5000, users: dict[str, str] | None = None) -> None:
        self.lab = lab
        self.port = port
        self.dir = lab.tmp / f"registry-{port}"
        self.storage = self.dir / "storage"
        self.storage.mkdir(parents=True)
        auth = ""
        if users:
            htpasswd = self.dir / "htpasswd"
            htpasswd.write_text(
                "".join(
                    f"{u}:{crypt.crypt(p, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n" for u, p in users.items()
                )
            )
            auth = f"auth:\n  htpasswd:\n    realm: test-registry\n    path: {htpasswd}\n"
        config = self.dir / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {self.storage}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{port}\n" + auth
        )
        self.proc = lab.spawn_in(lab.host, "docker-registry", "serve", str(config))
        self.address = f"127.0.0.1:{port}"
        self.wait_ready()

    def wait_ready(self, timeout: float = 20.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc.poll() is None, (
                f"docker-registry ended: {self.proc.stderr.read() if self.proc.stderr else ''}"
            )
            r = self.lab.in_host(
                sys.executable,
                "-c",
                f"import socket; socket.create_connection(('127.0.0.1', {self.port}), 1)",
            )
            if r.returncode == 0:
                return
            time.sleep(0.05)
        raise AssertionError(f"docker-registry did not listen on {self.address} within {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, 15)
            self.proc.wait(timeout=10)

    def push(self, archive: Path, name: str, *extra: str, creds: str | None = None) -> None:
        """skopeo copy docker-archive:ARCHIVE docker://127.0.0.1:PORT/NAME (gzip unless told)."""
        # A home of its own each time: skopeo's blob cache would reuse blobs of an earlier copy.
        home = self.dir / f"skopeo-home-{len(list(self.dir.glob('skopeo-home-*')))}"
        home.mkdir()
        args = ["env", f"HOME={home}", "skopeo", "copy", "--quiet", "--dest-tls-verify=false", *extra]
        if creds:
            args += ["--dest-creds", creds]
        r = self.lab.in_host(
            *args, f"docker-archive:{archive}", f"docker://{self.address}/{name}", timeout=120
        )
        assert r.returncode == 0, f"skopeo copy failed: {r.stderr}"

    def manifest_digest(self, name: str, tag: str, creds: str | None = None) -> str:
        args = ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}"]
        if creds:
            args += ["--creds", creds]
        r = self.lab.in_host(*args, f"docker://{self.address}/{name}:{tag}", timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def blob_file(self, digest: str) -> Path:
        hexd = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def http(self, method: str, path: str, body: bytes = b"", content_type: str = "") -> tuple[int, bytes]:
        """One request to the registry, from inside the lab's host namespace."""
        script = (
            "import http.client, sys\n"
            f"c = http.client.HTTPConnection('127.0.0.1', {self.port}, timeout=30)\n"
            "body = sys.stdin.buffer.read()\n"
            f"c.request({method!r}, {path!r}, body=body or None, headers={{'Content-Type': {content_type!r},"
            f" 'Accept': {ACCEPT!r}}})\n"
            "r = c.getresponse(); data = r.read()\n"
            "sys.stdout.write(str(r.status) + '\\n'); sys.stdout.flush(); sys.stdout.buffer.write(data)\n"
        )
        r = subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.lab.host}", sys.executable, "-c", script],
            input=body,
            capture_output=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        status, _, data = r.stdout.partition(b"\n")
        return int(status), data
