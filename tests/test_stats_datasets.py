"""Textbook / R data sets used to pin cffbench.stats, with checks that they were typed in right.

The data are copied from R's ``datasets`` package (PlantGrowth, ToothGrowth, sleep), from
``?friedman.test`` (RoundingTimes, Hollander & Wolfe 1973, p. 140) and from Field, Miles & Field
(2012/2013), *Discovering Statistics Using R/SPSS*, ch. 13 "Bushtucker trial". Each builder returns
a long-format DataFrame; the tests here check published summary values of the data themselves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

PLANT_GROWTH = {
    "ctrl": [4.17, 5.58, 5.18, 6.11, 4.50, 4.61, 5.17, 4.53, 5.33, 5.14],
    "trt1": [4.81, 4.17, 4.41, 3.59, 5.87, 3.83, 6.03, 4.89, 4.32, 4.69],
    "trt2": [6.31, 5.12, 5.54, 5.50, 5.37, 5.29, 4.92, 6.15, 5.80, 5.26],
}
TOOTH_GROWTH = {
    ("VC", 0.5): [4.2, 11.5, 7.3, 5.8, 6.4, 10.0, 11.2, 11.2, 5.2, 7.0],
    ("VC", 1.0): [16.5, 16.5, 15.2, 17.3, 22.5, 17.3, 13.6, 14.5, 18.8, 15.5],
    ("VC", 2.0): [23.6, 18.5, 33.9, 25.5, 26.4, 32.5, 26.7, 21.5, 23.3, 29.5],
    ("OJ", 0.5): [15.2, 21.5, 17.6, 9.7, 14.5, 10.0, 8.2, 9.4, 16.5, 9.7],
    ("OJ", 1.0): [19.7, 23.3, 23.6, 26.4, 20.0, 25.2, 25.8, 21.2, 14.5, 27.3],
    ("OJ", 2.0): [25.5, 26.4, 22.4, 24.5, 24.8, 30.9, 26.4, 27.3, 29.4, 23.0],
}
SLEEP = {1: [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0],
         2: [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]}
ROUNDING_TIMES = np.array([
    [5.40, 5.50, 5.55], [5.85, 5.70, 5.75], [5.20, 5.60, 5.50], [5.55, 5.50, 5.40],
    [5.90, 5.85, 5.70], [5.45, 5.55, 5.60], [5.40, 5.40, 5.35], [5.45, 5.50, 5.35],
    [5.25, 5.15, 5.00], [5.85, 5.80, 5.70], [5.25, 5.20, 5.10], [5.65, 5.55, 5.45],
    [5.60, 5.35, 5.45], [5.05, 5.00, 4.95], [5.50, 5.50, 5.40], [5.45, 5.55, 5.50],
    [5.55, 5.55, 5.35], [5.45, 5.50, 5.55], [5.50, 5.45, 5.25], [5.65, 5.60, 5.40],
    [5.70, 5.65, 5.55], [6.30, 6.30, 6.25]])
ROUNDING_METHODS = ["round out", "narrow angle", "wide angle"]
BUSHTUCKER = np.array([[8, 7, 1, 6], [9, 5, 2, 5], [6, 2, 3, 8], [5, 3, 1, 9],
                       [8, 4, 5, 8], [7, 5, 6, 7], [10, 2, 7, 2], [12, 6, 8, 1]], dtype=float)
BUSHTUCKER_FOODS = ["stick insect", "kangaroo testicle", "fish eye", "witchetty grub"]


def plant_growth() -> pd.DataFrame:
    """R ``PlantGrowth``: weight ~ group (ctrl, trt1, trt2), 10 plants each."""
    return pd.DataFrame([(g, w) for g, ws in PLANT_GROWTH.items() for w in ws], columns=["group", "weight"])


def tooth_growth() -> pd.DataFrame:
    """R ``ToothGrowth``: len ~ supp (VC, OJ) x dose (0.5, 1, 2), 10 guinea pigs per cell."""
    return pd.DataFrame([(s, d, v) for (s, d), vs in TOOTH_GROWTH.items() for v in vs],
                        columns=["supp", "dose", "len"])


def sleep() -> pd.DataFrame:
    """R ``sleep``: extra ~ group, paired by ID (10 patients x 2 drugs)."""
    return pd.DataFrame([(g, i, v) for g, vs in SLEEP.items() for i, v in enumerate(vs)],
                        columns=["group", "ID", "extra"])


def rounding_times() -> pd.DataFrame:
    """Hollander & Wolfe's RoundingTimes: 22 players x 3 methods of rounding first base."""
    return pd.DataFrame([(p, ROUNDING_METHODS[m], ROUNDING_TIMES[p, m]) for p in range(22) for m in range(3)],
                        columns=["player", "method", "time"])


def bushtucker() -> pd.DataFrame:
    """Field's Bushtucker trial: 8 participants x 4 foods, time to retch (s)."""
    return pd.DataFrame([(p, BUSHTUCKER_FOODS[f], BUSHTUCKER[p, f]) for p in range(8) for f in range(4)],
                        columns=["participant", "food", "retch"])


def test_plant_growth_group_means_match_r():
    # R: tapply(PlantGrowth$weight, PlantGrowth$group, mean) -> 5.032 4.661 5.526
    means = plant_growth().groupby("group")["weight"].mean()
    assert means.to_dict() == pytest.approx({"ctrl": 5.032, "trt1": 4.661, "trt2": 5.526})


def test_tooth_growth_cell_means_match_r():
    # R: with(ToothGrowth, tapply(len, list(supp, dose), mean))
    means = tooth_growth().groupby(["supp", "dose"])["len"].mean()
    assert means[("OJ", 0.5)] == pytest.approx(13.23)
    assert means[("VC", 0.5)] == pytest.approx(7.98)
    assert means[("OJ", 2.0)] == pytest.approx(26.06)
    assert means[("VC", 2.0)] == pytest.approx(26.14)


def test_sleep_mean_difference_matches_r():
    # R ?sleep: mean of group 2 - group 1 differences = 1.58
    d = sleep().pivot(index="ID", columns="group", values="extra")
    assert (d[2] - d[1]).mean() == pytest.approx(1.58)


def test_bushtucker_food_means_match_field():
    # Field (2013), Table 13.x: means 8.13, 4.25, 4.13, 5.75
    means = bushtucker().groupby("food")["retch"].mean()
    assert [means[f] for f in BUSHTUCKER_FOODS] == pytest.approx([8.125, 4.25, 4.125, 5.75])
