"""The server's settings: environment variables XMODAL_*, read once and cached."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from xmodal.config import get_settings
from xmodal.errors import InvalidInputError

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


@dataclass(frozen=True)
class ServerSettings:
    db: Path | None = None  # None: the default collection (XMODAL_DB or the user data dir)
    model: str | None = None  # None: the collection's own model
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None  # when set, needed by every endpoint but /healthz and the page
    max_upload_bytes: int = 20 * 2**20  # per request body
    max_upload_pixels: int = 50_000_000  # per image, read from its header before decoding
    # Uploaded sound longer than this is cut to it, as indexing cuts files (None: the library's
    # limit, XMODAL_MAX_AUDIO_SECONDS).
    max_audio_seconds: float | None = None
    max_batch: int = 64  # items per model call
    batch_wait_ms: float = 2.0  # how long a lone request waits for company
    max_k: int = 1000  # results per search
    max_texts: int = 256  # texts per /embed/text request
    device: str | None = None  # None: XMODAL_DEVICE, else cpu
    # Host header values accepted besides the bound host and loopback names (DNS rebinding).
    allowed_hosts: tuple[str, ...] = ()
    # Origins allowed cross-origin (CORS and state-changing requests); none by default.
    cors_origins: tuple[str, ...] = ()
    # With an API key set: True leaves reads (search, items, files) open for a public gallery.
    public_reads: bool = False
    # POST /moderate's category file (None: the built-in categories).
    moderation_categories: Path | None = None
    # The language model of /ask and /describe (xmodal.llm.load_llm; None: the packaged one).
    llm: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServerSettings:
        env = os.environ if environ is None else environ

        def number(name: str, default, kind=int):
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                return kind(raw)
            except ValueError:
                raise InvalidInputError(f"{name}={raw!r} is not a number") from None

        db = env.get("XMODAL_DB")
        categories = env.get("XMODAL_MODERATION_CATEGORIES")
        return cls(
            db=Path(db).expanduser() if db else None,
            model=env.get("XMODAL_MODEL") or None,
            api_key=env.get("XMODAL_API_KEY") or None,
            max_upload_bytes=number("XMODAL_MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            max_upload_pixels=number(
                "XMODAL_MAX_UPLOAD_PIXELS",
                min(cls.max_upload_pixels, get_settings().max_image_pixels),
            ),
            max_batch=number("XMODAL_MAX_BATCH", cls.max_batch),
            batch_wait_ms=number("XMODAL_BATCH_WAIT_MS", cls.batch_wait_ms, float),
            device=env.get("XMODAL_DEVICE") or None,
            allowed_hosts=_hosts(env.get("XMODAL_ALLOWED_HOSTS")),
            cors_origins=_origins(env.get("XMODAL_CORS_ORIGINS")),
            public_reads=_flag("XMODAL_PUBLIC_READS", env.get("XMODAL_PUBLIC_READS")),
            moderation_categories=Path(categories).expanduser() if categories else None,
            llm=env.get("XMODAL_LLM") or None,
        )

    def with_(self, **changes) -> ServerSettings:
        return replace(self, **changes)


@lru_cache(maxsize=1)
def get_server_settings() -> ServerSettings:
    return ServerSettings.from_env()


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without an API key guarding the endpoints."""
    if not is_loopback(host) and not api_key:
        raise InvalidInputError(
            f"refusing to listen on {host} without an API key: anyone who can reach it could "
            "search, download, add and delete every item. Set XMODAL_API_KEY (every endpoint "
            "but /healthz, the page and its static files then needs it), or bind 127.0.0.1"
        )


def _items(raw: str | None) -> tuple[str, ...]:
    return tuple(x.strip() for x in (raw or "").split(",") if x.strip())


def _hosts(raw: str | None) -> tuple[str, ...]:
    """XMODAL_ALLOWED_HOSTS="photos.example,192.168.1.5": host names, no ports ("*": any)."""
    hosts = tuple(h.lower() for h in _items(raw))
    for host in hosts:
        if "/" in host or (":" in host and not host.startswith("[")):
            raise InvalidInputError(
                f"XMODAL_ALLOWED_HOSTS: {host!r} is not a host name (no scheme, port or path; "
                "IPv6 in brackets)"
            )
    return hosts


def _origins(raw: str | None) -> tuple[str, ...]:
    """XMODAL_CORS_ORIGINS="https://app.example,http://localhost:3000": exact origins."""
    origins = tuple(o.rstrip("/").lower() for o in _items(raw))
    for origin in origins:
        scheme, sep, rest = origin.partition("://")
        if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
            raise InvalidInputError(
                f"XMODAL_CORS_ORIGINS: {origin!r} is not an origin like https://app.example "
                "(a wildcard is not accepted: name each origin)"
            )
    return origins


def _flag(name: str, raw: str | None) -> bool:
    value = (raw or "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise InvalidInputError(f"{name}={raw!r}: use 1 or 0")
