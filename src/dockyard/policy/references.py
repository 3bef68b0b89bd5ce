"""Image references as Docker reads them: `busybox`, `localhost:5000/x:tag`, `name@sha256:...`.

Pure: parsing and normalizing only. Docker's rules (distribution/reference):
a first component with a dot or a colon, or `localhost`, is a registry's
domain; otherwise the domain is docker.io, and a one-component name there
is under `library/`. A reference without tag or digest means `:latest`.
Names are stored normalized (`docker.io/library/busybox:latest`) and shown
familiar (`busybox:latest`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dockyard.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
# Where docker.io's API actually answers.
DEFAULT_REGISTRY_HOST = "registry-1.docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_MAX = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*\Z")
# A domain: labels with dots, an optional port; or an IPv6 literal in brackets.
DOMAIN_RE = re.compile(
    r"^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*"
    r"[a-zA-Z0-9]))*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?\Z"
)
TAG_RE = re.compile(r"^[\w][\w.-]{0,127}\Z", re.ASCII)
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}\Z")
HEX64_RE = re.compile(r"^[0-9a-f]{64}\Z")
SHORT_ID_RE = re.compile(r"^[0-9a-f]{1,64}\Z")


@dataclass(frozen=True)
class Reference:
    """A normalized image reference: a repository, and a tag or a digest (or both)."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def repository(self) -> str:
        """The full repository name: `docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_repository(self) -> str:
        """The name as Docker shows it: `busybox`, `user/app`, `localhost:5000/x`."""
        if self.domain == DEFAULT_DOMAIN:
            return self.path.removeprefix(OFFICIAL_PREFIX)
        return self.repository

    def __str__(self) -> str:
        return (
            self.repository
            + (f":{self.tag}" if self.tag else "")
            + (f"@{self.digest}" if self.digest else "")
        )

    def familiar(self) -> str:
        return (
            self.familiar_repository
            + (f":{self.tag}" if self.tag else "")
            + (f"@{self.digest}" if self.digest else "")
        )

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, "")

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, "", digest)

    @property
    def registry_host(self) -> str:
        """Where the registry's API answers (docker.io's is registry-1.docker.io)."""
        return DEFAULT_REGISTRY_HOST if self.domain == DEFAULT_DOMAIN else self.domain


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain = first
        if domain == LEGACY_DOMAIN:
            domain = DEFAULT_DOMAIN
        return domain, rest
    return DEFAULT_DOMAIN, name


def parse(text: str, default_tag: bool = True) -> Reference:
    """A reference from what a user typed; InvalidArgument naming it when it is not one.

    With default_tag, a reference with neither tag nor digest gets `latest`.
    """
    if not isinstance(text, str) or not text:
        raise InvalidArgument("invalid reference format: an image name is empty")
    if len(text) > 4096 or any(ch.isspace() or ch == "\0" for ch in text):
        raise InvalidArgument(f"invalid reference format: {text[:100]!r}")
    rest, _, digest = text.partition("@")
    if digest and not DIGEST_RE.match(digest):
        raise InvalidArgument(
            f"invalid reference format: {text!r} (a digest is sha256: and 64 lowercase hex digits)"
        )
    tag = ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not TAG_RE.match(tag):
            raise InvalidArgument(f"invalid reference format: {text!r} (invalid tag {tag!r})")
    domain, path = _split_domain(rest)
    if domain != DEFAULT_DOMAIN and not DOMAIN_RE.match(domain):
        raise InvalidArgument(f"invalid reference format: {text!r} (invalid registry {domain!r})")
    if not PATH_RE.match(path):
        if path.lower() != path and PATH_RE.match(path.lower()):
            raise InvalidArgument(f"invalid reference format: repository name ({path}) must be lowercase")
        raise InvalidArgument(f"invalid reference format: {text!r}")
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    if len(domain) + 1 + len(path) > NAME_TOTAL_MAX:
        raise InvalidArgument("invalid reference format: repository name longer than 255 characters")
    if default_tag and not tag and not digest:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def tag_target(repo: str, tag: str, digest_refused: str) -> Reference:
    """The name `docker tag` and `docker import` give an image: repo (maybe with its own :tag)
    and tag, `latest` when neither has one; a digest is refused with `digest_refused`."""
    target = parse(repo, default_tag=False)
    if target.digest:
        raise InvalidArgument(f"{digest_refused}: {repo}")
    if tag:
        if target.tag:
            raise InvalidArgument(f"invalid reference format: {repo}:{tag}")
        return target.with_tag(check_tag(tag))
    return target if target.tag else target.with_tag(DEFAULT_TAG)


def check_tag(tag: str) -> str:
    if not TAG_RE.match(tag):
        raise InvalidArgument(f"invalid tag format: {tag!r}")
    return tag


def is_id_like(text: str) -> bool:
    """Whether `text` could name an image by its id: sha256:<hex>, or hex (a prefix of one)."""
    return bool(SHORT_ID_RE.match(text.removeprefix("sha256:")))


def check_digest(text: str) -> str:
    if not DIGEST_RE.match(text):
        raise InvalidArgument(f"invalid digest {text!r}: sha256: and 64 lowercase hex digits")
    return text
