"""Study files: the docs example, grid expansion, deduplication, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cffbench.errors import StudyError
from cffbench.study import expand, load_study, parse_study

REPO = Path(__file__).resolve().parents[1]

# Verbatim from the issue / docs/studies.md: users copy this, so it must work exactly as written.
DOCS_EXAMPLE = '''\
name = "quick"
description = "FF vs F-CFF vs A-CFF on small MNIST / Fashion-MNIST subsets"
seeds = [0, 1, 2, 3, 4]

[data]
datasets = ["mnist", "fashion-mnist"]
n_train = 2000                 # subset of the 50k training split; omit for all of it

[train]
hidden = [500, 500]
epochs_per_layer = 200
lr = 0.03
threshold = 2.0
batch_size = 0                 # 0 = full batch
schedule = "sequential"        # or "alternating"

[collab]
gamma = 1.0                    # F-CFF's gamma, A-CFF's initial gamma
gamma_lr = 0.01
theta_placement = "per_term"   # or "single"

[grid]                         # each key is an axis; the study is their product x datasets x seeds
variant = ["ff", "f-cff", "a-cff"]
alpha = ["uniform"]

[execution]
executor = "local"             # serial | local | dask
workers = 2
device = "auto"
'''

BASE = '''\
name = "t"
seeds = [0, 1]
[data]
datasets = ["mnist"]
n_train = 200
'''


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_docs_example_loads_and_expands_exactly_as_written(tmp_path):
    study = load_study(write(tmp_path, DOCS_EXAMPLE))
    runs = expand(study)
    # 5 seeds x 2 datasets x 3 variants, one alpha
    assert len(runs) == 30
    assert {r.variant for r in runs} == {"ff", "f-cff", "a-cff"}
    assert {r.dataset for r in runs} == {"mnist", "fashion-mnist"}
    assert sorted({r.seed for r in runs}) == [0, 1, 2, 3, 4]
    assert all(r.n_train == 2000 and r.config.hidden == (500, 500) for r in runs)
    assert all(r.config.epochs_per_layer == 200 and r.config.seed == r.seed for r in runs)
    assert study.execution.executor == "local" and study.execution.workers == 2
    assert len({r.run_id for r in runs}) == 30


def test_docs_studies_md_contains_the_example_verbatim():
    assert DOCS_EXAMPLE in (REPO / "docs" / "studies.md").read_text()


def test_ff_with_three_alphas_is_one_run_per_seed_and_dataset(tmp_path):
    study = load_study(write(tmp_path, BASE + '''
[train]
hidden = [50, 50, 50, 50]
[grid]
variant = ["ff", "f-cff"]
alpha = ["uniform", "distance", "learned"]
'''))
    runs = expand(study)
    ff = [r for r in runs if r.variant == "ff"]
    cff = [r for r in runs if r.variant == "f-cff"]
    assert len(ff) == 2            # one per seed, not three
    assert len(cff) == 2 * 3
    assert sorted(r.seed for r in ff) == [0, 1]


def test_two_layer_alpha_structures_coincide_so_cff_is_one_run_per_seed(tmp_path):
    # With two hidden layers uniform, distance, learned and ones are all [[0, 1], [1, 0]].
    study = load_study(write(tmp_path, BASE + '''
[train]
hidden = [50, 50]
[grid]
variant = ["f-cff", "a-cff"]
alpha = ["uniform", "distance", "learned", "ones"]
'''))
    runs = expand(study)
    assert len(runs) == 2 * 2                      # 2 seeds x 2 variants, not x 4 alphas
    assert {r.effective["alpha"] for r in runs} == {"uniform"}


def test_any_train_or_collab_key_can_be_a_grid_axis(tmp_path):
    study = load_study(write(tmp_path, BASE + '''
[train]
variant = "f-cff"
[grid]
schedule = ["sequential", "alternating"]
epochs_per_layer = [100, 300]
hidden = [[500, 500], [500, 500, 500, 500]]
theta_placement = ["per_term", "single"]
'''))
    runs = expand(study)
    assert len(runs) == 2 * 2 * 2 * 2 * 2     # 4 axes of 2 x 2 seeds
    assert {r.config.hidden for r in runs} == {(500, 500), (500, 500, 500, 500)}
    assert {r.config.schedule for r in runs} == {"sequential", "alternating"}


@pytest.mark.parametrize("path", sorted((REPO / "studies").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_studies_load_and_expand(path):
    study = load_study(path)
    assert study.name == path.stem
    assert len(expand(study)) > 0


def test_shipped_study_sizes_follow_their_protocols():
    sizes = {p.stem: expand(load_study(p)) for p in (REPO / "studies").glob("*.toml")}
    paper = sizes["paper_table1"]
    # 2 datasets x 10 seeds x (ff + 2 theta placements x {f-cff, a-cff})
    assert len(paper) == 2 * 10 * 5
    assert all(r.n_train is None and r.config.epochs_per_layer == 1000 for r in paper)
    assert {r.config.theta_placement for r in paper if r.variant != "ff"} == {"per_term", "single"}
    ablation = sizes["alpha_ablation"]
    assert all(len(r.config.hidden) == 4 for r in ablation)
    assert {(r.variant, r.config.alpha) for r in ablation if r.variant != "ff"} == {
        (v, a) for v in ("f-cff", "a-cff") for a in ("uniform", "distance", "learned")}
    assert {len(r.config.hidden) for r in sizes["depth"]} == {2, 3, 4}
    replication = sizes["replication_cpu"]
    # 2 datasets x 10 seeds x (ff + bp + 2 theta placements x {f-cff, a-cff})
    assert len(replication) == 2 * 10 * 6 and len({r.seed for r in replication}) >= 10
    assert {(r.variant, r.config.theta_placement) for r in replication
            if r.variant in ("f-cff", "a-cff")} == {
        (v, t) for v in ("f-cff", "a-cff") for t in ("per_term", "single")}
    assert {r.variant for r in replication} == {"ff", "bp", "f-cff", "a-cff"}
    quick = sizes["quick"]
    assert {r.variant for r in quick} == {"ff", "f-cff", "a-cff"}
    assert {r.dataset for r in quick} == {"mnist", "fashion-mnist"}
    assert len({r.seed for r in quick}) >= 3


@pytest.mark.parametrize("text, fragments", [
    (BASE + "[train]\nvariant = 'fff'\n", ["[train] variant", "'ff', 'f-cff', 'a-cff' or 'bp'"]),
    (BASE + "[grid]\nvariant = ['ff', 'xx']\n", ["[grid] variant.1", "'bp'"]),
    (BASE + "[grid]\nalpha = ['uniform', 'random']\n", ["[grid] alpha.1", "'learned'"]),
    (BASE.replace('"mnist"', '"imagenet"'), ["[data] datasets", "imagenet", "fashion-mnist"]),
    (BASE + "[train]\nepochs_per_layer = -5\n", ["[train] epochs_per_layer", "greater than or equal to 1"]),
    (BASE + "[train]\nlearning_rate = 0.1\n", ["unknown key 'learning_rate'", "[train]", "epochs_per_layer"]),
    (BASE + "[grid]\nseed = [1, 2]\n", ["unknown key 'seed'", "[grid]"]),
    (BASE + "[execution]\nworkers = 0\n", ["[execution] workers", "greater than or equal to 1"]),
    (BASE + "[execution]\nexecutor = 'slurm'\n", ["[execution] executor", "'dask'"]),
    (BASE + "[train]\nschedule = 'sequential'\n[grid]\nschedule = ['alternating']\n",
     ["[train] schedule is also a [grid] axis"]),
    (BASE + "[grid]\nhidden = []\n", ["[grid] hidden", "at least 1"]),
    (BASE.replace("seeds = [0, 1]", "seeds = [0, 0]"), ["seeds", "more than once"]),
    (BASE.replace("seeds = [0, 1]", "seeds = [9223372036854775808]"), ["[seeds] 0", "less than 9223372036854775808"]),
    (BASE.replace("seeds = [0, 1]", 'seeds = ["1"]'), ["[seeds] 0", "valid integer"]),
    (BASE.replace("seeds = [0, 1]", "seeds = [1.0]"), ["[seeds] 0", "valid integer"]),
    (BASE.replace("n_train = 200", "n_train = 60000"), ["n_train = 60000", "mnist", "10..50000"]),
    (BASE.replace("n_train = 200", "n_train = 5"), ["n_train = 5", "mnist", "10..50000"]),
])
def test_bad_study_file_gives_one_line_naming_file_key_and_allowed(tmp_path, text, fragments):
    path = write(tmp_path, text)
    with pytest.raises(StudyError) as info:
        expand(load_study(path))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message


def test_bad_toml_names_file_and_line(tmp_path):
    path = write(tmp_path, 'name = "t"\nseeds = [0, 1\n[data]\n')
    with pytest.raises(StudyError, match=r"study\.toml: invalid TOML: .*line 3"):
        load_study(path)


def test_missing_study_file_is_a_study_error(tmp_path):
    with pytest.raises(StudyError, match="no such study file"):
        load_study(tmp_path / "nope.toml")


def test_name_defaults_to_file_stem(tmp_path):
    study = parse_study("seeds = [0]\n", tmp_path / "my-study.toml")
    assert study.name == "my-study"
