"""The files of a sweep folder: the one owner of their names (as :mod:`svag.runfolder` is of a run folder's).

A sweep (``svag compare``, ``svag lsr``, ``svag scale``, the demo) writes one run folder per run and,
beside them, its tables, figures and JSON. Every module that writes or reads one of these, and every
test, takes the name from here.

=========================  ============================================================================
file                       what it holds (writer)
=========================  ============================================================================
``summary.md/.csv``        per ``l``, mid-run and final metrics (:mod:`svag.experiments.compare`)
``verdicts.md/.csv/.json`` the verdict per metric and time (:mod:`svag.analysis.report`; ``svag lsr``
                           writes its own verdict table under the same names)
``verdicts.png``           the verdict figure (:func:`svag.analysis.plotting.plot_verdicts`)
``compare.png``            SGD-vs-SVAG curves (:func:`svag.analysis.plotting.plot_compare`)
``lsr.json``, ``lsr.png``  the LSR test's result and P1's figure (:mod:`svag.experiments.lsr_sweep`)
``scale.json``             the rule and each ``B``'s hyperparameters (:mod:`svag.experiments.scale`)
``scale.png``              a scaling sweep's curves
``scale_summary.md/.csv``  a scaling sweep's final values per ``B``
=========================  ============================================================================

Run folders: ``l{l}_seed{s}`` (comparison), ``ngd_seed{s}`` (its NGD runs), ``B{B}_seed{s}`` (scaling
sweep), ``B{B}`` / ``B{B}_seed{s}`` (the LSR sweep: its first seed keeps the one-seed name).
"""

from __future__ import annotations

__all__ = [
    "COMPARE_PNG",
    "LSR_JSON",
    "LSR_PNG",
    "SCALE_JSON",
    "SCALE_PNG",
    "SCALE_SUMMARY_CSV",
    "SCALE_SUMMARY_MD",
    "SUMMARY_CSV",
    "SUMMARY_MD",
    "VERDICTS_CSV",
    "VERDICTS_JSON",
    "VERDICTS_MD",
    "VERDICTS_PNG",
    "compare_run",
    "lsr_run",
    "ngd_run",
    "scale_run",
]

SUMMARY_MD, SUMMARY_CSV = "summary.md", "summary.csv"
VERDICTS_MD, VERDICTS_CSV, VERDICTS_JSON, VERDICTS_PNG = "verdicts.md", "verdicts.csv", "verdicts.json", "verdicts.png"
COMPARE_PNG = "compare.png"
LSR_JSON, LSR_PNG = "lsr.json", "lsr.png"
SCALE_JSON, SCALE_PNG = "scale.json", "scale.png"
SCALE_SUMMARY_MD, SCALE_SUMMARY_CSV = "scale_summary.md", "scale_summary.csv"


def compare_run(l: float, seed: int) -> str:
    """The run folder of ``(l, seed)`` in a comparison: ``l{l}_seed{s}``."""
    return f"l{l:g}_seed{seed}"


def ngd_run(seed: int) -> str:
    """The folder of a comparison's NGD run (``gradient_noise="gaussian"`` at ``l = 1``) of ``seed``."""
    return f"ngd_seed{seed}"


def scale_run(batch_size: int, seed: int) -> str:
    """The run folder of ``(B, seed)`` in a scaling sweep: ``B{B}_seed{s}``."""
    return f"B{batch_size}_seed{seed}"


def lsr_run(batch_size: int, seed: int, first_seed: int) -> str:
    """``B{B}`` for the first seed of the LSR sweep (the folder of a one-seed sweep), ``B{B}_seed{s}``
    for the others."""
    return f"B{batch_size}" if seed == first_seed else f"B{batch_size}_seed{seed}"
