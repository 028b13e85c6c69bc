"""Griffe extension: the Sphinx roles in normlab's docstrings as links on the docs site.

The docstrings cross-reference in Sphinx's syntax (``:func:`~normlab.layers.batchnorm_forward```,
``:class:`Optimizer```, ``:mod:`normlab.models```), which mkdocstrings would print verbatim.
This rewrites each role, before the docstrings are parsed, as Sphinx would resolve it: a name
is looked up in the scope of the object whose docstring holds it (its class, its module and what
that module imports), a dotted ``normlab.`` path from the package. Then:

* a target that exists becomes a link to where the site documents it (under any of its public
  names, e.g. ``normlab.models.Network`` for ``normlab.models.base.Network``), and plain code
  where the site has no entry for it (a private helper, a submodule's undocumented constant);
* a name outside normlab (``matplotlib.figure.Figure``) and ``:math:`` are plain code;
* a normlab name that resolves to nothing (a typo, a renamed or removed function) is a warning,
  so ``mkdocs build --strict`` fails on it, naming the file and the line of the docstring.

Links are autorefs' optional references: the API pages decide what is documented, and a
reference does not force a page on a helper. Markdown links and ``[title][identifier]``
references written in ``docs/*.md`` stay required ones.

As in Sphinx, ``~`` keeps the last component (``~normlab.optimizer.Optimizer`` shows
``Optimizer``), ``title <target>`` shows the title, and ``.name`` is looked up in the current
module, then in its package. A paragraph's closing ``::`` (reST's literal-block marker) becomes
``:``, a reST simple table (``====`` borders) a Markdown table, and double backquotes inside a
numpydoc item's type are dropped (the site shows the whole type as code already).
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?P<role>[a-z]+):`(?P<body>[^`]+)`")
EXPLICIT_TITLE = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$")
TABLE_BORDER = re.compile(r"^ *=+(?: +=+)+ *$")  # a reST simple table's "====  ====" line
# a numpydoc item's "name : type" line; the type column shows as code, so ``x`` in it is noise
ITEM_TYPE = re.compile(r"^(?P<name> *\*{0,2}\w+(?:, *\*{0,2}\w+)* : )(?P<type>.*``.*)$", re.M)
LITERAL_MARK = re.compile(r"(?P<text>\S?)[ \t]*::$", re.MULTILINE)  # "as follows::", a lone "::"


def lookup(root: griffe.Module, path: str) -> griffe.Object | griffe.Alias | None:
    """The object at ``path`` under ``root`` (through aliases), or None when there is none."""
    if path == root.path:
        return root
    try:
        return root[path.removeprefix(root.path + ".")]
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def resolve(obj: griffe.Object, target: str, root: griffe.Module) -> str | None:
    """The full path of ``target`` as seen from ``obj``'s docstring, or None if it names nothing."""
    if target.startswith("."):  # relative: in the current module, then in its package
        module = obj if obj.is_module else obj.module
        bases = [module.path, module.parent.path if module.parent else module.path]
        found = [base + target for base in bases if lookup(root, base + target) is not None]
        return found[0] if found else None
    head, _, rest = target.partition(".")
    if head == root.name:
        path = target
    else:
        try:
            path = obj.resolve(head)
        except griffe.NameResolutionError:
            return None
        path = f"{path}.{rest}" if rest else path
    return path if lookup(root, path) is not None else None


def simple_tables(text: str) -> str:
    """``text`` with each reST simple table (``====`` borders, no blank line inside) in Markdown.

    Columns are cut where the border's runs of ``=`` start; a line whose first cell is empty
    continues the row above; with three borders the rows above the middle one are the header,
    with two the header is left empty.
    """
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        end = i + 1
        while end < len(lines) and lines[end].strip():
            end += 1
        block = lines[i:end]
        borders = [k for k, line in enumerate(block) if TABLE_BORDER.match(line)]
        if borders and borders[0] == 0 and len(borders) in (2, 3) and borders[-1] == len(block) - 1:
            out.extend(["", *markdown_table(block, len(borders) == 3), ""])
            i = end
        else:
            out.append(lines[i])
            i += 1
    return "\n".join(out)


def markdown_table(block: list[str], has_header: bool) -> list[str]:
    """The Markdown lines of one reST simple table, ``block`` from border to border."""
    starts = [m.start() for m in re.finditer(r"=+", block[0])]
    indent = block[0][: starts[0]]
    header, rows = None, []
    for line in block[1:-1]:
        if TABLE_BORDER.match(line):
            header, rows = rows, []
            continue
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        if rows and not cells[0]:
            rows[-1] = [f"{old} {new}".strip() for old, new in zip(rows[-1], cells, strict=True)]
        else:
            rows.append(cells)
    head = header[0] if has_header and header else [""] * len(starts)
    lines = [head, ["---"] * len(starts), *rows]
    return [indent + "| " + " | ".join(cells) + " |" for cells in lines]


def rewrite(obj: griffe.Object, text: str, root: griffe.Module) -> str:
    """``text`` (``obj``'s docstring) in Markdown: its roles, tables, types and ``::`` marks."""

    def replace(match: re.Match) -> str:
        role, body = match["role"], " ".join(match["body"].split())  # a role may wrap lines
        if role == "math":
            return f"`{body}`"
        explicit = EXPLICIT_TITLE.match(body)
        target = explicit["target"] if explicit else body
        target = target.lstrip("!").replace(" ", "")
        short = target.startswith("~")
        target = target.lstrip("~").removesuffix("()")
        title = explicit["title"] if explicit else target.rsplit(".", 1)[-1] if short else target
        path = resolve(obj, target, root)
        if path is None:
            if not target.startswith(".") and target.split(".")[0] not in (root.name, target):
                return f"`{title}`"  # outside normlab: no page to link to
            where = f"{obj.relative_filepath}:{obj.docstring.lineno}" if obj.docstring else obj.path
            griffe.logger.warning(f"{where}: :{role}:`{body}` names nothing in {root.name}")
            return f"`{title}`"
        return f'<autoref identifier="{path}" optional><code>{title}</code></autoref>'

    text = ITEM_TYPE.sub(lambda m: m["name"] + m["type"].replace("``", ""), text)
    text = ROLE.sub(replace, simple_tables(text))  # tables first: roles change the widths
    # reST's "::" ending a paragraph introduces the indented block after it, which Markdown
    # already shows as code: keep one ":" after text, drop a "::" standing alone.
    return LITERAL_MARK.sub(lambda m: f"{m['text']}:" if m["text"] else "", text)


def objects(obj: griffe.Object):
    """``obj`` and every object defined under it (aliases, i.e. imports, left out)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from objects(member)


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring of a package once it is loaded, before any is parsed."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        for obj in objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj, obj.docstring.value, pkg)
