"""The API key: how a request proves it has it, and the gate that asks for it.

With XMODAL_API_KEY set, every endpoint but /healthz, the page (/), its static files and
/login, /logout needs the key (the API docs and /openapi.json too): `Authorization: Bearer KEY`,
`X-API-Key: KEY`, or the session cookie that POST /login sets (an `<img>` cannot send a
header). The cookie holds an HMAC token derived from the key, not the key; it is HttpOnly and
SameSite=Strict, and the origin check refuses cross-site writes, so another site cannot use it.
Changing the key ends every session.

With `public_reads`, the gate stays open and only the write endpoints (and /metrics) ask for
the key, through `require_key` in deps.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from xmodal.server.middleware import send_json

COOKIE = "xmodal_session"
OPEN_PATHS = frozenset({"/", "/healthz", "/login", "/logout"})
OPEN_PREFIXES = ("/static/",)
HOW = "send the API key: Authorization: Bearer KEY, X-API-Key: KEY, or log in at POST /login"


def session_token(key: str) -> str:
    return hmac.new(key.encode(), b"xmodal session v1", hashlib.sha256).hexdigest()


def same_secret(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def has_key(connection: HTTPConnection, key: str) -> bool:
    """Whether the request carries `key` in a header, or a session cookie made from it."""
    headers = connection.headers
    scheme, _, bearer = headers.get("authorization", "").partition(" ")
    return (
        same_secret(headers.get("x-api-key"), key)
        or (scheme.lower() == "bearer" and same_secret(bearer.strip(), key))
        or same_secret(connection.cookies.get(COOKIE), session_token(key))
    )


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class KeyGate:
    """401 for any request outside the open paths that lacks the key. A middleware rather than
    a dependency per route, so an endpoint added later is guarded without anyone remembering."""

    def __init__(self, app: ASGIApp, api_key: str | None, public_reads: bool = False):
        self.app = app
        self.api_key = None if public_reads else api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = self.api_key
        if scope["type"] != "http" or key is None or is_open(scope["path"]):
            return await self.app(scope, receive, send)
        if has_key(HTTPConnection(scope), key):
            return await self.app(scope, receive, send)
        detail = f"this endpoint needs the API key: {HOW}"
        await send_json(send, 401, detail, ((b"www-authenticate", b"Bearer"),))
