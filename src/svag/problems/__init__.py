"""Problems with closed-form answers, and what is measured on them.

=================  ===============================================================================
module             what it owns
=================  ===============================================================================
``closed_form``    the problems and their exact moments (OU/quadratic, noisy regression, skewed
                   quadratic); its names are re-exported here, as ``svag.problems.X``
``verify``         ``svag verify``: SVAG's weak error against the exact SDE falls like ``1/l``
``studies``        the quadratic studies (momentum, adaptive optimizers)
``report``         the figures and tables of ``svag verify``
=================  ===============================================================================
"""

from __future__ import annotations

from svag.problems.closed_form import (
    Moments,
    NoisyRegression,
    SkewedQuadratic,
    expm,
    gaussian_kernel_mean,
    gaussian_moments,
    geometric_sum,
    noisy_regression,
    ou_moments,
    regression_sde_moments,
    regression_svag_moments,
    skewed_quadratic,
    svag_moments,
    third_cumulant_factor,
)

__all__ = [
    "Moments",
    "NoisyRegression",
    "SkewedQuadratic",
    "expm",
    "gaussian_kernel_mean",
    "gaussian_moments",
    "geometric_sum",
    "noisy_regression",
    "ou_moments",
    "regression_sde_moments",
    "regression_svag_moments",
    "skewed_quadratic",
    "svag_moments",
    "third_cumulant_factor",
]
