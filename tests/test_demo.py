"""The main job, `svag demo`, end to end at a small size: runs, table, figure and verdict lines."""

from svag.cli import main
from svag.commands.demo import DEMO, LS
from svag.runfolder import RunFolder


def test_demo_runs_and_prints_its_verdict_lines(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "0.5", "--seeds", "2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for metric in ("test_loss", "test_acc", "weight_norm_sq"):  # one line per metric, each with an outcome
        line = next(x for x in printed.splitlines() if x.strip().startswith(f"{metric}:"))
        assert any(word in line for word in ("follows its SDE", "departs from its SDE", "inconclusive")), line
    for name in ("compare.png", "summary.md", "verdicts.md", "verdicts.json", "verdicts.png"):
        assert (out / name).is_file(), name
    runs = [RunFolder(out / f"l{l:g}_seed{s}").load() for l in LS for s in (0, 1)]
    assert all(r.status.status == "completed" for r in runs)
    assert {r.config["batch_size"] for r in runs} == {DEMO.batch_size}
