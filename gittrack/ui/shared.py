"""What the UI's app and its views share: where the templates are, the repository served."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request

from ..library import Repo


def templates_dir() -> Path:
    """templates/ from an installed wheel (gittrack/templates) or from a source checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "templates", package.parent / "templates"):
        if (candidate / "base.html").is_file():
            return candidate
    raise FileNotFoundError(
        f"gittrack's HTML templates are missing near {package}; reinstall gittrack."
    )


def request_repo(request: Request) -> Repo:
    return request.app.state.repo  # type: ignore[no-any-return]
