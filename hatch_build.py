"""Build hook: the README as the package index shows it, with no link that only works in a checkout.

The README links to pages under docs/ by relative paths, which work on a checkout and in the source
distribution but break on a package index page. The project has no public home to point them at,
so the published description names each page by its path instead (docs/decisions.md).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hatchling.metadata.plugin.interface import MetadataHookInterface

_RELATIVE_LINK = re.compile(r"\[([^\]]+)\]\((?!https?://|#|mailto:)([^)\s]+)\)")

_NOTE = (
    "\n> The pages named below by their paths (`docs/...`) ship in the source distribution"
    " of each release.\n"
)


def published_readme(text: str) -> str:
    """The README with every relative link written as its text and path, no link."""
    body = _RELATIVE_LINK.sub(lambda m: f"{m[1]} (`{m[2]}`)", text)
    if body == text:
        return text
    intro_end = body.find("\n\n", body.find("\n\n") + 2)  # after the title and first paragraph
    return body[:intro_end] + "\n" + _NOTE + body[intro_end + 1 :]


class CustomMetadataHook(MetadataHookInterface):
    """Sets the long description from README.md, made safe for a package index."""

    def update(self, metadata: dict[str, Any]) -> None:
        text = (Path(self.root) / "README.md").read_text(encoding="utf-8")
        metadata["readme"] = {"content-type": "text/markdown", "text": published_readme(text)}
