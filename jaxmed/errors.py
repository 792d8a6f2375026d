"""The errors jaxmed reports to people: one line each, with the exit status the CLI uses.

Anything raised as a `JaxmedError` is an expected failure with a message that names
the file or setting at fault; the CLI prints it on one line and exits with
`exit_status`. Any other exception is a bug and keeps its traceback.
"""


class JaxmedError(Exception):
    """An expected failure, explained in one line."""

    exit_status = 1


class UsageError(JaxmedError, ValueError):
    """A command or configuration asks for something invalid (exit 2, like argparse)."""

    exit_status = 2


class DataError(JaxmedError):
    """Input data cannot be read or used: names the file or source and the problem."""


class CheckpointError(JaxmedError):
    """A workdir has no usable checkpoint, or one that does not fit the request."""


class TrainingDiverged(JaxmedError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""
