"""MkDocs hook: the "Methods" section of the navigation lists every page in docs/methods/, titled by its heading.

A new method's page appears in the site without an edit to mkdocs.yml (a method is four files: its module, one import
line in avsl/methods/__init__.py, its config and this page).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def methods_nav(docs_dir: str | Path) -> list[dict[str, str]]:
    """``[{title: "methods/<page>.md"}, ...]`` for the pages of ``docs_dir/methods``, in file-name order."""
    entries = []
    for page in sorted(Path(docs_dir, "methods").glob("*.md")):
        heading = next((line[2:].strip() for line in page.read_text().splitlines() if line.startswith("# ")), page.stem)
        entries.append({heading: f"methods/{page.name}"})
    return entries


def on_config(config: Any) -> Any:
    config["nav"] = [*config["nav"], {"Methods": methods_nav(config["docs_dir"])}]
    return config
