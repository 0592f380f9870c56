"""The main job, `svag demo`, end to end: runs, table, figure and verdict lines. At a small size in the
default suite (the outcomes that setting gives, each consistent with its interval); at its full size
with the `slow` marker (the verdict lines the README shows, at the precision shown)."""

import re

import pytest

from helpers import ROOT
from svag import sweepfolder as sf
from svag.cli import main
from svag.commands.demo import DEMO, LS
from svag.runfolder import RunFolder

LINE = re.compile(r"^(\w+): (follows its SDE|departs from its SDE|inconclusive) — gap (\S+) \[(\S+), (\S+)\] "
                  r"\(δ = (\S+), (\d+) seeds")  # fmt: skip


def _number(text: str) -> float:
    return float(text.replace("−", "-"))


def _verdict_lines(printed: str) -> list[str]:
    return [x.strip() for x in printed.splitlines() if LINE.match(x.strip())]


def _check_consistent(line: str) -> str:
    """The outcome a line names agrees with the numbers it prints (README, "The verdict"): departs when its
    95% interval excludes 0 and the gap exceeds δ; follows with the gap inside ±δ (its 90% interval, not
    printed, lies inside); inconclusive otherwise, so then the 95% interval is not inside ±δ."""
    metric, outcome, gap, lo, hi, delta, _ = LINE.match(line).groups()
    gap, lo, hi, delta = (_number(v) for v in (gap, lo, hi, delta))
    departs = (lo > 0 or hi < 0) and abs(gap) > delta
    assert departs == (outcome == "departs from its SDE"), line
    if outcome == "follows its SDE":
        assert abs(gap) <= delta, line
    if outcome == "inconclusive":
        assert not (-delta <= lo and hi <= delta), line
    return metric


def test_demo_at_a_small_size_gives_its_verdicts(tmp_path, capsys):
    """`svag demo --epochs 0.5 --seeds 2` (about 15 s): MNIST-1D MLP, l = 1, 2, 4, 8. The losses and ‖x‖²
    follow their SDE already; accuracy and ‖∇L‖² stay inconclusive with two seeds. Each outcome is far from
    its boundary (the intervals sit well inside or across ±δ), so no CPU's rounding moves it."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "0.5", "--seeds", "2", "--no-progress"]) == 0
    lines = _verdict_lines(capsys.readouterr().out)
    outcomes = {LINE.match(x).group(1): LINE.match(x).group(2) for x in lines}
    assert outcomes == {
        "test_loss": "follows its SDE",
        "test_acc": "inconclusive",
        "train_loss": "follows its SDE",
        "train_acc": "inconclusive",
        "weight_norm_sq": "follows its SDE",
        "grad_norm_sq": "inconclusive",
    }
    assert [_check_consistent(x) for x in lines] == list(outcomes)
    for name in (sf.COMPARE_PNG, sf.SUMMARY_MD, sf.VERDICTS_MD, sf.VERDICTS_JSON, sf.VERDICTS_PNG):
        assert (out / name).is_file(), name
    runs = [RunFolder(out / f"l{l:g}_seed{s}").load() for l in LS for s in (0, 1)]
    assert all(r.status.status == "completed" for r in runs)
    assert {r.config["batch_size"] for r in runs} == {DEMO.batch_size}


def _same_verdict(printed: str, shown: str) -> bool:
    """Two verdict lines agree across CPUs: the same metric, outcome, margin and seeds; the gap and its
    interval within δ/2 (accuracy moves by whole test signals when another CPU's float32 kernels round
    otherwise: the demo's 0.004 test-accuracy gap prints 0.003 on another machine, its interval moves
    0.003); "about N seeds" within a factor 1.5."""
    a, b = LINE.match(printed).groups(), LINE.match(shown).groups()
    delta = _number(b[5])
    if a[:2] != b[:2] or a[5:] != b[5:]:
        return False
    if any(abs(_number(x) - _number(y)) > delta / 2 for x, y in zip(a[2:5], b[2:5])):
        return False
    about = [re.search(r"about (\d+) seeds", line) for line in (printed, shown)]
    if bool(about[0]) != bool(about[1]):
        return False
    return not about[0] or 1 / 1.5 <= int(about[0].group(1)) / int(about[1].group(1)) <= 1.5


@pytest.mark.slow
def test_demo_prints_the_verdict_lines_the_readme_shows(tmp_path, capsys):
    """The whole demo (about a minute on one thread): the six verdict lines of the README's "What the demo
    shows", outcomes word for word and every number as :func:`_same_verdict` reads it."""
    assert main(["demo", "--out", str(tmp_path / "demo"), "--no-progress"]) == 0
    printed = _verdict_lines(capsys.readouterr().out)
    readme = (ROOT / "README.md").read_text()
    shown = re.search(r"paired seeds\):\n\n```text\n(.*?)```", readme, flags=re.S).group(1).strip().splitlines()
    assert len(printed) == len(shown) == 6
    assert all(_same_verdict(a, b) for a, b in zip(printed, shown)), "\n".join(printed)
    assert [_check_consistent(x) for x in printed][:1] == ["test_loss"]


def test_same_verdict_reads_the_numbers_against_the_margin():
    shown = "test_acc: inconclusive — gap −0.004 [−0.012, 0.005] (δ = 0.010, 5 seeds; about 8 seeds per l would decide)"
    other_cpu = (
        "test_acc: inconclusive — gap −0.003 [−0.013, 0.008] (δ = 0.010, 5 seeds; about 10 seeds per l would decide)"
    )
    assert _same_verdict(other_cpu, shown)
    assert not _same_verdict(other_cpu.replace("−0.003", "+0.003"), shown)  # 0.007 apart: more than δ/2
    assert not _same_verdict(other_cpu.replace("about 10", "about 30"), shown)
    assert not _same_verdict(other_cpu.replace("inconclusive", "follows its SDE"), shown)
