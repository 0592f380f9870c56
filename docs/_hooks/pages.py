"""A MkDocs hook: pages whose text is generated, so that nothing is written twice.

- ``<!-- svag-help: COMMAND -->`` becomes the ``--help`` of ``svag COMMAND`` (``svag`` alone: the
  command list), from the real argparse parsers (:func:`svag.cli.build_parser`), at 100 columns.
- ``<!-- include: FILE -->`` becomes ``FILE`` of the repository root (``EXPERIMENTS.md``,
  ``BENCHMARKS.md``), its links to ``docs/…`` made relative to the including page.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_HELP = re.compile(r"^<!-- svag-help: (?P<command>[a-z]+) -->$", flags=re.M)
_INCLUDE = re.compile(r"^<!-- include: (?P<file>[\w.-]+) -->$", flags=re.M)


def help_text(command: str) -> str:
    """What ``svag COMMAND --help`` prints (``svag --help`` for ``"svag"``), at 100 columns."""
    from svag import cli

    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        if command == "svag":
            return cli.build_parser().format_help()
        if command not in cli.COMMANDS:
            raise ValueError(f"svag-help: unknown command {command!r}; valid: svag, {', '.join(cli.COMMANDS)}")
        return cli.build_parser(command).get_default("_command_parser").format_help()
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


def included(name: str, page_uri: str) -> str:
    """The root file ``name``, its ``](docs/…)`` links rewritten relative to the page ``page_uri``."""
    text = (ROOT / name).read_text()
    up = posixpath.relpath(".", posixpath.dirname(page_uri) or ".")
    prefix = "" if up == "." else up + "/"
    return re.sub(r"\]\(docs/", f"]({prefix}", text)


def expand(markdown: str, page_uri: str) -> str:
    """``markdown`` with its generated parts filled in."""
    markdown = _HELP.sub(lambda m: f"```text\n{help_text(m['command']).rstrip()}\n```", markdown)
    return _INCLUDE.sub(lambda m: included(m["file"], page_uri), markdown)


def on_page_markdown(markdown, page, **kwargs):
    return expand(markdown, page.file.src_uri)
