"""User-facing errors.

A ``UserError`` is a problem with the user's input (a missing file, an unknown name, a bad config key).
The CLI prints its message and exits with status 2, without a traceback. Everything else is a bug.
"""


class UserError(Exception):
    """A bad input. The message names the problem and the fix."""

    exit_code = 2
