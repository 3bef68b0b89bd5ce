"""A CRI client for tests: the few calls kubelet makes to run and remove a pod sandbox.

No CRI client is packaged in Debian (no crictl, no nerdctl), and generated
stubs would need protoc and the cri-api's .proto at build time. So the calls
go through grpcio's generic unary call, with their messages encoded and
decoded here in protobuf's wire format, for the few fields the tests set and
read. The field numbers are those of the Kubernetes cri-api
(pkg/apis/runtime/v1/api.proto), which containerd 1.6 serves as runtime.v1:

    cri = Cri("/run/containerd/containerd.sock")
    pod = cri.run_pod_sandbox(PodConfig("web", "uid-1", "default", port_mappings=[(80, 8080)]))
    cri.pod_sandbox_status(pod)["info"]["pid"]
    cri.stop_pod_sandbox(pod); cri.remove_pod_sandbox(pod)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import grpc

RUNTIME = "/runtime.v1.RuntimeService/"
IMAGES = "/runtime.v1.ImageService/"
TCP = 0  # runtime.v1.Protocol
SANDBOX_READY = 0  # runtime.v1.PodSandboxState

# -- protobuf's wire format, the part these messages use -------------------------------

VARINT, LEN = 0, 2  # wire types


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1  # a negative int32 or int64 is sent as ten bytes, two's complement
    while True:
        byte, n = n & 0x7F, n >> 7
        if not n:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def field_int(number: int, value: int) -> bytes:
    """An int32, uint32, enum or bool field (proto3: a zero is not sent)."""
    return _varint(number << 3 | VARINT) + _varint(value) if value else b""


def field_bytes(number: int, value: bytes | str) -> bytes:
    """A string, bytes or embedded message field (proto3: an empty one is not sent)."""
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | LEN) + _varint(len(data)) + data if data else b""


def field_message(number: int, value: bytes) -> bytes:
    """An embedded message: sent even when empty, where its presence says something."""
    return _varint(number << 3 | LEN) + _varint(len(value)) + value


def decode(data: bytes) -> dict[int, list[Any]]:
    """A message's fields by number, each a list of values (ints, or bytes to decode further)."""
    fields: dict[int, list[Any]] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        n = shift = 0
        while True:
            byte = data[i]
            i += 1
            n |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return n

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value: Any = varint()
        elif wire == LEN:
            size = varint()
            value, i = data[i : i + size], i + size
        elif wire == 1:  # 64-bit
            value, i = data[i : i + 8], i + 8
        elif wire == 5:  # 32-bit
            value, i = data[i : i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire} of field {number} is not protobuf's")
        fields.setdefault(number, []).append(value)
    return fields


def _string_map(entries: list[bytes]) -> dict[str, str]:
    """A map<string, string> field: each entry a message of key 1 and value 2."""
    out = {}
    for entry in entries:
        f = decode(entry)
        out[f.get(1, [b""])[0].decode()] = f.get(2, [b""])[0].decode()
    return out


# -- the messages ----------------------------------------------------------------------


@dataclass
class PodConfig:
    """runtime.v1.PodSandboxConfig: the fields a pod of these tests sets."""

    name: str
    uid: str
    namespace: str
    hostname: str = ""
    # (container port, host port, host IP), TCP.
    port_mappings: list[tuple[int, int, str]] = field(default_factory=list)
    cgroup_parent: str = ""

    def encode(self) -> bytes:
        metadata = (
            field_bytes(1, self.name) + field_bytes(2, self.uid) + field_bytes(3, self.namespace)
        )  # attempt (4) is 0
        ports = b"".join(
            field_message(
                5,
                field_int(1, TCP) + field_int(2, container) + field_int(3, host) + field_bytes(4, host_ip),
            )
            for container, host, host_ip in self.port_mappings
        )
        linux = field_bytes(1, self.cgroup_parent)  # LinuxPodSandboxConfig.cgroup_parent
        return field_message(1, metadata) + field_bytes(2, self.hostname) + ports + field_message(8, linux)


class Cri:
    """runtime.v1's RuntimeService and ImageService at a CRI socket."""

    def __init__(self, socket: str, timeout: float = 60) -> None:
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.timeout = timeout

    def close(self) -> None:
        self.channel.close()

    def call(self, method: str, request: bytes) -> dict[int, list[Any]]:
        """One unary call with the request's bytes as given; the response's fields."""
        # No serializers: grpcio sends and returns the bytes as they are.
        stub = self.channel.unary_unary(method)
        return decode(stub(request, timeout=self.timeout))

    def image_present(self, ref: str) -> bool:
        """ImageStatus: whether the CRI plugin knows the image (its Image field is set)."""
        return 1 in self.call(IMAGES + "ImageStatus", field_message(1, field_bytes(1, ref)))

    def run_pod_sandbox(self, config: PodConfig) -> str:
        """RunPodSandbox: the sandbox runs, with its network set up; returns its id."""
        reply = self.call(RUNTIME + "RunPodSandbox", field_message(1, config.encode()))
        return str(reply[1][0].decode())

    def pod_sandbox_status(self, pod: str) -> dict[str, Any]:
        """PodSandboxStatus, verbose: the state, the pod's IP and containerd's `info` (parsed)."""
        reply = self.call(RUNTIME + "PodSandboxStatus", field_bytes(1, pod) + field_int(2, True))
        status = decode(reply[1][0])
        network = decode(status[5][0]) if 5 in status else {}
        info = _string_map(reply.get(2, []))
        return {
            "id": status[1][0].decode(),
            "state": status.get(3, [0])[0],
            "ip": network.get(1, [b""])[0].decode(),
            "info": json.loads(info["info"]) if "info" in info else {},
        }

    def stop_pod_sandbox(self, pod: str) -> None:
        """StopPodSandbox: the sandbox's processes end and its network is torn down (CNI DEL)."""
        self.call(RUNTIME + "StopPodSandbox", field_bytes(1, pod))

    def remove_pod_sandbox(self, pod: str) -> None:
        self.call(RUNTIME + "RemovePodSandbox", field_bytes(1, pod))

    def list_pod_sandboxes(self) -> list[str]:
        """ListPodSandbox without a filter: the ids of every sandbox."""
        reply = self.call(RUNTIME + "ListPodSandbox", b"")
        return [decode(item)[1][0].decode() for item in reply.get(1, [])]
