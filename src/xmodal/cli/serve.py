"""`xmodal serve`: the HTTP API and search page over one collection."""

from __future__ import annotations

from pathlib import Path

import click

from xmodal.cli.common import db_option, device_option, model_option
from xmodal.errors import MissingExtraError


@click.command("serve")
@db_option
@model_option
@device_option()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="HOST",
    help="a Host header to accept besides the bound host and loopback names, e.g. the name "
    "a proxy serves it as (repeatable; adds to $XMODAL_ALLOWED_HOSTS)",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    metavar="ORIGIN",
    help="an origin such as https://app.example whose pages may call the API (repeatable; adds "
    "to $XMODAL_CORS_ORIGINS). Default: none, same origin only",
)
@click.option(
    "--public-reads",
    is_flag=True,
    default=None,
    help="with XMODAL_API_KEY set, leave search, items and files open to anyone (a public "
    "gallery); writes still need the key. Default: $XMODAL_PUBLIC_READS, else off",
)
def serve_cmd(db, model_name, device, host, port, allowed_hosts, cors_origins, public_reads):
    """Serve the collection over HTTP: JSON API (docs at /docs) and a search page at /.

    Listening beyond this machine (a --host that is not loopback) needs XMODAL_API_KEY,
    which every endpoint but /healthz and the page then requires.
    """
    try:
        import uvicorn

        from xmodal.server import check_bind, create_app, get_server_settings
    except ImportError as e:
        raise MissingExtraError("xmodal serve", "server", e.name or "fastapi") from None
    from xmodal.server.settings import ServerSettings

    base = get_server_settings()
    # The same checks as the environment variables get, so a bad flag is a clear error.
    flags = ServerSettings.from_env(
        {
            "XMODAL_ALLOWED_HOSTS": ",".join(allowed_hosts),
            "XMODAL_CORS_ORIGINS": ",".join(cors_origins),
        }
    )
    settings = base.with_(
        db=Path(db).expanduser() if db else base.db,
        model=model_name or base.model,
        device=device or base.device,
        host=host,
        port=port,
        allowed_hosts=tuple(dict.fromkeys(base.allowed_hosts + flags.allowed_hosts)),
        cors_origins=tuple(dict.fromkeys(base.cors_origins + flags.cors_origins)),
        public_reads=base.public_reads if public_reads is None else public_reads,
    )
    check_bind(settings.host, settings.api_key)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
