"""What a hostile web page in the user's browser must not do with the server: middleware.

- HostCheck (DNS rebinding): a page on evil.example whose name is re-pointed at 127.0.0.1
  talks to the server "same-origin" but sends `Host: evil.example`. Accepted Host values: loopback
  names and addresses, the bound address, and `allowed_hosts` ("*": any), with any port. A
  wildcard bind (0.0.0.0, ::) is reached under names the server cannot know: there any Host is
  accepted when an API key is set (the key, which a rebinding page does not have, protects the
  data), and otherwise only loopback and `allowed_hosts`.
- OriginCheck (CSRF): a cross-site form can POST a multipart upload without a CORS preflight.
  POST, PUT, PATCH and DELETE whose `Origin` is neither the server's own (scheme://Host) nor in
  `cors_origins`, or that say `Sec-Fetch-Site: cross-site`, get 403. Requests without these
  headers (curl, scripts) are not from a browser page and pass. Behind a TLS proxy the scheme
  comes from X-Forwarded-Proto (uvicorn trusts it from a proxy on this machine).
- SecurityHeaders: nosniff, no referrer, no framing and a Content-Security-Policy on every
  response; the page's policy allows only its own static files.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xmodal.server.middleware import send_json
from xmodal.server.settings import is_loopback

WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Served files and thumbnails: an image and nothing else, even when opened as a document.
FILE_CSP = "default-src 'none'; img-src 'self'; style-src 'none'; sandbox"
# Served sounds and videos: the same, playable when opened on their own.
MEDIA_CSP = "default-src 'none'; media-src 'self'; style-src 'none'; sandbox"
_DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "media-src 'self' blob:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
# FastAPI's /docs and /redoc load their scripts and styles from a CDN, with inline bootstrap.
_DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; img-src 'self' data: https:; connect-src 'self'; "
    "worker-src blob:; base-uri 'none'; frame-ancestors 'none'"
)
_CSP_BY_PATH = {
    "/": _PAGE_CSP,
    "/docs": _DOCS_CSP,
    "/docs/oauth2-redirect": _DOCS_CSP,
    "/redoc": _DOCS_CSP,
}


def host_name(host: str) -> str:
    """'Example.org:8000' -> 'example.org', '[::1]:8000' -> '::1'."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class HostCheck:
    def __init__(
        self, app: ASGIApp, bound: str, allowed: tuple[str, ...], api_key: str | None
    ) -> None:
        self.app = app
        bound = host_name(bound)
        self.any_host = "*" in allowed or (bound in WILDCARD_BINDS and bool(api_key))
        self.allowed = {host_name(h) for h in allowed} | ({bound} - WILDCARD_BINDS)

    def accepts(self, host: str) -> bool:
        name = host_name(host)
        return self.any_host or name in self.allowed or (bool(name) and is_loopback(name))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        host = Headers(scope=scope).get("host", "")
        if not self.accepts(host):
            shown = host[:100] or "(none)"
            detail = (
                f"Host {shown!r} is not served here: add it to XMODAL_ALLOWED_HOSTS "
                "(xmodal serve --allowed-host) if this server should answer to that name"
            )
            return await send_json(send, 400, detail)
        await self.app(scope, receive, send)


class OriginCheck:
    def __init__(self, app: ASGIApp, cors_origins: tuple[str, ...]) -> None:
        self.app = app
        self.trusted = frozenset(o.rstrip("/").lower() for o in cors_origins)

    def refusal(self, scope: Scope) -> str | None:
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is not None:
            origin = origin.rstrip("/").lower()
            own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()
            if origin == own or origin in self.trusted:
                return None
            return f"cross-origin request from {origin[:100]} refused"
        if headers.get("sec-fetch-site", "").lower() == "cross-site":
            return "cross-site request refused"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in STATE_CHANGING:
            reason = self.refusal(scope)
            if reason is not None:
                detail = f"{reason}: only this server's own page (or XMODAL_CORS_ORIGINS) may write"
                return await send_json(send, 403, detail)
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Headers every response carries; a route's own Content-Security-Policy is kept."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        csp = _CSP_BY_PATH.get(scope["path"], _DEFAULT_CSP).encode()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in (
                    (b"content-security-policy", csp),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cross-origin-resource-policy", b"same-origin"),
                ):
                    if name not in present:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
