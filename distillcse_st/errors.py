"""The package's error type for bad user input."""


class InputError(ValueError):
    """A problem with the user's input (a file, a directory, an option), reported by the CLI as one line."""
