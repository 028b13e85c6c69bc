"""MkDocs hook: the README as the home page and every ``examples/*.ipynb`` as a page, in place.

Nothing is copied into ``docs/``: the files join MkDocs' file list from where they live, so a
fresh clone builds the same site, and ``mkdocs serve`` reloads on their edits. The notebooks
are listed in the navigation under "Examples", in file-name order, so a new notebook needs no
edit here; mkdocs-jupyter renders them without running them (``execute: false``). On the home
page, README's ``docs/<page>.md`` mentions link to those pages (the strict build checks them).
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
NAV_BEFORE = "API reference"  # the "Examples" section goes just before this one
DOCS_MENTION = re.compile(r"`docs/(?P<page>[\w-]+\.md)`")  # README's `docs/derivations.md`


def notebooks() -> list[Path]:
    """The notebooks the site renders: ``examples/*.ipynb``, sorted by name."""
    return sorted(EXAMPLES.glob("*.ipynb"))


def on_config(config):
    """Insert ``Examples: [examples/<name>.ipynb, ...]`` into the navigation."""
    pages = [f"examples/{path.name}" for path in notebooks()]
    if pages and config.nav is not None:
        keys = [next(iter(item)) if isinstance(item, dict) else None for item in config.nav]
        at = keys.index(NAV_BEFORE) if NAV_BEFORE in keys else len(config.nav)
        config.nav.insert(at, {"Examples": pages})
    return config


def on_serve(server, config, builder):
    """Rebuild on notebook edits too (``watch:`` refuses a folder that may not exist yet)."""
    if EXAMPLES.is_dir():
        server.watch(str(EXAMPLES))
    return server


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns .ipynb files into pages
def on_files(files, config):
    """Add ``README.md`` as ``index.md`` and the notebooks as ``examples/<name>.ipynb``."""
    files.append(File.generated(config, "index.md", abs_src_path=str(ROOT / "README.md")))
    for path in notebooks():
        files.append(
            File(
                f"examples/{path.name}",
                src_dir=str(ROOT),
                dest_dir=config.site_dir,
                use_directory_urls=config.use_directory_urls,
            )
        )
    return files


def on_page_markdown(markdown, page, config, files):
    """On the home page, README's `docs/<page>.md` mentions become links to those pages."""
    if page.file.src_uri != "index.md":
        return markdown
    return DOCS_MENTION.sub(lambda m: f"[{m[0]}]({m['page']})", markdown)
