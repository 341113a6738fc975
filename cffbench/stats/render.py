"""Renderings of a :class:`~cffbench.stats.compare.Comparison`: plain text, HTML, LaTeX."""

from __future__ import annotations

import html

import pandas as pd

from cffbench import fmt

TABLE_ORDER = ["descriptives", "assumptions", "rm_anova", "friedman", "anova", "welch_anova",
               "kruskal", "tukey", "posthoc", "power"]


def _tables(result) -> list[tuple[str, pd.DataFrame]]:
    names = [n for n in TABLE_ORDER if n in result.tables] + [n for n in result.tables if n not in TABLE_ORDER]
    return [(n, result.tables[n]) for n in names]


def _header(result) -> str:
    factors = " × ".join(result.factors) or "(none)"
    return (f"{result.dv} by {factors}: {result.design} design, path {result.path}, "
            f"n = {result.n_blocks}{' blocks' if result.design == 'within' else ''}")


def comparison_text(result) -> str:
    """Plain text: header, decisions, APA sentences, power, warnings, then the tables."""
    lines = [_header(result), "", "Decisions:"]
    lines += [f"  - {d.step}: {d.choice} — {d.reason}" for d in result.decisions]
    if result.apa:
        lines += ["", "Results:"] + [f"  {s}" for s in result.apa]
    if result.power is not None:
        lines += ["", "Power:", f"  {result.power.text}"]
    if result.warnings:
        lines += ["", "Warnings:"] + [f"  ! {w}" for w in result.warnings]
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.precision", 4):
        for name, table in _tables(result):
            lines += ["", f"[{name}]", table.to_string(index=False)]
    return "\n".join(lines) + "\n"


def comparison_html(result) -> str:
    """An HTML ``<section>`` fragment (escaped text, ``DataFrame.to_html`` tables)."""
    esc = html.escape
    parts = [f'<section class="cffbench-comparison"><h3>{esc(_header(result))}</h3>',
             "<h4>Decisions</h4><ol>"]
    parts += [f"<li><b>{esc(d.step)}</b>: {esc(d.choice)} — {esc(d.reason)}</li>" for d in result.decisions]
    parts.append("</ol>")
    if result.apa:
        parts.append("<h4>Results</h4><ul>" + "".join(f"<li>{esc(s)}</li>" for s in result.apa) + "</ul>")
    if result.power is not None:
        parts.append(f'<p class="power">{esc(result.power.text)}</p>')
    if result.warnings:
        parts.append('<ul class="warnings">' + "".join(f"<li>{esc(w)}</li>" for w in result.warnings) + "</ul>")
    for name, table in _tables(result):
        parts.append(f"<h4>{esc(name)}</h4>" + table.to_html(index=False, float_format=fmt.sig,
                                                              na_rep="—", classes=f"table-{name}"))
    parts.append("</section>")
    return "\n".join(parts)


def comparison_latex(result) -> str:
    """LaTeX source: itemised decisions and sentences, one ``tabular`` per table."""
    esc = fmt.latex_escape
    parts = [f"\\subsection*{{{esc(_header(result))}}}", "\\paragraph{Decisions}", "\\begin{enumerate}"]
    parts += [f"\\item \\textbf{{{esc(d.step)}}}: {esc(d.choice)} -- {esc(d.reason)}" for d in result.decisions]
    parts.append("\\end{enumerate}")
    if result.apa:
        parts += ["\\paragraph{Results}", "\\begin{itemize}"] + [f"\\item {esc(s)}" for s in result.apa] + ["\\end{itemize}"]
    if result.power is not None:
        parts.append(f"\\paragraph{{Power}} {esc(result.power.text)}")
    if result.warnings:
        parts += ["\\paragraph{Warnings}", "\\begin{itemize}"] + [f"\\item {esc(w)}" for w in result.warnings] + ["\\end{itemize}"]
    for name, table in _tables(result):
        shown = table.copy()
        shown.columns = [esc(str(c)) for c in shown.columns]
        for column in shown.columns:
            if not pd.api.types.is_numeric_dtype(shown[column]):  # text, categorical, mixed
                shown[column] = shown[column].astype(object).map(lambda v: esc(v) if isinstance(v, str) else v)
        body = shown.to_latex(index=False, float_format=fmt.sig, na_rep="--", escape=False)
        parts += [f"\\paragraph{{{esc(name)}}}", body]
    return "\n".join(parts) + "\n"
