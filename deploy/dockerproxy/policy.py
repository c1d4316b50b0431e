"""What the Docker API proxy lets through (pure: no I/O). Deny by default.

Allowed calls (an optional ``/v1.NN`` prefix, NN ≥ 24, is stripped first):

- ``GET|HEAD /_ping``, ``GET /version``, ``GET /info``, ``GET /containers/json``, ``GET /images/{name}/json``,
  ``GET /networks/{id or name}``;
- ``POST /containers/create`` whose body passes :func:`check_create`;
- on one container: ``GET …/json``, ``POST …/attach|start|wait|stop|kill``, ``DELETE /containers/{id}``, and
  only if it is labelled ``nanoclaw.role=agent``: the decision names the container, the server inspects it and
  calls :func:`check_target` (a container that does not exist passes, so the engine answers its usual 404).

Shapes:
    :class:`Request` ``(method, path, query, body, prefix, query_string)``: ``path`` percent-decoded without
    the version prefix; ``query`` ``{name: [values]}``; ``body`` the parsed JSON or None when the request had no
    body.
    :class:`Decision` ``(allowed, reason, status, route, container)``: ``status`` 200 (allowed), 403 (denied) or
    400 (malformed); ``reason`` names the problem (``"HostConfig.Privileged=True is not allowed"``).

Errors:
    :class:`Malformed`: the target or body cannot be read (the server answers 400).
    :class:`PolicyConfigError`: :func:`policy_from_env` found a missing or invalid setting; the message names
    the environment variable.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# The runner's label for its sandboxes (a module of the standard library only: cheap to import here).
from services.runner.sandbox.base import AGENT_ROLE, ROLE_LABEL

ENV_PREFIX = "NANOCLAW_DOCKER_PROXY__"
MIN_API = (1, 24)
"""Below 1.24 the engine still applies a HostConfig sent with ``POST /containers/{id}/start``: a start could
undo everything the create check enforced."""

_VERSION = re.compile(r"/v(\d+)\.(\d+)(?=/)")
_ROUTES = [  # (methods, path pattern, route name); names with a `container` group act on one container
    ({"GET", "HEAD"}, r"/_ping", "ping"),
    ({"GET"}, r"/version", "version"),
    ({"GET"}, r"/info", "info"),
    ({"GET"}, r"/containers/json", "containers.list"),
    ({"POST"}, r"/containers/create", "containers.create"),
    ({"GET"}, r"/images/(?P<image>.+)/json", "images.inspect"),
    ({"GET"}, r"/networks/(?P<network>[^/]+)", "networks.inspect"),
    ({"GET"}, r"/containers/(?P<container>[^/]+)/json", "container.inspect"),
    ({"POST"}, r"/containers/(?P<container>[^/]+)/(?P<action>attach|start|wait|stop|kill)", "container.action"),
    ({"DELETE"}, r"/containers/(?P<container>[^/]+)", "container.remove"),
]
_ROUTES_RE = [(methods, re.compile(pattern), name) for methods, pattern, name in _ROUTES]

# container.Config fields plus the wrapper's two objects. The engine also reads HostConfig fields given at the
# top level (legacy API); those are "unknown" here, so they can never slip past the HostConfig checks.
_CONFIG_KEYS = {"Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts",
                "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes",
                "WorkingDir", "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal",
                "StopTimeout", "Shell", "HostConfig", "NetworkingConfig"}
# HostConfig fields checked one by one in _check_host_config.
_HOST_CHECKED = {"Binds", "Mounts", "Tmpfs", "NetworkMode", "CapDrop", "SecurityOpt", "ReadonlyRootfs", "Memory",
                 "PidsLimit", "Runtime", "LogConfig", "PidMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode",
                 "MaskedPaths", "ReadonlyPaths"}
# HostConfig fields that cannot weaken the sandbox whatever their value (limits, DNS, restart, console size).
_HOST_HARMLESS = {"ContainerIDFile", "RestartPolicy", "AutoRemove", "ConsoleSize", "Isolation", "Init", "CpuShares",
                  "NanoCpus", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpusetCpus",
                  "CpusetMems", "CpuCount", "CpuPercent", "MemoryReservation", "MemorySwap", "MemorySwappiness",
                  "KernelMemory", "KernelMemoryTCP", "OomKillDisable", "BlkioWeight", "BlkioWeightDevice",
                  "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps",
                  "IOMaximumIOps", "IOMaximumBandwidth", "Ulimits", "ShmSize", "Dns", "DnsOptions", "DnsSearch",
                  "ExtraHosts"}
# Every other HostConfig field (Privileged, CapAdd, Devices, DeviceRequests, DeviceCgroupRules, VolumesFrom, Links,
# Sysctls, PortBindings, PublishAllPorts, VolumeDriver, GroupAdd, CgroupParent, OomScoreAdj, StorageOpt, and any
# field a newer engine adds) must be absent or zero-valued (false, 0, "", null, [], {}).
_NAMESPACE_MODES = ("PidMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode")
_NO_NEW_PRIVILEGES = {"no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"}
_MOUNT_KEYS = {"Type", "Source", "Target", "ReadOnly", "Consistency", "BindOptions"}
# Other log drivers (syslog, gelf, fluentd, …) ship the sandbox's output from the host to a network address.
_LOG_DRIVERS = {"", "none", "json-file", "local"}
_USER = re.compile(r"([0-9]+)(:[0-9]+)?")


class Malformed(ValueError):
    """The request target or body cannot be read; the message says what is wrong (answered with 400)."""


class PolicyConfigError(ValueError):
    """A proxy setting is missing or invalid; the message names the environment variable."""


class ProxyPolicy(BaseModel):
    """What containers the runner may create.

    Args:
        network: the only network a sandbox may join (``HostConfig.NetworkMode`` and its endpoint).
        images: allowed image repositories, without tag or digest (``nanoclaw-agent`` allows
            ``nanoclaw-agent:<anything>`` and ``nanoclaw-agent@sha256:…``).
        bind_roots: absolute host directories; every bind-mount source must be one of them or lie below one.
        runtimes: OCI runtimes a create may name; an empty ``Runtime`` (the engine's default) is always allowed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    network: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    images: tuple[str, ...] = Field(("nanoclaw-agent",), min_length=1)
    bind_roots: tuple[str, ...] = Field(min_length=1)
    runtimes: tuple[str, ...] = ("runc",)

    @field_validator("bind_roots")
    @classmethod
    def _roots(cls, roots: tuple[str, ...]) -> tuple[str, ...]:
        for root in roots:
            if not _normal_abs(root) or root == "/":
                raise ValueError(f"expected absolute normalised host directories other than '/', got {root!r}")
        return roots

    @field_validator("images")
    @classmethod
    def _images(cls, images: tuple[str, ...]) -> tuple[str, ...]:
        for image in images:
            if repository(image) != image:
                raise ValueError(f"expected repository names without tag or digest, got {image!r}")
        return images


def policy_from_env(environ: Mapping[str, str]) -> ProxyPolicy:
    """The policy from ``NANOCLAW_DOCKER_PROXY__NETWORK`` (required), ``…__BIND_ROOTS`` (required),
    ``…__IMAGES`` and ``…__RUNTIMES``. Lists are JSON (``'["/srv/a", "/srv/b"]'``) or comma-separated.

    Raises:
        PolicyConfigError: ``"NANOCLAW_DOCKER_PROXY__BIND_ROOTS: Field required"``, an unknown variable with the
            prefix (a typo would otherwise be ignored), or a value that is not a list.
    """
    values: dict[str, Any] = {}
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX):
            continue
        field = var[len(ENV_PREFIX):].lower()
        if field not in ProxyPolicy.model_fields:
            raise PolicyConfigError(f"{var}: unknown setting; expected one of "
                                    f"{', '.join(ENV_PREFIX + f.upper() for f in ProxyPolicy.model_fields)}")
        values[field] = raw if field == "network" else _env_list(var, raw)
    try:
        return ProxyPolicy(**values)
    except ValidationError as exc:
        raise PolicyConfigError("; ".join(
            f"{ENV_PREFIX}{str(err['loc'][0]).upper()}: "
            + ("required but not set" if err["type"] == "missing" else err["msg"]) for err in exc.errors())) from None


def _env_list(var: str, raw: str) -> list[str]:
    if not raw.strip().startswith("["):
        return [item.strip() for item in raw.split(",") if item.strip()]
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise PolicyConfigError(f"{var}: not a JSON list ({exc})") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyConfigError(f"{var}: expected a JSON list of strings")
    return value


@dataclass(frozen=True)
class Request:
    """One API call. ``prefix`` is the version prefix as sent (``"/v1.41"`` or ``""``); ``path`` is decoded and
    without it; ``body`` is the parsed JSON, or None when the request had no body."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    body: Any = None
    prefix: str = ""
    query_string: str = ""


@dataclass(frozen=True)
class Decision:
    """``container``: set on an allowed call that acts on one container (the id or name as the client gave
    it); the call may go ahead only if :func:`check_target` allows that container too."""

    allowed: bool
    reason: str = ""
    status: int = 200
    route: str = ""
    container: str | None = None


def parse_request(method: str, target: str, body: bytes = b"") -> Request:
    """Read a request target (``/v1.41/containers/create?name=x``) and body.

    Raises:
        Malformed: not an origin-form target; a ``.``/``..``/empty path segment (the engine's router would
            clean the path into another route); a body that is not JSON, or has keys equal but for case (the
            engine reads JSON keys case-insensitively, so both would land on one field).
    """
    if not target.startswith("/") or target.startswith("//"):
        raise Malformed(f"expected a request target starting with '/', got {target[:80]!r}")
    parts = urlsplit(target)
    path = unquote(parts.path)  # the engine routes on the decoded path
    segments = path.split("/")[1:]
    if any(seg in ("", ".", "..") for seg in segments) or any(ord(c) < 0x20 for c in path):
        raise Malformed(f"unexpected path {parts.path[:200]!r} (empty, '.' or '..' segment, or a control character)")
    prefix = ""
    if m := _VERSION.match(path):
        prefix, path = path[: m.end()], path[m.end():]
    parsed = None
    if body:
        try:
            parsed = json.loads(body, object_pairs_hook=_unique_keys)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise Malformed(f"request body is not valid JSON: {exc}") from None
    return Request(method, path, parse_qs(parts.query, keep_blank_values=True), parsed, prefix, parts.query)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, str] = {}
    for key, _ in pairs:
        if key.lower() in seen:
            raise Malformed(f"request body has the key {key!r} twice (or as {seen[key.lower()]!r}): the engine "
                            "reads keys case-insensitively")
        seen[key.lower()] = key
    return dict(pairs)


def check_request(request: Request, policy: ProxyPolicy) -> Decision:
    """Allow or deny one call (see the module docstring for the list)."""
    if request.prefix:
        major, minor = map(int, request.prefix[2:].split("."))
        if (major, minor) < MIN_API:
            return _deny(f"API version {major}.{minor} is older than {MIN_API[0]}.{MIN_API[1]}")
    for methods, pattern, name in _ROUTES_RE:
        match = pattern.fullmatch(request.path)
        if match and request.method in methods:
            break
    else:
        return _deny(f"{request.method} {request.path} is not an allowed call")
    if name == "containers.create":
        reason = check_create(request.body, policy)
        return _deny(reason, name) if reason else Decision(True, route=name)
    if request.body is not None:
        return _deny(f"a request body is only accepted on POST /containers/create, not on {request.method} "
                     f"{request.path}", name)
    groups = match.groupdict()
    if "container" in groups:
        # POST actions get their own route names ("container.attach"): the server must tell the attach upgrade apart.
        action = groups.get("action")
        return Decision(True, route=f"container.{action}" if action else name, container=groups["container"])
    return Decision(True, route=name)


def check_target(decision: Decision, inspect: Mapping[str, Any]) -> Decision:
    """Whether the container of an allowed ``decision`` (its ``GET /containers/{id}/json``) is an agent."""
    labels = (inspect.get("Config") or {}).get("Labels") or {}
    if labels.get(ROLE_LABEL) != AGENT_ROLE:
        return _deny(f"container {decision.container!r} is not a nanoclaw sandbox (label {ROLE_LABEL}={AGENT_ROLE} "
                     "missing)", decision.route)
    return decision


def retarget(request: Request, container_id: str) -> str:
    """The request target with the container named by its full id, so the call acts on exactly the container
    that was inspected (a name could be reused in between)."""
    rest = request.path.split("/")[3:]  # ['', 'containers', <name>, <action>?]
    path = "/".join([request.prefix + "/containers", container_id, *rest])
    return path + (f"?{request.query_string}" if request.query_string else "")


def check_create(body: Any, policy: ProxyPolicy) -> str | None:
    """None if ``body`` (a ``POST /containers/create`` JSON body) describes a hardened sandbox, else the first
    problem found, naming the field: ``"HostConfig.CapDrop must contain ALL"``."""
    if not isinstance(body, dict):
        return "the create body must be a JSON object"
    for key, value in body.items():
        if key not in _CONFIG_KEYS and not _zero(value):
            return f"unknown top-level field {key!r} (host settings belong in HostConfig)"
    image = body.get("Image")
    if not isinstance(image, str) or repository(image) not in policy.images:
        return f"image {image!r} is not allowed (repositories: {', '.join(policy.images)})"
    labels = body.get("Labels")
    if not isinstance(labels, dict) or labels.get(ROLE_LABEL) != AGENT_ROLE:
        return f"label {ROLE_LABEL}={AGENT_ROLE} is required"
    user = body.get("User")
    m = _USER.fullmatch(user) if isinstance(user, str) else None
    if m is None or int(m[1]) == 0:
        return f"User {user!r} is not allowed: a numeric uid[:gid] other than root (0) is required"
    if not _zero(body.get("Volumes")):
        return "Volumes (anonymous volumes) is not allowed"
    host = body.get("HostConfig")
    if not isinstance(host, dict):
        return "HostConfig is required"
    return _check_host_config(host, policy) or _check_endpoints(body.get("NetworkingConfig"), policy)


def _check_host_config(hc: dict[str, Any], policy: ProxyPolicy) -> str | None:
    for key, value in hc.items():
        if key not in _HOST_CHECKED and key not in _HOST_HARMLESS and not _zero(value):
            return f"HostConfig.{key}={value!r} is not allowed"
    if "ALL" not in _strings(hc.get("CapDrop")):
        return "HostConfig.CapDrop must contain ALL"
    if hc.get("ReadonlyRootfs") is not True:
        return "HostConfig.ReadonlyRootfs must be true"
    security = _strings(hc.get("SecurityOpt"))
    for opt in security:
        if opt not in _NO_NEW_PRIVILEGES:
            return f"HostConfig.SecurityOpt {opt!r} is not allowed (only no-new-privileges)"
    if not security:
        return "HostConfig.SecurityOpt must contain no-new-privileges"
    for key in ("MaskedPaths", "ReadonlyPaths"):
        if hc.get(key) is not None:  # even [] matters: an empty list unmasks /proc and /sys paths
            return f"HostConfig.{key} must not be set"
    for key in _NAMESPACE_MODES:
        mode = hc.get(key) or ""
        if not isinstance(mode, str) or mode == "host" or mode.startswith("container:"):
            return f"HostConfig.{key}={mode!r} is not allowed (no shared host or container namespaces)"
    if hc.get("NetworkMode") != policy.network:
        return f"HostConfig.NetworkMode={hc.get('NetworkMode')!r} is not allowed (only {policy.network!r})"
    for key in ("Memory", "PidsLimit"):
        if not isinstance(hc.get(key), int) or isinstance(hc.get(key), bool) or hc[key] <= 0:
            return f"HostConfig.{key} must be a positive limit, got {hc.get(key)!r}"
    if (hc.get("Runtime") or "") not in ("", *policy.runtimes):
        return f"HostConfig.Runtime={hc.get('Runtime')!r} is not allowed (allowed: {', '.join(policy.runtimes)})"
    log = hc.get("LogConfig") or {}
    if not isinstance(log, dict) or not set(log) <= {"Type", "Config"} or (log.get("Type") or "") not in _LOG_DRIVERS:
        return f"HostConfig.LogConfig={log!r} is not allowed (log drivers: none, json-file, local)"
    if not isinstance(hc.get("Tmpfs") or {}, dict):
        return "HostConfig.Tmpfs must be an object"
    return _check_binds(hc.get("Binds"), policy) or _check_mounts(hc.get("Mounts"), policy)


def _check_binds(binds: Any, policy: ProxyPolicy) -> str | None:
    if not isinstance(binds, (list, type(None))):
        return "HostConfig.Binds must be a list"
    for bind in binds or ():
        source = bind.split(":", 1)[0] if isinstance(bind, str) else None
        if not source or not source.startswith("/"):
            return f"HostConfig.Binds {bind!r} is not allowed: only host paths, no named volumes"
        if reason := _check_source(source, policy):
            return f"HostConfig.Binds {bind!r}: {reason}"
    return None


def _check_mounts(mounts: Any, policy: ProxyPolicy) -> str | None:
    if not isinstance(mounts, (list, type(None))):
        return "HostConfig.Mounts must be a list"
    for mount in mounts or ():
        if not isinstance(mount, dict) or not set(mount) <= _MOUNT_KEYS:
            return f"HostConfig.Mounts entry {mount!r} is not allowed (fields: {', '.join(sorted(_MOUNT_KEYS))})"
        if mount.get("Type") != "bind":
            return (f"HostConfig.Mounts type {mount.get('Type')!r} is not allowed "
                    "(only bind; tmpfs via HostConfig.Tmpfs)")
        if reason := _check_source(mount.get("Source"), policy):
            return f"HostConfig.Mounts source: {reason}"
    return None


def _check_source(source: Any, policy: ProxyPolicy) -> str | None:
    if not isinstance(source, str) or not _normal_abs(source):
        return f"{source!r} is not an absolute normalised path (no '..', '.', '//' or trailing '/')"
    if not any(source == root or source.startswith(root.rstrip("/") + "/") for root in policy.bind_roots):
        return f"{source!r} is outside the bind roots ({', '.join(policy.bind_roots)})"
    return None


def _check_endpoints(networking: Any, policy: ProxyPolicy) -> str | None:
    if networking is None:
        return None
    if not isinstance(networking, dict) or not set(networking) <= {"EndpointsConfig"} \
            or not isinstance(networking.get("EndpointsConfig") or {}, dict):
        return 'NetworkingConfig must be {"EndpointsConfig": {<network>: {…}}}'
    others = sorted(set(networking.get("EndpointsConfig") or {}) - {policy.network})
    return f"NetworkingConfig endpoint {others[0]!r} is not allowed (only {policy.network!r})" if others else None


def repository(image: str) -> str:
    """The repository of an image reference: without digest, tag, or the ``docker.io/library/`` prefix
    (``docker.io/library/nanoclaw-agent:1@sha256:…`` → ``nanoclaw-agent``)."""
    name = image.split("@", 1)[0]
    if name.rfind(":") > name.rfind("/"):  # a ':' after the last '/' is the tag; before it, a registry port
        name = name[: name.rfind(":")]
    return name.removeprefix("docker.io/library/")


def _normal_abs(path: str) -> bool:
    return path.startswith("/") and not path.startswith("//") and posixpath.normpath(path) == path


def _strings(value: Any) -> list[str]:
    """A list of strings as the engine reads it (a single string counts as a one-element list)."""
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _zero(value: Any) -> bool:
    return value is None or value is False or (value == 0 and not isinstance(value, bool)) or value in ("", [], {})


def _deny(reason: str, route: str = "") -> Decision:
    return Decision(False, reason, 403, route)
