"""The webhook's one error shape: every HTTP error, whatever raised it, is JSON ``{"error": …, "field": …}``.

``field`` names the JSON field (``chat``, ``text``, ``reply_to``…), query parameter (``after``, ``wait``) or
header (``Authorization``, ``Content-Type``) at fault, or is ``null`` when the problem is the request as a whole
(the body is not JSON, too large, or the route does not exist). aiohttp's own errors (unknown route ``404``, wrong
method ``405``, a body over ``client_max_size`` ``413``) are plain text by default; :func:`json_errors` reshapes
them. README.md ("Chat", over HTTP) states this contract. One exception, outside the application's reach: a
request that is not valid HTTP at all (broken chunked framing, a non-numeric Content-Length, an unsupported
Content-Encoding) is answered by aiohttp's protocol parser with a plain-text ``400`` before any route runs.
"""

from __future__ import annotations

import logging

from aiohttp import web

log = logging.getLogger("nanoclaw.gateway.http")


class RequestRefused(Exception):
    """A request the webhook answers with a 4xx: ``status``, a message, and the field at fault (or None)."""

    def __init__(self, status: int, message: str, field: str | None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def error(status: int, message: str, field: str | None, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message, "field": field}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler):
    """Answer every failure in the shape above; an unexpected exception is logged and answered ``500`` (a bug:
    the fuzz suite tests/fuzz/test_webhook_fuzz.py checks that no input reaches it)."""
    try:
        return await handler(request)
    except RequestRefused as exc:
        return error(exc.status, exc.message, exc.field)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # Keep headers that matter to the client (Allow on 405); the body becomes ours.
        keep = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return error(exc.status, exc.reason.lower(), None, keep)
    except Exception:
        log.exception("webhook request %s %s failed", request.method, request.path)
        return error(500, "internal error (logged)", None)
