"""The UI's pages and JSON endpoints: each reads through gittrack.browse and renders a template."""

from __future__ import annotations

import asyncio
import json
import mimetypes
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.templating import Jinja2Templates

from .._ids import short
from .._version import __version__
from ..errors import GittrackError, RunNotFound
from ..library import browse, lineage as flow, previews, runview
from ..library.listing import query_hints
from ..model.values import FAMILIES, cell_text
from .shared import request_repo, templates_dir

STATIC = Path(__file__).resolve().parent / "static"
PAGE_SIZES = (25, 50, 100, 250, 500)
BIGGEST = 10**9  # no offset, limit or depth in a URL is larger; beyond it is a typing mistake
MAX_COMPARE = 20  # runs side by side on the compare page


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


# -- runs table ------------------------------------------------------------------------------


def whole_number(request: Request, name: str, default: int) -> int:
    """The URL's `name=` as an int from 0 to BIGGEST; anything else is a 400, never a 500."""
    text = request.query_params.get(name, "").strip()
    if not text:
        return default
    if not re.fullmatch(r"[0-9]{1,10}", text) or int(text) > BIGGEST:
        raise HTTPException(400, f"'{name}' must be a whole number from 0 to {BIGGEST}.")
    return int(text)


def _table_args(request: Request) -> dict[str, Any]:
    q = request.query_params
    cols = [
        c for part in q.getlist("col") + q.get("cols", "").split(",") for c in [part.strip()] if c
    ]
    limit = whole_number(request, "limit", 50)
    offset = whole_number(request, "offset", 0)
    limit = limit if limit in PAGE_SIZES else 50
    sort = q.get("sort", "started")
    return {
        "where": q.get("where", "").strip(),
        "sort": sort,
        "desc": q.get("desc", "1" if sort in ("started", "finished") else "0") == "1",
        "offset": offset,
        "limit": limit,
        "columns": cols or None,
        "group": q.get("group") == "experiment",
    }


def _table_context(request: Request, experiment: str | None = None) -> dict[str, Any]:
    args = _table_args(request)
    error = ""
    hints: list[str] = []
    try:
        page = browse.page(
            request_repo(request),
            args["where"] or None,
            sort=args["sort"],
            desc=args["desc"],
            offset=args["offset"],
            limit=args["limit"],
            columns=args["columns"],
            group=args["group"],
            experiment=experiment,
        )
        if args["where"] or args["sort"]:
            hints = query_hints(request_repo(request), args["where"] or None, args["sort"])
    except GittrackError as exc:
        error = str(exc)
        page = browse.Page(
            [], 0, browse.BASE_COLUMNS, browse.BASE_COLUMNS, tip=browse.tip(request_repo(request))
        )
    base = {k: v for k, v in request.query_params.multi_items() if k not in ("offset", "partial")}

    def link(**changes: Any) -> str:
        merged = dict(base)
        merged.update({k: str(v) for k, v in changes.items() if v is not None})
        for key in [k for k, v in changes.items() if v is None]:
            merged.pop(key, None)
        return "?" + urlencode(merged)

    groups: list[tuple[str, list[dict[str, Any]]]] = []
    for row in page.rows:
        name = row.get("experiment") or ""
        if not groups or groups[-1][0] != name:
            groups.append((name, []))
        groups[-1][1].append(row)
    return {
        "page": page,
        "args": args,
        "error": error,
        "hints": hints,
        "link": link,
        "groups": groups,
        "experiment": experiment,
        "page_sizes": PAGE_SIZES,
        "plot_columns": [c for c in page.columns if browse.FIELD.match(c)],
    }


async def runs_table(request: Request) -> Response:
    context = _table_context(request)
    name = "table_part.html" if request.query_params.get("partial") else "runs.html"
    return render(request, name, context | {"title": "Runs"})


async def experiments(request: Request) -> Response:
    items = browse.experiments(request_repo(request))
    return render(request, "experiments.html", {"items": items, "title": "Experiments"})


async def experiment(request: Request) -> Response:
    name = request.path_params["name"]
    context = _table_context(request, experiment=name)
    if context["page"].total == 0 and not browse.has_experiment(request_repo(request), name):
        raise HTTPException(404, f'No experiment is named "{name}".')
    name_ = "table_part.html" if request.query_params.get("partial") else "runs.html"
    return render(request, name_, context | {"title": f"Experiment {name}"})


# -- one run ---------------------------------------------------------------------------------


async def run_page(request: Request) -> Response:
    repo = request_repo(request)
    view = runview.run_view(repo, request.path_params["ref"])
    if view.data is None:
        return render(request, "unreadable.html", {"view": view, "title": f"Run {short(view.id)}"})
    diff_ref = request.query_params.get("diff", "").strip()
    diff: dict[str, Any] = {}
    if diff_ref:
        try:
            other = runview.run_view(repo, diff_ref)
            old = (other.data or {}).get("code", {}).get("commit", "")
            new = view.data.get("code", {}).get("commit", "")
            diff = {"other": other.id, "text": runview.code_diff(repo, old, new)}
        except GittrackError as exc:
            diff = {"error": str(exc)}
    series = runview.timeseries(repo, view.id, view.data)
    downloadable = {
        name: (
            out.get("size", 0) <= runview.DOWNLOAD_LIMIT
            and out.get("kind") != "dir"
            and not out.get("error")
            and not out.get("partial")
        )
        for name, out in (view.data.get("outputs") or {}).items()
    }
    shown = {} if view.live else previews.previews(repo, view.id, view.data.get("outputs") or {})
    return render(
        request,
        "run.html",
        {
            "previews": shown,
            "view": view,
            "run": view.data,
            "diff": diff,
            "diff_ref": diff_ref,
            "series": series,
            "downloadable": downloadable,
            "notebook": runview.notebook_cells(repo, view.id, view.data),
            "title": f"Run {short(view.id)}",
        },
    )


async def lineage(request: Request) -> Response:
    repo = request_repo(request)
    view = runview.run_view(repo, request.path_params["ref"])
    q = request.query_params
    direction = q.get("direction", "up")
    direction = direction if direction in ("up", "down", "both") else "up"
    depth = whole_number(request, "depth", 0) or None
    fold = q.get("fold", "1" if q.get("collapse") == "1" else "auto")
    fold = fold if fold in ("auto", "1", "0") else "auto"
    keep = [k for k in q.getlist("expand") if k]
    error, svg, count, folded = "", "", 0, []
    try:
        graph = flow.around(
            repo,
            view.id,
            direction=direction,
            depth=depth,
            collapse=None if fold == "auto" else fold == "1",
            keep=keep,
        )
        count, folded = len(graph.run_ids), graph.folded
        svg = flow.inline_svg(graph)
    except GittrackError as exc:
        error = str(exc)
    return render(
        request,
        "lineage.html",
        {
            "view": view,
            "run": view.data or {"id": view.id},
            "svg": svg,
            "error": error,
            "direction": direction,
            "depth": depth or "",
            "count": count,
            "fold": fold,
            "folded": folded,
            "keep": keep,
            "title": f"Flow of {short(view.id)}",
        },
    )


SAFE_NAME = re.compile(r"^[^/\\\x00]+$")


async def download(request: Request) -> Response:
    repo = request_repo(request)
    run_id = runview.resolve(repo, request.path_params["ref"])
    name = request.path_params["name"]
    if not SAFE_NAME.match(name) or name in (".", ".."):
        raise HTTPException(404, "No such output.")
    view = runview.run_view(repo, run_id)
    outputs = (view.data or {}).get("outputs") or {}
    if name not in outputs:
        raise HTTPException(404, f'Run {short(run_id)} has no output named "{name}".')
    if outputs[name].get("size", 0) > runview.DOWNLOAD_LIMIT:
        raise HTTPException(
            404,
            f'Output "{name}" is too large to download here; use \'gittrack checkout '
            f"{short(run_id)}'.",
        )
    path = runview.output_file(repo, run_id, name)
    if path is None:
        raise HTTPException(
            404,
            f'Output "{name}" is not available locally; run \'gittrack checkout '
            f"{short(run_id)}' or 'gittrack pull'.",
        )
    filename = Path(outputs[name].get("path") or name).name
    inline = request.query_params.get("inline") == "1" and Path(filename).suffix.lower() in (
        previews.IMAGES
    )
    return FileResponse(  # nothing in an output may run as part of this site
        path,
        filename=filename,
        media_type=mimetypes.guess_type(filename)[0] or "application/octet-stream",
        content_disposition_type="inline" if inline else "attachment",
        headers={
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
        },
    )


# -- compare ---------------------------------------------------------------------------------


async def compare(request: Request) -> Response:
    repo = request_repo(request)
    refs = [
        r.strip()
        for part in request.query_params.getlist("ids")
        for r in part.split(",")
        if r.strip()
    ]
    views, errors = [], []
    wanted = list(dict.fromkeys(refs))
    for ref in wanted[:MAX_COMPARE]:
        try:
            views.append(runview.run_view(repo, ref))
        except GittrackError as exc:
            errors.append(str(exc))
    runs = [v.data or {"id": v.id, "status": "unreadable"} for v in views]
    keys = [
        "name",
        "status",
        "command",
        "experiment",
        "started",
        "duration_s",
        "code.commit",
        "code.dirty",
    ]
    for family in FAMILIES:
        seen: dict[str, None] = {}
        for run in runs:
            for key in run.get(family) or {}:
                seen[f"{family}.{key}"] = None
        keys += list(seen)
    rows = []
    for key in keys:
        values = [_lookup(run, key) for run in runs]
        rows.append(
            {
                "key": key,
                "cells": values,
                "differs": len({json.dumps(v, default=str, sort_keys=True) for v in values}) > 1,
            }
        )
    series = {v.id: runview.timeseries(repo, v.id, v.data) for v in views if v.data}
    return render(
        request,
        "compare.html",
        {
            "runs": runs,
            "rows": rows,
            "errors": errors,
            "series": {k: s for k, s in series.items() if s},
            "only_diff": request.query_params.get("only") == "diff",
            "capped": len(wanted) if len(wanted) > MAX_COMPARE else 0,
            "ids": ",".join(r["id"] for r in runs),
            "title": "Compare runs",
        },
    )


def _lookup(run: dict[str, Any], key: str) -> Any:
    family, _, rest = key.partition(".")
    if not rest:
        return run.get(key)
    value = run.get(family) or {}
    return value.get(rest) if isinstance(value, dict) else None


# -- JSON ------------------------------------------------------------------------------------


async def api_runs(request: Request) -> Response:
    args = _table_args(request)
    try:
        page = browse.page(
            request_repo(request),
            args["where"] or None,
            sort=args["sort"],
            desc=args["desc"],
            offset=args["offset"],
            limit=whole_number(request, "limit", 100),
        )
    except GittrackError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    rows = [row for row in page.rows if "problem" not in row]
    return JSONResponse(rows, headers={"X-Total-Count": str(page.total)})


async def api_runs_csv(request: Request) -> Response:
    """Every run matching ?where= as CSV (every param and metric), as `ls --format csv`."""
    from ..library.listing import list_runs, to_csv

    where = request.query_params.get("where", "").strip()
    try:
        listing = list_runs(request_repo(request), where=where or None, varying=False)
    except GittrackError as exc:
        return PlainTextResponse(f"Error: {exc}\n", status_code=400)
    return PlainTextResponse(
        to_csv(listing),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="runs.csv"'},
    )


async def api_run(request: Request) -> Response:
    try:
        view = runview.run_view(request_repo(request), request.path_params["ref"])
    except RunNotFound as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    except GittrackError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    if view.data is None:
        return JSONResponse(
            {"id": view.id, "status": "unreadable", "problem": view.problem}, status_code=200
        )
    return JSONResponse(view.data | {"commit": view.commit})


async def api_tip(request: Request) -> Response:
    return JSONResponse(
        {"tip": browse.tip(request_repo(request))}, headers={"Cache-Control": "no-store"}
    )


EVENT_PERIOD_S = 1.0  # how often the event streams look for changes
EVENT_LIFETIME_S = 600.0  # a stream ends after this long; the browser reconnects by itself


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n"


async def api_events(request: Request) -> Response:
    """Server-sent events: `change` whenever a run is recorded, starts or dies."""
    repo = request_repo(request)

    async def stream() -> AsyncIterator[str]:
        last = runview.live_state(repo)
        yield "retry: 2000\n\n" + _event("hello", {"state": last})
        quiet, start = 0, time.monotonic()
        while time.monotonic() - start < EVENT_LIFETIME_S:
            await asyncio.sleep(EVENT_PERIOD_S)
            now = runview.live_state(repo)
            if now != last:
                last, quiet = now, 0
                yield _event("change", {"state": now})
            else:
                quiet += 1
                if quiet % 15 == 0:
                    yield ": ping\n\n"

    return _sse(stream())


async def api_run_events(request: Request) -> Response:
    """Server-sent events of one running run: `update` (status, elapsed, logs, series) while
    it is staged, then `finished` once it is recorded."""
    repo = request_repo(request)
    run_id = runview.run_view(repo, request.path_params["ref"]).id

    async def stream() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        last: Any = None
        start = time.monotonic()
        while time.monotonic() - start < EVENT_LIFETIME_S:
            state = runview.live_run(repo, run_id)
            if state is None:
                yield _event("finished", {"id": run_id})
                return
            changed = {k: v for k, v in state.items() if k != "elapsed_s"}
            if changed != last:
                last = changed
                yield _event("update", state)
            await asyncio.sleep(EVENT_PERIOD_S)

    return _sse(stream())


def _sse(events: AsyncIterator[str]) -> Response:
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


async def api_plot(request: Request) -> Response:
    q = request.query_params
    cols = [c for c in q.get("cols", "").split(",") if browse.FIELD.match(c)]
    try:
        data = browse.plot_rows(
            request_repo(request),
            q.get("where") or None,
            cols,
            experiment=q.get("experiment") or None,
        )
    except GittrackError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return Response(script_json(data), media_type="application/json")


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
