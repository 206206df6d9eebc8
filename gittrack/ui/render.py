"""What every page of the UI shares: value formatting, templates, errors and static files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.templating import Jinja2Templates

from .._version import __version__
from ..library import browse
from ..model.values import cell_text
from .shared import templates_dir

STATIC = Path(__file__).resolve().parent / "static"
PAGE_SIZES = (25, 50, 100, 250, 500)
BIGGEST = 10**9  # no offset, limit or depth in a URL is larger; beyond it is a typing mistake


# -- formatting ------------------------------------------------------------------------------


def show(value: Any, column: str = "") -> str:
    """A cell value as short text (listing.cell_text, with durations in s or min)."""
    if column == "duration_s" and isinstance(value, int | float):
        return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return cell_text(value, column, list_sep=", ")


def size(n: Any) -> str:
    if not isinstance(n, int | float):
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def header(column: str) -> str:
    return (
        column.split(".", 1)[1]
        if column.startswith(("params.", "metrics."))
        else column.replace("_s", "")
    )


def script_json(data: Any) -> str:
    """JSON safe inside a <script> element (no '</script>' or '<!--' can appear)."""
    text = (
        json.dumps(data, ensure_ascii=False, default=str, allow_nan=False)
        if _finite(data)
        else json.dumps(_nan_to_none(data), default=str)
    )
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite(data: Any) -> bool:
    try:
        json.dumps(data, default=str, allow_nan=False)
        return True
    except ValueError:
        return False


def _nan_to_none(data: Any) -> Any:
    if (isinstance(data, float) and data != data) or data in (float("inf"), float("-inf")):
        return None
    if isinstance(data, dict):
        return {k: _nan_to_none(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_nan_to_none(v) for v in data]
    return data


RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def run_refs(value: Any) -> list[str]:
    """The run ids a value names (a RunRef param: one id or a list of ids), else []."""
    if isinstance(value, str):
        return [value] if RUN_ID.match(value) else []
    ids = value if isinstance(value, list) and value else []
    return ids if all(isinstance(v, str) and RUN_ID.match(v) for v in ids) else []


def refs_link(ids: list[str]) -> str:
    """The runs table filtered to these runs."""
    return "/?" + urlencode({"where": "id in (" + ", ".join(f"'{i}'" for i in ids) + ")"})


def command_link(command: str) -> str:
    """The runs table of one command, with the columns that vary among its runs."""
    return "/?" + urlencode({"where": "command = '" + command.replace("'", "") + "'"})


FILTERS = {
    "show": show,
    "size": size,
    "header": header,
    "script_json": script_json,
    "run_refs": run_refs,
}
GLOBALS = {"refs_link": refs_link, "command_link": command_link}


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(templates_dir()))
    env = templates.env
    env.autoescape = True
    env.filters.update(FILTERS)
    env.globals.update(GLOBALS, cell=browse.cell, version=__version__)
    return templates


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, name, context, status_code=status)


def whole_number(request: Request, name: str, default: int) -> int:
    """The URL's `name=` as an int from 0 to BIGGEST; anything else is a 400, never a 500."""
    text = request.query_params.get(name, "").strip()
    if not text:
        return default
    if not re.fullmatch(r"[0-9]{1,10}", text) or int(text) > BIGGEST:
        raise HTTPException(400, f"'{name}' must be a whole number from 0 to {BIGGEST}.")
    return int(text)


# -- static files and errors -----------------------------------------------------------------


def plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


async def static(request: Request) -> Response:
    name = request.path_params["path"]
    raw = request.scope.get("raw_path", b"").decode("latin-1")
    if (
        ".." in name
        or name.startswith("/")
        or "\\" in name
        or "%" in raw.split("?")[0][len("/static/") :]
    ):
        raise HTTPException(404, "No such file.")
    if name == "plotly.min.js":
        return FileResponse(
            plotly_js(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"}
        )
    path = (STATIC / name).resolve()
    if not path.is_relative_to(STATIC) or not path.is_file():
        raise HTTPException(404, "No such file.")
    return FileResponse(path, headers={"Cache-Control": "no-cache"})


async def favicon(request: Request) -> Response:
    """The site icon (browsers ask for /favicon.ico whatever the page says)."""
    headers = {"Cache-Control": "max-age=86400"}
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml", headers=headers)


def error_page(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status)
    if status == 405:
        return Response(
            "405 Method Not Allowed: this UI is read-only.",
            status_code=405,
            media_type="text/plain",
            headers={"Allow": "GET, HEAD"},
        )
    return render(
        request,
        "error.html",
        {"status": status, "message": message, "title": f"{status}"},
        status=status,
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = (
        exc.detail
        if exc.status_code != 404 or exc.detail != "Not Found"
        else "There is no page at this address."
    )
    return error_page(request, exc.status_code, message)


async def not_found(request: Request, exc: Exception) -> Response:
    return error_page(request, 404, str(exc))


async def gittrack_error(request: Request, exc: Exception) -> Response:
    return error_page(request, 400, str(exc))
