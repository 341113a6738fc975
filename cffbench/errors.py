"""User-facing error types.

Every mistake a user can make (bad study file, unknown variant, corrupt data file, empty result
set, ...) raises a :class:`CffbenchError`. The CLI prints its message on one line and exits
non-zero; anything else that escapes is a bug and may show a traceback.
"""


class CffbenchError(Exception):
    """A user mistake or an unusable input; the message is one line that names the problem."""

    exit_code = 2


class DataError(CffbenchError):
    """A dataset is missing, corrupt, unknown, or cannot be fetched."""


class TrainConfigError(CffbenchError):
    """A training configuration is invalid (unknown variant, negative epochs, ...)."""


class StudyError(CffbenchError):
    """A study file or a results directory is invalid."""


class StatsError(CffbenchError):
    """The statistics engine cannot analyse the given data (e.g. an empty result set)."""


class ReportError(CffbenchError):
    """A report cannot be produced from the given results."""


class ExtensionError(CffbenchError):
    """A plugin or a registered extension (variant, goodness, negatives rule, dataset) is invalid."""
