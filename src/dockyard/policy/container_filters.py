"""Docker's filters for containers/json, containers/prune and networks/prune: parsed once, matched.

Pure. Filters come as JSON, {"key": ["value", ...]} (or Docker's older
{"key": {"value": true}}); a key not documented for the endpoint is refused
by name ("invalid filter 'x'"), never ignored: `docker rm $(docker ps -aq -f
status=exited)` must not reach running containers. Values of one key are
alternatives (any may match), but for `label`, whose values must all match;
different keys must all match.

What a container is matched against (its networks, its image) is handed in
as a ContainerFacts by the caller, which knows the store.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dockyard.errors import InvalidArgument
from dockyard.model import Container

# containers/json (docker ps -f): every filter Docker documents for it.
LIST_FILTERS = (
    "id",
    "name",
    "label",
    "status",
    "exited",
    "network",
    "before",
    "since",
    "ancestor",
    "publish",
    "expose",
    "volume",
    "health",
    "isolation",
    "is-task",
)
PRUNE_FILTERS = ("label", "label!", "until")
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
HEALTH = ("starting", "healthy", "unhealthy", "none")


def parse_filters(text: str | None, allowed: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """The `filters` query, checked: every key among `allowed`, every value a string."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidArgument(f"invalid filters {text[:80]!r}: expected a JSON object") from None
    if not isinstance(raw, dict):
        raise InvalidArgument(f"invalid filters {text[:80]!r}: expected a JSON object")
    out: dict[str, tuple[str, ...]] = {}
    for key, given in raw.items():
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")
        if isinstance(given, dict):
            given = [k for k, v in given.items() if v is True]
        if not isinstance(given, list) or not all(isinstance(v, str) for v in given):
            raise InvalidArgument(f"invalid filter '{key}': its values must be a list of strings")
        if given:
            out[key] = tuple(given)
    return out


def _labels_match(wanted: str, labels: dict[str, str]) -> bool:
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)


GO_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+\Z")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_timestamp(text: str, now: float | None = None) -> float:
    """Docker's `until`/`since` times: a Go duration (before now), seconds since the epoch,
    or an RFC 3339 date or time (UTC unless an offset is given)."""
    now = time.time() if now is None else now
    if GO_DURATION.match(text):
        seconds = sum(
            float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
        )
        return now - seconds
    if re.match(r"^\d+(\.\d+)?\Z", text):
        return float(text)
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d%z"):
        candidate = text.replace("Z", "+00:00") if text.endswith("Z") else text
        if "%z" in fmt and not re.search(r"[+-]\d\d:?\d\d\Z", candidate):
            candidate += "+00:00"
        # Go and Docker give nanoseconds; Python reads six digits at most.
        candidate = re.sub(r"(\.\d{6})\d+", r"\1", candidate)
        try:
            return datetime.strptime(candidate, fmt).timestamp()
        except ValueError:
            continue
    raise InvalidArgument(
        f"invalid time {text!r}: give a duration (10m, 24h), a unix time or an RFC 3339 date"
    )


def created_epoch(created: str) -> float:
    """A record's `created` (dockyard's UTC text) in seconds since the epoch; 0 when absent."""
    if not created:
        return 0.0
    try:
        return datetime.strptime(created, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return parse_timestamp(created)


@dataclass(frozen=True)
class PruneFilter:
    """containers/prune and networks/prune: label, label! and until."""

    labels: tuple[str, ...] = ()
    not_labels: tuple[str, ...] = ()
    until: float | None = None

    @classmethod
    def parse(cls, text: str | None, now: float | None = None) -> PruneFilter:
        values = parse_filters(text, PRUNE_FILTERS)
        untils = [parse_timestamp(v, now) for v in values.get("until", ())]
        if len(untils) > 1:
            raise InvalidArgument("invalid filter 'until': give one time")
        return cls(values.get("label", ()), values.get("label!", ()), untils[0] if untils else None)

    def matches(self, labels: Iterable[tuple[str, str]], created: str) -> bool:
        have = dict(labels)
        if not all(_labels_match(w, have) for w in self.labels):
            return False
        if any(_labels_match(w, have) for w in self.not_labels):
            return False
        return self.until is None or created_epoch(created) < self.until


@dataclass(frozen=True)
class ContainerFacts:
    """What a filter needs to know of one container beyond its record."""

    networks: tuple[tuple[str, str], ...] = ()  # (name, id) of the networks it is (to be) on
    image_id: str = ""  # the id of its image, when the image is in the store


def _regex_match(pattern: str, text: str) -> bool:
    """Docker's filters.Match: the value is a regular expression searched in the text."""
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return pattern in text


def _port_matches(wanted: str, ports: Iterable[tuple[int, str]]) -> bool:
    number, _, proto = wanted.partition("/")
    proto = proto or "tcp"
    low, _, high = number.partition("-")
    try:
        lo, hi = int(low), int(high or low)
    except ValueError:
        raise InvalidArgument(
            f"invalid port filter {wanted!r}: give PORT[/PROTO] or START-END[/PROTO]"
        ) from None
    return any(lo <= port <= hi and p == proto for port, p in ports)


@dataclass(frozen=True)
class ContainerFilter:
    """containers/json's filters, checked; before/since name containers, resolved by the caller."""

    values: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> ContainerFilter:
        values = parse_filters(text, LIST_FILTERS)
        for status in values.get("status", ()):
            if status not in STATUSES:
                raise InvalidArgument(f"invalid filter 'status={status}': use one of {', '.join(STATUSES)}")
        for code in values.get("exited", ()):
            if not re.match(r"^-?\d+\Z", code):
                raise InvalidArgument(f"invalid filter 'exited={code}': give an exit code")
        for health in values.get("health", ()):
            if health not in HEALTH:
                raise InvalidArgument(f"invalid filter 'health={health}': use one of {', '.join(HEALTH)}")
        for key in ("publish", "expose"):
            for v in values.get(key, ()):
                _port_matches(v, ())
        for key in ("before", "since"):
            if len(values.get(key, ())) > 1:
                raise InvalidArgument(f"invalid filter '{key}': name one container")
        return cls(values)

    @property
    def implies_all(self) -> bool:
        """A status filter lists stopped containers without -a, as Docker's does."""
        return "status" in self.values

    def get(self, key: str) -> tuple[str, ...]:
        return self.values.get(key, ())

    def matches(
        self,
        c: Container,
        facts: ContainerFacts,
        before: Container | None = None,
        since: Container | None = None,
    ) -> bool:
        """Every key's test; `before`/`since` are the containers their values named."""
        if before is not None and not c.created < before.created:
            return False
        if since is not None and not c.created > since.created:
            return False
        # label's values must all match (Docker's MatchKVList); another key's, any of them.
        return all(
            (all if key == "label" else any)(self._one(key, v, c, facts) for v in given)
            for key, given in self.values.items()
            if key not in ("before", "since")
        )

    @staticmethod
    def _one(key: str, value: str, c: Container, facts: ContainerFacts) -> bool:
        cfg = c.config
        if key == "id":
            return c.id.startswith(value) or _regex_match(value, c.id)
        if key == "name":
            return _regex_match(value, "/" + c.name)
        if key == "label":
            return _labels_match(value, dict(cfg.labels))
        if key == "status":
            return value == c.state.value
        if key == "exited":
            return not c.running and bool(c.started_at or c.finished_at) and c.exit_code == int(value)
        if key == "network":
            return any(value == name or nid.startswith(value) for name, nid in facts.networks)
        if key == "ancestor":
            image = cfg.image
            if not image:
                return False
            if value in (image, image + ":latest") or image == value + ":latest":
                return True
            bare = value.removeprefix("sha256:")
            return len(bare) >= 4 and facts.image_id.removeprefix("sha256:").startswith(bare)
        if key in ("publish", "expose"):
            return _port_matches(value, [(p.container_port, str(p.proto)) for p in cfg.ports])
        if key == "volume":
            return any(value in (m.source, m.target) for m in cfg.mounts)
        if key == "health":
            return value == "none"  # no container has a health check
        if key == "isolation":
            return value == "default"
        if key == "is-task":
            return value.lower() in ("false", "0")
        raise AssertionError(key)


def dangling_check(values: Iterable[str]) -> bool | None:
    """networks' dangling=true|false (Docker also takes 1 and 0)."""
    wanted: bool | None = None
    for v in values:
        if v.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={v}': give true or false")
        one = v.lower() in ("true", "1")
        if wanted is not None and wanted != one:
            return None
        wanted = one
    return wanted
