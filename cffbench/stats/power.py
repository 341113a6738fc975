"""How many seeds a study needs: two-sided paired t-test (``statsmodels`` TTestPower) or, for
unpaired designs, two-sample t-test with equal group sizes (``TTestIndPower``)."""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats as sps
from statsmodels.stats.power import TTestIndPower, TTestPower

from cffbench.errors import StatsError

MAX_SEEDS = 10**7


def paired_power(effect: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test with ``n`` pairs for standardised effect ``effect``.

    ``TTestPower().power``, except where it returns NaN (large effects: the noncentral t's far
    lower tail underflows); there the upper tail ``P(T > t_crit)``, to which the lower tail adds
    less than alpha / 2 and, at such effects, nothing visible, is used; if that underflows too,
    the power is 1 when the noncentrality exceeds the critical value.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(TTestPower().power(effect_size=effect, nobs=n, alpha=alpha, alternative="two-sided"))
        if np.isfinite(value):
            return value
        critical = sps.t.isf(alpha / 2, n - 1)
        ncp = abs(effect) * np.sqrt(n)
        upper = float(sps.nct.sf(critical, n - 1, ncp))
    if np.isfinite(upper):
        return upper
    return 1.0 if ncp > critical else 0.0


def two_sample_power(effect: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided two-sample t-test with ``n`` runs per group, Cohen's d ``effect``.

    ``TTestIndPower().power(nobs1=n, ratio=1)``; where it returns NaN, the upper tail of the
    noncentral t with df = 2n - 2 and noncentrality d sqrt(n / 2), as in :func:`paired_power`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(TTestIndPower().power(effect_size=effect, nobs1=n, alpha=alpha, ratio=1.0,
                                            alternative="two-sided"))
        if np.isfinite(value):
            return value
        critical = sps.t.isf(alpha / 2, 2 * n - 2)
        ncp = abs(effect) * np.sqrt(n / 2)
        upper = float(sps.nct.sf(critical, 2 * n - 2, ncp))
    if np.isfinite(upper):
        return upper
    return 1.0 if ncp > critical else 0.0


def seeds_needed(diff_sd: float, delta: float, alpha: float = 0.05, power: float = 0.8, *,
                 paired: bool = True) -> float:
    """Smallest number of seeds n >= 2 whose two-sided t-test has ``power``.

    Paired (default): n paired seeds, effect d_z = ``delta`` / ``diff_sd`` with ``diff_sd`` the SD
    of the paired differences. Unpaired (``paired=False``): n runs *per condition* of a two-sample
    t-test; ``diff_sd`` is the SD of the difference of two independent runs, sqrt(s_A^2 + s_B^2),
    so the per-run SD is ``diff_sd`` / sqrt(2) and Cohen's d = ``delta`` sqrt(2) / ``diff_sd``
    (power from ``TTestIndPower``, see :func:`two_sample_power`).

    ``diff_sd`` is in the units of ``delta``. Paired power comes from :func:`paired_power`
    (statsmodels' ``TTestPower``, guarded against its NaN for large effects); we search the
    integer n directly instead of rounding ``solve_power``, which can also fail for large effects.

    Returns
    -------
    int as float, or NaN when undefined: ``diff_sd`` is zero (below 1e-12 ``delta``) or not finite
    (the t test itself is then undefined), or more than 10^7 seeds would be needed.
    """
    if not (delta > 0 and math.isfinite(delta)):
        raise StatsError(f"delta must be a positive finite difference to detect, got {delta!r}")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise StatsError(f"alpha and power must be in (0, 1), got alpha={alpha!r}, power={power!r}")
    if not (np.isfinite(diff_sd) and diff_sd > 1e-12 * delta):  # effects beyond 1e12 sd: zero spread
        return math.nan
    effect = delta / float(diff_sd) * (1.0 if paired else math.sqrt(2.0))
    power_of = paired_power if paired else two_sample_power

    def enough(n: int) -> bool:
        return bool(power_of(effect, n, alpha) >= power)

    high = 2
    while not enough(high):
        high *= 2
        if high > MAX_SEEDS:
            return math.nan
    low = max(2, high // 2)
    if enough(low):
        return float(low)
    while high - low > 1:  # invariant: not enough(low), enough(high)
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return float(high)


def detectable_difference(diff_sd: float, n: int, alpha: float = 0.05, power: float = 0.8, *,
                          paired: bool = True) -> float:
    """Smallest difference the two-sided t-test with ``n`` seeds detects with ``power``.

    The inverse of :func:`seeds_needed` in the difference: the standardised effect e solving
    ``power(e, n) = power`` (paired: d_z; unpaired: Cohen's d with ``n`` runs per condition),
    times ``diff_sd`` (paired) or ``diff_sd / sqrt(2)`` (unpaired: the per-run SD). Found by
    bisection on the power functions above, which are increasing in e.

    Returns
    -------
    float in the units of ``diff_sd``; NaN when ``n < 2`` or ``diff_sd`` is not finite.
    """
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise StatsError(f"alpha and power must be in (0, 1), got alpha={alpha!r}, power={power!r}")
    if n < 2 or not np.isfinite(diff_sd):
        return math.nan
    power_of = paired_power if paired else two_sample_power
    low, high = 0.0, 1.0
    while power_of(high, n, alpha) < power:
        high *= 2.0
    for _ in range(100):   # bisection to far below any printed precision
        mid = (low + high) / 2
        low, high = (low, mid) if power_of(mid, n, alpha) >= power else (mid, high)
    return high * (diff_sd if paired else diff_sd / math.sqrt(2.0))
