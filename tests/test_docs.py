"""The docs site: ``mkdocs build --strict`` passes, renders what it should, and fails on a
broken reference.

``mkdocs.yml`` builds README.md (the home page), ``docs/*.md``, every ``examples/*.ipynb``
(rendered, not run) and one API page per public module from the numpydoc docstrings
(``docs/api/``); ``docs/site_hooks/`` holds the hook that reads README and the notebooks in
place and the griffe extension that turns the docstrings' Sphinx roles into links. Strict mode
turns every warning into a failure: a Markdown link or an autorefs reference to nothing, a
docstring griffe cannot match to its signature, a Sphinx role naming nothing in normlab.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import griffe
import pytest
import yaml

import normlab

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples").glob("*.ipynb"))


def mkdocs_build(config: Path, site_dir: Path) -> subprocess.CompletedProcess:
    """``mkdocs build --strict`` of ``config`` into ``site_dir``, run from the repository root."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's banner, not a warning
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config)]
    return subprocess.run(
        [*command, "--site-dir", str(site_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site as ``mkdocs build --strict`` writes it; fails with mkdocs's output if it fails."""
    site_dir = tmp_path_factory.mktemp("site")
    done = mkdocs_build(ROOT / "mkdocs.yml", site_dir)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return site_dir


def api_pages() -> dict[str, str]:
    """The API reference in ``mkdocs.yml``'s nav: page path -> the identifier it renders."""
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]

    def leaves(items):
        for item in items:
            for value in item.values() if isinstance(item, dict) else [item]:
                yield from leaves(value) if isinstance(value, list) else [value]

    api = next(item["API reference"] for item in nav if "API reference" in item)
    pages = {}
    for page in leaves(api):
        found = re.search(r"^::: (\S+)", (ROOT / "docs" / page).read_text(), re.MULTILINE)
        assert found, f"docs/{page} renders no object (expected a '::: normlab...' line)"
        pages[page] = found.group(1)
    return pages


def test_every_public_module_has_an_api_page():
    documented = set(api_pages().values())
    public = {
        f"normlab.{info.name}"
        for info in pkgutil.iter_modules(normlab.__path__)
        if not info.name.startswith("_")
    }
    assert "normlab" in documented
    assert sorted(public - documented) == [], "add docs/api/<name>.md and its line in mkdocs.yml"


def test_strict_build_renders_every_page(site):
    home = (site / "index.html").read_text()
    assert "Batch normalization from the derivation to the experiment" in home  # README.md
    assert '<a href="derivations/"><code>docs/derivations.md</code></a>' in home
    for page in ("architecture", "conventions", "derivations"):
        assert (site / page / "index.html").is_file(), page
    for page, identifier in api_pages().items():
        html = (site / page.removesuffix(".md") / "index.html").read_text()
        assert f'id="{identifier}"' in html, f"{page} has no heading for {identifier}"


def test_numpydoc_sections_render_as_tables(site):
    html = (site / "api" / "layers" / "index.html").read_text()
    entry = html.split('id="normlab.layers.batchnorm_forward"', 1)[1]
    entry = entry.split("doc-heading", 2)[1]  # from its own heading to the next object's
    parameters = entry.split("Parameters:", 1)[1].split("Returns:", 1)[0]
    assert "<table" in parameters
    assert all(f"<code>{name}</code>" in parameters for name in ("x", "gamma", "beta", "bn_param"))
    returns = entry.split("Returns:", 1)[1].split("Raises:", 1)[0]
    assert "<table" in returns and "<code>out</code>" in returns and "<code>cache</code>" in returns


def test_sphinx_roles_become_links_and_no_rest_shows_verbatim(site):
    package = (site / "api" / "normlab" / "index.html").read_text()
    # :mod:`normlab.layers` in normlab's docstring, linked to its API page
    assert re.search(
        r'<a class="autorefs autorefs-internal"[^>]*href="\.\./layers/#normlab\.layers"', package
    )
    for page in api_pages():
        html = (site / page.removesuffix(".md") / "index.html").read_text()
        raw = re.findall(r":(?:func|class|mod|meth|attr|data|math):`", html)
        assert raw == [], f"{page} shows Sphinx roles verbatim"
        assert not re.search(r"={4,} +={4,}", html), f"{page} shows a reST table's borders"
        assert not re.search(r"\S::</p>", html), f"{page} shows a reST literal-block marker"
        assert "``" not in html, f"{page} shows reST's double backquotes"


@pytest.mark.skipif(not NOTEBOOKS, reason="no examples/*.ipynb yet")
def test_every_notebook_is_a_page(site):
    nav = (site / "index.html").read_text()
    for notebook in NOTEBOOKS:
        html = (site / "examples" / notebook.stem / "index.html").read_text()
        cells = json.loads(notebook.read_text())["cells"]
        first_line = next(
            "".join(c["source"]).strip().splitlines()[0] for c in cells if c["source"]
        )
        assert first_line.lstrip("# ").strip()[:30] in html, notebook.name
        assert f'href="examples/{notebook.stem}/"' in nav, f"{notebook.name} is not in the nav"


def test_a_broken_reference_fails_the_strict_build(tmp_path):
    """The real config fails on three broken references and a docstring off its signature."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text(
        "# Broken\n\n[a page that is not there](missing.md) and "
        "[an object that is not there][brokenpkg.nope].\n\n::: brokenpkg\n"
    )
    package = tmp_path / "src" / "brokenpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        '"""One good reference, :func:`good`, and one broken: :func:`no_such_function`."""\n\n\n'
        'def good():\n    """A function that exists."""\n\n\n'
        "def mismatched(a):\n"
        '    """Documents a parameter it does not have.\n\n'
        "    Parameters\n    ----------\n    b : int\n        Not in the signature.\n"
        '    """\n'
    )
    mkdocstrings = next(p for p in config["plugins"] if isinstance(p, dict) and "mkdocstrings" in p)
    python = mkdocstrings["mkdocstrings"]["handlers"]["python"]
    python["paths"] = [str(tmp_path / "src")]
    python["options"]["extensions"] = [
        str(ROOT / ext) if ext.endswith("SphinxRoles") else ext
        for ext in python["options"]["extensions"]
    ]
    plugins = ["search", "autorefs", mkdocstrings]  # mkdocs-jupyter and the README hook: not needed
    config.update(docs_dir=str(docs), nav=["index.md"], plugins=plugins, hooks=[], watch=[])
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))

    done = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "missing.md" in output, output  # a Markdown link to no page
    assert "brokenpkg.nope" in output, output  # an autorefs reference to no object
    assert ":func:`no_such_function` names nothing" in output, output  # a Sphinx role
    assert "Parameter 'b' does not appear in the function signature" in output, output
    assert "Aborted with 4 warnings in strict mode" in output, output  # and nothing else


def load_roles_extension():
    path = ROOT / "docs" / "site_hooks" / "sphinx_roles.py"
    spec = importlib.util.spec_from_file_location("sphinx_roles", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sphinx_roles_resolve_in_the_docstrings_scope(tmp_path, caplog):
    roles = load_roles_extension()
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from pkg.core import Thing, _helper\n")
    (package / "core.py").write_text(
        textwrap.dedent('''
        class Thing:
            """A thing."""

            def run(self):
                """Run."""


        def _helper():
            """Private."""
        ''')
    )
    root = griffe.load("pkg", search_paths=[str(tmp_path)])
    thing = root["core.Thing"]

    def rewrite(text, obj=thing):
        return roles.rewrite(obj, text, root)

    link = '<autoref identifier="{}" optional><code>{}</code></autoref>'
    assert rewrite(":meth:`run`") == link.format("pkg.core.Thing.run", "run")  # class scope
    assert rewrite(":class:`~pkg.Thing`") == link.format("pkg.Thing", "Thing")  # ~: last part
    assert rewrite(":func:`_helper`", root) == link.format("pkg.core._helper", "_helper")  # import
    assert rewrite(":func:`the helper <_helper>`", root) == link.format(
        "pkg.core._helper", "the helper"
    )
    assert rewrite(":class:`pkg.core.\n    Thing`") == link.format(
        "pkg.core.Thing", "pkg.core.Thing"
    )
    assert rewrite(":class:`numpy.random.Generator`") == "`numpy.random.Generator`"  # outside pkg
    assert rewrite(":math:`x^2`") == "`x^2`"
    assert rewrite(":mod:`.core`", root) == link.format("pkg.core", ".core")  # relative
    assert rewrite("as follows::\n\n    code\n") == "as follows:\n\n    code\n"
    item = "dw : ndarray, same shape as ``w``\n    The ``w`` gradient."
    assert rewrite(item) == "dw : ndarray, same shape as w\n    The ``w`` gradient."
    table = "====  ======\nname  role\n====  ======\na     b\nc     d\n      more\n====  ======"
    assert rewrite(table).strip().splitlines() == [
        "| name | role |",
        "| --- | --- |",
        "| a | b |",
        "| c | d more |",  # a continuation line joins the row above
    ]
    assert caplog.records == []
    with caplog.at_level(logging.WARNING):
        assert rewrite(":func:`~pkg.core.nothing`") == "`nothing`"
        assert rewrite(":mod:`.nothing`", root) == "`.nothing`"
        assert rewrite(":func:`nothing`") == "`nothing`"
    named = [r.getMessage() for r in caplog.records if "names nothing in pkg" in r.getMessage()]
    assert len(named) == 3, named
