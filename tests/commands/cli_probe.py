"""The ``distillcse`` command line with a probe, for one process of a multi-process test run.

``python cli_probe.py RECORD_DIR INTERRUPT_STEP COMMAND ARGS...`` runs ``distillcse COMMAND ARGS...`` and
writes ``RECORD_DIR/rank<RANK>.json``: the texts this process encoded into the teacher cache and the
outputs it moved into place. With ``INTERRUPT_STEP`` > 0 it stops like Ctrl-C at the end of that
training step (``distillcse`` then exits with 130, as after a real Ctrl-C). Started by
``tests/commands/test_multi_process.py`` under ``python -m torch.distributed.run``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from distillcse_st import cli  # noqa: E402
from distillcse_st.training import stages, teacher_cache  # noqa: E402


def main() -> int:
    record_dir, interrupt_step, argv = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    record: dict[str, list[str]] = {"encoded": [], "finished": []}
    encode_stacked_into, finish = teacher_cache.encode_stacked_into, stages.finish

    def recording_encode(output, texts, teachers, weights, rows, *args, **kwargs):
        record["encoded"].extend(texts[rows.start : rows.stop])
        return encode_stacked_into(output, texts, teachers, weights, rows, *args, **kwargs)

    def recording_finish(work, output):
        record["finished"].append(str(output))
        finish(work, output)

    class Interrupt(stages.DevScoreLog):
        def on_step_end(self, args, state, control, **kwargs) -> None:
            if state.global_step == interrupt_step:
                raise KeyboardInterrupt

    teacher_cache.encode_stacked_into, stages.finish = recording_encode, recording_finish
    stages.DevScoreLog = Interrupt
    try:
        return cli.main(argv)
    finally:
        (record_dir / f"rank{os.environ['RANK']}.json").write_text(json.dumps(record), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
