"""The training engine: FF (Hinton 2022 protocol), F-CFF / A-CFF (collaborative FF) and BP.

Public API (docs/architecture.md): :class:`TrainConfig`, :func:`train_run`, :class:`RunResult`,
and :func:`train_stacked` (several seeds of one configuration as one batched model).
"""

from cffbench.ff.alpha import alpha_matrix
from cffbench.ff.config import TrainConfig
from cffbench.ff.result import NUMERICS_VERSION, RunResult
from cffbench.ff.stacked import train_stacked
from cffbench.ff.train import train_run

__all__ = ["TrainConfig", "train_run", "train_stacked", "RunResult", "alpha_matrix", "NUMERICS_VERSION"]
