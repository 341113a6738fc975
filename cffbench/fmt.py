"""The one formatter of cffbench: numbers (APA conventions) and LaTeX escaping, for the
statistics engine's sentences, the analysis plan's tables, the report and the findings alike.

Accuracies are stored as fractions in [0, 1] and shown in percent with two decimals; p-values
follow APA style: no leading zero, three decimals, ``p < .001`` below one in a thousand and
``p > .999`` above; rounding is Python's ``format`` of the binary value (so .0445, stored as
0.04449999..., prints .044, and an exact half such as .0625 rounds to even, .062).
"""

from __future__ import annotations

import math
import unicodedata


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


def sig(value, digits: int = 4) -> str:
    """A number to ``digits`` significant digits, plain ASCII (``-1.234e-05``): the cells of the
    engine's raw tables (``comparison.html``, the omnibus sums of squares); empty when missing."""
    if _missing(value):
        return ""
    return f"{float(value):.{digits}g}"


def df(value) -> str:
    """Degrees of freedom: an integer plainly (``8``), a corrected (fractional) df with two
    decimals (``5.32``); empty when missing."""
    if _missing(value) or not math.isfinite(float(value)):
        return ""
    value = float(value)
    return str(int(round(value))) if abs(value - round(value)) < 1e-9 else f"{value:.2f}"


#: The float format of every CSV cffbench writes: 12 significant digits, the same on any BLAS.
CSV_FLOAT_FORMAT = "%.12g"


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
_GREEK = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho "
          "sigma tau upsilon phi chi psi omega").split()
#: Characters set in math mode (the content between the $...$), as commands every LaTeX kernel
#: knows; adjacent ones share one math group ("ω²" -> "$\omega^2$").
_LATEX_MATH = {
    **{chr(0x3B1 + i): "\\" + name for i, name in enumerate(_GREEK[:17])},        # α .. ρ
    **{chr(0x3C3 + i): "\\" + name for i, name in enumerate(_GREEK[17:])},        # σ .. ω
    "ς": r"\varsigma", "ε": r"\varepsilon", "ϵ": r"\epsilon", "ϑ": r"\vartheta", "φ": r"\varphi",
    "ϕ": r"\phi", "ο": "o",
    "Γ": r"\Gamma", "Δ": r"\Delta", "Θ": r"\Theta", "Λ": r"\Lambda", "Ξ": r"\Xi", "Π": r"\Pi",
    "Σ": r"\Sigma", "Υ": r"\Upsilon", "Φ": r"\Phi", "Ψ": r"\Psi", "Ω": r"\Omega",
    "±": r"\pm", "∓": r"\mp", "−": "-", "×": r"\times", "÷": r"\div", "·": r"\cdot", "∙": r"\cdot",
    "≤": r"\leq", "≥": r"\geq", "≠": r"\neq", "≈": r"\approx", "≡": r"\equiv", "∼": r"\sim",
    "∝": r"\propto", "∞": r"\infty", "→": r"\rightarrow", "←": r"\leftarrow",
    "↔": r"\leftrightarrow", "⇒": r"\Rightarrow", "∈": r"\in", "∉": r"\notin", "⊂": r"\subset",
    "∩": r"\cap", "∪": r"\cup", "∂": r"\partial", "∇": r"\nabla", "∑": r"\sum", "∏": r"\prod",
    "∫": r"\int", "√": r"\surd", "′": r"\prime", "°": r"^\circ", "µ": r"\mu", "<": "<", ">": ">",
    "⁰": "^0", "¹": "^1", "²": "^2", "³": "^3", "⁴": "^4", "⁵": "^5", "⁶": "^6", "⁷": "^7",
    "⁸": "^8", "⁹": "^9", "₀": "_0", "₁": "_1", "₂": "_2", "₃": "_3", "½": r"\frac{1}{2}",
    "¼": r"\frac{1}{4}", "¾": r"\frac{3}{4}",
}
#: Non-ASCII characters set in text mode.
_LATEX_TEXT = {"–": "--", "—": "---", "‐": "-", "‑": "-", "‒": "--", "‘": "`", "’": "'", "“": "``",
               "”": "''", "„": ",,", "«": "``", "»": "''",
               "…": r"\ldots{}", "•": r"\textbullet{}", "\u00a0": "~", "\u2009": r"\,",
               "\u202f": r"\,", "\u2002": r"\enspace{}", "\u2003": r"\quad{}", "§": r"\S{}",
               "¶": r"\P{}", "©": r"\copyright{}", "®": r"\textregistered{}",
               "™": r"\texttrademark{}", "ß": r"\ss{}", "æ": r"\ae{}", "Æ": r"\AE{}", "ø": r"\o{}",
               "Ø": r"\O{}", "å": r"\aa{}", "Å": r"\AA{}", "œ": r"\oe{}", "Œ": r"\OE{}", "ł": r"\l{}",
               "Ł": r"\L{}", "ı": r"\i{}", "¿": r"?`", "¡": r"!`", "‰": r"\textperthousand{}",
               "†": r"\dag{}", "‡": r"\ddag{}"}
#: Combining accents (after Unicode decomposition) as LaTeX accent commands.
_LATEX_ACCENT = {"\u0300": "`", "\u0301": "'", "\u0302": "^", "\u0303": "~", "\u0304": "=",
                 "\u0306": "u", "\u0307": ".", "\u0308": '"', "\u030a": "r", "\u030b": "H",
                 "\u030c": "v", "\u0327": "c", "\u0328": "k"}


def _accented(ch: str) -> str | None:
    """``é`` -> ``\'{e}``: a letter with one combining accent, as its LaTeX accent command."""
    parts = unicodedata.normalize("NFD", ch)
    if len(parts) == 2 and ord(parts[0]) < 128 and parts[1] in _LATEX_ACCENT:
        base = {"i": r"\i", "j": r"\j"}.get(parts[0], parts[0]) if parts[1] != "\u0327" else parts[0]
        return f"\\{_LATEX_ACCENT[parts[1]]}{{{base}}}"
    return None


def latex_escape(text: str) -> str:
    """``text`` as LaTeX source that compiles in a stock ``article`` (ASCII only, no packages):
    the specials escaped, Greek letters and mathematical symbols in math mode (adjacent ones in
    one ``$...$``), typographic punctuation and accented letters as their LaTeX commands, ``<``
    and ``>`` in math mode (OT1 text mode prints them as inverted marks). A character with no
    LaTeX spelling here is written as its code point, ``[U+2603]``, never dropped or replaced
    by "?"."""
    parts: list[tuple[bool, str]] = []          # (math mode?, LaTeX)
    last = ""                                   # the previous character's LaTeX
    for ch in str(text):
        if ch in _LATEX_SPECIAL:
            piece = (False, _LATEX_SPECIAL[ch])
        elif ch in _LATEX_MATH:
            piece = (True, _LATEX_MATH[ch])
        elif ord(ch) < 128:
            piece = (False, ch)
        elif ch in _LATEX_TEXT:
            piece = (False, _LATEX_TEXT[ch])
        else:
            piece = (False, _accented(ch) or rf"\texttt{{[U+{ord(ch):04X}]}}")
        if parts and parts[-1][0] == piece[0]:
            math, body = piece
            if math and body[:1] in "^_" and last[:1] == body[:1]:
                body = "{}" + body                      # "²³": $^2{}^3$, never a double script
            elif math and parts[-1][1][-1:].isalpha() and body[:1].isalpha():
                body = " " + body                       # "\alpha" then "o": "\alpha o"
            parts[-1] = (math, parts[-1][1] + body)
        else:
            parts.append(piece)
        last = piece[1]
    return "".join(f"${body}$" if math else body for math, body in parts)
