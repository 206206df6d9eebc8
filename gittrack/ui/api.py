"""The UI's JSON endpoints and server-sent event streams."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from ..errors import GittrackError, RunNotFound
from ..library import browse, runview
from .render import PAGE_SIZES, script_json, whole_number
from .shared import request_repo
from .tables import table_args

# -- JSON ------------------------------------------------------------------------------------


MAX_API_PAGE = max(PAGE_SIZES)  # runs one /api/runs answer holds: the rest by ?offset=


async def api_runs(request: Request) -> Response:
    """A page of runs as JSON (`X-Total-Count`: how many match); at most MAX_API_PAGE runs
    a page, so that an answer's memory is bounded at any number of runs."""
    args = table_args(request)
    limit = whole_number(request, "limit", 100)
    if limit > MAX_API_PAGE:
        return JSONResponse(
            {
                "error": f"'limit' must be at most {MAX_API_PAGE}; ask for the next runs with "
                "'offset' (the X-Total-Count header says how many match)."
            },
            status_code=400,
        )
    try:
        page = browse.page(
            request_repo(request),
            args["where"] or None,
            sort=args["sort"],
            desc=args["desc"],
            offset=args["offset"],
            limit=limit,
        )
    except GittrackError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    rows = [row for row in page.rows if "problem" not in row]
    return JSONResponse(rows, headers={"X-Total-Count": str(page.total)})


async def api_runs_csv(request: Request) -> Response:
    """Every run matching ?where= as CSV (every param and metric), as `ls --format csv`:
    streamed as it is read, flat in memory at any number of runs."""
    from ..library.listing import stream_runs

    where = request.query_params.get("where", "").strip()
    try:
        stream = stream_runs(request_repo(request), where=where or None)
    except GittrackError as exc:
        return PlainTextResponse(f"Error: {exc}\n", status_code=400)
    return StreamingResponse(
        stream.csv_chunks(),
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


MAX_OVERLAY = 50  # runs whose series one overlay chart draws


async def api_series(request: Request) -> Response:
    """{run id: {column: values}} of the time series of ?ids=a,b (for overlays of one metric)."""
    refs = [r.strip() for part in request.query_params.getlist("ids") for r in part.split(",")]
    refs = list(dict.fromkeys(r for r in refs if r))
    if not refs or len(refs) > MAX_OVERLAY:
        return JSONResponse(
            {"error": f"Give from 1 to {MAX_OVERLAY} runs as ?ids=a,b; {len(refs)} were given."},
            status_code=400,
        )
    try:
        data = runview.series_of(request_repo(request), refs)
    except RunNotFound as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    except GittrackError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return Response(script_json(data), media_type="application/json")


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
