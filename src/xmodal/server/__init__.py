"""The HTTP service: `xmodal serve`, or `create_app()` under any ASGI server."""

from xmodal.server.app import create_app
from xmodal.server.settings import ServerSettings, check_bind, get_server_settings

__all__ = ["ServerSettings", "check_bind", "create_app", "get_server_settings"]
