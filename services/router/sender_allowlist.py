"""Per-chat sender allowlist: who may trigger the agent, and whose messages are dropped unseen (§21.1).

Config file (JSON, or YAML when the name ends in ``.yaml``/``.yml``), as NanoClaw v1
``~/.config/nanoclaw/sender-allowlist.json``::

    {
      "default": {"allow": "*", "mode": "trigger"},
      "chats": {"123@g.us": {"allow": ["447700900001@s.whatsapp.net"], "mode": "drop"}},
      "logDenied": true
    }

``allow`` is ``"*"`` (anyone) or a list of sender JIDs (exact match; ``[]`` = nobody). ``mode`` is
``"trigger"`` (everyone's messages are stored as context, only allowed senders can start the agent) or
``"drop"`` (messages from senders not allowed are discarded before storage). A chat's entry replaces the
default for that chat. The owner (``is_from_me``) is never denied or dropped.

To plug the allowlist into ``selection.should_trigger`` use ``functools.partial(is_trigger_allowed, cfg)``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

logger = logging.getLogger(__name__)

Mode = Literal["trigger", "drop"]


class ChatAllowlistEntry(BaseModel):
    """The rule for one chat (or the default): ``allow`` is ``"*"`` or a tuple of sender JIDs."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    # StrictStr: a number or null in the list is an error, not silently turned into a string.
    allow: Literal["*"] | tuple[StrictStr, ...]
    mode: Mode


class SenderAllowlist(BaseModel):
    """The whole allowlist. Field ``log_denied`` is ``logDenied`` in the file.

    The defaults (allow everyone, trigger mode, log denials) are NanoClaw's config for a missing file.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    default: ChatAllowlistEntry = Field(default_factory=lambda: ChatAllowlistEntry(allow="*", mode="trigger"))
    chats: dict[str, ChatAllowlistEntry] = Field(default_factory=dict)
    log_denied: bool = Field(default=True, alias="logDenied")


ALLOW_ALL = SenderAllowlist()
"""Fail-open fallback (NanoClaw's behaviour, quirk §23.13): anyone may trigger, nothing is dropped."""

DENY_ENTRY = ChatAllowlistEntry(allow=(), mode="trigger")
"""Fail-closed rule: nobody but the owner may trigger. ``trigger`` rather than ``drop`` mode so that a broken
config file never destroys messages; they are kept as context."""

DENY_ALL = SenderAllowlist(default=DENY_ENTRY)
"""Fail-closed fallback: :data:`DENY_ENTRY` for every chat."""


def entry_for(cfg: SenderAllowlist, chat_jid: str) -> ChatAllowlistEntry:
    """The rule in force for ``chat_jid``: its own entry if present, else the default."""
    return cfg.chats.get(chat_jid, cfg.default)


def is_sender_allowed(cfg: SenderAllowlist, chat_jid: str, sender: str) -> bool:
    """True if ``sender`` (a JID, matched exactly) is allowed in ``chat_jid`` (NanoClaw ``isSenderAllowed``).

    Says nothing about ``is_from_me``; callers exempt the owner (as :func:`should_drop_message` and
    ``selection.should_trigger`` do).
    """
    entry = entry_for(cfg, chat_jid)
    return entry.allow == "*" or sender in entry.allow


def is_trigger_allowed(cfg: SenderAllowlist, chat_jid: str, sender: str) -> bool:
    """:func:`is_sender_allowed`, logging a denial at DEBUG when ``cfg.log_denied`` (NanoClaw
    ``isTriggerAllowed``). Fits ``selection.SenderAllowed`` once ``cfg`` is bound with ``functools.partial``."""
    allowed = is_sender_allowed(cfg, chat_jid, sender)
    if not allowed and cfg.log_denied:
        logger.debug("sender-allowlist: trigger denied for sender %s in chat %s", sender, chat_jid)
    return allowed


def should_drop_message(
    cfg: SenderAllowlist, chat_jid: str, sender: str, is_from_me: bool, is_bot: bool
) -> bool:
    """True if an inbound message must be discarded before it is stored (§4 step 5).

    Dropped when the chat's mode is ``drop`` and the sender is not allowed, unless the message is from the
    owner or from the bot. The remaining condition of NanoClaw's check, "the chat is registered", is the
    caller's: only call this for registered chats.
    """
    if is_from_me or is_bot:
        return False
    return entry_for(cfg, chat_jid).mode == "drop" and not is_sender_allowed(cfg, chat_jid, sender)


def load_sender_allowlist(path: str | os.PathLike[str], *, fail_closed: bool) -> SenderAllowlist:
    """Read the allowlist file at ``path``; never raises.

    Whole-file problems (missing or unreadable file, invalid JSON/YAML, top level not an object, missing or
    invalid ``default``) give the fallback for the chosen policy:

    * ``fail_closed=False`` — NanoClaw v1's behaviour: :data:`ALLOW_ALL`. A missing file is the normal
      "no allowlist" case and is logged only at DEBUG.
    * ``fail_closed=True`` — :data:`DENY_ALL`: only the owner (``is_from_me``) can trigger; other messages are
      still stored as context. A missing file is logged as a WARNING, since it silences everyone else.

    Partial problems, as NanoClaw: an invalid per-chat entry is skipped with a warning and the valid ones are
    kept; fail-closed instead gives that chat :data:`DENY_ENTRY` (skipping it would let the chat fall back to a
    possibly more permissive default). A ``chats`` value that is not an object is ignored (fail-open) or makes
    the whole file invalid (fail-closed). ``logDenied`` is true unless it is literally ``false``.

    Every warning names the file, the problem and the policy applied (stdlib ``logging``, this module's
    logger).
    """
    file = Path(path)
    fallback = DENY_ALL if fail_closed else ALLOW_ALL
    policy = (
        "denying every sender except the owner (fail-closed)"
        if fail_closed
        else "allowing every sender (fail-open)"
    )
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        if fail_closed:
            logger.warning("sender allowlist %s not found; %s", file, policy)
        else:
            logger.debug("sender allowlist %s not found; %s", file, policy)
        return fallback
    except (OSError, UnicodeDecodeError) as exc:
        logger.warning("sender allowlist %s cannot be read (%s); %s", file, exc, policy)
        return fallback

    try:
        data = _parse(file, text)
    except ValueError as exc:
        logger.warning("sender allowlist %s: %s; %s", file, exc, policy)
        return fallback

    try:
        return _build(file, data, fail_closed)
    except ValueError as exc:
        logger.warning("sender allowlist %s: %s; %s", file, exc, policy)
        return fallback


def _parse(file: Path, text: str) -> Any:
    if file.suffix.lower() in (".yaml", ".yml"):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError("invalid YAML: " + " ".join(str(exc).split())) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _describe(exc: ValidationError) -> str:
    # One line per problem, "field: reason", so the warning says what to fix.
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or 'entry'}: {err['msg']}" for err in exc.errors()
    )


def _build(file: Path, data: Any, fail_closed: bool) -> SenderAllowlist:
    if not isinstance(data, dict):
        raise ValueError(f"expected an object at the top level, got {type(data).__name__}")
    if "default" not in data:
        raise ValueError("missing 'default' entry")
    try:
        default = ChatAllowlistEntry.model_validate(data["default"])
    except ValidationError as exc:
        raise ValueError(f"invalid 'default' entry: {_describe(exc)}") from None

    raw_chats = data.get("chats")
    chats: dict[str, ChatAllowlistEntry] = {}
    if raw_chats is not None and not isinstance(raw_chats, dict):
        if fail_closed:
            raise ValueError(f"'chats' must be an object, got {type(raw_chats).__name__}")
        logger.warning(
            "sender allowlist %s: 'chats' must be an object, got %s; ignoring it",
            file,
            type(raw_chats).__name__,
        )
        raw_chats = None
    for jid, raw_entry in (raw_chats or {}).items():
        try:
            if not isinstance(jid, str):
                raise ValueError("the chat key must be a string")
            chats[jid] = ChatAllowlistEntry.model_validate(raw_entry)
        except (ValidationError, ValueError) as exc:
            reason = _describe(exc) if isinstance(exc, ValidationError) else str(exc)
            if fail_closed:
                chats[str(jid)] = DENY_ENTRY
                action = "denying every sender except the owner in that chat (fail-closed)"
            else:
                action = "skipping it"
            logger.warning("sender allowlist %s: invalid entry for chat %r: %s; %s", file, jid, reason, action)

    return SenderAllowlist(default=default, chats=chats, log_denied=data.get("logDenied") is not False)
