"""The README's promises: its Python blocks run as written, and every `svag` command line it shows
parses with the real parser (flags and values exist; nothing is trained)."""

import re
import shlex

import pytest
import torch

from helpers import ROOT, same_print
from svag import cli

README = ROOT / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def _clean(tokens: list[str]) -> list[str]:
    """Inline examples abbreviate: drop `...`, unwrap `[--l 4]`, take the first of `a|b`."""
    out = []
    for t in tokens:
        t = t.strip("[]")
        if t and t != "...":
            out.append(t.split("|")[0])
    return out


def _svag_commands() -> list[list[str]]:
    """Every `svag ...` / `python3 run.py svag ...` line of the bash blocks (continuations joined)
    and every inline `svag COMMAND ...` span that names a real command."""
    lines = [line.split("#")[0].strip() for b in _blocks("bash") for line in b.replace("\\\n", " ").splitlines()]
    lines += re.findall(r"`((?:python3 run\.py )?svag [a-z][^`]*)`", README.read_text())
    commands = []
    for line in lines:
        words = shlex.split(line)
        if words[:3] == ["python3", "run.py", "svag"]:
            words = words[3:]
        elif words[:1] == ["svag"]:
            words = words[1:]
        else:
            continue
        words = _clean(words)
        if any(w in cli.COMMANDS for w in words) and "--help" not in words and words not in commands:
            commands.append(words)
    return commands


def _python_blocks() -> list[tuple[str, str]]:
    """Each Python block and what the README says it prints: the ```text block right after it."""
    found = re.findall(r"```python\n(.*?)```\n(?:\n?```text\n(.*?)```)?", README.read_text(), flags=re.S)
    return [(code, shown) for code, shown in found]


def test_the_readme_shows_python_and_commands():
    assert len(_python_blocks()) >= 2 and len(_svag_commands()) >= 2
    assert [i for i, (_, shown) in enumerate(_python_blocks()) if not shown] == []  # each shows its output


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_python_block_prints_what_the_readme_shows(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    torch.set_default_dtype(torch.float32)  # as a user has it (the suite's default is float64; restored after)
    torch.manual_seed(0)
    code, shown = _python_blocks()[index]
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
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


@pytest.mark.parametrize("argv", _svag_commands(), ids=lambda a: " ".join(a)[:60])
def test_command_line_parses(argv):
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


@pytest.mark.parametrize("doc", ["README.md", "EXPERIMENTS.md", "BENCHMARKS.md"])
def test_the_files_a_document_names_exist(doc):
    """Every script, example and figure the document names (`scripts/…`, `examples/…`, `docs/….png`) is
    in the repository."""
    root = README.parent
    text = (root / doc).read_text()
    pattern = r"(?<![\w/.])((?:scripts|examples|benchmarks)/[\w./-]+\.(?:sh|py)|docs/[\w./-]+\.png)"
    named = set(re.findall(pattern, text))
    assert named, f"{doc} names no script or figure"
    assert sorted(p for p in named if not (root / p).is_file()) == []
