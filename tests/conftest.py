"""Shared fixtures. Tests run torch on one thread: the CI machine has two cores."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from cffbench.data.splits import Splits

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real dataset root (fetched by the test command before pytest starts)."""
    return Path(os.environ.get("CFFBENCH_DATA", REPO / "data"))


@pytest.fixture(autouse=True)
def no_plugin_outlives_its_test():
    """Plugins a test loads (its own files, or the shipped examples a shipped study names) are
    unregistered after it, so no other test sees their names."""
    yield
    from cffbench.plugins import unload_plugin_files

    unload_plugin_files()


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def foreground_job() -> dict:
    """``subprocess.Popen`` keywords for a child that a terminal's Ctrl-C reaches: its own
    process group (``os.killpg`` then signals it and its workers, as a terminal signals its
    foreground job) and SIGINT at its default action. A test run started in the background by
    a script (``bash .ci/run &``) has SIGINT ignored; a child inherits that and rightly honours
    it (as under ``nohup``), so without the reset a Ctrl-C test cannot deliver its Ctrl-C."""
    return {"start_new_session": True, "preexec_fn": _default_sigint}


def make_synthetic_splits(n_train: int = 600, n_eval: int = 300, n_features: int = 64,
                          n_classes: int = 10, seed: int = 0) -> Splits:
    """Small, learnable data: each class is a noisy copy of its own random prototype."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(n_classes, n_features, generator=g)

    def draw(n: int):
        y = torch.arange(n) % n_classes
        x = protos[y] + 0.8 * torch.randn(n, n_features, generator=g)
        return x.float(), y.long()

    xtr, ytr = draw(n_train)
    xva, yva = draw(n_eval)
    xte, yte = draw(n_eval)
    return Splits("synthetic", xtr, ytr, xva, yva, xte, yte, n_classes)


@pytest.fixture
def synthetic_splits() -> Splits:
    return make_synthetic_splits()


def html_table_rows(table) -> list[list[str]]:
    """A BeautifulSoup ``<table>``'s body cells as a reader sees them: numbers sit in no-break
    spans, so each cell's text is joined on single spaces (``get_text(strip=True)`` would glue
    "+0.26" and "[−0.63," together)."""
    return [[" ".join(td.get_text().split()) for td in tr.find_all("td")]
            for tr in table.find_all("tr")[1:]]
