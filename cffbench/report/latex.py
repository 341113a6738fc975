"""Plain LaTeX tables (booktabs, no siunitx) that compile in a stock ``article`` with
``\\usepackage{booktabs}`` and ``\\usepackage{graphicx}`` and fit its page without editing;
written to ``tables/<key>.tex``.

A table that fits the text width (345 pt) as it is, is set as it is, in ``\\small``. A wider
one takes these steps, each only while it is still too wide: headers break between words
(bottom-aligned) and the column gaps narrow to 2 × 4 pt; label and text columns wrap, ragged
right, in ``p{}`` columns; number cells stack their interval under the estimate ("−1.55" over
"[−1.92, −1.18]"), never breaking inside a number; the font drops to ``\\footnotesize``. A table
that would still have to be scaled below :data:`MIN_SCALE` is turned a quarter onto a page of
its own (landscape, like ``rotating``'s ``sidewaystable`` but with ``graphicx``'s
``\\rotatebox``) and the steps are redone against the text height. Widths are estimated from
Computer Modern's character widths; what is still wider than the line (a two-column page, an
underestimate) is scaled down to it by ``\\resizebox``, so no table runs off the page, and a
table that fits is never scaled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cffbench.fmt import latex_escape
from cffbench.report.tables import Table

escape = latex_escape  # the one escaper (cffbench.fmt), under the name the report uses

#: Text width of a stock ``article`` (10 pt, letter or A4 paper) in pt.
TEXT_WIDTH_PT = 345.0
#: Font sizes the layout may use, in order, with their em in pt (article, 10 pt).
FONT_SIZES = ((r"\small", 9.0), (r"\footnotesize", 8.0))
#: ``\tabcolsep`` of a table that has to be narrowed, in pt (LaTeX's default is 6 pt).
NARROW_TABCOLSEP_PT = 4.0
#: The narrowest a wrapped column gets, in em (its longest word may make it wider).
MIN_WRAP_EM = 4.0
#: Text height of a stock ``article`` (10 pt, letter paper; A4 has 598 pt), the width a turned
#: table may take, in pt.
TEXT_HEIGHT_PT = 550.0
#: The least scale of ``\\footnotesize`` (8 pt) accepted on an upright table: below it (6.8 pt)
#: the table is turned instead.
MIN_SCALE = 0.85

# Approximate Computer Modern Roman advance widths, in em (cmr10 metrics; cmr8/9 run ~3 %
# wider, hence the margin in _width).
_NARROW, _MEDIUM, _WIDE = set(".,:;!'|[]ilIj`"), set("()-frtsJ \u00a0\u00b7"), set("mwMW%")


def _char_em(ch: str) -> float:
    if ch in _NARROW:
        return 0.28
    if ch in _MEDIUM:
        return 0.37
    if ch in _WIDE:
        return 0.85
    if ch.isupper():
        return 0.72
    if (ord(ch) > 127 and not ch.isalpha()) or ch in "+=<>&_^~":
        return 0.78   # −, ±, ≤, ×, ... are math symbols, 0.778 em
    return 0.52


def _width(text: str, bold: bool = False) -> float:
    """Estimated width of ``text`` (before escaping) in em."""
    return sum(_char_em(ch) for ch in text) * (1.04 + 0.08 * bold)


#: A number cell breaks only before its interval or bracketed remark: "−1.55 [−1.92, −1.18]"
#: stacks as "−1.55" over "[−1.92, −1.18]", "3 [3–8] (small pilot)" as "3 [3–8]" over
#: "(small pilot)"; "< .001" never breaks.
_NUMBER_BREAK = re.compile(r" (?=[\[(])")


#: A header breaks at any space but the one before "%" ("95 %").
_HEADER_BREAK = re.compile(r" +(?!%)")


def _glued(text: str) -> str:
    """``text`` with no break around a minus between terms ("A-CFF − FF") or before "%"."""
    return text.replace(" \u2212 ", "\u00a0\u2212\u00a0").replace(" %", "\u00a0%")


def _atoms(text: str, number: bool) -> list[str]:
    """The pieces a cell may break between: words of text (:func:`_glued`), the parts of a
    number."""
    return _NUMBER_BREAK.split(text) if number else [w for w in _glued(text).split(" ") if w]


def _pack(atoms: list[str], width: float, bold: bool = False) -> list[str]:
    """``atoms`` joined by spaces into lines of at most ``width`` em (greedy; a wider atom
    stands alone)."""
    lines: list[str] = []
    for atom in atoms:
        if lines and _width(f"{lines[-1]} {atom}", bold) <= width:
            lines[-1] += f" {atom}"
        else:
            lines.append(atom)
    return lines or [""]


@dataclass
class Layout:
    """How :func:`to_latex` sets a table.

    Attributes
    ----------
    size : str
        ``\\small`` or ``\\footnotesize``.
    tabcolsep_pt : float or None
        ``\\tabcolsep`` when narrowed; None keeps LaTeX's 6 pt.
    wraps : list of float or None
        Per column, the width in em it is narrowed to: a text column becomes ``p{}``, a number
        column stacks the parts of a wider cell; None: the column keeps its widest cell.
    headers : list of list of str
        Per column, its header's lines.
    width_pt : float
        The estimated width of the whole tabular, gaps included.
    turned : bool
        Whether the table is turned a quarter (landscape) onto a page of its own.
    """

    size: str
    tabcolsep_pt: float | None
    wraps: list[float | None]
    headers: list[list[str]]
    width_pt: float
    turned: bool = False


def _two_lines(words: list[str]) -> float:
    """The least width in em that sets ``words`` in at most two lines."""
    return min((max(_width(" ".join(words[:k])), _width(" ".join(words[k:])))
                for k in range(len(words) + 1)), default=0.0)


def _water_fill(upper: list[float], lower: list[float], room: float) -> list[float]:
    """Column widths ``clamp(L, lower_j, upper_j)`` with the largest level ``L`` whose widths sum
    to at most ``room`` (``lower`` when none does): the widest columns give way first, and a
    column already narrower than ``L`` is never narrowed."""
    def widths(level: float) -> list[float]:
        return [min(max(level, lo), up) for lo, up in zip(lower, upper)]

    low, high = 0.0, max(upper, default=0.0)
    if sum(widths(high)) <= room:
        return widths(high)
    for _ in range(50):                         # bisect the level
        level = (low + high) / 2
        low, high = (level, high) if sum(widths(level)) <= room else (low, level)
    return widths(low)


def fit(table: Table, room_pt: float) -> Layout:
    """The first of the narrowing steps (module docstring) that fits ``room_pt``; the last
    when none does.

    Column ``j`` is at most ``tight_j = max(widest cell, its header in two lines)`` and at least
    ``least_j``: its widest unbreakable piece (:func:`_atoms`; text at least :data:`MIN_WRAP_EM`)
    or header word. The width is shared by water filling (:func:`_water_fill`), with lower
    bounds that fall step by step: text columns to ``least`` (number columns keep ``tight``);
    number columns to their widest cell (their headers take more lines); all to ``least``
    (number cells stack), at ``\\small``, then at ``\\footnotesize``.
    """
    n = len(table.columns)
    number = [table.is_number(j) for j in range(n)]
    cells = [[(row[j], (i, j) in table.bold) for i, row in enumerate(table.rows)] for j in range(n)]
    body = [max((_width(c, b) for c, b in cells[j]), default=0.0) for j in range(n)]
    size, em = FONT_SIZES[0]
    natural = sum(max(body[j], _width(table.columns[j])) for j in range(n)) + n * 2 * 6.0 / em
    if natural * em <= room_pt:
        return Layout(size, None, [None] * n, [[c] for c in table.columns], natural * em)
    heads = [_HEADER_BREAK.split(c) for c in table.columns]
    word = [max(map(_width, h), default=0.0) for h in heads]
    tight = [max(body[j], _two_lines(heads[j])) for j in range(n)]
    least = [min(tight[j], max(word[j], 0.0 if number[j] else MIN_WRAP_EM,
                               *(_width(a, b) for c, b in cells[j] for a in _atoms(c, number[j]))))
             for j in range(n)]
    # the narrowing steps: text wraps; headers take more lines; number cells stack
    unstacked = [max(body[j], word[j]) for j in range(n)]
    steps = [[least[j] if not number[j] else tight[j] for j in range(n)],
             [least[j] if not number[j] else unstacked[j] for j in range(n)], least]
    for size, em in FONT_SIZES:
        room = room_pt / em - n * 2 * NARROW_TABCOLSEP_PT / em
        for lower in steps:
            widths = _water_fill(tight, lower, room)
            if sum(widths) <= room:
                break
        if sum(widths) <= room:
            break
    wraps = [w if w < tight[j] - 1e-9 else None for j, w in enumerate(widths)]
    headers = [_pack(heads[j], widths[j]) for j in range(n)]
    return Layout(size, NARROW_TABCOLSEP_PT, wraps, headers,
                  sum(widths) * em + n * 2 * NARROW_TABCOLSEP_PT)


def layout(table: Table, text_width_pt: float = TEXT_WIDTH_PT,
           text_height_pt: float = TEXT_HEIGHT_PT) -> Layout:
    """Upright when :func:`fit` gets the table within ``text_width_pt / MIN_SCALE``, else
    turned and fitted to ``text_height_pt``."""
    upright = fit(table, text_width_pt)
    if upright.width_pt * MIN_SCALE <= text_width_pt:
        return upright
    turned = fit(table, 0.99 * text_height_pt)     # the minipage's width, see to_latex
    turned.turned = True
    return turned


def _stack(lines: list[str], align: str, anchor: str) -> str:
    """Lines as one cell: a nested tabular anchored at its top (``t``: body cells, whose first
    lines share the row's baseline) or bottom (``b``: headers, bottom-aligned)."""
    if len(lines) == 1:
        return lines[0]
    # "{}": a line that starts with "[" must not read as the break's optional argument;
    # \tabularnewline, so that each "\\" of the file still ends a row of the table
    return (rf"\begin{{tabular}}[{anchor}]{{@{{}}{align}@{{}}}}" + r"\tabularnewline{}".join(lines)
            + r"\end{tabular}")


def to_latex(table: Table, label_prefix: str = "tab:", text_width_pt: float = TEXT_WIDTH_PT) -> str:
    """A ``table`` float with a booktabs ``tabular`` that fits the text width (module docstring,
    :func:`layout`); bold cells use ``\\textbf``.

    Label columns (the ``table.label_columns`` leading ones) and ``table.text_columns`` are
    left-aligned and may wrap between words; number columns are right-aligned and break only
    before an interval or bracket, never inside a number.
    """
    lay = layout(table, text_width_pt)
    number = [table.is_number(j) for j in range(len(table.columns))]
    align = ["r" if num else "l" for num in number]
    spec = "".join(a if w is None or num else f"p{{{w:.1f}em}}"
                   for w, a, num in zip(lay.wraps, align, number))
    paragraph = [w is not None and not num for w, num in zip(lay.wraps, number)]
    # in a \raggedright cell "\\" breaks the cell's line, so a row whose last cell is a
    # paragraph ends with \tabularnewline
    end = r" \tabularnewline" if paragraph and paragraph[-1] else r" \\"

    def cell(text: str, j: int, bold: bool) -> str:
        wrap = lay.wraps[j]
        if number[j]:
            lines = _pack(_atoms(text, True), wrap, bold) if wrap is not None else [text]
        else:
            lines = [_glued(text) if paragraph[j] else text]
        lines = [rf"\textbf{{{escape(x)}}}" if bold and x else escape(x) for x in lines]
        if paragraph[j] and text:
            return rf"\raggedright {lines[0]}"
        return _stack(lines, "r", "t")

    body = [lay.size]
    if lay.tabcolsep_pt is not None:
        body.append(rf"\setlength{{\tabcolsep}}{{{lay.tabcolsep_pt:g}pt}}")
    header = " & ".join(_stack([escape(x) for x in h], a, "b") for h, a in zip(lay.headers, align))
    body += [rf"\caption{{{escape(table.caption)}}}", rf"\label{{{label_prefix}{table.key}}}",
             # scaled only when wider than the line: a table that fits keeps its size
             r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule", header + end, r"\midrule"]
    for i, row in enumerate(table.rows):
        body.append(" & ".join(cell(c, j, (i, j) in table.bold) for j, c in enumerate(row)) + end)
    body += [r"\bottomrule", r"\end{tabular}}"]
    if table.note:
        body += [r"\par\smallskip", rf"{{\footnotesize\raggedright {escape(table.note)}\par}}"]
    if not lay.turned:
        return "\n".join([r"\begin{table}[htbp]", r"\centering", *body, r"\end{table}"]) + "\n"
    # a landscape page: the minipage is as wide as the text is high (less 1 %: turned, a box
    # of exactly \textheight comes out a hair too tall for the page), and the turned box is
    # scaled down should it be taller than the text is wide
    return "\n".join([r"\begin{table}[p]", r"\centering",
                      r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
                      r"\rotatebox{90}{\begin{minipage}{0.99\textheight}", r"\centering", *body,
                      r"\end{minipage}}}", r"\end{table}"]) + "\n"


def write_tables(tables: list[Table], out_dir: Path) -> list[Path]:
    """Write every table to ``out_dir/<key>.tex`` and return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for table in tables:
        path = out_dir / f"{table.key}.tex"
        path.write_text(to_latex(table))
        paths.append(path)
    return paths
