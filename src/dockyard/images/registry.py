"""A registry client (OCI distribution, Docker registry v2): manifests and blobs, with auth.

The stdlib's http.client is enough: a pull is a few GETs (a manifest or an
index, a config, the layers) read as streams, and TLS is ssl's default
context (the system's CAs, host names checked). A registry is insecure
(plain HTTP allowed, after HTTPS was tried) when it is on a loopback
address or `localhost`, as Docker treats them, or listed in daemon.json's
`insecure-registries`.

Auth follows the registry's 401 challenge (WWW-Authenticate): `Basic`
sends the credentials; `Bearer` asks the token service named by `realm`
for a token of the repository's pull scope (with the credentials when
there are some, anonymously otherwise) and sends the token. Credentials
come from the client, as Docker's X-Registry-Auth header carries them.

What is read is bounded: a manifest or index at most 4 MiB; a blob is
streamed to the caller, who verifies its digest.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import json
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urlencode, urljoin, urlsplit

from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.policy.manifests import ACCEPT, DOCUMENT_MAX

CONNECT_TIMEOUT = 15.0
READ_TIMEOUT = 60.0
MAX_REDIRECTS = 5
USER_AGENT = "dockyard"


class RegistryError(DockyardError):
    """The registry could not be reached, or refused what was asked."""


class Unauthorized(RegistryError):
    pass


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    registry_token: str = ""  # a bearer token given as is

    @staticmethod
    def from_header(value: str) -> Credentials | None:
        """Docker's X-Registry-Auth: base64url of {"username", "password", ...}; None when empty."""
        if not value.strip():
            return None
        text = value.strip()
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            doc = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise InvalidArgument("invalid X-Registry-Auth header: not base64url-encoded JSON") from None
        if not isinstance(doc, dict):
            raise InvalidArgument("invalid X-Registry-Auth header: not a JSON object")
        if doc.get("identitytoken"):
            raise InvalidArgument("registry identity tokens (OAuth refresh tokens) are not supported yet")
        creds = Credentials(
            str(doc.get("username") or ""),
            str(doc.get("password") or ""),
            str(doc.get("registrytoken") or ""),
        )
        return creds if (creds.username or creds.registry_token) else None


_PARAM_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """WWW-Authenticate's scheme (lowercase) and parameters: `Bearer realm="...",service="..."`."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM_RE.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return scheme.lower(), params


def is_insecure_by_default(host: str) -> bool:
    """localhost and loopback addresses: Docker allows them plain HTTP without being told."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: http.client.HTTPResponse
    conn: http.client.HTTPConnection

    def close(self) -> None:
        # Any error: an answer is closed when it is done with or abandoned (after
        # a failure, whose error is the one to report); a broken or half-read
        # connection to a registry can fail its close in many ways, and nothing
        # of it is kept: both closes are tried, never told.
        with contextlib.suppress(Exception):
            self.body.close()
        with contextlib.suppress(Exception):
            self.conn.close()


def _split_host(host: str) -> tuple[str, int | None]:
    if host.startswith("["):
        addr, _, port = host[1:].partition("]")
        return addr, int(port[1:]) if port.startswith(":") else None
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        return name, int(port)
    return host, None


class Registry:
    """One registry host, for one repository's pull (its tokens are kept for the pull)."""

    def __init__(self, host: str, credentials: Credentials | None = None, insecure: bool = False) -> None:
        self.host = host
        self.credentials = credentials
        self.insecure = insecure
        self.scheme = "https"
        self._auth: str | None = None  # the Authorization header that worked
        self._scheme_known = False

    # -- HTTP ---------------------------------------------------------------

    def _connect(self, scheme: str, host: str) -> http.client.HTTPConnection:
        name, port = _split_host(host)
        if scheme == "https":
            return http.client.HTTPSConnection(
                name, port, timeout=CONNECT_TIMEOUT, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(name, port, timeout=CONNECT_TIMEOUT)

    def _send(self, url: str, headers: dict[str, str]) -> Answer:
        parts = urlsplit(url)
        conn = self._connect(parts.scheme, parts.netloc)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request("GET", target, headers={"User-Agent": USER_AGENT, **headers})
            if conn.sock is not None:
                conn.sock.settimeout(READ_TIMEOUT)
            resp = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp, conn)

    def _base(self) -> str:
        return f"{self.scheme}://{self.host}"

    def _get(self, path: str, headers: dict[str, str]) -> Answer:
        """GET path on the registry, with auth and redirects; the caller closes the answer."""
        if not self._scheme_known:
            self._pick_scheme()
        url = self._base() + path
        auth_tried = False
        for _ in range(MAX_REDIRECTS + 2):
            same_host = urlsplit(url).netloc == self.host
            extra = dict(headers)
            if self._auth and same_host:
                extra["Authorization"] = self._auth
            try:
                answer = self._send(url, extra)
            except (OSError, http.client.HTTPException) as e:
                raise RegistryError(f"cannot reach the registry {self.host}: {_reason(e)}") from None
            if answer.status == 401 and same_host and not auth_tried:
                challenge = answer.headers.get("www-authenticate", "")
                answer.close()
                self._authenticate(challenge, path)
                auth_tried = True
                continue
            if answer.status in (301, 302, 303, 307, 308):
                location = answer.headers.get("location", "")
                answer.close()
                if not location:
                    raise RegistryError(f"the registry {self.host} redirected to nowhere")
                url = urljoin(url, location)
                continue
            return answer
        raise RegistryError(f"the registry {self.host} redirected too many times")

    def _pick_scheme(self) -> None:
        """HTTPS; plain HTTP for an insecure registry whose HTTPS does not answer."""
        try:
            answer = self._send(f"https://{self.host}/v2/", {})
            answer.close()
            self.scheme = "https"
        except (OSError, http.client.HTTPException) as e:
            if not self.insecure:
                raise RegistryError(f"cannot reach the registry {self.host}: {_reason(e)}") from None
            try:
                answer = self._send(f"http://{self.host}/v2/", {})
                answer.close()
            except (OSError, http.client.HTTPException) as e2:
                raise RegistryError(f"cannot reach the registry {self.host}: {_reason(e2)}") from None
            self.scheme = "http"
        self._scheme_known = True

    # -- auth -------------------------------------------------------------------

    def _basic(self) -> str:
        assert self.credentials is not None
        pair = f"{self.credentials.username}:{self.credentials.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    def _authenticate(self, challenge: str, path: str) -> None:
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self.credentials is None or not self.credentials.username:
                raise Unauthorized(
                    f"unauthorized: the registry {self.host} needs a login (docker login {self.host})"
                )
            self._auth = self._basic()
            return
        if scheme != "bearer":
            raise Unauthorized(
                f"the registry {self.host} asks for {scheme or 'no'} auth, which dockyard lacks"
            )
        if self.credentials is not None and self.credentials.registry_token:
            self._auth = "Bearer " + self.credentials.registry_token
            return
        realm = params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise Unauthorized(f"the registry {self.host} names no token service (realm {realm!r})")
        query = {k: v for k, v in (("service", params.get("service")), ("scope", params.get("scope"))) if v}
        if "scope" not in query:
            repo = _repository_of(path)
            if repo:
                query["scope"] = f"repository:{repo}:pull"
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        headers = {}
        if self.credentials is not None and self.credentials.username:
            headers["Authorization"] = self._basic()
        try:
            answer = self._send(url, headers)
        except (OSError, http.client.HTTPException) as e:
            raise RegistryError(f"cannot reach the token service {realm}: {_reason(e)}") from None
        try:
            body = answer.body.read(DOCUMENT_MAX + 1)
        finally:
            answer.close()
        if answer.status in (401, 403):
            raise Unauthorized(f"unauthorized: the token service {realm} refused the credentials")
        if answer.status != 200:
            raise RegistryError(f"the token service {realm} answered {answer.status}")
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token service {realm} gave no token")
        self._auth = "Bearer " + token

    # -- what a pull asks -----------------------------------------------------------

    def check_login(self) -> None:
        """Whether the credentials are good here (`docker login`): GET /v2/ with auth."""
        answer = self._get("/v2/", {})
        try:
            if answer.status == 401:
                raise Unauthorized(f"unauthorized: the registry {self.host} refused the credentials")
            if answer.status >= 400:
                raise RegistryError(f"the registry {self.host} answered {answer.status} to /v2/")
        finally:
            answer.close()

    def manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        """A manifest or index by tag or digest: its bytes and media type (verified by the caller)."""
        answer = self._get(f"/v2/{repository}/manifests/{reference}", {"Accept": ", ".join(ACCEPT)})
        try:
            if answer.status != 200:
                self._refuse(answer, f"manifest for {repository}:{reference}")
            length = int(answer.headers.get("content-length") or 0)
            if length > DOCUMENT_MAX:
                raise RegistryError(
                    f"the manifest for {repository}:{reference} is too large ({length} bytes)"
                )
            body = answer.body.read(DOCUMENT_MAX + 1)
            if len(body) > DOCUMENT_MAX:
                raise RegistryError(f"the manifest for {repository}:{reference} is too large")
            media_type = answer.headers.get("content-type", "").split(";")[0].strip()
            return body, media_type
        finally:
            answer.close()

    @contextlib.contextmanager
    def blob(self, repository: str, digest: str) -> Iterator[tuple[BinaryIO, int]]:
        """A blob's stream and its length (-1 when the registry does not say)."""
        answer = self._get(f"/v2/{repository}/blobs/{digest}", {})
        try:
            if answer.status != 200:
                self._refuse(answer, f"blob {digest} of {repository}")
            length = answer.headers.get("content-length", "")
            yield answer.body, int(length) if length.isdigit() else -1  # type: ignore[misc]
        finally:
            answer.close()

    def _refuse(self, answer: Answer, what: str) -> None:
        try:
            detail = answer.body.read(64 * 1024)
            errors = json.loads(detail).get("errors") or []
            message = "; ".join(
                f"{str(e.get('code', '')).lower().replace('_', ' ')}: {e.get('message', '')}" for e in errors
            )
        except (ValueError, AttributeError, OSError, http.client.HTTPException):
            message = ""
        message = message or f"status {answer.status}"
        if answer.status == 404:
            raise NotFound(f"{what} not found: {message}")
        if answer.status in (401, 403):
            raise Unauthorized(
                f"pull access denied for {what}: the repository does not exist or needs a login: {message}"
            )
        raise RegistryError(f"the registry {self.host} refused the {what}: {message}")


def _repository_of(path: str) -> str:
    m = re.match(r"^/v2/(.+)/(?:manifests|blobs)/", path)
    return m.group(1) if m else ""


def _reason(e: BaseException) -> str:
    if isinstance(e, socket.timeout):
        return "timed out"
    if isinstance(e, ssl.SSLError):
        return f"TLS: {e.reason or e}"
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e) or type(e).__name__
