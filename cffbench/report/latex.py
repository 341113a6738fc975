"""Plain LaTeX tables (booktabs, no siunitx) that compile in a stock ``article`` with
``\\usepackage{booktabs}``; written to ``tables/<key>.tex``."""

from __future__ import annotations

import re
from pathlib import Path

from cffbench.report.tables import Table

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
            "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
            "^": r"\textasciicircum{}"}
#: Non-ASCII characters the report uses, as commands every LaTeX kernel knows (math mode).
_UNICODE = {"±": r"$\pm$", "−": r"$-$", "α": r"$\alpha$", "γ": r"$\gamma$", "θ": r"$\theta$",
            "×": r"$\times$", "≤": r"$\leq$", "≥": r"$\geq$", "η": r"$\eta$",
            "ε": r"$\varepsilon$", "ω": r"$\omega$", "χ": r"$\chi$", "²": r"$^2$",
            "–": "--", "—": "---", "’": "'", "“": "``", "”": "''", "\u00a0": "~"}


def escape(text: str) -> str:
    """Escape LaTeX specials and map the report's non-ASCII symbols to ASCII LaTeX."""
    out = "".join(_SPECIAL.get(ch, ch) for ch in str(text))
    out = "".join(_UNICODE.get(ch, ch) for ch in out)
    # a "<" or ">" in text mode prints as an inverted exclamation mark in OT1
    out = re.sub(r"(?<!\$)([<>])", r"$\1$", out)
    return out.encode("ascii", "replace").decode("ascii")


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
