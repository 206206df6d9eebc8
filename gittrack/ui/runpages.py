"""One run's pages: the run page, its flow graph and its output downloads."""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from .._ids import short
from ..errors import GittrackError
from ..library import lineage as flow, previews, runview
from .render import render, whole_number
from .shared import request_repo

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
    partial = request.query_params.get("partial") == "1"  # the graph alone, swapped in place
    return render(
        request,
        "lineage_part.html" if partial else "lineage.html",
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
