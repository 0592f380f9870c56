"""Rough edges of the comparison path (issue 27): `svag compare` draws the SGD-vs-SVAG figure; figures,
verdicts and `svag lsr` show and record only the model options that reached the model (a plug-in's factory
takes those its signature names); the demo prints a table that fits 80 columns."""

import json
import math

import pytest
from torch import nn

from helpers import FIXTURES
from svag import sweepfolder as sf
from svag.analysis import plotting
from svag.analysis.summary import compact_table, load_runs, model_options, model_text, summary_rows
from svag.cli import main
from svag.config import RunConfig
from svag.experiments.lsr_sweep import plugin_model_defaults
from svag.models.plugin import passed_options
from svag.runfolder import RunFolder

TINY_ARGS = ["--n-train", "256", "--n-test", "128", "--no-progress"]
OPTIONS = {"norm": "bn", "scale_invariant": True, "width": 1.0}


def bn_model(input_shape, num_classes):
    """A user's model with BatchNorm inside that takes none of norm, scale_invariant, width."""
    return nn.Sequential(nn.Flatten(), nn.Linear(40, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, num_classes))


def norm_model(input_shape, num_classes, norm="none"):
    """A user's model that takes ``norm`` (and nothing else of the config's model options)."""
    layers = [nn.Flatten(), nn.Linear(40, 16)] + ([nn.BatchNorm1d(16)] if norm == "bn" else [])
    return nn.Sequential(*layers, nn.ReLU(), nn.Linear(16, num_classes))


def any_model(input_shape, num_classes, **options):
    return bn_model(input_shape, num_classes)


def test_passed_options_are_those_the_factory_names():
    assert passed_options(f"{__name__}:bn_model", OPTIONS) == {}
    assert passed_options(f"{__name__}:norm_model", OPTIONS) == {"norm": "bn"}
    assert passed_options(f"{__name__}:any_model", OPTIONS) == OPTIONS
    assert passed_options("mlp", OPTIONS) == OPTIONS  # a built-in model takes them all


def test_model_options_of_a_run():
    """What a figure or a verdict shows: the runner's record; a folder from before it recorded one shows the
    config's options for a built-in model and none for a plug-in (whose factory may not have taken them)."""
    built_in = {"data": "mnist1d", "model": "mlp", **OPTIONS, "norm": "none"}
    plugin = {**built_in, "model": "pkg.mod:factory"}
    assert model_options(plugin, {"model_options": {}}) == {}
    assert model_options(plugin, {"model_options": {"norm": "gn"}}) == {"norm": "gn"}
    assert model_options(plugin, {}) == {}
    assert model_options(built_in, {}) == {"norm": "none", "scale_invariant": True, "width": 1.0}
    assert model_text(built_in, {}) == "mnist1d / mlp (norm=none)"
    assert model_text(plugin, {}) == "mnist1d / pkg.mod:factory"
    assert model_text(plugin, {"model_options": {"norm": "bn", "width": 2.0}}) == "mnist1d / pkg.mod:factory (norm=bn)"


@pytest.fixture(scope="module")
def cli_compare(tmp_path_factory):
    """`svag compare` of the BatchNorm plug-in, l = 1, 2, two seeds, one epoch, with --norm none (its default)."""
    out = tmp_path_factory.mktemp("cmp")
    argv = ["compare", "--out", str(out), "--model", f"{__name__}:bn_model", "--ls", "1,2", "--seeds", "2",
            "--epochs", "1", "--eval-every", "0.5", "--threads", "1", *TINY_ARGS]  # fmt: skip
    return out, argv


def test_svag_compare_draws_the_compare_figure(cli_compare, capsys):
    out, argv = cli_compare
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert (out / sf.COMPARE_PNG).is_file() and (out / sf.VERDICTS_PNG).is_file()
    assert str(out / sf.COMPARE_PNG) in printed


def _titles(monkeypatch) -> list[str]:
    titles = []

    def keep(fig, path, dpi=130):
        titles.append(fig._suptitle.get_text())
        plotting.plt.close(fig)
        return path

    monkeypatch.setattr(plotting, "save_figure", keep)
    return titles


def test_a_plugin_shows_only_what_reached_it(cli_compare, monkeypatch, tmp_path):
    """The BatchNorm plug-in takes no ``norm``: its runs record none, and neither the compare figure nor
    verdicts.md says ``norm=none``; a built-in model's figure still says its norm."""
    out, argv = cli_compare
    if not (out / sf.VERDICTS_MD).is_file():
        assert main(argv) == 0
    assert RunFolder(out / "l1_seed0").derived()["model_options"] == {}
    assert RunFolder(out / "l1_seed0").config()["norm"] == "none"
    titles = _titles(monkeypatch)
    plotting.plot_compare(load_runs(out), tmp_path / "c.png")
    plotting.plot_compare(load_runs(FIXTURES / "release_0_1_0" / "compare"), tmp_path / "old.png")
    assert "norm=" not in titles[0] and titles[0].startswith(f"mnist1d / {__name__}:bn_model, ")
    assert "(norm=" in titles[1]
    setting = (out / sf.VERDICTS_MD).read_text().splitlines()[2]
    assert setting.startswith(f"mnist1d / {__name__}:bn_model, ") and "norm=" not in setting
    report = json.loads((out / sf.VERDICTS_JSON).read_text())
    assert report["setting"]["model_options"] == {}


def test_lsr_defaults_for_a_plugin(capsys):
    """svag lsr's norm=bn and scale_invariant=True are the built-in CNN's: a plug-in gets (and its runs
    record) only those its factory takes; the command says which of its defaults apply."""
    base = RunConfig(model=f"{__name__}:bn_model", norm="bn", scale_invariant=True).validate()
    cfg, note = plugin_model_defaults(base)
    assert (cfg.norm, cfg.scale_invariant, cfg.width) == ("none", False, 1.0)
    assert "takes none of norm, width, scale_invariant" in note and "norm=bn, scale_invariant=True" in note
    cfg, note = plugin_model_defaults(RunConfig(model=f"{__name__}:norm_model", norm="bn", scale_invariant=True))
    assert (cfg.norm, cfg.scale_invariant) == ("bn", False) and "takes norm" in note
    built_in = RunConfig(model="cnn", norm="bn", scale_invariant=True)
    assert plugin_model_defaults(built_in) == (built_in, None)


def test_svag_lsr_records_what_reached_a_plugin(tmp_path, capsys):
    argv = ["lsr", "--out", str(tmp_path), "--model", f"{__name__}:bn_model", "--epochs", "1.5", "--milestones", "1",
            *TINY_ARGS]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    saved, derived = RunFolder(tmp_path / "B32").config(), RunFolder(tmp_path / "B32").derived()
    assert (saved["norm"], saved["scale_invariant"]) == ("none", False) and derived["model_options"] == {}
    assert "tuned for the built-in scale-invariant CNN" in printed


def test_the_demo_prints_a_table_of_80_columns(tmp_path, capsys):
    """`svag demo` prints the final value of each summary metric, mean ± SE over seeds, in ≤ 80 columns; the
    full table (mid-run, final, |Δ| to l_max: 14 columns) stays in summary.md."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "0.25", "--seeds", "2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| l | seeds |" not in printed  # the Markdown table is in the file only
    assert (out / sf.SUMMARY_MD).read_text().count("|", 0, 400) >= 15
    rows = summary_rows(load_runs(out), ("test_acc", "test_loss", "train_loss", "weight_norm_sq"))
    table = compact_table(rows, ("test_acc", "test_loss", "train_loss", "weight_norm_sq"))
    assert table in printed
    lines = table.splitlines()
    assert len(lines) == 2 + 4 and all(len(line) <= 80 for line in lines), table
    assert "mean ± SE" in lines[0]
    l1 = rows[0]
    se = l1["test_acc_final_std"] / math.sqrt(l1["seeds"])
    assert l1["test_acc_final_se"] == pytest.approx(se, rel=1e-12)


def test_compact_table_fits_80_columns_at_its_widest():
    """Gaussian-noise rows (the widest l label), a large ‖x‖², a small loss, one seed (no SE) and a NaN."""
    metrics = ("test_acc", "test_loss", "train_loss", "weight_norm_sq")
    rows = []
    for label, noise, n in ((1.0, "minibatch", 5), (1.0, "gaussian", 5), (16.0, "gaussian", 1)):
        row = {"l": label, "seeds": n, "gradient_noise": noise}
        for m, (mean, std) in zip(metrics, ((0.6812, 0.0089), (1.0e-4, 3.3e-6), (float("nan"), 0.1), (1234.56, 7.8))):
            row[f"{m}_final"], row[f"{m}_final_std"] = mean, std
            row[f"{m}_final_se"] = std / math.sqrt(n) if n > 1 else float("nan")
        rows.append(row)
    lines = compact_table(rows, metrics).splitlines()
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    assert lines[2].split()[:2] == ["1", "5"] and "0.6812 ± 0.0040" in lines[2] and "1234.6 ± 3.5" in lines[2]
    assert "0.0001 ± 1e-06" in lines[2]  # 2 significant figures of the SE would need 7 decimals: 3 and 1 figures
    assert lines[3].startswith("1 (NGD)") and lines[4].startswith("16 (EM)")
    assert "±" not in lines[4] and "1235" in lines[4]  # one seed: the mean alone
