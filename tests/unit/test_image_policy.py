"""References, manifests, platforms, --change and filters: the images' pure logic."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.errors import InvalidArgument
from dockyard.policy import changes, manifests, references
from dockyard.policy.image_filters import ImageFilter


@pytest.mark.parametrize(
    ("text", "full", "shown"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("library/busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("docker.io/user/app", "docker.io/user/app:latest", "user/app:latest"),
        ("index.docker.io/user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
        ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest"),
        ("localhost/x:1", "localhost/x:1", "localhost/x:1"),
        (
            "127.0.0.1:5000/a/b@sha256:" + "a" * 64,
            "127.0.0.1:5000/a/b@sha256:" + "a" * 64,
            "127.0.0.1:5000/a/b@sha256:" + "a" * 64,
        ),
    ],
)
def test_references_are_normalized_as_docker_does(text: str, full: str, shown: str) -> None:
    ref = references.parse(text)
    assert (str(ref), ref.familiar()) == (full, shown)


@pytest.mark.parametrize(
    "text", ["", "Busybox", "a b", "busybox:", "x@sha256:abc", "-x", "x/../y", "x::1", "a:" + "t" * 129]
)
def test_bad_references_are_refused(text: str) -> None:
    with pytest.raises(InvalidArgument):
        references.parse(text)


component = st.from_regex(r"[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}", fullmatch=True)
# A first component with a dot names a registry (Docker's rule), where "_" is not allowed.
first_component = st.from_regex(r"[a-z0-9]{1,8}([_-][a-z0-9]{1,8}){0,2}", fullmatch=True)


@given(
    st.tuples(first_component, st.lists(component, max_size=2)).map(lambda t: [t[0], *t[1]]),
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
)
def test_a_parsed_reference_reads_back_the_same(parts: list[str], tag: str) -> None:
    ref = references.parse("/".join(parts) + ":" + tag)
    assert references.parse(str(ref)) == ref
    assert references.parse(ref.familiar()) == ref


@given(st.text(alphabet=string.printable, max_size=40))
def test_any_text_parses_to_a_stable_reference_or_is_refused_as_invalid(text: str) -> None:
    """Never another exception; what parses prints to what parses back the same."""
    try:
        ref = references.parse(text)
    except InvalidArgument:
        return
    assert references.parse(str(ref)) == ref


def _index(*platforms: tuple[str, str, str]) -> manifests.Index:
    doc = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": manifests.OCI_MANIFEST,
                "digest": "sha256:" + f"{i:x}" * 64,
                "size": 1,
                "platform": {"os": o, "architecture": a, "variant": v},
            }
            for i, (o, a, v) in enumerate(platforms, start=1)
        ],
    }
    return manifests.parse_index(json.dumps(doc).encode())


def test_the_platform_is_chosen_from_an_index() -> None:
    index = _index(
        ("linux", "arm", "v6"), ("linux", "arm", "v7"), ("linux", "amd64", ""), ("windows", "amd64", "")
    )
    assert manifests.choose(index, manifests.host_platform("x86_64")).digest == "sha256:" + "3" * 64
    assert manifests.choose(index, manifests.host_platform("armv7l")).digest == "sha256:" + "2" * 64
    # arm v6 alone: a v7 host runs it.
    assert (
        manifests.choose(_index(("linux", "arm", "v6")), manifests.host_platform("armv7l")).platform.variant
        == "v6"
    )
    with pytest.raises(InvalidArgument, match="no matching manifest for linux/s390x"):
        manifests.choose(index, manifests.parse_platform("linux/s390x", manifests.host_platform("x86_64")))


def test_manifests_with_foreign_or_unknown_layers_are_refused() -> None:
    def manifest(media_type: str) -> bytes:
        return json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": manifests.OCI_MANIFEST,
                "config": {"mediaType": manifests.OCI_CONFIG, "digest": "sha256:" + "1" * 64, "size": 2},
                "layers": [{"mediaType": media_type, "digest": "sha256:" + "2" * 64, "size": 3}],
            }
        ).encode()

    assert manifests.parse_manifest(manifest(manifests.OCI_LAYER_ZSTD)).layers[0].size == 3
    with pytest.raises(InvalidArgument, match="foreign"):
        manifests.parse_manifest(manifest(manifests.DOCKER_FOREIGN_GZIP))
    with pytest.raises(InvalidArgument, match="unsupported layer media type"):
        manifests.parse_manifest(manifest("application/x-anything"))
    with pytest.raises(InvalidArgument, match="digest"):
        manifests.parse_manifest(manifest(manifests.OCI_LAYER_TAR).replace(b"2222", b"ZZZZ"))


def test_import_changes_make_docker_config_fields() -> None:
    config = changes.apply(
        [
            'CMD ["/bin/sh", "-c", "echo hi"]',
            "ENTRYPOINT /init",
            "ENV A=1 B=two",
            "EXPOSE 80 53/udp",
            "LABEL k=v",
            "WORKDIR /srv",
            "WORKDIR app",
            "USER 1000:1000",
            "STOPSIGNAL SIGINT",
            'VOLUME ["/data"]',
        ]
    )
    assert config == {
        "Cmd": ["/bin/sh", "-c", "echo hi"],
        "Entrypoint": ["/bin/sh", "-c", "/init"],
        "Env": ["A=1", "B=two"],
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "Labels": {"k": "v"},
        "WorkingDir": "/srv/app",
        "User": "1000:1000",
        "StopSignal": "SIGINT",
        "Volumes": {"/data": {}},
    }
    for bad in ("ONBUILD RUN x", "RUN make", "EXPOSE 99999", "ENV"):
        with pytest.raises(InvalidArgument):
            changes.apply([bad])


def test_image_filters() -> None:
    f = ImageFilter.parse(json.dumps({"reference": ["localhost:5000/*"], "dangling": ["false"]}))
    assert f.dangling is False
    assert f.matches_names(("localhost:5000/x:1",), ())
    assert not f.matches_names(("localhost:5000/a/b:1",), ())  # * stops at /
    assert ImageFilter.parse(json.dumps({"reference": ["busybox"]})).matches_names(
        ("docker.io/library/busybox:1",), ()
    )
    with pytest.raises(InvalidArgument, match="invalid filter 'until'"):
        ImageFilter.parse(json.dumps({"until": ["1h"]}))


@pytest.mark.parametrize(
    ("repo", "tag", "name"),
    [
        ("web", "", "docker.io/library/web:latest"),
        ("web:2", "", "docker.io/library/web:2"),
        ("web", "3", "docker.io/library/web:3"),
        ("registry.lab:5000/team/web", "", "registry.lab:5000/team/web:latest"),
    ],
)
def test_the_name_docker_tag_and_import_give(repo: str, tag: str, name: str) -> None:
    assert str(references.tag_target(repo, tag, "no digests here")) == name


@pytest.mark.parametrize(
    ("repo", "tag", "message"),
    [
        ("web:2", "3", "invalid reference format: web:2:3"),
        ("web@sha256:" + "a" * 64, "", "no digests here: web@sha256:"),
        ("web", "bad tag", "invalid tag format"),
    ],
)
def test_a_name_docker_tag_and_import_refuse(repo: str, tag: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        references.tag_target(repo, tag, "no digests here")
