"""The one exception users of the fitting module see."""


class FitError(ValueError):
    """A problem the user can fix (bad input, too few points, missing columns).

    Its message is a single line; the CLI prints it as `error: <message>` and exits 2.
    """
