"""Plain LaTeX tables (booktabs, no siunitx) that compile in a stock ``article`` with
``\\usepackage{booktabs}``; written to ``tables/<key>.tex``."""

from __future__ import annotations

from pathlib import Path

from cffbench.fmt import latex_escape
from cffbench.report.tables import Table

escape = latex_escape  # the one escaper (cffbench.fmt), under the name the report uses


def to_latex(table: Table, label_prefix: str = "tab:") -> str:
    """A ``table`` float with a booktabs ``tabular``; bold cells use ``\\textbf``.

    The ``table.label_columns`` leading columns are left-aligned, the rest right-aligned.
    """
    n, labels = len(table.columns), min(table.label_columns, len(table.columns))
    spec = "l" * labels + "r" * (n - labels)
    lines = [r"\begin{table}[htbp]", r"\centering", r"\small",
             rf"\caption{{{escape(table.caption)}}}", rf"\label{{{label_prefix}{table.key}}}",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(escape(c) for c in table.columns) + r" \\", r"\midrule"]
    for i, row in enumerate(table.rows):
        cells = [rf"\textbf{{{escape(c)}}}" if (i, j) in table.bold and c else escape(c)
                 for j, c in enumerate(row)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.note:
        lines += [r"\par\smallskip", rf"{{\footnotesize {escape(table.note)}\par}}"]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_tables(tables: list[Table], out_dir: Path) -> list[Path]:
    """Write every table to ``out_dir/<key>.tex`` and return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for table in tables:
        path = out_dir / f"{table.key}.tex"
        path.write_text(to_latex(table))
        paths.append(path)
    return paths
