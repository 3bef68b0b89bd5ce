"""nftables JSON expression builders shared by the rule modules: pure."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


def meta(key: str) -> Json:
    return {"meta": {"key": key}}


def payload(protocol: str, fld: str) -> Json:
    return {"payload": {"protocol": protocol, "field": fld}}


def match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}
