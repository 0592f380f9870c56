"""The documentation site: `mkdocs build --strict` passes (a broken link, a page missing from the nav, an
unresolved reference, a docstring Griffe cannot read or a formula that does not convert fails it), the
generated parts are what they claim (MathML in place of TeX, the real parsers' help), the hooks convert
what they say they convert, and the README links every guide. The pages' code blocks run in
``tests/test_readme.py``; their ``svag.x.y`` names resolve in ``tests/test_moved.py``."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from documents import DOCS, site_pages, text
from helpers import ROOT, repo_module
from svag import cli

# TeX left for a script to render, and the docstrings' reST the Griffe extension rewrites
LEFTOVER = r'class="arithmatex"|\.\. (?:math|code-block)::|:(?:func|class|meth|mod|data|attr|math):`'


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built once for this module with ``--strict`` into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
           "--site-dir", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def rst():
    return repo_module("docs/_hooks/rst_docstrings.py", "svag_docs_rst_docstrings")


@pytest.fixture(scope="module")
def mathml():
    return repo_module("docs/_hooks/mathml.py", "svag_docs_mathml")


@pytest.fixture(scope="module")
def pages():
    return repo_module("docs/_hooks/pages.py", "svag_docs_pages")


def _html(site: Path, page: str) -> str:
    """The built HTML of ``docs/<page>.md`` (``guides/lightning``)."""
    return (site / page / "index.html").read_text()


def test_every_page_is_built(site):
    pages = [p.removeprefix("docs/").removesuffix(".md").removesuffix("index") for p in site_pages()]
    assert len(pages) >= 40
    assert [p for p in pages if not (site / p / "index.html").is_file()] == []


def test_every_formula_is_mathml_and_no_rest_is_left(site):
    """No page keeps TeX for the browser to render, nor a reST directive or role of the docstrings."""
    left = {}
    for page in site.rglob("*.html"):
        html = page.read_text()
        found = re.findall(LEFTOVER, html)
        if found:
            left[page.relative_to(site).as_posix()] = sorted(set(found))
    assert left == {}
    coefficients = _html(site, "reference/api/amplify")
    assert '<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">' in coefficients
    assert "<msqrt>" in coefficients  # a_{1,2} = (1 ± √(2l − 1))/2, from the docstring's .. math::


def test_the_cli_reference_is_the_parsers_help(site, pages):
    html = _html(site, "reference/cli")
    for command in cli.COMMANDS:
        assert f"usage: svag {command}" in html, command
    assert "train" in pages.help_text("svag") and "--amplification" in pages.help_text("train")
    with pytest.raises(ValueError, match=r"unknown command 'nope'; valid: svag, demo"):
        pages.help_text("nope")


def test_the_root_documents_are_pages_with_their_figures(site, pages):
    html = _html(site, "results/experiments")
    assert html.count("<img") >= 10
    assert 'src="../../experiments/' in html
    included = pages.included("EXPERIMENTS.md", "results/experiments.md")
    assert "](../experiments/" in included and "](docs/" not in included
    assert "](experiments/" in pages.included("EXPERIMENTS.md", "index.md")  # from the top of docs/


def test_the_api_reference_documents_every_public_name():
    """Each name of ``svag.__all__`` (but the version) is on the namespace page, linked to its module."""
    import svag

    page = text("docs/reference/api/index.md")
    modules = {n for n in svag.__all__ if not callable(getattr(svag, n)) and n != "__version__"}
    names = [n for n in svag.__all__ if n not in modules and n != "__version__"]
    assert [n for n in names if f"`svag.{n}" not in page] == []
    assert [m for m in sorted(modules) if f"`svag.{m}`" not in page] == []


def test_the_readme_links_every_guide_and_exists():
    readme = text("README.md")
    guides = sorted(p.relative_to(ROOT).as_posix() for p in (DOCS / "guides").glob("*.md"))
    assert len(guides) >= 11 and [g for g in guides if f"]({g}" not in readme] == []
    linked = re.findall(r"\]\((docs/[\w/.-]+\.md)", readme)
    assert [p for p in linked if not (ROOT / p).is_file()] == []
    assert len(readme.splitlines()) <= 230  # what a newcomer reads first; the rest is in the guides


@pytest.mark.parametrize(
    ("docstring", "markdown"),
    [
        ("Is :math:`\\eta/(1-\\beta)`.", "Is $\\eta/(1-\\beta)$."),
        ("See :func:`svag.train` and :class:`~svag.optim.SVAG`.", "See `svag.train` and `SVAG`."),
        (":mod:`the core <svag.optim>`", "`the core`"),
        ("A\n\n.. math::  a = b\n\nB", "A\n\n\n$$\na = b\n$$\n\n\nB"),
        ("A\n\n    .. math::  a = b,\n        c = d\n\n    B", "A\n\n\n    $$\n    a = b, c = d\n    $$\n\n\n    B"),
        ("A:\n\n.. code-block:: python\n\n    x = 1\n\n    y = 2\nB", "A:\n\n\n```python\nx = 1\n\ny = 2\n```\n\nB"),
        ("Nothing ``to`` change: a |b| *c*.", "Nothing ``to`` change: a |b| *c*."),
    ],
)
def test_the_docstrings_rest_becomes_markdown(rst, docstring, markdown):
    assert rst.markdown_of(docstring) == markdown


def test_a_formula_becomes_mathml_or_a_named_error(mathml):
    out = mathml.mathml(r"a_{1,2} = \frac{1 \pm \sqrt{2l - 1}}{2}", display=True)
    assert out.startswith('<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">') and "<mfrac>" in out
    assert "\\arg" not in mathml.mathml(r"\arg\max_c f_c", display=False)  # an operator it does not know, named
    with pytest.raises(ValueError, match=r"does not know \\notacommand"):
        mathml.mathml(r"\notacommand x", display=False)
    page = '<p>x <span class="arithmatex">\\(a &lt; b\\)</span> y</p>'
    assert mathml.mathml_page(page) == f"<p>x {mathml.mathml('a < b', display=False)} y</p>"
