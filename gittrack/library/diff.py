"""What differs between two runs: fields, params, metrics, env, outputs, and their code."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import store
from .._ids import short
from ..model.values import FAMILIES, flat, visible

RUN_FIELDS = ("name", "status", "command", "experiment", "duration_s", "exit_code", "tags", "note")
SECTIONS = ("run", "params", "metrics", "env", "outputs", "inputs")
MISSING = None


@dataclass
class RunDiff:
    """Two runs side by side: `changes[section]` lists (key, value in a, value in b)."""

    a: dict[str, Any]
    b: dict[str, Any]
    changes: dict[str, list[tuple[str, Any, Any]]] = field(default_factory=dict)
    code_a: str = ""
    code_b: str = ""
    code_diff: str = ""  # `git diff` between the code commits ("" when the code is the same)
    code_problem: str = ""  # why the code diff could not be made
    code_shown: bool = True  # False with --no-code: only which files differ is given
    code_files: list[str] = field(default_factory=list)  # files that differ between the commits

    @property
    def same(self) -> bool:
        return not any(self.changes.values()) and self.code_a == self.code_b

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "changes": {
                s: [{"key": k, "a": x, "b": y} for k, x, y in v] for s, v in self.changes.items()
            },
            "code": {
                "a": self.code_a,
                "b": self.code_b,
                "diff": self.code_diff,
                "files": self.code_files,
                "problem": self.code_problem,
            },
        }


def _output(o: dict[str, Any]) -> str:
    size = o.get("size") or 0
    return f"md5 {str(o.get('md5', ''))[:12]} ({_size(size)})"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""  # pragma: no cover


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, a value, b value) for each key whose values differ; missing values are None."""
    keys = list(dict.fromkeys([*a, *b]))
    return [
        (k, a.get(k, MISSING), b.get(k, MISSING))
        for k in keys
        if a.get(k, MISSING) != b.get(k, MISSING)
    ]


def diff_runs(
    repo: store.Repo, ref_a: str, ref_b: str, *, code: bool = True, color: bool = False
) -> RunDiff:
    """Compare runs `ref_a` and `ref_b` (ids, prefixes or names); `code` adds the `git diff`."""
    from ..index.db import Index
    from .run import resolve_id

    index = Index(repo)
    records = []
    for ref in (ref_a, ref_b):
        row = index.get(resolve_id(repo, ref))
        assert row is not None
        records.append((row["record"] or {}) | {"commit": row["commit"]})
    ra, rb = records
    head = ("id", "name", "status", "commit")
    result = RunDiff({k: ra.get(k) for k in head}, {k: rb.get(k) for k in head})
    result.changes["run"] = compare(
        {k: ra.get(k) for k in RUN_FIELDS}, {k: rb.get(k) for k in RUN_FIELDS}
    )
    for section in FAMILIES:
        result.changes[section] = compare(flat(ra.get(section) or {}), flat(rb.get(section) or {}))
    outs = [{n: _output(o) for n, o in (r.get("outputs") or {}).items()} for r in (ra, rb)]
    result.changes["outputs"] = compare(*outs)
    ins = [
        {
            f"{short(i['run'])}{':' + i['output'] if i.get('output') else ''}": i.get("md5", "")[
                :12
            ]
            or short(i.get("commit", ""))
            for i in r.get("inputs") or []
        }
        | {f"file {path}": str(md5)[:12] for path, md5 in (r.get("input_files") or {}).items()}
        for r in (ra, rb)
    ]
    result.changes["inputs"] = compare(*ins)
    result.code_a = (ra.get("code") or {}).get("commit", "")
    result.code_b = (rb.get("code") or {}).get("commit", "")
    result.code_shown = code
    if result.code_a and result.code_b and result.code_a != result.code_b:
        result.code_files, result.code_problem = changed_files(repo, result.code_a, result.code_b)
        if code and not result.code_problem:
            result.code_diff, result.code_problem = code_diff(
                repo, result.code_a, result.code_b, color
            )
    return result


def _missing_commit(repo: store.Repo, shas: tuple[str, ...]) -> str:
    for sha in shas:
        found = repo.reader().read(sha)
        if found is None or found[1] != "commit":
            return (
                f"code commit {sha[:10]} is not in this repository (fetch it with 'gittrack pull')"
            )
    return ""


def changed_files(repo: store.Repo, a: str, b: str) -> tuple[list[str], str]:
    """(paths that differ between code commits a and b, problem): cheap, no file contents."""
    problem = _missing_commit(repo, (a, b))
    if problem:
        return [], problem
    proc = repo.git("diff", "--name-only", "-z", a, b, check=False)
    if proc.returncode != 0:
        return [], proc.stderr.decode(errors="replace").strip()
    return [p for p in proc.stdout.decode("utf-8", "replace").split("\0") if p], ""


def code_diff(repo: store.Repo, a: str, b: str, color: bool = False) -> tuple[str, str]:
    """(`git diff a b`, problem): the problem says why there is no diff (e.g. missing commits)."""
    problem = _missing_commit(repo, (a, b))
    if problem:
        return "", problem
    proc = repo.git("diff", f"--color={'always' if color else 'never'}", a, b, check=False)
    if proc.returncode != 0:
        return "", proc.stderr.decode(errors="replace").strip()
    return proc.stdout.decode("utf-8", "replace"), ""


def format_diff(d: RunDiff, color: bool = False) -> str:
    """A readable diff: one section per kind of change, then the code diff."""

    def style(text: str, **kw: Any) -> str:
        if not color:
            return text
        import click

        return click.style(text, **kw)

    def show(value: Any) -> str:
        if value is None:
            return "(none)"
        if isinstance(value, list):
            return ", ".join(map(visible, value)) or "(none)"
        return visible(value)

    lines = []
    for label, run in (("a", d.a), ("b", d.b)):
        fields = [short(str(run.get("id", ""))), run.get("name") or "", run.get("status") or ""]
        colour = "red" if label == "a" else "green"
        lines.append(style(f"{label} {'  '.join(f for f in fields if f)}", fg=colour))
    if d.same:
        lines.append("The runs do not differ in fields, params, metrics, env, outputs or code.")
    for section in SECTIONS:
        changes = d.changes.get(section) or []
        if not changes:
            continue
        lines.append(style(f"{section}:", bold=True))
        width = max(len(k) for k, _, _ in changes)
        for key, x, y in changes:
            lines.append(
                f"  {key.ljust(width)}  {style(show(x), fg='red')}  ->  "
                f"{style(show(y), fg='green')}"
            )
    if d.code_a != d.code_b:
        lines.append(
            style("code:", bold=True)
            + f" {d.code_a[:10] or '(none)'} -> {d.code_b[:10] or '(none)'}"
        )
        files = d.code_files
        if d.code_problem:
            lines.append(f"  (no code diff: {d.code_problem})")
        elif not files:
            lines.append("  (the code commits differ but hold the same files)")
        elif not d.code_shown:
            shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
            ids = [short(str(r.get("id", ""))) for r in (d.a, d.b)]
            lines.append(
                f"  code differs in {len(files)} file{'s' * (len(files) != 1)} ({shown}); "
                f"see it with: gittrack diff {ids[0]} {ids[1]} "
                f"(without --no-code), or git diff {d.code_a[:10]} {d.code_b[:10]}"
            )
        else:
            lines.append(d.code_diff.rstrip("\n"))
    return "\n".join(lines)


def worktree_diff(repo: store.Repo, ref: str, color: bool = False) -> tuple[str, str, str]:
    """(run id, its code commit, `git diff COMMIT` against the working tree) for run `ref`.

    Untracked files are not shown (as `git diff`); a run without recorded code is an error."""
    from ..errors import UsageError
    from .run import Run

    run = Run(ref, repo)
    commit = run.code.commit
    if not commit:
        raise UsageError(f"Run {run.short} recorded no code commit; pick a run that did.")
    problem = _missing_commit(repo, (commit,))
    if problem:
        raise UsageError(f"Run {run.short}'s {problem}.")
    proc = repo.git(
        "-C",
        str(repo.root),
        "diff",
        f"--color={'always' if color else 'never'}",
        commit,
        "--",
        check=False,
    )
    if proc.returncode != 0:
        raise UsageError(proc.stderr.decode(errors="replace").strip() or "git diff failed.")
    return run.id, commit, proc.stdout.decode("utf-8", "replace")
