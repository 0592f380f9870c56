"""The opening table of EXPERIMENTS.md: every experiment family of P1 at CPU scale, with its verdict.

    python scripts/experiments_families_table.py [--runs runs/exp] [--write EXPERIMENTS.md]
                                                 [--figures docs/experiments]

Reads, for each row of :data:`ROWS`, the verdict that `svag compare` wrote (RUNS/NAME/verdicts.json:
the gap SGD − SDE at the end of the run for test loss, test accuracy and ‖x‖², its 95% interval and the
outcome follows / departs / inconclusive) or that `svag lsr` wrote (RUNS/NAME/lsr.json: the predicted
B* and the first batch whose test error rose ≥ 20%), and the wall and CPU time GNU time measured
(RUNS/NAME.time, written by scripts/experiments_families.sh). A row whose results are missing is
printed as "not run yet" with its command: the table never shows a number that was not measured.

--write replaces the text between the two marker lines (:data:`BEGIN`, :data:`END`) of the file;
--figures copies each row's verdicts.png (lsr.png for the LSR row) there as NAME.png.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from svag.analysis.report import read_verdicts
from svag.records import atomic_path, read_json, write_text
from svag.runfolder import RunFolder

BEGIN = "<!-- families-table:begin (scripts/experiments_families_table.py --write EXPERIMENTS.md) -->"
END = "<!-- families-table:end -->"
SCRIPT = "scripts/experiments_families.sh"
METRICS = (("test_loss", "test loss", 3), ("test_acc", "test acc", 3), ("weight_norm_sq", "‖x‖²", 1))
SHORT = {"follows": "**follows**", "departs": "**departs**", "inconclusive": "inconclusive"}

# Sections of EXPERIMENTS.md the rows link to (GitHub's heading anchors).
S1 = "#1-svag-tracks-sgd-at-cpu-scale-p1s-claim"
S5 = "#5-p1s-ngd-at-cpu-scale-sgd-vs-gaussian-noise-vs-svag-with-the-verdict"
S8 = {
    "a": "#8a-an-unnormalized-network",
    "b": "#8b-cosine-and-triangle-schedules",
    "c": "#8c-the-lsr-test-on-a-net-that-is-not-scale-invariant",
    "d": "#8d-a-wider-net",
    "e": "#8e-vgg-with-bn-and-with-gn",
    "f": "#8f-the-settings-of-1-and-5-with-their-verdicts",
}
SI = "scale-invariant"

# One row per experiment: run folder, P1's experiment as P1 named it, our CPU-scale setting, section.
ROWS: tuple[dict, ...] = (
    dict(name="fam6-mnist1d-cnn-bn", p1="PreResNet-32 BN, η 0.8, B 128 (main figure)",
         setting=f"{SI} CNN w2, BN, η 0.4, B 32, 2 ep", section=S1),
    dict(name="fam6-mnist1d-cnn-gn", p1="PreResNet-32 GN (8 groups)",
         setting=f"{SI} CNN w2, GN, η 0.4, B 32, 2 ep", section=S1),
    dict(name="fam6-mnist1d-cnn-bn-10ep", p1="(the same, §1's full length)",
         setting=f"{SI} CNN w2, BN, η 0.4, B 32, 10 ep", section=S1),
    dict(name="fam6-mnist1d-cnn-gn-10ep", p1="(the same, §1's full length)",
         setting=f"{SI} CNN w2, GN, η 0.4, B 32, 10 ep", section=S1),
    dict(name="fam6-mnist1d-cnn-bn-lr3.2", p1="large LR (Hellwig's reproduction: η 0.96, B 1024)",
         setting=f"{SI} CNN w2, BN, η 3.2, B 32, 10 ep", section="#where-svag-departs-from-sgd"),
    dict(name="fam6-mnist1d-cnn-bn-B512-lr1.6", p1="large batch at large LR (the LSR's image, κ = 16)",
         setting=f"{SI} CNN w2, BN, η 1.6, B 512, 30 ep", section="#where-svag-departs-from-sgd"),
    dict(name="fam6-fashion-cnn-bn", p1="PreResNet-32 BN (§1 on Fashion-MNIST)",
         setting=f"Fashion-MNIST 5000/2000: {SI} CNN w1, BN, η 0.4, B 64, 2 ep", section=S1),
    dict(name="fam6-fashion-cnn-gn", p1="PreResNet-32 GN (§1 on Fashion-MNIST)",
         setting=f"Fashion-MNIST 5000/2000: {SI} CNN w1, GN, η 0.4, B 64, 2 ep", section=S1),
    dict(name="fam1-mnist1d-cnn-none", p1="VGG-16 without normalization, LR 0.01",
         setting="CNN w1, no norm, affine, η 0.1, B 64, 4 ep", section=S8["a"]),
    dict(name="fam1-mnist1d-cnn-none-replacement", p1="(the same, batches with replacement)",
         setting="CNN w1, no norm, affine, η 0.1, B 64, 4 ep, with replacement", section=S8["a"]),
    dict(name="fam2-mnist1d-cnn-bn-triangle2-steps", p1="triangle LR schedule (two cycles)",
         setting=f"{SI} CNN w1, BN, two-cycle triangle to η 0.4 over the steps, B 64, 3 ep", section=S8["b"]),
    dict(name="fam2-mnist1d-cnn-bn-cosine-steps", p1="cosine LR schedule",
         setting=f"{SI} CNN w1, BN, cosine from η 0.4 over the steps, B 64, 3 ep", section=S8["b"]),
    dict(name="fam2-mnist1d-cnn-bn-triangle", p1="(a triangle shaped on continuous time, one cycle)",
         setting=f"{SI} CNN w1, BN, triangle to η 0.4 (one cycle) on time, B 64, 2 ep", section=S8["b"]),
    dict(name="fam3-lsr-mnist1d-resnet32", p1="ResNet-32 (not scale-invariant): LSR test",
         setting="ResNet-32 w¼, BN affine, η0 0.1, B0 32, λ 5e-3, 12 ep (×0.1 at 10), B to 1024, 1 seed",
         section=S8["c"], kind="lsr"),
    dict(name="fam4-mnist1d-preresnet32-bn-w4", p1="PreResNet-32 4× wide, BN",
         setting=f"{SI} PreResNet-32 w4 (64/128/256 ch), BN, η 0.4, B 64, 3 ep", section=S8["d"]),
    dict(name="fam4-mnist1d-preresnet32-gn-w4", p1="PreResNet-32 4× wide, GN",
         setting=f"{SI} PreResNet-32 w4, GN, η 0.4, B 64, 3 ep", section=S8["d"]),
    dict(name="fam4-mnist1d-preresnet32-bn-w1", p1="(PreResNet-32 BN at its base width)",
         setting=f"{SI} PreResNet-32 w1 (16/32/64 ch), BN, η 0.4, B 64, 3 ep", section=S8["d"]),
    dict(name="fam4-mnist1d-preresnet32-gn-w1", p1="(PreResNet-32 GN at its base width)",
         setting=f"{SI} PreResNet-32 w1, GN, η 0.4, B 64, 3 ep", section=S8["d"]),
    dict(name="fam4-mnist1d-preresnet32-bn-w1-lr0.1", p1="(PreResNet-32 BN, base width, 4× smaller LR)",
         setting=f"{SI} PreResNet-32 w1, BN, η 0.1, B 64, 3 ep", section=S8["d"]),
    dict(name="fam4-mnist1d-preresnet32-gn-w1-lr0.1", p1="(PreResNet-32 GN, base width, 4× smaller LR)",
         setting=f"{SI} PreResNet-32 w1, GN, η 0.1, B 64, 3 ep", section=S8["d"]),
    dict(name="fam4-mnist1d-cnn-bn-w0.5", p1="(the same 4× step on the CNN: w½, BN)",
         setting=f"{SI} CNN w½ (16/32 ch), BN, η 0.4, B 64, 2 ep", section=S8["d"]),
    dict(name="fam4-mnist1d-cnn-bn-w2", p1="(… and w2, BN)",
         setting=f"{SI} CNN w2 (64/128 ch), BN, η 0.4, B 64, 2 ep", section=S8["d"]),
    dict(name="fam4-mnist1d-cnn-gn-w0.5", p1="(… w½, GN)",
         setting=f"{SI} CNN w½, GN, η 0.4, B 64, 2 ep", section=S8["d"]),
    dict(name="fam4-mnist1d-cnn-gn-w2", p1="(… w2, GN)",
         setting=f"{SI} CNN w2, GN, η 0.4, B 64, 2 ep", section=S8["d"]),
    dict(name="fam5-mnist1d-vgg16-bn", p1="VGG-16 BN",
         setting=f"{SI} VGG-16 w1/16, BN, η 0.4, B 64, 2 ep", section=S8["e"]),
    dict(name="fam5-mnist1d-vgg16-bn-lr0.1", p1="(VGG-16 BN at a 4× smaller LR)",
         setting=f"{SI} VGG-16 w1/16, BN, η 0.1, B 64, 2 ep", section=S8["e"]),
    dict(name="fam5-mnist1d-vgg16-bn-6ep", p1="(VGG-16 BN, 3× longer, l to 8)",
         setting=f"{SI} VGG-16 w1/16, BN, η 0.4, B 64, 6 ep", section=S8["e"]),
    dict(name="fam5-mnist1d-vgg16-gn", p1="VGG-16 GN",
         setting=f"{SI} VGG-16 w1/16, GN, η 0.4, B 64, 2 ep", section=S8["e"]),
    dict(name="fam6-ngd-mnist1d-mlp", p1="NGD: SGD vs Gaussian noise of the same covariance",
         setting="MLP, no norm, n 1000, η 0.1, B 32, 30 ep, 12 seeds, l to 8, + NGD", section=S5),
    dict(name="fam6-ngd-mnist1d-mlp-w4-B8", p1="NGD on a wider net at a smaller batch",
         setting="MLP w4, no norm, n 1000, η 0.1, B 8, 10 ep, 8 seeds, l to 4, + NGD", section=S8["f"]),
)  # fmt: skip


def _num(x: float, digits: int) -> str:
    return f"{x:+.{digits}f}".replace("-", "−")


def metric_cell(metric: dict, index: int, digits: int) -> str:
    """``verdict gap [low, high]`` of one metric's row ``index`` of verdicts.json (95% interval)."""
    row = metric["rows"][index]
    outcome = row.get("outcome")
    if outcome is None or not math.isfinite(row.get("gap", math.nan)):
        return "no verdict"
    low, high = row["gap_interval"]
    cell = f"{SHORT.get(outcome, outcome)} {_num(row['gap'], digits)} [{_num(low, digits)}, {_num(high, digits)}]"
    if outcome == "inconclusive" and row.get("seeds_needed"):
        cell += f" (~{row['seeds_needed']} seeds)"
    return cell


def read_time(path: Path) -> dict[str, float] | None:
    """GNU time's ``wall_s=… user_s=… sys_s=…`` lines summed (one per stretch of a resumed row), with
    ``stretches``, their number."""
    if not path.is_file():
        return None
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("wall_s=")]
    if not lines:
        return None
    total = {"wall_s": 0.0, "user_s": 0.0, "sys_s": 0.0, "stretches": float(len(lines))}
    for line in lines:
        for key, value in (item.split("=") for item in line.split()):
            total[key] += float(value)
    return total


def training_time(folder: Path) -> float:
    """Seconds the row's runs trained, from their own ``status.json`` (``wall_time`` survives a resume): the
    sum over processes, where the seeds one process trained together report the same ``wall_time``."""
    seen: set[tuple[float, float]] = set()
    for status in sorted(folder.glob("*/status.json")):
        data = read_json(status)
        if isinstance(data.get("wall_time"), (int, float)):
            seen.add((float(read_json(status.parent / "config.json")["config"]["l"]), float(data["wall_time"])))
    return sum(wall for _, wall in seen)


def _counted(t: dict[str, float] | None, trained: float) -> tuple[float, float, bool]:
    """Wall and CPU seconds a row counts, and whether they are a lower bound: GNU time's sums, or the runs'
    own training time where that is longer (a stretch ran before the script kept every stretch's time)."""
    cpu = 0.0 if t is None else t["user_s"] + t["sys_s"]
    if t is None or trained > t["wall_s"]:
        return trained, cpu, True
    return t["wall_s"], cpu, False


def time_cell(t: dict[str, float] | None, trained: float = 0.0) -> str:
    """Wall time (CPU time) of the row, summed over its stretches. Where the runs' own training time is longer
    (a stretch ran before the script kept every stretch's time), that time is shown instead, marked "≥"."""
    if t is None and not trained:
        return "—"
    wall, cpu, lower = _counted(t, trained)
    if lower:
        return f"≥ {wall / 60:.1f} min (training; resumed)"
    cell = f"{wall / 60:.1f} min (CPU {cpu / 60:.1f})"
    return cell + (f", {t['stretches']:.0f} stretches" if t["stretches"] > 1 else "")


def lsr_cells(result: dict) -> list[str]:
    """The LSR row: the prediction B* ± SE, the first batch whose test error rose ≥ 20%, and P1's test
    of the necessary condition (EXPERIMENTS §2): it *held* when every batch with G/N > τ had its error
    rise (the linear scaling rule did not survive past the condition), *failed* at a batch with G/N > τ
    whose error did not rise. Batches whose error rose with G/N ≤ τ are listed: the condition is
    necessary, not sufficient, and they say how far from sufficient."""
    rows = result.get("verdicts", [])
    b_star = result.get("B_star", math.nan)
    pred = f"B\\* = {b_star:.0f} ± {result.get('B_star_se', math.nan):.0f}" if math.isfinite(b_star) else "no B\\*"
    if not rows:
        return [f"predicted {pred}", "no sweep", "—"]
    rise = result.get("error_rise_batch")
    rise_text = str(rise) if rise is not None else f"none up to {max(r['batch_size'] for r in rows)}"
    survived = [str(r["batch_size"]) for r in rows if not r["condition_holds"] and not r["error_rose"]]
    early = [str(r["batch_size"]) for r in rows if r["condition_holds"] and r["error_rose"]]
    verdict = "condition **held**" if not survived else "condition **failed** at B = " + ", ".join(survived)
    if early:
        verdict += "; not sufficient: error rose at B = " + ", ".join(early) + " with G/N ≤ τ"
    return [f"predicted {pred}", f"test error ≥ 20% up from B = {rise_text}", verdict]


MODEL_NAMES = {"cnn": "CNN", "mlp": "MLP", "vgg16": "VGG-16", "vgg19": "VGG-19", "resnet32": "ResNet-32",
               "preresnet32": "PreResNet-32"}  # fmt: skip


def describe(config: dict, seeds: int) -> str:
    """The CPU-scale setting of a comparison, from its SGD run's config (so the table cannot drift from
    what ran): model, width, normalization, schedule, η, B, epochs, training samples, seeds."""
    norm = {"bn": "BN", "gn": "GN"}.get(config["norm"], "no norm")
    text = f"{MODEL_NAMES.get(config['model'], config['model'])} w{config['width']:g}, {norm}"
    text = ("scale-invariant " if config["scale_invariant"] else "") + text
    if config["data"] != "mnist1d":
        text = f"{config['data']}: {text}"
    if config["schedule"] != "constant":
        cycles = config.get("cycles", 1)
        text += f", {config['schedule']}" + (f" ×{cycles} cycles" if cycles > 1 else "")
        if config["schedule"] in ("cosine", "triangle"):
            text += " on steps" if config.get("schedule_unit") == "step" else " on time"
    text += f", η {config['lr']:g}, B {config['batch_size']}, {config['epochs']:g} ep"
    if config.get("n_train"):
        text += f", n {config['n_train']}"
    if config.get("sampling") == "replacement":
        text += ", with replacement"
    return text + f", {seeds} seeds"


def _result(runs: Path, spec: dict) -> Path:
    """The file a row's command writes last: its ``lsr.json`` or ``verdicts.json``."""
    return runs / spec["name"] / ("lsr.json" if spec.get("kind") == "lsr" else "verdicts.json")


Timing = tuple[dict[str, float] | None, float]  # (read_time(NAME.time), training_time(NAME))


def table_row(spec: dict, runs: Path, timing: Timing, figures: Path | None = None) -> str:
    """One row of the table."""
    folder, path = runs / spec["name"], _result(runs, spec)
    command = f"`bash {SCRIPT} {runs} {spec['name']}`"
    link = f"[§]({spec['section']})"
    if figures is not None and (figures / f"{spec['name']}.png").is_file():
        link += f" [figure]({(figures / spec['name']).as_posix()}.png)"
    if not path.is_file():
        return f"| {spec['p1']} | {spec['setting']} | not run yet |  |  | — | {link} {command} |"
    if spec.get("kind") == "lsr":
        cells = lsr_cells(read_json(path))
    else:
        data = read_verdicts(folder)
        spec = {**spec, "setting": describe(RunFolder(folder / "l1_seed0").load().config, len(data["seeds"]))}
        spec["setting"] += ", l = " + ", ".join(f"{x:g}" for x in data["ls"])
        if data.get("ngd_seeds"):
            spec["setting"] += " + NGD"
        end = data["points"]["end"]
        cells = [metric_cell(data["metrics"][key], end, digits) for key, _, digits in METRICS]
    cells.append(time_cell(*timing))
    return f"| {spec['p1']} | {spec['setting']} | " + " | ".join(cells) + f" | {link} {command} |"


def table(runs: Path, rows: tuple[dict, ...] = ROWS, figures: Path | None = None) -> str:
    """The Markdown table of ``rows`` from the results under ``runs``, then the sum of its time cells; figure
    links to ``figures``/NAME.png where that file exists."""
    head = ["P1's experiment", "CPU-scale setting (MNIST-1D)"] + [label for _, label, _ in METRICS]
    head += ["wall time (CPU)", "section, command"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    timings = [(read_time(runs / f"{spec['name']}.time"), training_time(runs / spec["name"])) for spec in rows]
    lines += [table_row(spec, runs, timing, figures) for spec, timing in zip(rows, timings)]
    done = [timing for spec, timing in zip(rows, timings) if _result(runs, spec).is_file()]
    return "\n".join(lines) + "\n\n" + total_line(done, len(rows))


def total_line(timings: list[Timing], rows: int) -> str:
    """The sum of the time cells of the rows with results (``timings``, of ``rows`` in all)."""
    counted = [_counted(t, trained) for t, trained in timings]
    wall, cpu = sum(c[0] for c in counted), sum(c[1] for c in counted)
    at_least = "at least " if any(c[2] for c in counted) else ""
    return (
        f"All {len(timings)} of {rows} rows: {at_least}{wall / 3600:.2f} h of wall time and {at_least}"
        f"{cpu / 3600:.2f} h of CPU (the sum of the time cells)."
    )


def replace_block(text: str, block: str) -> str:
    """``text`` with the lines between :data:`BEGIN` and :data:`END` replaced by ``block``."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"expected one {BEGIN!r} line followed by one {END!r} line")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def copy_figures(runs: Path, dest: Path, rows: tuple[dict, ...] = ROWS) -> list[Path]:
    """Copy the verdict figure (the LSR figure) of each row to ``dest``/NAME.png as a 64-colour palette
    PNG: the figures are line plots on white, which keep their look at a third of the size (~100 kB
    against ~300 kB; Pillow comes with matplotlib)."""
    from PIL import Image

    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for spec in rows:
        src = runs / spec["name"] / ("lsr.png" if spec.get("kind") == "lsr" else "verdicts.png")
        if src.is_file():
            target = dest / f"{spec['name']}.png"
            with Image.open(src) as image, atomic_path(target) as tmp:
                image.convert("RGB").quantize(colors=64).save(tmp, format="PNG", optimize=True)
            copied.append(target)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs/exp", help="folder holding the rows' run folders")
    parser.add_argument("--write", default=None, help="file whose marked block gets the table")
    parser.add_argument("--figures", default=None, help="folder to copy each row's verdict figure into")
    args = parser.parse_args(argv)
    runs = Path(args.runs)
    if args.figures:
        for p in copy_figures(runs, Path(args.figures)):
            print(f"copied {p}", file=sys.stderr)
    block = table(runs, figures=Path(args.figures) if args.figures else None)
    if args.write:
        path = Path(args.write)
        try:
            write_text(path, replace_block(path.read_text(), block))
        except (OSError, ValueError) as err:
            print(f"error: {args.write}: {err}", file=sys.stderr)
            return 2
    else:
        print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
