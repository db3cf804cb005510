"""The one error type the CLI turns into a clean message and exit code 2."""


class UsageError(ValueError):
    """Bad input from the user: a message naming the bad value and the valid choices."""
