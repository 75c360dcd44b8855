"""The quality benchmark (issues 8, 15 and 27), one program: ``python -m benchmarks.quality --help``.

- :mod:`.rows`: a benchmark's frozen ``Settings``, the tables' ``Row``s, their losses and corpora.
- :mod:`.pairs`: table E's supervised pairs and triplets.
- :mod:`.runner`: training on the package's stage runner, scoring, run files, the lr and p sweeps.
- :mod:`.queue`: each table's run queue, most important first.
- :mod:`.report`: ``results/quality-<tag>.{json,md}`` and plots, rebuilt from the run files.
- :mod:`.__main__`: the command line.
"""

import sys
from pathlib import Path

_BENCHMARKS = str(Path(__file__).resolve().parents[1])
if _BENCHMARKS not in sys.path:
    sys.path.insert(0, _BENCHMARKS)  # the benchmarks' shared ``common`` module, imported as every script does
