"""The runs table pages (all runs, one experiment), the experiments list and compare."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..errors import GittrackError
from ..library import browse, runview
from ..library.listing import query_hints
from ..model.values import FAMILIES
from .render import PAGE_SIZES, render, whole_number
from .shared import request_repo

MAX_COMPARE = 20  # runs side by side on the compare page


def table_args(request: Request) -> dict[str, Any]:
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
    args = table_args(request)
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
            "plot": compare_plot(runs, keys),
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


def compare_plot(runs: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    """Column-wise values of the compared runs' numeric params and metrics, for the plots.

    `common`: the columns every run has a number for (the parallel coordinates' axes, varying
    ones first); `columns`: every column with a number in some run (the scatter's choices).
    """
    numeric = [
        key
        for key in keys
        if key.startswith(("params.", "metrics."))
        and any(_number(_lookup(run, key)) for run in runs)
    ]
    values = {
        key: [_lookup(run, key) if _number(_lookup(run, key)) else None for run in runs]
        for key in numeric
    }
    common = [key for key in numeric if all(v is not None for v in values[key])]
    common.sort(key=lambda key: len(set(values[key])) < 2)  # what varies first, stable
    return {
        "id": [run["id"] for run in runs],
        "status": [run.get("status") for run in runs],
        "name": [run.get("name") or "" for run in runs],
        "columns": values,
        "common": common,
    }


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value
