"""Seed stacking (``cffbench.ff.stacked``): S seeds in one batched model equal S separate runs."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from cffbench.data.splits import Splits
from cffbench.ff import TrainConfig, train_run
from cffbench.ff.stacked import StackedFFTrainer, train_stacked
from cffbench.ff.train import FFTrainer
from conftest import make_synthetic_splits

CPU = torch.device("cpu")
SEEDS = (0, 1, 2)
# lr 0.03 (the paper's): at lr 0.1 Adam turns a 1e-12 rounding difference in a near-zero gradient
# into a 3e-5 weight difference in one element of a thousand (m/√v normalises the tiny gradient)
BASE = dict(hidden=(32, 32), epochs_per_layer=8, lr=0.03, train_eval_size=150)
STACK_NOTE = "trained seed-stacked"

CASES = {
    "ff": dict(variant="ff"),
    "f-cff per_term": dict(variant="f-cff", theta_placement="per_term"),
    "f-cff single": dict(variant="f-cff", theta_placement="single"),
    "a-cff sgd": dict(variant="a-cff", gamma_lr=0.05),
    "a-cff learned alpha adam, 3 layers": dict(variant="a-cff", hidden=(16, 16, 16), alpha="learned",
                                               gamma_optimizer="adam", gamma_lr=0.05),
    "f-cff distance, 3 layers": dict(variant="f-cff", hidden=(16, 16, 16), alpha="distance",
                                     theta_placement="single"),
    "f-cff learned alpha sgd, 3 layers": dict(variant="f-cff", hidden=(16, 16, 16), alpha="learned",
                                              gamma_lr=0.05),
    "a-cff ones, permutation negatives": dict(variant="a-cff", hidden=(16, 16, 16), alpha="ones",
                                              negatives="permutation"),
    "ff one layer, batch_size >= N": dict(variant="ff", hidden=(24,), batch_size=500),
}


def seed_splits(seed: int) -> Splits:
    """Same shapes for every seed, different images (as per-seed n_train subsets are)."""
    return make_synthetic_splits(n_train=150, n_eval=80, n_features=48, seed=seed)


def separate_weights(config: TrainConfig, splits: Splits) -> list[tuple[torch.Tensor, torch.Tensor]]:
    trainer = FFTrainer(config, splits, CPU, None)
    trainer.train_sequential()
    return trainer.weights()


def assert_close_relative(a, b, rtol=1e-5, atol=1e-6):
    torch.testing.assert_close(torch.tensor(a, dtype=torch.float64),
                               torch.tensor(b, dtype=torch.float64), rtol=rtol, atol=atol,
                               equal_nan=True)


def assert_same_run(stacked, separate, n_test: int, n_val: int, n_train_eval: int):
    assert stacked.status == separate.status
    assert stacked.diverged_epoch == separate.diverged_epoch
    for name, n in (("test_acc", n_test), ("val_acc", n_val), ("train_acc", n_train_eval)):
        a, b = getattr(stacked, name), getattr(separate, name)
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1 / n + 1e-12, name
    assert len(stacked.gamma_final) == len(separate.gamma_final)
    if separate.gamma_final:
        assert_close_relative(stacked.gamma_final, separate.gamma_final)
        assert_close_relative(stacked.alpha_final, separate.alpha_final)
    assert [n for n in stacked.notes if not n.startswith(STACK_NOTE)] == separate.notes
    columns = ["layer", "epoch"]
    assert stacked.curves[columns].equals(separate.curves[columns])
    for column in ("loss", "g_pos", "g_neg", "gamma"):
        assert_close_relative(stacked.curves[column].to_numpy(float), separate.curves[column].to_numpy(float))
    assert (stacked.curves["alpha_row"] != "").tolist() == (separate.curves["alpha_row"] != "").tolist()


@pytest.mark.parametrize("case", list(CASES))
def test_stacked_seeds_equal_separate_runs(case):
    configs = [TrainConfig(**{**BASE, **CASES[case]}, seed=s) for s in SEEDS]
    splits = [seed_splits(s) for s in SEEDS]
    trainer = StackedFFTrainer(configs, splits, CPU)
    trainer.train_sequential()
    stacked = trainer.results(0.0)
    via_api = train_stacked(configs, splits)
    for s, (config, split) in enumerate(zip(configs, splits)):
        separate = train_run(config, split)
        assert separate.status == "ok"
        n_eval = split.x_test.shape[0]
        assert_same_run(stacked[s], separate, n_eval, n_eval, config.train_eval_size)
        assert_same_run(via_api[s], separate, n_eval, n_eval, config.train_eval_size)
        for (w_a, b_a), (w_b, b_b) in zip(trainer.seed_weights(s), separate_weights(config, split)):
            torch.testing.assert_close(w_a, w_b, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(b_a, b_b, rtol=1e-5, atol=1e-5)
    # the seeds really differ, so equality per seed is not equality of copies
    assert not torch.equal(trainer.seed_weights(0)[0][0], trainer.seed_weights(1)[0][0])


def test_stacked_learned_alpha_moves_and_matches():
    config = dict(BASE, variant="a-cff", hidden=(16, 16, 16), alpha="learned", gamma_lr=0.5,
                  gamma_optimizer="adam")
    configs = [TrainConfig(**config, seed=s) for s in (3, 4)]
    splits = [seed_splits(s) for s in (3, 4)]
    stacked = train_stacked(configs, splits)
    for result, config_s, split in zip(stacked, configs, splits):
        separate = train_run(config_s, split)
        off_diagonal = [v for i, row in enumerate(result.alpha_final) for k, v in enumerate(row) if i != k]
        assert max(abs(v - 0.5) for v in off_diagonal) > 1e-3   # α really was learned
        assert_close_relative(result.alpha_final, separate.alpha_final)
        rows = [json.loads(r) for r in result.curves["alpha_row"]]
        assert_close_relative(rows, [json.loads(r) for r in separate.curves["alpha_row"]], atol=2e-6)


def test_on_epoch_receives_each_seeds_rows():
    configs = [TrainConfig(**BASE, variant="f-cff", seed=s) for s in (0, 1)]
    splits = [seed_splits(s) for s in (0, 1)]
    seen: list[list[dict]] = [[], []]
    results = train_stacked(configs, splits, on_epoch=[seen[0].append, seen[1].append])
    for rows, result in zip(seen, results):
        assert [r["loss"] for r in rows] == result.curves["loss"].tolist()


def test_diverging_seed_does_not_poison_the_others():
    configs = [TrainConfig(**BASE, variant="a-cff", seed=s) for s in SEEDS]
    splits = [seed_splits(s) for s in SEEDS]
    poisoned = splits[1].x_train.clone()
    poisoned[5, 20] = float("nan")
    splits[1] = Splits(splits[1].name, poisoned, *[getattr(splits[1], f) for f in
                       ("y_train", "x_val", "y_val", "x_test", "y_test", "n_classes")])
    stacked = train_stacked(configs, splits)
    assert [r.status for r in stacked] == ["ok", "diverged", "ok"]
    for result, config, split in zip(stacked, configs, splits):
        n_eval = split.x_test.shape[0]
        assert_same_run(result, train_run(config, split), n_eval, n_eval, config.train_eval_size)


@pytest.mark.parametrize("field, value", [("lr", 0.05), ("variant", "f-cff"), ("hidden", (32, 16)),
                                          ("epochs_per_layer", 3)])
def test_configs_differing_in_more_than_seed_are_rejected(field, value):
    configs = [TrainConfig(**BASE, seed=0), TrainConfig(**{**BASE, field: value}, seed=1)]
    with pytest.raises(ValueError, match=field):
        train_stacked(configs, [seed_splits(0), seed_splits(1)])


def test_splits_of_different_shapes_are_rejected():
    configs = [TrainConfig(**BASE, seed=s) for s in (0, 1)]
    splits = [seed_splits(0), make_synthetic_splits(n_train=140, n_eval=80, n_features=48, seed=1)]
    with pytest.raises(ValueError, match="shapes"):
        train_stacked(configs, splits)


@pytest.mark.parametrize("fallback", [dict(schedule="alternating"), dict(batch_size=50),
                                      dict(precision="bf16"), dict(negatives="redraw")])
def test_unsupported_modes_fall_back_to_train_run_exactly(fallback):
    configs = [TrainConfig(**{**BASE, "variant": "f-cff", "epochs_per_layer": 3, **fallback}, seed=s)
               for s in (0, 1)]
    splits = [seed_splits(s) for s in (0, 1)]
    for stacked, config, split in zip(train_stacked(configs, splits), configs, splits):
        separate = train_run(config, split)
        assert (stacked.test_acc, stacked.val_acc, stacked.train_acc) == (
            separate.test_acc, separate.val_acc, separate.train_acc)
        assert stacked.gamma_final == separate.gamma_final
        assert stacked.notes == separate.notes
        assert stacked.curves.equals(separate.curves)


@pytest.mark.data
@pytest.mark.slow
def test_stacked_mnist_subsets_equal_separate_runs(data_root):
    from cffbench.data import load_splits

    configs = [TrainConfig(variant="a-cff", hidden=(32, 32), epochs_per_layer=10,
                           train_eval_size=200, seed=s) for s in (0, 1)]
    splits = [load_splits("mnist", data_root, n_train=200, seed=s) for s in (0, 1)]
    for stacked, config, split in zip(train_stacked(configs, splits), configs, splits):
        separate = train_run(config, split)
        assert_same_run(stacked, separate, split.x_test.shape[0], split.x_val.shape[0], 200)


# ----------------------------------------------------------------------------- study wiring
STUDY = '''\
name = "stacked"
seeds = [0, 1, 2]
[data]
datasets = ["mnist"]
n_train = 120
[train]
hidden = [16, 16, 16]
epochs_per_layer = 4
train_eval_size = 100
[grid]
variant = ["ff", "a-cff"]
alpha = ["uniform", "learned"]
[execution]
executor = "{executor}"
workers = 2
stack_seeds = {stack}
'''


def synthetic_load(name, root, n_train=None, seed=0):
    """Stands in for load_splits: per-seed synthetic data of equal shapes."""
    return make_synthetic_splits(n_train=n_train or 120, n_eval=80, n_features=32, seed=seed)


def uneven_load(name, root, n_train=None, seed=0):
    """Training sets whose size depends on the seed: these cannot be stacked."""
    return make_synthetic_splits(n_train=(n_train or 120) + 10 * seed, n_eval=80, n_features=32,
                                 seed=seed)


def run_synthetic_study(tmp_path, executor: str, stack: bool, load_fn=synthetic_load):
    from cffbench.study import parse_study, read_runs, run_study

    study = parse_study(STUDY.format(executor=executor, stack=str(stack).lower()),
                        tmp_path / f"stacked-{stack}.toml")
    results = tmp_path / f"{executor}-{stack}-{load_fn.__name__}"
    # the workers' splits cache is keyed by data root, so each loader gets its own root
    summary = run_study(study, results, load_fn=load_fn, data_root=tmp_path / load_fn.__name__)
    return summary, read_runs(results).set_index("run_id").sort_index()


def assert_same_store(plain, stacked):
    assert list(stacked.index) == list(plain.index)
    assert len(plain) == 3 * (1 + 2)   # seeds x (ff + a-cff x 2 alpha)
    assert (stacked["status"] == "ok").all()
    for column in ("test_acc", "val_acc", "train_acc"):
        assert (stacked[column] - plain[column]).abs().max() <= 1 / 80 + 1e-12, column
    gammas = stacked["gamma_final"].dropna()
    assert ((gammas - plain["gamma_final"].dropna()).abs() <= 1e-5 * gammas.abs()).all()
    assert stacked["notes"].str.contains(STACK_NOTE).all()
    assert not plain["notes"].str.contains(STACK_NOTE).any()


def test_study_with_stack_seeds_stores_the_same_accuracies(tmp_path):
    _, plain = run_synthetic_study(tmp_path, "serial", False)
    summary, stacked = run_synthetic_study(tmp_path, "serial", True)
    assert (summary.executed, summary.ok) == (9, 9)
    assert_same_store(plain, stacked)


@pytest.mark.slow
def test_local_executor_stacks_seed_groups_in_its_workers(tmp_path):
    _, plain = run_synthetic_study(tmp_path, "serial", False)
    summary, stacked = run_synthetic_study(tmp_path, "local", True)
    assert (summary.executed, summary.ok) == (9, 9)
    assert_same_store(plain, stacked)


def test_stack_seeds_must_be_a_boolean(tmp_path):
    from cffbench.errors import StudyError
    from cffbench.study import parse_study

    with pytest.raises(StudyError, match="stack_seeds"):
        parse_study(STUDY.format(executor="serial", stack='"yes"'), tmp_path / "bad.toml")


def test_seed_groups_of_unequal_shapes_run_one_by_one(tmp_path):
    _, plain = run_synthetic_study(tmp_path, "serial", False, uneven_load)
    summary, stacked = run_synthetic_study(tmp_path, "serial", True, uneven_load)
    assert (summary.executed, summary.ok) == (9, 9)
    assert not stacked["notes"].str.contains(STACK_NOTE).any()
    assert stacked["test_acc"].tolist() == plain["test_acc"].tolist()
    assert sorted(stacked["n_train"].unique()) == [120, 130, 140]


def test_a_seed_group_the_stacked_engine_cannot_batch_runs_one_by_one_with_checkpoints(tmp_path):
    # alternating is not stacked; its runs used to go through train_stacked's own fallback,
    # where no run checkpointed
    from cffbench.ff.checkpoint import CheckpointPlan
    from cffbench.study import expand, parse_study
    from cffbench.study.worker import RunSettings, execute_stacked

    study = parse_study(STUDY.format(executor="serial", stack="true"), tmp_path / "s.toml")
    tasks = [t for t in expand(study) if t.variant == "ff"]
    tasks = [dataclasses.replace(t, config=t.config.model_copy(update={"schedule": "alternating"}))
             for t in tasks]
    folder = tmp_path / "checkpoints"
    settings = RunSettings(data_root=tmp_path, device="cpu", load_fn=synthetic_load,
                           checkpoints=CheckpointPlan(folder, every=1))
    outcomes = execute_stacked(tasks, settings)
    assert [o.error for o in outcomes] == [""] * len(tasks)
    # every run wrote its checkpoint (the driver deletes them once the runs are stored)
    assert sorted(p.stem for p in folder.glob("*.pt")) == sorted(t.run_id for t in tasks)
