"""The error type of the training layer."""


class TrainingInputError(ValueError):
    """Bad user input to a training function (corpus, model dir, layers, output dir...), as one line."""
