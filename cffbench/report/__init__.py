"""Report generator: tables, figures, and the HTML / PDF / LaTeX renderings of one study.

>>> from cffbench.report import build_report
>>> paths = build_report("results/quick", out="reports/quick")     # doctest: +SKIP
"""

from cffbench.report.render import FORMATS, build_report

__all__ = ["FORMATS", "build_report"]
