"""The documents' promises (the README and every page of the site, ``tests/documents.py``): their Python
blocks run as written and print what the page shows, every `svag` command line they show parses with the
real parser (flags and values exist; nothing is trained), and every script, example and figure they name
exists."""

import pytest
import torch

from documents import ROOT_DOCUMENTS, all_python_blocks, documents, named_files, python_blocks, svag_commands
from helpers import ROOT, same_print
from svag import cli


def test_the_readme_shows_python_and_commands():
    assert len(python_blocks("README.md")) >= 2 and len(svag_commands("README.md", cli.COMMANDS)) >= 2


@pytest.mark.parametrize("document", documents())
def test_each_python_block_shows_what_it_prints(document):
    assert [i for i, (_, shown) in enumerate(python_blocks(document)) if not shown] == []


@pytest.mark.parametrize(("document", "index"), all_python_blocks(), ids=lambda x: str(x))
def test_python_block_prints_what_the_document_shows(document, index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    torch.set_default_dtype(torch.float32)  # as a user has it (the suite's default is float64; restored after)
    torch.manual_seed(0)
    code, shown = python_blocks(document)[index]
    exec(compile(code, f"{document} python block {index}", "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out
    assert same_print(printed, shown) is None, f"{same_print(printed, shown)}\nprinted:\n{printed}"


@pytest.mark.parametrize(
    ("got", "shown", "same"),
    [
        ("B* = 111 ± 7\n", "B* = 111 ± 7", True),
        ("completed 0.4921\n", "completed 0.492", True),
        ("completed 0.4981\n", "completed 0.492", False),  # beyond the precision shown
        ("failed 0.492\n", "completed 0.492", False),  # words differ
        ("1.6 2.5e-03\n", "1.6 2.50e-03", True),
        ("a\nb\n", "a", False),
    ],
)
def test_same_print_reads_numbers_at_the_precision_shown(got, shown, same):
    assert (same_print(got, shown) is None) is same


def _all_commands() -> list[tuple[str, list[str]]]:
    return [(doc, argv) for doc in documents() for argv in svag_commands(doc, cli.COMMANDS)]


def _id(x) -> str:
    return " ".join(x)[:60] if isinstance(x, list) else str(x)


@pytest.mark.parametrize(("document", "argv"), _all_commands(), ids=_id)
def test_command_line_parses(document, argv):
    """Each flag exists for its command; a line that gives the required arguments parses whole."""
    command = next(a for a in argv if a in cli.COMMANDS)
    parser = cli.build_parser(command)
    options = parser.get_default("_command_parser")._option_string_actions
    flags = [a.split("=")[0] for a in argv if a.startswith("--")]
    assert [f for f in flags if f not in options and f != "--threads"] == []
    required = [a for a in parser.get_default("_command_parser")._actions if a.required]
    if all(any(o in argv for o in a.option_strings) for a in required) and not (
        command == "plot" and argv[-1] == "plot"
    ):
        assert parser.parse_args(argv).command == command


@pytest.mark.parametrize("document", documents())
def test_the_files_a_document_names_exist(document):
    """Every script, example and figure the document names (`scripts/…`, `examples/…`, `docs/….png`) is in
    the repository; each root document names some."""
    named = named_files(document)
    assert named or document not in ROOT_DOCUMENTS, f"{document} names no script or figure"
    assert sorted(p for p in named if not (ROOT / p).is_file()) == []
