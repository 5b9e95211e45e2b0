"""User-facing errors: one line that names the bad value or file, never a traceback wall."""


class PtibenchError(Exception):
    """A problem with what the user asked for (a value, a file, a model), not a bug in ptibench.

    `str(error)` is one line; callers print it as `ptibench: error: <line>` and exit non-zero.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
