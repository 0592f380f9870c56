"""The documents a user reads, and what their code blocks promise: the one place that lists them and
reads their blocks (``tests/test_readme.py`` runs the blocks and parses the command lines,
``tests/test_moved.py`` resolves the ``svag.x.y`` names, ``tests/test_docs_site.py`` builds the site).

A document is the README, ``EXPERIMENTS.md``, ``BENCHMARKS.md`` or a page of the site (``docs/**/*.md``,
but the hooks' folder). Each ```` ```python ```` block is followed by the ```` ```text ```` block of what
it prints; a page that runs a block at a smaller size than the real one says so in the block."""

import re
import shlex

from helpers import ROOT

DOCS = ROOT / "docs"
ROOT_DOCUMENTS = ("README.md", "EXPERIMENTS.md", "BENCHMARKS.md")


def site_pages() -> list[str]:
    """Every page of the site, as a path from the repository root (``docs/guides/lightning.md``, ...)."""
    pages = (p.relative_to(ROOT).as_posix() for p in DOCS.rglob("*.md"))
    return sorted(p for p in pages if not p.startswith("docs/_hooks/"))


def documents() -> list[str]:
    """The root documents, then the site's pages."""
    return [*ROOT_DOCUMENTS, *site_pages()]


def text(document: str) -> str:
    return (ROOT / document).read_text()


def blocks(document: str, lang: str) -> list[str]:
    """The fenced ```` ```lang ```` blocks of ``document``, in order."""
    return re.findall(rf"^```{lang}\n(.*?)^```", text(document), flags=re.S | re.M)


def python_blocks(document: str) -> list[tuple[str, str]]:
    """Each Python block of ``document`` and what it says the block prints: the ```text block right after
    it ("" when there is none)."""
    found = re.findall(r"^```python\n(.*?)^```\n(?:\n?```text\n(.*?)^```)?", text(document), flags=re.S | re.M)
    return [(code, shown) for code, shown in found]


def all_python_blocks() -> list[tuple[str, int]]:
    """``(document, index)`` of every Python block of every document."""
    return [(doc, i) for doc in documents() for i in range(len(python_blocks(doc)))]


def _clean(tokens: list[str]) -> list[str]:
    """Inline examples abbreviate: drop `...`, unwrap `[--l 4]`, take the first of `a|b`."""
    out = []
    for t in tokens:
        t = t.strip("[]")
        if t and t != "...":
            out.append(t.split("|")[0])
    return out


def svag_commands(document: str, commands) -> list[list[str]]:
    """Every `svag ...` / `python3 run.py svag ...` line of the bash blocks of ``document`` (continuations
    joined) and every inline `svag COMMAND ...` span, as argument lists, for those that name one of
    ``commands`` (``--help`` lines left out)."""
    joined = [b.replace("\\\n", " ") for b in blocks(document, "bash")]
    lines = [line.split("#")[0].strip() for b in joined for line in b.splitlines()]
    lines += re.findall(r"`((?:python3 run\.py )?svag [a-z][^`]*)`", text(document))
    found = []
    for line in lines:
        words = shlex.split(line)
        if words[:3] == ["python3", "run.py", "svag"]:
            words = words[3:]
        elif words[:1] == ["svag"]:
            words = words[1:]
        else:
            continue
        words = _clean(words)
        if any(w in commands for w in words) and "--help" not in words and words not in found:
            found.append(words)
    return found


def named_files(document: str) -> set[str]:
    """The scripts, examples and figures ``document`` names by their path from the repository root
    (``scripts/…``, ``examples/…``, ``benchmarks/…``, ``docs/….png``)."""
    pattern = r"(?<![\w/.])((?:scripts|examples|benchmarks)/[\w./-]+\.(?:sh|py)|docs/[\w./-]+\.png)"
    return set(re.findall(pattern, text(document)))
