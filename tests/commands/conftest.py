from tests.training.conftest import corpus_file, dev_file  # noqa: F401
