"""Train with several processes (one per GPU) through torchrun, with the same callbacks as `runner.train`.

Plain Python, no Django. The runner's command line (`python -m training.runner`) prints JSON lines from the
main process; this module starts it under `torch.distributed.run`, turns those lines back into the callbacks,
and turns a cancel request into SIGTERM for the whole process group (each rank stops at its next step).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from training.runner import Progress, TrainConfig, TrainingError, TrainResult


def train_distributed(
    config: TrainConfig,
    *,
    processes: int,
    base_model: str,
    train_file: Path,
    output_dir: Path,
    eval_file: Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_log: Callable[[str], None] | None = None,
    on_checkpoint: Callable[[Path, int], None] | None = None,
) -> TrainResult:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config_file = output_dir / "launch-config.json"
    config_file.write_text(json.dumps(config.to_dict()), encoding="utf-8")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
        "-m", "training.runner", "--config", str(config_file), "--base-model", base_model,
        "--train-file", str(train_file), "--output-dir", str(output_dir),
    ]  # fmt: skip
    if eval_file is not None:
        command += ["--eval-file", str(eval_file)]
    stderr_path = output_dir / "launch-stderr.log"
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, start_new_session=True
        )
    stop = threading.Event()

    def stop_group() -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)

    def watch_cancel() -> None:
        while not stop.wait(1.0):
            if should_cancel is not None and should_cancel():
                stop_group()
                return

    threading.Thread(target=watch_cancel, daemon=True).start()
    events = _Events(on_progress=on_progress, on_log=on_log, on_checkpoint=on_checkpoint)
    try:
        for line in proc.stdout:
            events.feed(line)
    except BaseException:
        stop_group()
        raise
    finally:
        stop.set()
        code = proc.wait()
    if events.error is not None:
        raise events.error
    if events.result is None:
        tail = stderr_path.read_text(errors="replace")[-1500:]
        raise TrainingError(
            "internal",
            f"The {processes} training processes stopped without a result (exit status {code}).",
            f"Their last words: {tail.strip() or 'none'}",
        )
    return events.result


class _Events:
    """Turns the JSON lines the main process prints back into the callbacks; keeps its error or result."""

    def __init__(
        self,
        *,
        on_progress: Callable[[Progress], None] | None,
        on_log: Callable[[str], None] | None,
        on_checkpoint: Callable[[Path, int], None] | None,
    ) -> None:
        self.on_progress, self.on_log, self.on_checkpoint = on_progress, on_log, on_checkpoint
        self.result: TrainResult | None = None
        self.error: TrainingError | None = None

    def feed(self, line: str) -> None:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            if self.on_log:
                self.on_log(line.strip()[:500])
            return
        kind = event.pop("event", "")
        if kind == "progress" and self.on_progress:
            self.on_progress(Progress(**event))
        elif kind == "log" and self.on_log:
            self.on_log(event.get("message", ""))
        elif kind == "checkpoint" and self.on_checkpoint:
            self.on_checkpoint(Path(event["path"]), int(event["step"]))
        elif kind == "error":
            self.error = TrainingError(event.get("code", "internal"), event.get("message", ""), event.get("hint", ""))
        elif kind == "result":
            self.result = TrainResult(
                status=event["status"],
                adapter_dir=Path(event["adapter_dir"]) if event.get("adapter_dir") else None,
                metrics=event.get("metrics", {}),
                hardware=event.get("hardware", {}),
                resumed_from_step=event.get("resumed_from_step", 0),
            )
