"""Plugins: a user's file registers a goodness function (or a variant, negatives rule, dataset)
and runs through a study like a built-in; its name, version and file hash are stored with its
runs and enter their ids; a broken plugin is one line naming the file, before anything runs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from conftest import make_synthetic_splits
from cffbench.cli import main
from cffbench.errors import TrainConfigError
from cffbench.ff import TrainConfig, train_run
from cffbench.plugins import load_plugin_file, unload_plugin_files
from cffbench.study import expand, load_study, read_runs, run_study

torch.set_num_threads(1)

#: G = Σ h² (Hinton 2022 discusses it beside the mean) with no manual gradient: the plain path.
SUM_SQUARES = '''\
__version__ = "0.1"
from cffbench.extensions import GOODNESS
from cffbench.ff.goodness import GoodnessFunction

@GOODNESS.register
class SumSquares(GoodnessFunction):
    name = "sum_squares"
    def __call__(self, h):
        return h.pow(2).sum(dim=-1)
'''

#: The same goodness with its fast form and manual gradient: the fast engine.
SUM_SQUARES_MANUAL = SUM_SQUARES.replace('''        return h.pow(2).sum(dim=-1)
''', '''        return h.pow(2).sum(dim=-1)
    def fast(self, h, norm):
        return norm.square()
    def pre_activation_gradient_(self, h, grad_goodness):
        return h.mul_(2.0 * grad_goodness[..., None])
''')

#: A variant: FF with its logit shifted by 1 (nothing learned), for the load-time checks.
VARIANT = '''\
from cffbench.extensions import VARIANTS
from cffbench.ff.collaboration import LogitRule
from cffbench.ff.variants import Variant

class Shifted(LogitRule):
    def __init__(self, config, seed_shape):
        super().__init__(config.n_layers, seed_shape)
        self.threshold = config.threshold + 1.0
    def logits(self, layer, own, others):
        return own - self.threshold

@VARIANTS.register
class ShiftedFF(Variant):
    name = "ff-shifted"
    def logit_rule(self, config, device, seed_shape=()):
        return Shifted(config, seed_shape)
'''

STUDY = '''\
name = "plugged"
seeds = [0, 1, 2]
plugins = ["sumsq.py"]
[data]
datasets = ["mnist"]
n_train = 120
[train]
hidden = [12]
epochs_per_layer = 2
train_eval_size = 50
threshold = 10.0
[grid]
variant = ["ff", "f-cff"]
goodness = ["mean_squares", "sum_squares"]
[analysis]
reference = "ff"
primary = ["f-cff"]
'''


def synthetic_load(name, root, n_train=None, seed=0):
    return make_synthetic_splits(n_train=n_train or 120, n_eval=60, n_features=24, seed=seed)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_plugin_goodness_runs_through_a_study_end_to_end(tmp_path, capsys):
    write(tmp_path, "sumsq.py", SUM_SQUARES)
    study_file = write(tmp_path, "plugged.toml", STUDY)
    results = tmp_path / "results"
    summary = run_study(study_file, results, executor="serial", data_root=tmp_path,
                        load_fn=synthetic_load)
    assert summary.executed == 12 and summary.failed == 0
    runs = read_runs(results)
    plugged = runs[runs["goodness"] == "sum_squares"]
    builtin = runs[runs["goodness"] == "mean_squares"]
    assert len(plugged) == len(builtin) == 6
    sha = __import__("hashlib").sha256((tmp_path / "sumsq.py").read_bytes()).hexdigest()
    assert set(plugged["plugin"]) == {"sumsq"} and set(plugged["plugin_version"]) == {"0.1"}
    assert set(plugged["plugin_sha256"]) == {sha}
    assert set(plugged["gradient"]) == {"autograd"} and set(builtin["gradient"]) == {"manual"}
    assert builtin["plugin"].isna().all()
    # analysis and report read the study (and its plugin, from the results folder's copy)
    unload_plugin_files()
    assert (results / "plugins" / "sumsq.py").read_text() == SUM_SQUARES
    main(["analyze", str(results)])
    out = capsys.readouterr().out
    assert "f-cff" in out
    main(["report", str(results), "--out", str(tmp_path / "report")])
    html = next((tmp_path / "report").rglob("*.html")).read_text()
    assert "ff × sum_squares: autograd" in html and "ff × mean_squares: manual" in html
    assert f"sumsq 0.1 (sha256 {sha[:12]})" in html


def test_builtin_run_ids_do_not_change_and_editing_the_plugin_changes_its_runs_ids(tmp_path):
    write(tmp_path, "sumsq.py", SUM_SQUARES)
    study_file = write(tmp_path, "plugged.toml", STUDY)
    first = {(t.config.goodness, t.variant, t.seed): t.run_id for t in expand(load_study(study_file))}
    without = write(tmp_path, "plain.toml", STUDY.replace('plugins = ["sumsq.py"]\n', "").replace(
        'goodness = ["mean_squares", "sum_squares"]\n', ""))
    plain = {(t.variant, t.seed): t.run_id for t in expand(load_study(without))}
    assert {k[1:]: v for k, v in first.items() if k[0] == "mean_squares"} == plain
    unload_plugin_files()
    write(tmp_path, "sumsq.py", SUM_SQUARES.replace('"0.1"', '"0.2"'))
    second = {(t.config.goodness, t.variant, t.seed): t.run_id
              for t in expand(load_study(study_file))}
    for key, rid in first.items():
        assert (second[key] == rid) == (key[0] == "mean_squares"), key


def test_plugin_with_a_manual_gradient_equals_its_autograd_form(tmp_path):
    # the fast engine (manual ∂G/∂pre) and the plain path (autograd through __call__) train the
    # same network: same curves and accuracies within float rounding
    splits = make_synthetic_splits(n_train=120, n_eval=60, n_features=24)
    results = {}
    for label, text in (("autograd", SUM_SQUARES), ("manual", SUM_SQUARES_MANUAL)):
        load_plugin_file(write(tmp_path / label if (tmp_path / label).mkdir() is None else tmp_path,
                               "sumsq.py", text))
        config = TrainConfig(variant="f-cff", hidden=(12, 12), epochs_per_layer=5,
                             goodness="sum_squares", threshold=10.0, train_eval_size=50)
        results[label] = train_run(config, splits)
        unload_plugin_files()
    auto, manual = results["autograd"], results["manual"]
    assert (auto.gradient, manual.gradient) == ("autograd", "manual")
    for column in ("loss", "g_pos", "g_neg"):
        torch.testing.assert_close(torch.tensor(auto.curves[column].to_numpy()),
                                   torch.tensor(manual.curves[column].to_numpy()),
                                   rtol=1e-4, atol=1e-5)
    assert auto.test_acc == pytest.approx(manual.test_acc, abs=2 / 60)


def test_the_local_process_pool_imports_the_plugin_in_its_workers(tmp_path):
    write(tmp_path, "sumsq.py", SUM_SQUARES)
    study_file = write(tmp_path, "plugged.toml", STUDY.replace("seeds = [0, 1, 2]", "seeds = [0]")
                       .replace('variant = ["ff", "f-cff"]', 'variant = ["ff"]')
                       .split("[analysis]")[0])   # its plan names f-cff, which this grid lacks
    summary = run_study(study_file, tmp_path / "results", executor="local", workers=1,
                        data_root=tmp_path, load_fn=synthetic_load)
    assert summary.failed == 0 and summary.executed == 2
    assert set(read_runs(tmp_path / "results")["gradient"]) == {"manual", "autograd"}


BAD_PLUGINS = {
    "syntax": ("x = (\n", "syntax error at line 1"),
    "import_error": ("raise RuntimeError('boom')\n", "RuntimeError at import: boom"),
    "clash": (SUM_SQUARES.replace('"sum_squares"', '"mean_squares"'),
              "goodness function 'mean_squares' clashes with a built-in"),
    "signature": (SUM_SQUARES.replace("def __call__(self, h)", "def __call__(self, h, extra)"),
                  "__call__ has the wrong signature"),
    "shape": (SUM_SQUARES.replace("sum(dim=-1)", "sum(dim=0)"), "expected shape (5,)"),
    "nan": (SUM_SQUARES.replace("h.pow(2).sum(dim=-1)", "h.sum(dim=-1) * float('nan')"),
            "returns non-finite values"),
    # a dead row (all units off) is common in training: 0/0 there is a plugin bug, said at load
    "nan_on_a_dead_row": (SUM_SQUARES.replace("h.pow(2).sum(dim=-1)",
                                              "h.pow(2).sum(dim=-1) / h.norm(dim=-1)"),
                          "returns non-finite values (nan or inf) for an all-zero row"),
    # the engine evaluates and trains rows in blocks and minibatches
    "batch_dependent": (SUM_SQUARES.replace("h.pow(2).sum(dim=-1)",
                                            "h.pow(2).sum(dim=-1) / (1.0 + h.pow(2).sum())"),
                        "a sample's goodness depends on the other samples' activations"),
    "wrong_manual_gradient": (SUM_SQUARES_MANUAL.replace("2.0 * grad_goodness", "3.0 * grad_goodness"),
                              "pre_activation_gradient_ differs from autograd through __call__"),
    "wrong_fast_form": (SUM_SQUARES_MANUAL.replace("return norm.square()", "return norm"),
                        "fast(h, norm) differs from __call__(h)"),
    # the engine passes fast() its live activations and trains the plain path through autograd
    "fast_changing_its_input": (SUM_SQUARES_MANUAL.replace("return norm.square()",
                                                           "return h.pow_(2).sum(dim=-1)"),
                                "fast(h, norm) changes h in place"),
    "call_changing_its_input": (SUM_SQUARES.replace("h.pow(2).sum(dim=-1)", "h.pow_(2).sum(dim=-1)"),
                                "cannot be differentiated by autograd (does __call__ change h in "
                                "place?)"),
    "call_without_gradient": (SUM_SQUARES.replace("return h.pow(2).sum(dim=-1)",
                                                  "return h.detach().pow(2).sum(dim=-1)"),
                              "__call__(h) does not depend differentiably on h"),
    "variant_returning_no_rule": (VARIANT.replace("return Shifted(config, seed_shape)", "return None"),
                                  "logit_rule() returns NoneType, not a "
                                  "cffbench.ff.collaboration.LogitRule"),
    "variant_with_wrong_logit_shape": (VARIANT.replace("return own - self.threshold",
                                                       "return (own - self.threshold).sum()"),
                                       "logits() must return finite logits of the goodness's "
                                       "shape (6,)"),
    "nothing": ("x = 1\n", "registers nothing"),
    # swapping a built-in for its own object would store its runs as the built-in's
    "replace_by_assignment": (SUM_SQUARES + "class Evil(SumSquares):\n    name = 'mean_squares'\n"
                              "GOODNESS['mean_squares'] = Evil()\n",
                              "a plugin cannot replace the goodness function 'mean_squares'"),
    "replace_behind_the_registry": (SUM_SQUARES + "class Evil(SumSquares):\n"
                                    "    name = 'mean_squares'\n"
                                    "GOODNESS._entries['mean_squares'] = Evil()\n",
                                    "it replaces the built-in goodness function 'mean_squares'"),
}


@pytest.mark.parametrize("case", [*BAD_PLUGINS, "missing"])
def test_a_bad_plugin_is_one_line_naming_the_file_and_the_store_is_untouched(case, tmp_path,
                                                                            capsys):
    plugin = tmp_path / "sumsq.py"
    if case != "missing":
        plugin.write_text(BAD_PLUGINS[case][0])
    fragment = BAD_PLUGINS[case][1] if case != "missing" else "no such plugin file"
    study_file = write(tmp_path, "plugged.toml", STUDY)
    with pytest.raises(SystemExit) as info:
        main(["run", str(study_file), "--results", str(tmp_path / "results")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cffbench: error: {plugin}: ") and fragment in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "results").exists()
    with pytest.raises(SystemExit):
        main(["train", "--plugin", str(plugin), "--epochs", "1"])
    assert capsys.readouterr().err.startswith(f"cffbench: error: {plugin}: ")
    with pytest.raises(TrainConfigError, match="goodness"):   # nothing of it stayed registered
        TrainConfig(goodness="sum_squares")
    from cffbench.extensions import GOODNESS
    from cffbench.ff.goodness import MEAN_SQUARES

    assert GOODNESS["mean_squares"] is MEAN_SQUARES           # and the built-in is the built-in


@pytest.mark.parametrize("example", ["sum_squares", "top_k_squares"])
def test_shipped_examples_load_and_a_manual_gradient_equals_autograd_of_the_definition(example):
    from cffbench.extensions import GOODNESS

    load_plugin_file(Path(__file__).resolve().parents[1] / "examples" / f"{example}.py")
    goodness = GOODNESS[example]
    g = torch.Generator().manual_seed(0)
    pre = torch.randn(3, 40, 20, generator=g, requires_grad=True)   # seed axis, rows, units
    grad_goodness = torch.randn(3, 40, generator=g)
    h = torch.relu(pre)
    (goodness(h) * grad_goodness).sum().backward()
    assert goodness.has_manual_gradient == (example == "top_k_squares")
    if goodness.has_manual_gradient:
        h_fast = h.detach().clone()
        torch.testing.assert_close(goodness.pre_activation_gradient_(h_fast, grad_goodness),
                                   pre.grad, rtol=1e-6, atol=1e-8)


def test_a_study_plugin_path_that_is_not_a_list_is_one_line(tmp_path):
    from cffbench.errors import StudyError
    from cffbench.study import parse_study

    with pytest.raises(StudyError, match=r"s.toml: plugins: must be a list of plugin file names"):
        parse_study('plugins = "x.py"\n', tmp_path / "s.toml")


def test_an_installed_entry_point_registers_its_object_with_its_provenance(tmp_path, monkeypatch):
    import importlib.metadata

    from cffbench import plugins
    from cffbench.extensions import GOODNESS

    write(tmp_path, "ep_goodness.py", SUM_SQUARES.replace("@GOODNESS.register\n", "")
          .replace('"sum_squares"', '"ep_sum_squares"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = importlib.metadata.EntryPoint("ep_sum_squares", "ep_goodness:SumSquares",
                                          "cffbench.goodness")
    monkeypatch.setattr(plugins.importlib.metadata, "entry_points",
                        lambda group: [entry] if group == "cffbench.goodness" else [])
    try:
        (plugin,) = plugins.load_entry_points()
        assert GOODNESS.origin("ep_sum_squares") == plugin
        sha = __import__("hashlib").sha256((tmp_path / "ep_goodness.py").read_bytes()).hexdigest()
        assert (plugin.name, plugin.sha256, plugin.path) == ("ep_goodness", sha, None)
        assert TrainConfig(goodness="ep_sum_squares").goodness == "ep_sum_squares"
    finally:
        GOODNESS.unregister("ep_sum_squares")


def test_two_plugin_files_of_one_name_are_refused_before_the_store_keeps_one_copy(tmp_path):
    from cffbench.errors import StudyError
    from cffbench.study import parse_study

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        write(tmp_path / folder, "goodness.py", SUM_SQUARES)
    text = STUDY.replace('plugins = ["sumsq.py"]', 'plugins = ["a/goodness.py", "b/goodness.py"]')
    with pytest.raises(StudyError, match="two files are named 'goodness.py'"):
        parse_study(text, tmp_path / "plugged.toml")


def docs_example(first_line: str) -> str:
    """The ```python block of docs/extending.md that starts with ``first_line``."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "extending.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    (block,) = [b for b in blocks if b.startswith(first_line + "\n")]
    return block


def test_the_documented_learned_bias_variant_trains_and_resumes_from_a_checkpoint_exactly(
        tmp_path):
    # docs/extending.md's 30-line variant, as printed: its learned bias (a tensor and an SGD
    # optimiser among the rule's attributes) is kept by the default LogitRule.state_dict
    from test_checkpoint import Interrupt, assert_same_result, stop_after

    from cffbench.ff.checkpoint import RunCheckpoint

    load_plugin_file(write(tmp_path, "learned_bias.py", docs_example("# learned_bias.py")))
    splits = make_synthetic_splits(n_train=120, n_eval=60, n_features=24)
    config = TrainConfig(variant="ff-bias", hidden=(16, 12), epochs_per_layer=6, gamma_lr=0.05)
    reference = train_run(config, splits)
    frozen = train_run(config.model_copy(update={"gamma_lr": 0.0}), splits)
    assert not reference.curves["loss"].equals(frozen.curves["loss"])   # the bias is learned
    checkpoint = RunCheckpoint(tmp_path / "run.pt", "run", every=2)
    with pytest.raises(Interrupt):
        train_run(config, splits, on_epoch=stop_after(9), checkpoint=checkpoint)
    resumed = train_run(config, splits, checkpoint=RunCheckpoint(checkpoint.path, "run", every=2))
    assert resumed.resumed_at == "layer 2, epoch 2"
    assert_same_result(resumed, reference)


def test_the_documented_goodness_function_loads_and_trains():
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        load_plugin_file(write(Path(folder), "my_goodness.py", docs_example("# my_goodness.py")))
    result = train_run(TrainConfig(goodness="sum_squares", hidden=(12,), epochs_per_layer=2,
                                   threshold=10.0, train_eval_size=50),
                       make_synthetic_splits(n_train=120, n_eval=60, n_features=24))
    assert result.status == "ok" and result.gradient == "autograd"


#: A dataset with its own reader (an .npz of uint8 images and int64 labels) and its own fetch
#: (a copy from a folder named by $TINY_DIGITS_SOURCE), md5-pinned like the built-ins.
DATASET = '''\
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from cffbench.data.registry import DatasetInfo
from cffbench.extensions import DATASETS


def decode(raw_dir):
    with np.load(Path(raw_dir) / "tiny.npz") as z:
        return tuple(torch.from_numpy(z[k]) for k in ("xtr", "ytr", "xte", "yte"))


def fetch(info, staging):
    dest = staging / info.raw_dir
    dest.mkdir(parents=True)
    shutil.copy(Path(os.environ["TINY_DIGITS_SOURCE"]) / "tiny.npz", dest)


DATASETS.register(DatasetInfo(
    name="tiny-digits", mean=(0.5,), std=(0.25,), n_classes=10, image_shape=(1, 6, 6),
    raw_dir="TinyDigits", raw_files=("tiny.npz",), raw_md5s=("@MD5@",),
    n_official_train=300, n_official_test=80, decode=decode, fetch=fetch))
'''


def tiny_digits(folder: Path, images_shape=(6, 6)) -> str:
    """Write ``folder/tiny.npz`` (learnable: each class a noisy prototype) and return its md5."""
    import hashlib

    import numpy as np

    rng = np.random.default_rng(0)
    protos = rng.integers(0, 256, size=(10, 1, *images_shape))

    def sample(n):
        y = np.arange(n) % 10
        x = np.clip(protos[y] + rng.normal(0, 30, size=(n, 1, *images_shape)), 0, 255)
        return x.astype(np.uint8), y.astype(np.int64)

    (xtr, ytr), (xte, yte) = sample(300), sample(80)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "tiny.npz", xtr=xtr, ytr=ytr, xte=xte, yte=yte)
    return hashlib.md5((folder / "tiny.npz").read_bytes()).hexdigest()


def test_a_plugin_dataset_with_its_own_reader_and_fetch_trains_through_a_study(
        tmp_path, monkeypatch, capsys):
    md5 = tiny_digits(tmp_path / "source")
    monkeypatch.setenv("TINY_DIGITS_SOURCE", str(tmp_path / "source"))
    plugin = write(tmp_path, "tiny.py", DATASET.replace("@MD5@", md5))
    data_root = tmp_path / "data"
    main(["data", "fetch", "tiny-digits", "--plugin", str(plugin), "--data-root", str(data_root)])
    assert capsys.readouterr().out.strip() == f"tiny-digits: ok ({data_root})"
    assert (data_root / "TinyDigits" / "tiny.npz").is_file()
    main(["data", "verify", "tiny-digits", "--plugin", str(plugin), "--data-root", str(data_root)])
    study_file = write(tmp_path, "tiny.toml", STUDY.replace('["sumsq.py"]', '["tiny.py"]')
                       .replace('datasets = ["mnist"]', 'datasets = ["tiny-digits"]')
                       .replace("n_train = 120", "n_train = 200")
                       .replace('goodness = ["mean_squares", "sum_squares"]\n', "")
                       .replace("threshold = 10.0\n", ""))
    unload_plugin_files()
    summary = run_study(study_file, tmp_path / "results", executor="serial", data_root=data_root)
    assert summary.executed == 6 and summary.failed == 0
    runs = read_runs(tmp_path / "results")
    assert set(runs["dataset"]) == {"tiny-digits"} and set(runs["plugin"]) == {"tiny"}
    assert (runs["test_acc"] > 0.2).all()     # twice chance (10 classes): the images it read are learnable


def test_a_plugin_dataset_whose_reader_returns_the_wrong_shape_is_one_line(tmp_path, capsys):
    md5 = tiny_digits(tmp_path / "data" / "TinyDigits", images_shape=(5, 5))
    plugin = write(tmp_path, "tiny.py", DATASET.replace("@MD5@", md5))
    with pytest.raises(SystemExit) as info:
        main(["train", "--plugin", str(plugin), "--dataset", "tiny-digits", "--epochs", "1",
              "--data-root", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert info.value.code != 0 and err.count("\n") == 1 and "Traceback" not in err
    assert "tiny-digits: train images" in err and "expected (N, 1, 6, 6) uint8" in err, err


def test_a_plugin_dataset_without_a_reader_is_refused_at_load(tmp_path):
    from cffbench.errors import ExtensionError

    plugin = write(tmp_path, "tiny.py", DATASET.replace("decode=decode, ", ""))
    with pytest.raises(ExtensionError, match="needs exactly one reader: a torchvision_class or "
                                             "its own decode"):
        load_plugin_file(plugin)


def test_the_lower_layers_example_adds_the_layers_below_and_leaves_layer_one_plain_ff():
    from cffbench.extensions import VARIANTS

    load_plugin_file(Path(__file__).resolve().parents[1] / "examples" / "lower_layers_cff.py")
    config = TrainConfig(variant="cff-lower", hidden=(16, 12, 10), epochs_per_layer=4)
    rule = VARIANTS["cff-lower"].logit_rule(config, torch.device("cpu"))
    g = torch.rand(3, 7, generator=torch.Generator().manual_seed(0)) * 3   # (L, M)
    for layer in range(3):
        expected = g[layer] + g[:layer].sum(dim=0) - config.threshold
        torch.testing.assert_close(rule.logits(layer, g[layer], g), expected)
    # under the sequential schedule layer 1 has no layers below: it trains exactly as FF's
    splits = make_synthetic_splits(n_train=120, n_eval=60, n_features=24)
    lower = train_run(config, splits).curves
    plain = train_run(config.model_copy(update={"variant": "ff"}), splits).curves
    first = lower["layer"] == 1
    assert lower[first]["loss"].tolist() == plain[plain["layer"] == 1]["loss"].tolist()
    assert lower[~first]["loss"].tolist() != plain[plain["layer"] != 1]["loss"].tolist()


def test_editing_a_plugin_sets_its_earlier_runs_and_their_code_aside_never_overwritten(tmp_path):
    import hashlib

    write(tmp_path, "sumsq.py", SUM_SQUARES)
    study_file = write(tmp_path, "plugged.toml", STUDY.replace("seeds = [0, 1, 2]", "seeds = [0]")
                       .replace('variant = ["ff", "f-cff"]', 'variant = ["ff"]')
                       .split("[analysis]")[0])
    results = tmp_path / "results"
    run_study(study_file, results, executor="serial", data_root=tmp_path, load_fn=synthetic_load)
    first = read_runs(results)
    old_ids = set(first.loc[first["goodness"] == "sum_squares", "run_id"])
    unload_plugin_files()
    edited = SUM_SQUARES.replace('"0.1"', '"0.2"')
    write(tmp_path, "sumsq.py", edited)
    summary = run_study(study_file, results, executor="serial", data_root=tmp_path,
                        load_fn=synthetic_load)
    assert summary.executed == 1                      # only the edited plugin's run
    assert (results / "plugins" / "sumsq.py").read_text() == edited
    sha = hashlib.sha256(SUM_SQUARES.encode()).hexdigest()[:12]
    assert (results / "superseded" / "plugins" / f"{sha}-sumsq.py").read_text() == SUM_SQUARES
    assert {p.stem for p in (results / "superseded" / "runs").glob("*.parquet")} == old_ids


def test_a_store_made_with_an_uninstalled_entry_point_plugin_says_what_to_install(
        tmp_path, monkeypatch, capsys):
    import importlib.metadata

    from cffbench import plugins
    from cffbench.extensions import GOODNESS

    write(tmp_path, "ep_goodness.py", SUM_SQUARES.replace("@GOODNESS.register\n", "")
          .replace('"sum_squares"', '"ep_sum_squares"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = importlib.metadata.EntryPoint("ep_sum_squares", "ep_goodness:SumSquares",
                                          "cffbench.goodness")
    real = importlib.metadata.entry_points   # other libraries read theirs during a run

    def entry_points(group=None, **kwargs):
        if group == "cffbench.goodness":
            return [entry]
        return real(group=group, **kwargs) if group is not None else real(**kwargs)

    monkeypatch.setattr(plugins.importlib.metadata, "entry_points", entry_points)
    study_file = write(tmp_path, "ep.toml", STUDY.replace('plugins = ["sumsq.py"]\n', "")
                       .replace("seeds = [0, 1, 2]", "seeds = [0, 1]")
                       .replace('"sum_squares"]', '"ep_sum_squares"]'))
    results = tmp_path / "results"
    try:
        plugins.load_entry_points()
        run_study(study_file, results, executor="serial", data_root=tmp_path,
                  load_fn=synthetic_load)
        main(["analyze", str(results)])                     # installed: analysable
        assert "f-cff" in capsys.readouterr().out
    finally:
        GOODNESS.unregister("ep_sum_squares")               # "uninstalled"
    with pytest.raises(SystemExit) as info:
        main(["analyze", str(results)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1, err
    # (no distribution in this test, so no version: the name is the entry point's module)
    assert "its runs used ep_goodness (installed entry points" in err
    assert "install them to analyse this store" in err


def test_time_and_memory_estimates_count_a_plugin_variant_by_what_its_rule_reads():
    from cffbench.study.flops import run_flops
    from cffbench.study.gpu import estimate_run_memory

    load_plugin_file(Path(__file__).resolve().parents[1] / "examples" / "lower_layers_cff.py")
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        load_plugin_file(write(Path(folder), "shifted.py", VARIANT))
    shape = (1000, 200, 200, 784, 10)
    for variant, like in (("cff-lower", "f-cff"), ("ff-shifted", "ff")):
        config = TrainConfig(variant=variant, hidden=(50, 40, 30), epochs_per_layer=3)
        twin = TrainConfig(variant=like, hidden=(50, 40, 30), epochs_per_layer=3)
        assert run_flops(config, *shape) == run_flops(twin, *shape), variant
        assert estimate_run_memory(config, *shape) == estimate_run_memory(twin, *shape)
    assert run_flops(TrainConfig(variant="cff-lower", hidden=(50, 40, 30)), *shape) > \
        run_flops(TrainConfig(variant="ff", hidden=(50, 40, 30)), *shape)


#: A rule whose state hides everywhere the default must look: a tensor in a list of lists inside
#: a plain object, parameters that live only in their optimiser, a random generator, a counter.
BUSY_RULE = '''\
import types

import torch

from cffbench.extensions import VARIANTS
from cffbench.ff.collaboration import LogitRule
from cffbench.ff.variants import Variant


class Busy(LogitRule):
    def __init__(self, config, seed_shape=()):
        super().__init__(config.n_layers, seed_shape)
        self.threshold, self.lr = config.threshold, config.gamma_lr
        self.holder = types.SimpleNamespace(
            bias=[[torch.zeros(seed_shape, requires_grad=True)] for _ in range(self.n_layers)])
        self.optimizers = [torch.optim.Adam([torch.zeros(seed_shape, requires_grad=True)],
                                            lr=self.lr) for _ in range(self.n_layers)]
        self.noise = torch.Generator().manual_seed(0)
        self.steps = 0

    def logits(self, layer, own, others):
        bias = self.holder.bias[layer][0]
        shift = self.optimizers[layer].param_groups[0]["params"][0]
        jitter = torch.rand((), generator=self.noise) * 0.05
        learned = bias + shift                      # seed_shape: one value per run
        learned = learned[..., None] if learned.dim() else learned
        return own - self.threshold + learned + jitter + 1e-3 * self.steps

    def zero_grad(self, layer):
        self.optimizers[layer].zero_grad(set_to_none=True)
        self.holder.bias[layer][0].grad = None

    def step(self, layer):
        self.optimizers[layer].step()
        bias = self.holder.bias[layer][0]
        with torch.no_grad():
            bias -= self.lr * bias.grad
        self.steps += 1


@VARIANTS.register
class BusyFF(Variant):
    name = "ff-busy"

    def logit_rule(self, config, device, seed_shape=()):
        return Busy(config, seed_shape)
'''


def test_a_rules_state_anywhere_in_its_attribute_tree_resumes_exactly(tmp_path):
    from test_checkpoint import Interrupt, assert_same_result, stop_after

    from cffbench.ff.checkpoint import RunCheckpoint

    load_plugin_file(write(tmp_path, "busy.py", BUSY_RULE))
    splits = make_synthetic_splits(n_train=120, n_eval=60, n_features=24)
    config = TrainConfig(variant="ff-busy", hidden=(16, 12), epochs_per_layer=6, gamma_lr=0.05)
    reference = train_run(config, splits)
    checkpoint = RunCheckpoint(tmp_path / "run.pt", "run", every=2)
    with pytest.raises(Interrupt):
        train_run(config, splits, on_epoch=stop_after(9), checkpoint=checkpoint)
    resumed = train_run(config, splits, checkpoint=RunCheckpoint(checkpoint.path, "run", every=2))
    assert resumed.resumed_at == "layer 2, epoch 2"
    assert_same_result(resumed, reference)


def test_a_variant_that_needs_three_layers_says_so_in_probe_settings_and_loads(tmp_path, capsys):
    three = VARIANT.replace('''        super().__init__(config.n_layers, seed_shape)
''', '''        super().__init__(config.n_layers, seed_shape)
        if config.n_layers < 3:
            raise ValueError("ff-shifted needs at least 3 hidden layers")
''')
    from cffbench.errors import ExtensionError

    with pytest.raises(ExtensionError, match="fails for a 2-layer config .*probe_settings"):
        load_plugin_file(write(tmp_path, "three.py", three))
    declared = three.replace('    name = "ff-shifted"\n',
                             '    name = "ff-shifted"\n    probe_settings = {"hidden": (4, 4, 4)}\n')
    load_plugin_file(write(tmp_path / "ok" if (tmp_path / "ok").mkdir() is None else tmp_path,
                           "three.py", declared))
    result = train_run(TrainConfig(variant="ff-shifted", hidden=(12, 10, 8), epochs_per_layer=2),
                       make_synthetic_splits(n_train=120, n_eval=60, n_features=24))
    assert result.status == "ok"
    # a configuration the rule refuses is one line at planning, not a traceback
    study = write(tmp_path, "three.toml", STUDY.replace('["sumsq.py"]', '["ok/three.py"]')
                  .replace('variant = ["ff", "f-cff"]', 'variant = ["ff-shifted"]')
                  .replace('goodness = ["mean_squares", "sum_squares"]\n', "")
                  .split("[analysis]")[0].replace("hidden = [12]", "hidden = [12, 10]"))
    unload_plugin_files()
    with pytest.raises(SystemExit) as info:
        main(["plan", str(study), "--no-calibrate", "--gpu-tflops", "10"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1, err
    assert "variant 'ff-shifted': logit_rule() fails for this configuration: ValueError: " \
           "ff-shifted needs at least 3 hidden layers" in err


def test_an_edited_plugin_decode_is_never_served_the_old_decoders_cached_tensors(tmp_path):
    from cffbench.data import load_splits

    md5 = tiny_digits(tmp_path / "data" / "TinyDigits")
    plugin = write(tmp_path, "tiny.py", DATASET.replace("@MD5@", md5))
    load_plugin_file(plugin)
    first = load_splits("tiny-digits", tmp_path / "data").x_train
    unload_plugin_files()
    write(tmp_path, "tiny.py", DATASET.replace("@MD5@", md5).replace(
        'for k in ("xtr", "ytr", "xte", "yte"))',
        'for k in ("xtr", "ytr", "xte", "yte"))[:0] + (torch.from_numpy(255 - z["xtr"]), '
        'torch.from_numpy(z["ytr"]), torch.from_numpy(z["xte"]), torch.from_numpy(z["yte"]))'))
    load_plugin_file(plugin)
    second = load_splits("tiny-digits", tmp_path / "data").x_train
    assert not torch.equal(first, second)


def test_a_plugin_decode_with_labels_of_the_wrong_shape_is_one_line_naming_its_plugin(tmp_path,
                                                                                       capsys):
    md5 = tiny_digits(tmp_path / "data" / "TinyDigits")
    plugin = write(tmp_path, "tiny.py", DATASET.replace("@MD5@", md5).replace(
        'for k in ("xtr", "ytr", "xte", "yte"))',
        'for k in ("xtr", "ytr", "xte", "yte"))[:1] + (torch.from_numpy(z["ytr"])[:, None], '
        'torch.from_numpy(z["xte"]), torch.from_numpy(z["yte"]))'))
    with pytest.raises(SystemExit):
        main(["train", "--plugin", str(plugin), "--dataset", "tiny-digits", "--epochs", "1",
              "--data-root", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "are not (N,) int64" in err, err
    assert f"--plugin {plugin.resolve()}" in err and "or check the dataset's decode()" in err
