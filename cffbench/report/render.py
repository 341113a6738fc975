"""Render the report context to HTML, PDF (WeasyPrint, same HTML + print styles) and LaTeX."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import jinja2
import markupsafe

from cffbench.errors import ReportError
from cffbench.report.context import build_context
from cffbench.report.latex import write_tables
from cffbench.report.store import load_inputs

FORMATS = ("html", "pdf", "latex")


#: A decimal number in running text, with the comparison before it: "= .024", "< .001", "−1.55".
_NUMBER = re.compile(r"(?:(?:&lt;|&gt;|[=≤≥])\s?)?[−+-]?\d*\.\d+")


def unbroken_numbers(text: str) -> markupsafe.Markup:
    """``text`` HTML-escaped, each decimal number (with its comparison) in a no-break span: the
    PDF's line breaker would otherwise end a line at "p_adj = ." and start the next at "024"."""
    escaped = str(markupsafe.escape(text))
    return markupsafe.Markup(_NUMBER.sub(lambda m: f'<span class="nobr">{m.group(0)}</span>', escaped))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cffbench.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True)
    env.filters["unbroken_numbers"] = unbroken_numbers
    return env


def render_html(context: dict) -> str:
    """The self-contained report page (CSS inlined, figures as inline SVG)."""
    css = resources.files("cffbench.report").joinpath("templates/report.css").read_text()
    return _environment().get_template("report.html.j2").render(**context, css=css)


def write_pdf(html: str, path: Path, base_url: Path) -> Path:
    """Print ``html`` with WeasyPrint (the ``@media print`` rules apply)."""
    import weasyprint

    # WeasyPrint logs every unsupported CSS property at WARNING; the report does not need them.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    weasyprint.HTML(string=html, base_url=str(base_url)).write_pdf(path)
    return path


def parse_formats(formats: Iterable[str] | str) -> tuple[str, ...]:
    """Normalise ``"html,pdf"`` or ``["html", "pdf"]``; unknown names raise ReportError."""
    if isinstance(formats, str):
        formats = formats.split(",")
    chosen = tuple(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise ReportError(f"unknown report format(s) {', '.join(unknown) or '(none)'}; "
                          f"allowed: {', '.join(FORMATS)} (comma-separated)")
    return chosen


def build_report(results_dir: Path | str, out: Path | str | None = None,
                 formats: Iterable[str] | str = FORMATS) -> dict[str, Path]:
    """Build the report of one results directory.

    Parameters
    ----------
    results_dir : a folder written by the run store (``runs/``, ``curves/``, ``study.toml``).
    out : output folder; default ``reports/<study name>``.
    formats : any of ``"html"``, ``"pdf"``, ``"latex"`` (or one comma-separated string).

    Returns
    -------
    dict
        ``{"html": report.html, "pdf": report.pdf, "latex": tables/, "figures": figures/}``
        for the formats written (figures are always written).

    Raises
    ------
    ReportError
        Missing or empty results directory, unknown format, unwritable output folder.
    """
    chosen = parse_formats(formats)
    inputs = load_inputs(results_dir)
    out_dir = Path(out) if out is not None else Path("reports") / inputs.study_name
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create the report folder {out_dir}: {exc.strerror}") from None
    fig_dir = out_dir / "figures"
    context = build_context(inputs, fig_dir)
    written: dict[str, Path] = {"figures": fig_dir}
    html = render_html(context)
    if "html" in chosen:
        written["html"] = out_dir / "report.html"
        written["html"].write_text(html, encoding="utf-8")
    if "pdf" in chosen:
        written["pdf"] = write_pdf(html, out_dir / "report.pdf", out_dir)
    if "latex" in chosen:
        write_tables(context["tables"], out_dir / "tables")
        written["latex"] = out_dir / "tables"
    return written
