"""The training configuration is declared once (``TrainConfig``): every field is settable from a
study file (its section, a grid axis, or ``seeds``), from ``cffbench train`` (an option and
``--set``), and is a store column; a bad value gets the same words on every path."""

from __future__ import annotations

import datetime
import json
import math
import subprocess
import sys
import tomllib
import types
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pyarrow.parquet as pq
import pytest
from annotated_types import Ge, Gt, Lt
from pydantic.fields import FieldInfo

from cffbench.cli import main
from cffbench.errors import StudyError, TrainConfigError
from cffbench.extensions import GOODNESS
from cffbench.ff import TrainConfig
from cffbench.ff.goodness import GoodnessFunction
from cffbench.ff.config import registry_of, settings
from cffbench.study import RUN_SCHEMA, RunStore, RunTask, expand, parse_study, read_runs
from cffbench.study.spec import GRID_KEYS
from cffbench.study.store import LEGACY_RUN_SCHEMAS

REPO = Path(__file__).resolve().parents[1]
FIELDS = list(TrainConfig.model_fields)
PREFIX = "invalid training configuration: "
#: A configuration under which every field affects the run (a-cff, distance alpha, 3 layers), so
#: no grid point is merged away by ``effective()``.
BASE = {"variant": "a-cff", "alpha": "distance", "hidden": (5, 5, 5), "epochs_per_layer": 2}
HEAD = 'name = "t"\n[data]\ndatasets = ["mnist"]\nn_train = 100\n'


class SumOfSquares(GoodnessFunction):
    """A second goodness function, so that ``goodness`` has a valid value besides its default."""

    name = "sum_of_squares_test"

    def __call__(self, h):
        return h.pow(2).sum(dim=-1)


@pytest.fixture(autouse=True)
def second_goodness():
    GOODNESS.register(SumOfSquares)
    yield
    GOODNESS.unregister(SumOfSquares.name)


def toml_literal(value: Any) -> str:
    """``value`` as a TOML value (what a study file, an option or ``--set`` would hold)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    return repr(value)


def base_value(name: str) -> Any:
    return BASE.get(name, TrainConfig.model_fields[name].default)


def other_value(name: str) -> Any:
    """A valid value of ``name`` that differs from :data:`BASE`'s (derived from the type only)."""
    kind = TrainConfig.model_fields[name].annotation
    if registry_of(name) is not None:
        return next(v for v in registry_of(name).names() if v != base_value(name))
    if get_origin(kind) is Literal:
        return next(v for v in get_args(kind) if v != base_value(name))
    if get_origin(kind) is tuple:
        return (7, 7, 7)
    return base_value(name) + (3 if kind is int else 0.25)


def bad_values(name: str) -> list[Any]:
    """Values ``TrainConfig`` must refuse, from the field's type and declared constraints."""
    info: FieldInfo = TrainConfig.model_fields[name]
    kind = info.annotation
    if get_origin(kind) is Literal or registry_of(name) is not None:
        return ["nope"]
    if get_origin(kind) is tuple:
        return [[], [0], [5, 1.5], "500-500"]
    values: list[Any] = ["abc"] + ([1.5] if kind is int else [])
    for m in info.metadata:
        if isinstance(m, Ge):
            values.append(m.ge - 1)
        elif isinstance(m, Gt):
            values.append(m.gt)
        elif isinstance(m, Lt):
            values.append(m.lt)
        elif getattr(m, "allow_inf_nan", True) is False:
            values += [math.inf, math.nan]
    return values


def study_text(name: str, value: Any, as_axis: bool) -> str:
    """A study with :data:`BASE` (minus ``name``) and ``name`` set to ``value`` (or ``[base, value]``
    as a grid axis; ``seeds = [value]`` for ``seed``)."""
    if name == "seed":
        return f"seeds = [{toml_literal(value)}]\n" + HEAD
    sections: dict[str, list[str]] = {"train": [], "collab": [], "grid": []}
    for key, base in BASE.items():
        if key != name:
            sections[GRID_KEYS[key]].append(f"{key} = {toml_literal(base)}")
    if as_axis:
        sections["grid"].append(f"{name} = [{toml_literal(base_value(name))}, {toml_literal(value)}]")
    else:
        sections[GRID_KEYS[name]].append(f"{name} = {toml_literal(value)}")
    return "seeds = [0]\n" + HEAD + "".join(
        f"[{section}]\n" + "".join(f"{line}\n" for line in lines) for section, lines in sections.items())


def config_message(name: str, value: Any) -> str:
    with pytest.raises(TrainConfigError) as info:
        TrainConfig(**{name: value})
    message = str(info.value)
    assert message.startswith(PREFIX) and "\n" not in message
    return message


def flags(name: str) -> str:
    names = [*filter(None, [settings()[name].cli_short]), "--" + name.replace("_", "-")]
    return " / ".join(f"'{n}'" for n in names)


@pytest.fixture
def captured_train(monkeypatch):
    """``cffbench train`` with the data load and the training replaced: the configs it built."""
    import cffbench.data
    import cffbench.ff

    configs: list[TrainConfig] = []

    def fake_train_run(config, splits, device="cpu"):
        configs.append(config)
        return types.SimpleNamespace(status="ok", diverged_epoch=None, test_acc=0.5, val_acc=0.5,
                                     train_acc=0.5, duration_s=0.0, device=device, layer_stats=[],
                                     gamma_final=[], notes=[])

    monkeypatch.setattr(cffbench.data, "load_splits", lambda *a, **k: None)
    monkeypatch.setattr(cffbench.ff, "train_run", fake_train_run)
    return configs


def cli_error(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as info:
        main(["train", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("cffbench: error: ")
    return err[len("cffbench: error: "):]


# ----------------------------------------------------------------------------- settable everywhere
@pytest.mark.parametrize("name", FIELDS)
def test_every_field_is_settable_in_its_study_section_or_seeds(name):
    value = other_value(name)
    runs = expand(parse_study(study_text(name, value, as_axis=False), "s.toml"))
    assert runs and {getattr(r.config, name) for r in runs} == {value}


@pytest.mark.parametrize("name", [f for f in FIELDS if f != "seed"])
def test_every_section_field_is_a_grid_axis(name):
    runs = expand(parse_study(study_text(name, other_value(name), as_axis=True), "s.toml"))
    assert {getattr(r.config, name) for r in runs} == {base_value(name), other_value(name)}


def test_seed_is_set_by_seeds_and_is_no_section_or_grid_key():
    assert "seed" not in GRID_KEYS
    assert set(GRID_KEYS) == set(FIELDS) - {"seed"}


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_is_settable_by_train_set_and_by_its_own_option(name, captured_train):
    value = other_value(name)
    main(["train", "--set", f"{name}={toml_literal(value)}"])
    main(["train", "--" + name.replace("_", "-"), toml_literal(value)])
    assert [getattr(c, name) for c in captured_train] == [value, value]
    # everything else keeps TrainConfig's defaults
    assert captured_train[0] == TrainConfig(**{name: value})


def test_train_option_conveniences_keep_working(captured_train):
    main(["train", "--variant", "a-cff", "--epochs", "7", "--hidden", "30-20", "--alpha", "ones",
          "--set", "alpha_decay=0.25", "--set", "gamma_optimizer=adam", "--lr", "1e-3"])
    assert captured_train == [TrainConfig(variant="a-cff", epochs_per_layer=7, hidden=(30, 20),
                                          alpha="ones", alpha_decay=0.25, gamma_optimizer="adam",
                                          lr=0.001)]


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_is_a_store_column_holding_the_value(name, tmp_path):
    value = other_value(name)
    config = TrainConfig(**{**BASE, name: value})
    assert name in RUN_SCHEMA.names
    task = RunTask("r" * 16, "t", "mnist", 100, config.seed, config, config.effective())
    outcome = types.SimpleNamespace(result=None, n_train=None, status="failed", duration_s=0.0,
                                    device="cpu", error="x",
                                    started_at=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc))
    store = RunStore(tmp_path)
    store.runs_dir.mkdir(parents=True)
    store.record(task, outcome)
    stored = read_runs(tmp_path).iloc[0][name]
    assert stored == ("-".join(map(str, value)) if isinstance(value, tuple) else value)


def test_committed_part_files_match_the_derived_run_schema():
    files = sorted((REPO / "results").glob("*/runs/*.parquet"))
    assert files
    for path in files:
        schema = pq.read_schema(path).remove_metadata()
        assert any(schema.equals(s) for s in (RUN_SCHEMA, *LEGACY_RUN_SCHEMAS)), path


# ----------------------------------------------------------------------------- no drift
DRIFT_CASES = [(name, bad) for name in FIELDS for bad in bad_values(name)]


@pytest.mark.parametrize("name, bad", DRIFT_CASES, ids=[f"{n}={b!r}" for n, b in DRIFT_CASES])
def test_a_bad_value_gets_the_same_words_in_python_study_grid_set_and_option(name, bad, capsys):
    message = config_message(name, bad)
    rest = message[len(PREFIX):]
    assert rest.startswith(name)
    tail = rest[len(name):]           # ".0: ..." for a bad width, else ": ..."
    if name == "seed":
        with pytest.raises(StudyError) as info:
            parse_study(study_text(name, bad, as_axis=False), "s.toml")
        assert str(info.value) == f"s.toml: [seeds] 0{tail}"
    else:
        with pytest.raises(StudyError) as info:
            parse_study(study_text(name, bad, as_axis=False), "s.toml")
        assert str(info.value) == f"s.toml: [{GRID_KEYS[name]}] {rest}"
        with pytest.raises(StudyError) as info:
            parse_study(study_text(name, bad, as_axis=True), "s.toml")
        assert str(info.value) == f"s.toml: [grid] {name}.1{tail}"
    literal = toml_literal(bad)
    assert cli_error(capsys, "--set", f"{name}={literal}") == message
    hint = "; write layer widths as 500-500 or [500, 500]" if isinstance(bad, str) and name == "hidden" else ""
    assert cli_error(capsys, "--" + name.replace("_", "-"), literal) == \
        f"Invalid value for {flags(name)}: {rest}{hint}"


def test_alpha_decay_zero_is_refused_by_a_study_file_as_by_train_config():
    with pytest.raises(TrainConfigError) as config:
        TrainConfig(alpha_decay=0)
    assert str(config.value) == "invalid training configuration: alpha_decay: Input should be greater than 0 (got 0)"
    with pytest.raises(StudyError) as study:
        parse_study(HEAD + "[collab]\nalpha_decay = 0\n", "s.toml")
    assert str(study.value) == "s.toml: [collab] alpha_decay: Input should be greater than 0 (got 0)"


# ----------------------------------------------------------------------------- bad --set, for real
@pytest.mark.parametrize("setting, fragment", [
    ("learning_rate=0.1", "unknown training setting 'learning_rate'; allowed: variant, hidden"),
    ("lr", "expected key=value"),
    ("epochs_per_layer=many", "epochs_per_layer: Input should be a valid integer"),
    ("epochs_per_layer=0", "epochs_per_layer: Input should be greater than or equal to 1 (got 0)"),
    ("alpha_decay=0", "alpha_decay: Input should be greater than 0 (got 0)"),
    ("variant=cff", "variant: Input should be 'ff', 'f-cff', 'a-cff' or 'bp' (got 'cff')"),
])
def test_bad_set_exits_2_with_one_line_and_no_traceback(setting, fragment):
    done = subprocess.run([sys.executable, "-m", "cffbench", "train", "--set", setting],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cffbench: error: ") and fragment in lines[0]
    assert "Traceback" not in done.stderr + done.stdout and done.stdout == ""


def test_a_field_given_twice_is_refused(capsys):
    assert "gamma is already set by --gamma" in cli_error(capsys, "--gamma", "1", "--set", "gamma=2")
    assert "seed is already set by --set 'seed=1'" in cli_error(capsys, "--set", "seed=1", "--set", "seed=2")


# ----------------------------------------------------------------------------- docs
def _docs_table(heading: str) -> dict[str, Any]:
    text = (REPO / "docs" / "studies.md").read_text(encoding="utf-8")
    table = text.split(heading, 1)[1].split("\n### ", 1)[0]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = tomllib.loads(f"v = {cells[1].strip('`')}")["v"]
    return rows


@pytest.mark.parametrize("section", ["train", "collab"])
def test_docs_tables_list_each_section_key_with_train_config_default(section):
    rows = _docs_table(f"### `[{section}]`")
    expected = {name: TrainConfig.model_fields[name].default for name in FIELDS
                if settings()[name].section == section}
    assert list(rows) == list(expected)
    for name, default in expected.items():
        assert rows[name] == (list(default) if isinstance(default, tuple) else default), name


def test_architecture_doc_lists_the_derived_parameter_columns():
    from cffbench.study.store import PARAMETER_COLUMNS

    text = " ".join((REPO / "docs" / "architecture.md").read_text(encoding="utf-8").split())
    listed = text.split("derived from `TrainConfig`: `", 1)[1].split("`", 1)[0]
    assert [c.split(" (")[0] for c in listed.split(", ")] == list(PARAMETER_COLUMNS)


def test_the_reports_main_configuration_defaults_are_train_configs():
    # report/tables.py keeps its own MAIN_DEFAULTS (in a report-specific key order); they must
    # stay TrainConfig's defaults, written as the store writes them, and cover every analysis
    # factor: an axis missing there is one the report pools over (goodness was, so the
    # goodness_plugins report showed three unlabelled FF rows and pooled their curves)
    from cffbench.analysis.factors import AXIS_COLUMNS
    from cffbench.report.tables import MAIN_DEFAULTS

    assert set(MAIN_DEFAULTS) == set(AXIS_COLUMNS)
    for name, default in MAIN_DEFAULTS.items():
        if name in TrainConfig.model_fields:
            expected = TrainConfig.model_fields[name].default
            assert default == ("-".join(map(str, expected)) if isinstance(expected, tuple) else expected), name
