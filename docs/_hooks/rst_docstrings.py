"""A Griffe extension for the API reference: the docstrings' reStructuredText bits, as Markdown.

The docstrings are Google style with a few reST habits: ``.. math::`` blocks and ``:math:`` roles
(rendered by ``pymdownx.arithmatex`` as ``$$ … $$`` and ``$ … $``, then as MathML by ``mathml.py``), roles
such as ``:func:`svag.train``` (shown as code: ``svag.train``) and one ``.. code-block::``. Loaded by
mkdocstrings (``mkdocs.yml``, ``extensions:``); :func:`markdown_of` is the conversion, tested in
``tests/test_docs_site.py``.
"""

from __future__ import annotations

import re
import textwrap

import griffe

_ROLE = re.compile(r":(?:func|class|meth|attr|data|mod|obj|exc|const|ref|py:\w+):`~?([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. (?P<name>math|code-block)::[ \t]*(?P<rest>.*)$")


def _role(match: re.Match) -> str:
    """``:func:`~a.b.c``` → ``c``; ``:class:`text <target>``` → ``text``; else the target, as code."""
    text = match.group(1)
    shown = re.sub(r"\s*<[^>]+>$", "", text)
    if match.group(0).split("`")[1].startswith("~"):
        shown = shown.rsplit(".", 1)[-1]
    return f"`{shown}`"


def _directive(lines: list[str], i: int, match: re.Match) -> tuple[list[str], int]:
    """The Markdown of the directive at ``lines[i]`` and the index of the first line after its body."""
    indent, name, rest = match["indent"], match["name"], match["rest"].strip()
    body, j = [], i + 1
    while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > len(indent)):
        body.append(lines[j])
        j += 1
    while body and not body[-1].strip():  # trailing blank lines belong to what follows
        body.pop()
        j -= 1
    inner = textwrap.dedent("\n".join(body)).strip("\n").splitlines()
    if name == "math":
        math = " ".join(s.strip() for s in [rest, *inner] if s.strip())
        return ["", f"{indent}$$", f"{indent}{math}", f"{indent}$$", ""], j
    return ["", f"{indent}```{rest or 'text'}", *(f"{indent}{s}" if s else "" for s in inner), f"{indent}```", ""], j


def markdown_of(docstring: str) -> str:
    """``docstring`` with its reST math, roles and code blocks written as Markdown (nothing else changes)."""
    lines, out, i = docstring.splitlines(), [], 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        if match:
            block, i = _directive(lines, i, match)
            out += block
        else:
            out.append(lines[i])
            i += 1
    text = "\n".join(out)
    text = _MATH_ROLE.sub(lambda m: f"${m.group(1).strip()}$", text)
    return _ROLE.sub(_role, text)


class RstToMarkdown(griffe.Extension):
    """Rewrites every loaded object's docstring with :func:`markdown_of`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_of(obj.docstring.value)
