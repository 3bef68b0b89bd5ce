"""cluster/wire.py: the JSON each piece of an etcd v3 transaction is sent as (etcd's gateway reads these)."""

from __future__ import annotations

from dockyard.cluster.wire import Delete, Get, Put, absent, b64, lease_is, none_under, unchanged_under


def test_operations_name_their_keys_as_etcd_reads_them() -> None:
    assert Get("/a").wire() == {"request_range": {"key": b64("/a")}}
    assert Get("/a/", "/a0").wire() == {"request_range": {"key": b64("/a/"), "range_end": b64("/a0")}}
    assert Delete("/a").wire() == {"request_delete_range": {"key": b64("/a")}}
    assert Delete("/a/", "/a0").wire() == {
        "request_delete_range": {"key": b64("/a/"), "range_end": b64("/a0")}
    }
    assert Put("/a", b"v", lease=7).wire() == {
        "request_put": {"key": b64("/a"), "value": b64(b"v"), "lease": "7"}
    }
    assert Put("/a", b"v").wire() == {"request_put": {"key": b64("/a"), "value": b64(b"v")}}


def test_conditions_on_a_key_and_on_every_key_under_a_prefix() -> None:
    assert absent("/k").wire() == {
        "key": b64("/k"),
        "target": "CREATE",
        "result": "EQUAL",
        "create_revision": "0",
    }
    assert lease_is("/k", 9).wire() == {"key": b64("/k"), "target": "LEASE", "result": "EQUAL", "lease": "9"}
    assert none_under("/p/").wire() == {
        "key": b64("/p/"),
        "range_end": b64("/p0"),
        "target": "CREATE",
        "result": "EQUAL",
        "create_revision": "0",
    }
    assert unchanged_under("/p/", 41).wire()["mod_revision"] == "42"
