"""Problems with closed-form answers, and what is measured on them.

=================  ===============================================================================
module             what it owns
=================  ===============================================================================
``closed_form``    the problems and their exact moments (OU/quadratic, noisy regression, skewed
                   quadratic); its names are read here, as ``svag.problems.X`` (on first use)
``moments``        :class:`Moments` and the tools of the closed forms (``expm``, geometric sums)
``regression``     the noisy regression (state-dependent noise), re-exported by ``closed_form``
``verify``         ``svag verify``: SVAG's weak error against the exact SDE falls like ``1/l``
``studies``        the quadratic studies (momentum, adaptive optimizers)
``report``         the figures and tables of ``svag verify``
=================  ===============================================================================
"""

from __future__ import annotations

import importlib


def _closed_form():
    return importlib.import_module("svag.problems.closed_form")


def __getattr__(name: str) -> object:
    """The closed forms load (with torch) on first use, so ``svag verify --help`` stays torch-free;
    ``__all__`` too is closed_form's own list, read then."""
    if name == "__all__":
        return list(_closed_form().__all__)
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        value = getattr(_closed_form(), name)
    except AttributeError:
        raise AttributeError(f"module 'svag.problems' has no attribute {name!r}") from None
    globals()[name] = value  # later reads skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_closed_form().__all__))
