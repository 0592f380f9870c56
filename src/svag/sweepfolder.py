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
``sequential.json/.md``    ``svag compare --until-decided``: the design, each look, each metric's decision
                           (:mod:`svag.experiments.sequential`)
``compare.png``            SGD-vs-SVAG curves (:func:`svag.analysis.plotting.plot_compare`)
``lsr.json``, ``lsr.png``  the LSR test's result and P1's figure (:mod:`svag.experiments.lsr_sweep`)
``scale.json``             the rule and each ``B``'s hyperparameters (:mod:`svag.experiments.scale`)
``scale.png``              a scaling sweep's curves
``scale_summary.md/.csv``  a scaling sweep's final values per ``B``
``cbs.json``, ``cbs.md/.csv`` the critical batch size per checkpoint, its verdicts and the G/N predictions
                           (:mod:`svag.experiments.cbs`)
``cbs.png``                the CBS over training with ``B_simple`` and ``B*`` (:func:`~svag.analysis.plotting.plot_cbs`)
=========================  ============================================================================

Run folders: ``l{l}_seed{s}`` (comparison), ``ngd_seed{s}`` (its NGD runs), ``B{B}_seed{s}`` (scaling
sweep), ``B{B}`` / ``B{B}_seed{s}`` (the LSR sweep: its first seed keeps the one-seed name), ``base{p}_seed{s}``
and ``ckpt{p}_B{B}_seed{s}`` (``svag cbs``: the baseline's segment ending at checkpoint ``p``, a branch from it).

Each file above (:data:`FILES`) is written atomically (:func:`svag.records.atomic_path`); a kill in the
middle of a write leaves a hidden ``.NAME.XXXXXXXX.tmp``, which :func:`remove_temporaries` deletes when
the sweep resumes.

**One driver.** The sweep's driver holds the folder's lock (:func:`hold`, the run folder's
``.lock`` and its rules: :func:`svag.runfolder.hold_writer`) from its first write to its last, so a
second driver on the same folder (two ``svag compare --resume``) is refused in one line naming the
first. Each run's own folder is locked by the process that trains it. ``svag plot`` takes no lock:
it may draw a sweep that is still running.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from svag.records import temporary_of
from svag.runfolder import hold_writer

__all__ = [
    "CBS_CSV",
    "CBS_JSON",
    "CBS_MD",
    "CBS_PNG",
    "COMPARE_PNG",
    "FILES",
    "LSR_JSON",
    "LSR_PNG",
    "RULES_CSV",
    "RULES_JSON",
    "RULES_MD",
    "RULES_PNG",
    "SCALE_JSON",
    "SCALE_PNG",
    "SCALE_SUMMARY_CSV",
    "SCALE_SUMMARY_MD",
    "SEQUENTIAL_JSON",
    "SEQUENTIAL_MD",
    "SUMMARY_CSV",
    "SUMMARY_MD",
    "VERDICTS_CSV",
    "VERDICTS_JSON",
    "VERDICTS_MD",
    "VERDICTS_PNG",
    "cbs_base_run",
    "cbs_branch_run",
    "compare_run",
    "hold",
    "lsr_run",
    "ngd_run",
    "remove_temporaries",
    "rule_folder",
    "scale_run",
]

SUMMARY_MD, SUMMARY_CSV = "summary.md", "summary.csv"
VERDICTS_MD, VERDICTS_CSV, VERDICTS_JSON, VERDICTS_PNG = "verdicts.md", "verdicts.csv", "verdicts.json", "verdicts.png"
COMPARE_PNG = "compare.png"
LSR_JSON, LSR_PNG = "lsr.json", "lsr.png"
SCALE_JSON, SCALE_PNG = "scale.json", "scale.png"
SCALE_SUMMARY_MD, SCALE_SUMMARY_CSV = "scale_summary.md", "scale_summary.csv"
RULES_JSON, RULES_MD, RULES_CSV, RULES_PNG = "rules.json", "rules.md", "rules.csv", "rules.png"
CBS_JSON, CBS_MD, CBS_CSV, CBS_PNG = "cbs.json", "cbs.md", "cbs.csv", "cbs.png"
SEQUENTIAL_JSON, SEQUENTIAL_MD = "sequential.json", "sequential.md"
FILES = (SUMMARY_MD, SUMMARY_CSV, VERDICTS_MD, VERDICTS_CSV, VERDICTS_JSON, VERDICTS_PNG, COMPARE_PNG, LSR_JSON,
         LSR_PNG, SCALE_JSON, SCALE_PNG, SCALE_SUMMARY_MD, SCALE_SUMMARY_CSV, RULES_JSON, RULES_MD, RULES_CSV,
         RULES_PNG, CBS_JSON, CBS_MD, CBS_CSV, CBS_PNG, SEQUENTIAL_JSON, SEQUENTIAL_MD)  # fmt: skip


def rule_folder(rule: str) -> str:
    """The sub-folder of one rule's sweep when ``svag scale --rule A,B,...`` compares several: ``{rule}``; the base
    runs live in the first rule's folder and the others name them as ``../{first}/B{B0}_seed{s}``."""
    return rule


def compare_run(l: float, seed: int) -> str:
    """The run folder of ``(l, seed)`` in a comparison: ``l{l}_seed{s}``."""
    return f"l{l:g}_seed{seed}"


def ngd_run(seed: int) -> str:
    """The folder of a comparison's NGD run (``gradient_noise="gaussian"`` at ``l = 1``) of ``seed``."""
    return f"ngd_seed{seed}"


def scale_run(batch_size: int, seed: int) -> str:
    """The run folder of ``(B, seed)`` in a scaling sweep: ``B{B}_seed{s}``."""
    return f"B{batch_size}_seed{seed}"


def cbs_base_run(point: int, seed: int) -> str:
    """``svag cbs``: the baseline's segment of ``seed`` that ends at checkpoint ``point`` (1, 2, ...):
    ``base{p}_seed{s}``; its ``checkpoint.pt`` is where the branches of that point start."""
    return f"base{point}_seed{seed}"


def cbs_branch_run(point: int, batch_size: int, seed: int) -> str:
    """``svag cbs``: the branch at batch size ``B`` of ``seed`` from checkpoint ``point``: ``ckpt{p}_B{B}_seed{s}``."""
    return f"ckpt{point}_B{batch_size}_seed{seed}"


def lsr_run(batch_size: int, seed: int, first_seed: int) -> str:
    """``B{B}`` for the first seed of the LSR sweep (the folder of a one-seed sweep), ``B{B}_seed{s}``
    for the others."""
    return f"B{batch_size}" if seed == first_seed else f"B{batch_size}_seed{seed}"


def hold(out: str | os.PathLike) -> contextlib.AbstractContextManager[bool]:
    """Be the one driver writing the sweep folder ``out`` while the block runs (:func:`svag.runfolder.hold_writer`:
    :class:`svag.runfolder.FolderInUseError` if another process holds it). Reentrant: a command holding it
    around the sweep driver's own hold holds it once."""
    return hold_writer(out, f"the sweep folder {out}", reentrant=True)


def remove_temporaries(out: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (``.NAME.XXXXXXXX.tmp``, :func:`svag.records.atomic_path`) that writes of
    the sweep's own :data:`FILES`, killed midway, left in the sweep folder ``out``, and return them; a
    user's files and the run folders are left alone (a run cleans its own folder when it starts). Only
    while no other process writes ``out``: a sweep's driver calls it on ``--resume``, holding :func:`hold`."""
    out = Path(out)
    stale = sorted(p for p in out.iterdir() if temporary_of(p) in FILES and p.is_file()) if out.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
