"""Figures read runs only: the release-0.1.0 folders plot, and names and clocks come from each
run's ``derived`` (what its optimizer declared), not from the optimizer's name in the config."""

import shutil
from dataclasses import replace

import pytest

from helpers import FIXTURES, RELEASES
from svag import sweepfolder as sf
from svag.analysis.plotting import _base_time_label, _optimizer_names, _step_time, plot_compare
from svag.runfolder import load_runs

V1 = FIXTURES / "release_0_1_0"


@pytest.mark.parametrize("release", RELEASES)
def test_plot_compare_of_a_folder_of_an_earlier_release(tmp_path, release):
    shutil.copytree(FIXTURES / release / "compare", tmp_path / "c")
    runs = load_runs(tmp_path / "c")
    path = plot_compare(runs, tmp_path / "c" / sf.COMPARE_PNG, metrics=("train_loss", "test_acc"), x="sde_time")
    assert path.stat().st_size > 10_000
    assert _optimizer_names(runs) == ("SGD", "SVAG", "η=0.1")


def test_names_and_clock_come_from_derived():
    runs = load_runs(V1 / "compare")
    named = [
        replace(r, derived={**r.derived, "optimizer_names": {"simulated": f"Opt{i}", "svag": f"SVAG-Opt{i}"}})
        for i, r in enumerate(runs)
    ]
    assert _optimizer_names(named)[:2] == ("Opt0", "SVAG-Opt1")  # the l = 1 run's name, an l > 1 run's SVAG
    base = replace(runs[0], derived={**runs[0].derived, "clock": {"power": 2, "l": 1.0, "lr_factor": 1.0}})
    assert "η0² per step (SGD clock)" in _base_time_label(base)


def test_step_time_text():
    assert _step_time({"power": 1, "l": 1.0, "lr_factor": 1.0}) == "η0"
    assert _step_time({"power": 1, "l": 4.0, "lr_factor": 10.0}) == "10·η0"
    assert _step_time({"power": 2, "l": 2.0, "lr_factor": 1.0}) == "η0²"
    assert _step_time({"power": 3, "l": 1.0, "lr_factor": 2.0}) == "(2·η0)^3"


def test_figure_format_names_the_suffixes_and_save_leaves_no_temporary(tmp_path):
    import matplotlib.pyplot as plt
    import pytest

    from svag.analysis.plotting import figure_format, save_figure

    assert figure_format("a/b.PDF") == "pdf" and figure_format("x.svg") == "svg"
    with pytest.raises(ValueError, match=r"^cannot save a figure to out: its name has no suffix .*\.png, \.pdf, \.svg"):
        figure_format("out")
    with pytest.raises(ValueError, match=r"its suffix '\.ktai6mto' is not a format matplotlib writes; end it in one"):
        figure_format("out.ktai6mto")
    with pytest.raises(ValueError, match=rf"{tmp_path}: it is a folder; give a file name in it, such as"):
        figure_format(tmp_path)
    assert save_figure(plt.figure(), tmp_path / "f.svg").read_text().startswith("<?xml")
    assert [p.name for p in tmp_path.iterdir()] == ["f.svg"]
