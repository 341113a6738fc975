"""The verdict clause of a primary contrast: "inconclusive — about 54 seeds would decide it
(95 %: 27–174; this study has 10)", and the fewest seeds at which the plan's test can reject."""

from __future__ import annotations

import numpy as np

#: The note of a planned contrast one of whose conditions has no stored run yet.
NOT_YET_RUN = "not yet run"


def smallest_decisive_n(test: str, m: int, alpha: float) -> int:
    """The fewest seeds at which the plan's test can reject at all in a family of ``m``.

    The sign-flip and signed-rank tests have a smallest two-sided p of 2 / 2^n (every seed on one
    side), so the first Holm (or Bonferroni) step needs m · 2 / 2^n < alpha; the t-test has no
    such floor (0).
    """
    if test == "t":
        return 0
    n = 1
    while max(m, 1) * 2.0 / 2.0 ** n >= alpha:
        n += 1
    return n


def _count(value: float) -> str:
    return str(int(value)) if np.isfinite(value) else "more than 10^7"


def verdict_text(verdict: str, seeds: float, seeds_low: float, seeds_high: float, n: int,
                 note: str = "", smaller_than_claimed: bool = False, floor_n: int = 0,
                 test_label: str = "") -> str:
    """The verdict with its clause: "inconclusive — about 54 seeds would decide it (95 %: 27–174;
    this study has 10)"; "undefined: <why>"; a confirmed gain whose minimum-effect test also
    rejects says so ("confirmed, but smaller than the claimed size")."""
    if verdict == NOT_YET_RUN:
        return note
    if verdict == "undefined":
        return f"undefined: {note}" if note else "undefined"
    if verdict == "confirmed" and smaller_than_claimed:
        return "confirmed, but smaller than the claimed size (minimum-effect test rejects)"
    if verdict != "inconclusive":
        return verdict
    floor = (f"; the {test_label} cannot reject with fewer than {floor_n} seeds"
             if n < floor_n else "")
    if not np.isfinite(seeds):
        return "inconclusive" + floor
    if seeds <= n:
        # the study already has the seeds to detect the SESOI with the plan's power, yet no
        # question was decided: the estimate lies between no effect and the SESOI, and more
        # seeds narrow the interval towards one of the one-sided verdicts, not a fixed count
        return (f"inconclusive — with {n} seeds, at least the {_count(seeds)} the plan's power "
                f"asks for, the interval still spans both 0 and the SESOI")
    return (f"inconclusive — about {_count(seeds)} seeds would decide it (95 %: "
            f"{_count(seeds_low)}–{_count(seeds_high)}; this study has {n}{floor})")
