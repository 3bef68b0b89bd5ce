"""`docker images` and `docker image prune` filters: parsed once, matched against images.

Pure. Docker's filters come as JSON, {"name": ["value", ...]}; those known
here are `dangling`, `reference`, `label` (and `before`/`since`, which the
engine resolves to images first); any other is refused by name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from dockyard.errors import InvalidArgument
from dockyard.policy import references

LIST_FILTERS = ("dangling", "reference", "label", "before", "since")
PRUNE_FILTERS = ("dangling", "label")


def _glob(pattern: str) -> re.Pattern[str]:
    """Go's path.Match: `*` and `?` stop at `/`; [...] classes."""
    out = ""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise InvalidArgument(f"invalid reference filter {pattern!r}: an unclosed [")
            body = pattern[i + 1 : end]
            if body.startswith("^"):
                body = "^" + re.escape(body[1:]).replace("\\-", "-")
            else:
                body = re.escape(body).replace("\\-", "-")
            out += f"[{body}]"
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(f"^{out}\\Z")


@dataclass(frozen=True)
class ImageFilter:
    dangling: bool | None = None
    references: tuple[str, ...] = ()
    labels: tuple[tuple[str, str | None], ...] = ()
    before: tuple[str, ...] = ()
    since: tuple[str, ...] = ()

    @staticmethod
    def parse(text: str | None, allowed: tuple[str, ...] = LIST_FILTERS) -> ImageFilter:
        if not text:
            return ImageFilter()
        try:
            raw = json.loads(text)
        except ValueError:
            raise InvalidArgument(f"invalid filters {text!r}: not JSON") from None
        if not isinstance(raw, dict):
            raise InvalidArgument("invalid filters: give a JSON object")
        values: dict[str, list[str]] = {}
        for key, value in raw.items():
            if key not in allowed:
                raise InvalidArgument(f"invalid filter '{key}'")
            # Docker's older form: {"name": {"value": true}}.
            items = list(value) if isinstance(value, (list, dict)) else None
            if items is None or not all(isinstance(v, str) for v in items):
                raise InvalidArgument(f"invalid filter '{key}': give a list of strings")
            values[key] = items
        dangling = None
        for v in values.get("dangling", []):
            if v.lower() not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid filter 'dangling={v}': give true or false")
            wanted = v.lower() in ("true", "1")
            if dangling is not None and dangling != wanted:
                raise InvalidArgument("invalid filter 'dangling': give true or false, not both")
            dangling = wanted
        refs = tuple(values.get("reference", []))
        for pattern in refs:
            _glob(pattern)
        labels = []
        for v in values.get("label", []):
            key, sep, val = v.partition("=")
            labels.append((key, val if sep else None))
        return ImageFilter(
            dangling, refs, tuple(labels), tuple(values.get("before", [])), tuple(values.get("since", []))
        )

    def matches_names(self, tags: tuple[str, ...], digests: tuple[str, ...]) -> bool:
        """reference=: the familiar name (with or without its tag) matches one pattern."""
        if not self.references:
            return True
        candidates = []
        for name in (*tags, *digests):
            ref = references.parse(name, default_tag=False)
            candidates.append(ref.familiar_repository)
            candidates.append(ref.familiar())
        return any(_glob(p).match(c) for p in self.references for c in candidates)

    def matches_labels(self, labels: tuple[tuple[str, str], ...]) -> bool:
        have = dict(labels)
        for key, value in self.labels:
            if key not in have or (value is not None and have[key] != value):
                return False
        return True
