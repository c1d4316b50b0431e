"""Trigger words: when a message in a group addresses the assistant (NanoClaw v1 ``config.ts``, §6.2).

A trigger matches only at the start of the (trimmed) message, case-insensitively, with regex characters in the
trigger taken literally. The trigger text is not removed from the message; the agent sees it.

Departures from NanoClaw, both deliberate:

* **The boundary after the trigger.** NanoClaw appends ``\\b``. After a trigger ending in a word character
  that means "not followed by a word character" (``@Andy`` matches ``@Andy, hi`` and ``@Andy's`` but not
  ``@Andyextra``); we keep exactly that. After a trigger ending in a *non*-word character (``@Andy!``,
  ``🤖``, ``Andy:``) JS's ``\\b`` would instead *require* a word character next, so ``🤖 hello`` would not
  match ``🤖``. Such a trigger is already self-delimiting, so we require nothing after it.
* **Unicode words.** JS regexes without the ``u`` flag treat only ASCII as word characters, so NanoClaw lets
  ``@Andyé`` trigger ``@Andy`` and refuses ``@José hi`` for the trigger ``@José``. Python's ``\\w`` is
  Unicode-aware, so letters of any script continue a word.
"""

from __future__ import annotations

import functools
import re

from services.router.model import Group, js_trim


def default_trigger(assistant_name: str) -> str:
    """The trigger a group gets when it sets none: ``"@" + assistant_name`` (NanoClaw ``DEFAULT_TRIGGER``)."""
    return f"@{assistant_name}"


def group_trigger(group: Group, assistant_name: str) -> str:
    """The trigger in force for ``group``: its own trigger (trimmed) if not blank, else the default.

    A group's trigger *replaces* the default (§6.2): a group whose trigger is ``@Claw`` does not answer
    ``@Andy``.
    """
    own = js_trim(group.trigger or "")
    return own or default_trigger(assistant_name)


@functools.lru_cache(maxsize=256)
def trigger_pattern(trigger: str) -> re.Pattern[str]:
    """Compile the regex that recognises ``trigger`` at the start of a message.

    ``^`` + the escaped, trimmed trigger + a boundary, ``re.IGNORECASE``. The boundary is ``(?!\\w)`` when the
    trigger ends in a word character (the same as NanoClaw's ``\\b`` there) and nothing otherwise (see the
    module docstring). Use it with ``search``/``match`` on *trimmed* content, or call :func:`matches_trigger`.

    Raises:
        ValueError: the trigger is blank (resolve defaults first with :func:`group_trigger`).
    """
    text = js_trim(trigger)
    if not text:
        raise ValueError("trigger is blank")
    boundary = r"(?!\w)" if re.match(r"\w", text[-1]) else ""
    return re.compile("^" + re.escape(text) + boundary, re.IGNORECASE)


def matches_trigger(content: str, trigger: str) -> bool:
    """True when the trimmed ``content`` starts with ``trigger`` (see :func:`trigger_pattern`).

    Examples with ``@Andy``: ``"@Andy hello"`` ✓, ``"  @andy hi"`` ✓, ``"@Andy's"`` ✓, ``"@Andy"`` ✓,
    ``"hello @Andy"`` ✗, ``"@Andyextra"`` ✗.

    Raises:
        ValueError: the trigger is blank.
    """
    return trigger_pattern(trigger).match(js_trim(content or "")) is not None


def needs_trigger(group: Group) -> bool:
    """Whether messages in ``group`` must carry the trigger to start the agent (NanoClaw ``needsTrigger``).

    The main group never needs one; a non-main group needs one unless ``requires_trigger`` is false.
    """
    return not group.is_main and group.requires_trigger is not False
