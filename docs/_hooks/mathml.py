"""A MkDocs hook: the pages' TeX, as MathML written into the HTML when the site is built.

``pymdownx.arithmatex`` (generic mode) wraps each ``$…$`` in ``<span class="arithmatex">\\(…\\)</span>`` and
each ``$$…$$`` in ``<div class="arithmatex">\\[…\\]</div>``; :func:`mathml_page` replaces them with MathML
from ``latex2mathml``, which every current browser draws without a script: the site needs no network
when it is read. A formula that does not convert is logged as a warning (``mkdocs build --strict`` fails).
"""

from __future__ import annotations

import html
import logging
import re

from latex2mathml.converter import convert

log = logging.getLogger("mkdocs.hooks.math")

_MATH = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">\s*\\(?P<open>[(\[])(?P<tex>.*?)\\[)\]]\s*</(?P=tag)>', flags=re.S
)
# operators latex2mathml does not know, as the \operatorname it does
_OPERATORS = {r"\arg": r"\operatorname{arg}", r"\Var": r"\operatorname{Var}", r"\Cov": r"\operatorname{Cov}"}


def mathml(tex: str, display: bool) -> str:
    """The MathML of one formula; ``ValueError`` naming it when it does not convert cleanly."""
    for op, name in _OPERATORS.items():
        tex = re.sub(re.escape(op) + r"(?![A-Za-z])", lambda _m, name=name: name, tex)
    try:
        out = convert(tex, display="block" if display else "inline")
    except Exception as err:  # latex2mathml raises its own exception classes
        raise ValueError(f"math {tex!r} does not convert to MathML: {err}") from err
    leftover = re.findall(r">(\\[A-Za-z]+)<", out)
    if leftover:
        raise ValueError(f"math {tex!r}: latex2mathml does not know {', '.join(leftover)}")
    return out


def mathml_page(page_html: str, where: str = "") -> str:
    """``page_html`` with every arithmatex formula replaced by its MathML (a warning for each that fails)."""

    def one(match: re.Match) -> str:
        try:
            return mathml(html.unescape(match["tex"]).strip(), display=match["open"] == "[")
        except ValueError as err:
            log.warning("%s: %s", where, err)
            return match.group(0)

    return _MATH.sub(one, page_html)


def on_page_content(html_text, page, **kwargs):
    return mathml_page(html_text, page.file.src_uri)
