"""The one exception type for user mistakes: the CLI prints it on one line and exits 2."""


class UserError(Exception):
    """A mistake in the user's input (recipe, data file, CLI argument), phrased as `file: where: what`."""
