"""The local web UI: a read-only Starlette app over the library's reading API.

`create_app(repo)` returns the ASGI app; `gittrack ui` serves it with uvicorn on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import GittrackError, RunNotFound
from ..library import Repo, open_repo
from .shared import request_repo as request_repo, templates_dir as templates_dir

LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


def allowed_host(host_header: str, served: str, port: int | None) -> bool:
    """True when a Host header names the served address (blocks DNS rebinding)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        given_port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, given_port = host.partition(":")
    if given_port and port is not None and given_port != str(port):
        return False
    if name == served.lower() or name in LOOPBACK:
        return True
    if served in ("0.0.0.0", "::"):
        try:  # an address literal cannot be re-pointed by DNS; any of this machine's is fine
            ipaddress.ip_address(name)
            return True
        except ValueError:
            import socket

            return name in {socket.gethostname().lower(), socket.getfqdn().lower()}
    return False


class HostCheck:
    """ASGI middleware answering 403 to requests whose Host header is not the served host."""

    def __init__(self, app: ASGIApp, host: str, port: int | None) -> None:
        self.app = app
        self.host = host
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            host = headers.get(b"host", b"").decode("latin-1")
            if not allowed_host(host, self.host, self.port):
                response = Response(
                    "403 Forbidden: this gittrack UI only answers to its own address "
                    f"({self.host}); open it through that address.",
                    status_code=403,
                    media_type="text/plain",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(repo: Any = None, *, host: str = "127.0.0.1", port: int | None = None) -> ASGIApp:
    """The UI app for a repository (path, Repo or None for the current one), read-only."""
    from . import api, render, runpages, tables

    r: Repo = open_repo(repo)
    routes = [
        Route("/", tables.runs_table, methods=["GET"]),
        Route("/experiments", tables.experiments, methods=["GET"]),
        Route("/experiments/{name:path}", tables.experiment, methods=["GET"]),
        Route("/compare", tables.compare, methods=["GET"]),
        Route("/runs/{ref}", runpages.run_page, methods=["GET"]),
        Route("/runs/{ref}/lineage", runpages.lineage, methods=["GET"]),
        Route("/runs/{ref}/outputs/{name:path}", runpages.download, methods=["GET"]),
        Route("/api/runs", api.api_runs, methods=["GET"]),
        Route("/api/runs.csv", api.api_runs_csv, methods=["GET"]),
        Route("/api/runs/{ref}", api.api_run, methods=["GET"]),
        Route("/api/tip", api.api_tip, methods=["GET"]),
        Route("/api/events", api.api_events, methods=["GET"]),
        Route("/api/runs/{ref}/events", api.api_run_events, methods=["GET"]),
        Route("/api/plot", api.api_plot, methods=["GET"]),
        Route("/api/series", api.api_series, methods=["GET"]),
        Route("/static/{path:path}", render.static, methods=["GET"]),
        Route("/favicon.svg", render.favicon, methods=["GET"]),
        Route("/favicon.ico", render.favicon, methods=["GET"]),
    ]
    handlers: dict[Any, Any] = {
        HTTPException: render.http_error,
        RunNotFound: render.not_found,
        GittrackError: render.gittrack_error,
    }
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.repo = r
    app.state.templates = render.make_templates()
    return HostCheck(app, host, port)
