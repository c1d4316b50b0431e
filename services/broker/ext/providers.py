"""Providers: turn an ``ext_call``'s arguments into one concrete HTTP request and the level it needs.

Every provider has the same shape (:class:`Provider`): ``prepare(args)`` validates the arguments, builds the
request (method, URL, JSON body) and classifies it (level 1 read-only, 2 write, 3 deploy/merge); ``auth``
gives the headers that carry the provider's token. Providers do no I/O: the broker checks the capability,
signs, sends and records (:mod:`services.broker.ext.broker`).

- :class:`HttpProvider`: any HTTP API, with per-level host and method allowlists from config.
- :class:`GitHubProvider`: GitHub's REST API under a configurable base URL; reads are level 1, merges,
  deployments, releases, workflow dispatches, ref and branch-protection changes, repository deletion or
  settings (also under the ``/repositories/<id>`` alias) and GraphQL requests are level 3, every other write
  level 2.

Arguments (JSON): ``method`` (default ``GET``), ``path`` (GitHub: the API path, e.g. ``/repos/o/r/issues``) or
``url`` (HTTP: an absolute URL), ``query`` (object of scalar values, optional), ``body`` (any JSON; not with
GET or HEAD).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from yarl import URL

from services.broker.ext.config import METHODS, GitHubProviderConfig, HttpProviderConfig

USER_AGENT = "nanoclaw-bus-ext-broker"
_BAD_PATH_CHARS = re.compile(r"[\s%?#\\\x00-\x1f\x7f]")


class CallRejected(ValueError):
    """The arguments are malformed (the message names the argument and the problem)."""


@dataclass(frozen=True)
class PreparedCall:
    """One request ready to send. ``level``: the level it needs (0: no level of the provider's allowlist
    admits it, so it is refused whatever the group holds); ``host``: ``host[:port]`` as sent;
    ``params``: what identifies the request (hashed for the audit, compared on an idempotent repeat)."""

    method: str
    url: URL
    body: bytes
    level: int
    host: str
    params: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def path_qs(self) -> str:
        return self.url.raw_path_qs


class Provider(Protocol):
    name: str

    def prepare(self, args: Mapping[str, Any]) -> PreparedCall:
        """Raises: CallRejected for malformed arguments."""
        ...

    def auth(self) -> dict[str, str]:
        """Headers carrying the provider's token (empty without one)."""
        ...


def _method(args: Mapping[str, Any]) -> str:
    method = args.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise CallRejected(f"'method' must be one of {', '.join(METHODS)}, not {method!r}")
    return method.upper()


def _query(args: Mapping[str, Any]) -> dict[str, str]:
    query = args.get("query") or {}
    if not isinstance(query, dict):
        raise CallRejected("'query' must be an object of names to strings, numbers or booleans")
    out = {}
    for name, value in query.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, (str, int, float)):
            raise CallRejected(f"query parameter {name!r} must be a string, number or boolean")
        out[str(name)] = str(value)
    return out


def _body(args: Mapping[str, Any], method: str) -> tuple[Any, bytes, dict[str, str]]:
    body = args.get("body")
    if body is None:
        return None, b"", {}
    if method in ("GET", "HEAD"):
        raise CallRejected(f"a {method} request takes no 'body'")
    return body, json.dumps(body, ensure_ascii=False).encode(), {"Content-Type": "application/json"}


def _auth(header: str, scheme: str, token: str | None) -> dict[str, str]:
    if not token:
        return {}
    return {header: f"{scheme} {token}" if scheme else token}


def host_of(url: URL) -> str:
    """``host`` for the scheme's default port, else ``host:port``."""
    assert url.host is not None
    return url.host.lower() if url.is_default_port() else f"{url.host.lower()}:{url.port}"


class HttpProvider:
    """A generic HTTP API (``kind: http``)."""

    def __init__(self, name: str, config: HttpProviderConfig, token: str | None):
        self.name, self.config, self._token = name, config, token

    def prepare(self, args: Mapping[str, Any]) -> PreparedCall:
        method = _method(args)
        raw = args.get("url")
        if not isinstance(raw, str) or not raw.strip():
            raise CallRejected(f"provider {self.name} needs 'url': the absolute URL to call")
        try:
            url = URL(raw.strip())
        except (ValueError, TypeError) as exc:
            raise CallRejected(f"'url' is not a URL: {exc}") from None
        schemes = ("https", "http") if self.config.allow_plain_http else ("https",)
        if url.scheme not in schemes or not url.host:
            raise CallRejected(f"'url' must be an absolute {' or '.join(s + '://' for s in schemes)} URL")
        if url.user or url.password:
            raise CallRejected("'url' must not carry a user name or password")
        query = _query(args)
        if query:
            url = url.update_query(query)
        body, data, headers = _body(args, method)
        host = host_of(url)
        level = self.level_for(url.host.lower(), host, method)
        params = {"provider": self.name, "method": method, "url": str(url.with_fragment(None)), "body": body}
        return PreparedCall(method, url.with_fragment(None), data, level, host, params, headers)

    def level_for(self, bare_host: str, host: str, method: str) -> int:
        """The lowest level whose rule admits ``host`` (or the bare host name) and ``method``; 0 if none does."""
        for level in sorted(self.config.levels):
            rule = self.config.levels[level]
            if (bare_host in rule.hosts or host in rule.hosts) and method in rule.methods:
                return level
        return 0

    def auth(self) -> dict[str, str]:
        return _auth(self.config.auth_header, self.config.auth_scheme, self._token)


_REPO = r"(?:/repos/[^/]+/[^/]+|/repositories/\d+)"  # /repositories/<id>/… is an alias of /repos/<owner>/<repo>/…
_WRITE = ("POST", "PUT", "PATCH", "DELETE")
# (methods, path pattern) that deploy, merge or change what protects a repository: level 3.
_LEVEL3 = [
    (("PUT",), _REPO + r"/pulls/\d+/merge"),
    (("POST",), _REPO + r"/merges"),
    (_WRITE, _REPO + r"/deployments(/.*)?"),
    (_WRITE, _REPO + r"/environments(/.*)?"),
    (_WRITE, _REPO + r"/releases(/.*)?"),
    (("POST",), _REPO + r"/dispatches"),
    (("POST",), _REPO + r"/actions/workflows/[^/]+/dispatches"),
    (_WRITE, _REPO + r"/git/refs(/.*)?"),
    (_WRITE, _REPO + r"/branches/[^/]+/protection(/.*)?"),
    (("PATCH", "DELETE"), _REPO),
    (("POST",), r"/graphql"),  # a mutation may merge or deploy, and the broker cannot tell which
]
_LEVEL3_RE = [(methods, re.compile(pattern + "/?", re.IGNORECASE)) for methods, pattern in _LEVEL3]


def github_level(method: str, path: str) -> int:
    """1 for GET/HEAD, 3 for the deploy/merge operations above (and any GraphQL request), else 2."""
    if method in ("GET", "HEAD"):
        return 1
    return 3 if any(method in methods and rx.fullmatch(path) for methods, rx in _LEVEL3_RE) else 2


class GitHubProvider:
    """GitHub's REST API (``kind: github``)."""

    def __init__(self, name: str, config: GitHubProviderConfig, token: str | None):
        self.name, self.config, self._token = name, config, token
        self.base = URL(config.base_url)

    def prepare(self, args: Mapping[str, Any]) -> PreparedCall:
        method = _method(args)
        path = args.get("path")
        if not isinstance(path, str) or not path.startswith("/") or path.startswith("//"):
            raise CallRejected(f"provider {self.name} needs 'path': an API path starting with one '/', "
                               "e.g. /repos/OWNER/REPO/issues")
        if _BAD_PATH_CHARS.search(path) or "//" in path or any(seg in (".", "..") for seg in path.split("/")):
            raise CallRejected("'path' must not contain spaces, %, ?, #, backslashes, control characters, empty "
                               "segments (//) or '.'/'..' segments (give query parameters in 'query')")
        query = _query(args)
        url = self.base.with_path(self.base.path.rstrip("/") + path)
        if query:
            url = url.with_query(query)
        body, data, headers = _body(args, method)
        headers = {**headers, "Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": self.config.api_version, "User-Agent": USER_AGENT}
        params = {"provider": self.name, "method": method, "path": path, "query": query, "body": body}
        return PreparedCall(method, url, data, github_level(method, path), host_of(url), params, headers)

    def auth(self) -> dict[str, str]:
        return _auth(self.config.auth_header, self.config.auth_scheme, self._token)


def build_providers(configs: Mapping[str, HttpProviderConfig | GitHubProviderConfig],
                    tokens: Mapping[str, str]) -> dict[str, Provider]:
    """One provider per configured name, with its token from credentials (if any)."""
    out: dict[str, Provider] = {}
    for name, config in configs.items():
        cls = HttpProvider if isinstance(config, HttpProviderConfig) else GitHubProvider
        out[name] = cls(name, config, tokens.get(name))  # type: ignore[arg-type]
    return out
