"""The one formatter of cffbench: numbers (APA conventions) and LaTeX escaping, for the
statistics engine's sentences, the analysis plan's tables, the report and the findings alike.

Accuracies are stored as fractions in [0, 1] and shown in percent with two decimals; p-values
follow APA style: no leading zero, three decimals, ``p < .001`` below one in a thousand and
``p > .999`` above; rounding is Python's ``format`` of the binary value (so .0445, stored as
0.04449999..., prints .044, and an exact half such as .0625 rounds to even, .062).
"""

from __future__ import annotations

import math
import re


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def pct(fraction, decimals: int = 2) -> str:
    """A fraction in [0, 1] as a percent string without the sign: ``0.9381 -> "93.81"``."""
    if _missing(fraction):
        return ""
    return f"{100.0 * float(fraction):.{decimals}f}"


def _fixed(value: float, decimals: int, sign: str = "") -> str:
    """Fixed decimals with a true minus sign (U+2212); a value that rounds to zero is unsigned
    zero, never ``-0.00``."""
    if round(value, decimals) == 0:
        value = 0.0
    text = f"{value:{sign}.{decimals}f}"
    return text.replace("-", "\u2212")


def pp(fraction_diff, decimals: int = 2) -> str:
    """A difference of fractions in percentage points with an explicit sign: ``+1.20``,
    ``−0.35``."""
    if _missing(fraction_diff):
        return ""
    return _fixed(100.0 * float(fraction_diff), decimals, "+")


def num(value, decimals: int = 2) -> str:
    """A plain number with fixed decimals and a true minus sign; empty for missing values."""
    if _missing(value):
        return ""
    return _fixed(float(value), decimals)


def apa_decimal(value, decimals: int = 3) -> str:
    """A statistic bounded by 1 without the leading zero (APA): ``0.8 -> ".800"``."""
    if _missing(value):
        return ""
    text = _fixed(float(value), decimals)
    return text.replace("0.", ".", 1) if text.startswith(("0.", "\u22120.")) else text


def p_value(p) -> str:
    """An APA p-value clause: ``"p = .004"``, ``"p < .001"``, ``"p = 1.000"`` never appears
    (values rounding to 1 print as ``"p > .999"``)."""
    if _missing(p):
        return "p undefined"
    p = float(p)
    if p < 0.001:
        return "p < .001"
    if p > 0.999:
        return "p > .999"
    return f"p = {apa_decimal(p)}"


def p_cell(p) -> str:
    """A p-value for a table cell (no ``p =``): ``".004"``, ``"< .001"``."""
    text = p_value(p)
    if text == "p undefined":
        return ""
    return text[2:].removeprefix("= ")


def mean_sd_n(mean, sd, n) -> str:
    """``"93.81 ± 0.42 (10)"`` from fractions; the std is omitted when undefined (n = 1)."""
    if _missing(mean):
        return ""
    sd_text = f" ± {pct(sd)}" if not _missing(sd) else ""
    return f"{pct(mean)}{sd_text} ({int(n)})"


def ci(low, high) -> str:
    """A 95 % confidence interval in percent: ``"[93.50, 94.12]"``; empty when undefined."""
    if _missing(low) or _missing(high):
        return ""
    return f"[{pct(low)}, {pct(high)}]"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}
#: Non-ASCII characters cffbench prints, as commands every LaTeX kernel knows (math mode).
_LATEX_UNICODE = {"±": r"$\pm$", "−": r"$-$", "α": r"$\alpha$", "γ": r"$\gamma$", "θ": r"$\theta$",
                  "×": r"$\times$", "≤": r"$\leq$", "≥": r"$\geq$", "η": r"$\eta$",
                  "ε": r"$\varepsilon$", "ω": r"$\omega$", "χ": r"$\chi$", "²": r"$^2$",
                  "Δ": r"$\Delta$", "½": r"$\frac{1}{2}$", "–": "--", "—": "---", "’": "'", "“": "``", "”": "''",
                  "\u00a0": "~"}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and map the non-ASCII symbols cffbench prints to ASCII LaTeX."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    out = "".join(_LATEX_UNICODE.get(ch, ch) for ch in out)
    # a "<" or ">" in text mode prints as an inverted exclamation mark in OT1
    out = re.sub(r"(?<!\$)([<>])", r"$\1$", out)
    return out.encode("ascii", "replace").decode("ascii")
