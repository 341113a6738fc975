"""``TrainConfig.goodness``: the engine trains with the configured goodness function, and its
default (the built-in mean of squares) changes no run id and no stored run."""

from __future__ import annotations

from pathlib import Path

import pytest

from cffbench.extensions import GOODNESS
from cffbench.ff import TrainConfig, train_run
from cffbench.ff.goodness import GoodnessFunction
from cffbench.study import expand, load_study
from tests.conftest import make_synthetic_splits

REPO = Path(__file__).resolve().parents[1]


class SumOfSquaresAutograd(GoodnessFunction):
    """``G = Σ_j h_j²``, no manual gradient."""

    name = "sum_of_squares_setting_test"

    def __call__(self, h):
        return h.pow(2).sum(dim=-1)


@pytest.fixture
def sum_of_squares():
    GOODNESS.register(SumOfSquaresAutograd)
    yield SumOfSquaresAutograd.name
    GOODNESS.unregister(SumOfSquaresAutograd.name)


def test_the_configured_goodness_is_what_the_engine_measures(sum_of_squares):
    # The first curve row is measured before the first step, from the seed's initial weights
    # (the same for both runs): Σ h² = H · mean h² with H = 16 units.
    splits = make_synthetic_splits(n_train=60, n_eval=30, n_features=20)
    base = dict(hidden=(16,), epochs_per_layer=1, seed=3)
    mean = train_run(TrainConfig(**base), splits).curves
    summed = train_run(TrainConfig(**base, goodness=sum_of_squares), splits).curves
    first = lambda c: c[(c["layer"] == 1) & (c["epoch"] == 1)].iloc[0]  # noqa: E731
    assert first(summed)["g_pos"] == pytest.approx(16 * first(mean)["g_pos"], rel=1e-5)
    assert first(summed)["g_neg"] == pytest.approx(16 * first(mean)["g_neg"], rel=1e-5)


def test_an_unknown_goodness_is_refused_naming_the_allowed_ones():
    with pytest.raises(Exception, match="goodness: Input should be 'mean_squares'"):
        TrainConfig(goodness="nope")


@pytest.mark.parametrize("study", ["replication_cpu", "alpha_ablation"])
def test_the_default_goodness_keeps_the_committed_run_ids(study):
    # the committed stores were written before the goodness setting existed: the study still
    # expands to exactly their run ids
    tasks = expand(load_study(REPO / "studies" / f"{study}.toml"))
    stored = {p.stem for p in (REPO / "results" / study / "runs").glob("*.parquet")}
    assert {t.run_id for t in tasks} == stored


def test_a_non_default_goodness_is_in_the_run_id(sum_of_squares):
    text = ('name = "g"\nseeds = [0]\n[data]\ndatasets = ["mnist"]\nn_train = 100\n'
            f'[grid]\nvariant = ["ff", "bp"]\ngoodness = ["mean_squares", "{sum_of_squares}"]\n')
    from cffbench.study import parse_study

    tasks = expand(parse_study(text, "g.toml"))
    # ff with either goodness, bp once (it has no goodness)
    assert sorted((t.variant, t.effective.get("goodness")) for t in tasks) == [
        ("bp", None), ("ff", "mean_squares"), ("ff", sum_of_squares)]
