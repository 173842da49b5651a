"""v1, single server: file preparation then losses generation in one task, with every core of its worker."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from oasis_ops.context import TaskRun
from oasis_ops.execution import steps
from oasis_ops.execution.staging import stage_run

log = logging.getLogger(__name__)


def run_single_server(run: TaskRun) -> dict[str, Any]:
    """The whole analysis in this process; returns where its results went and how long each stage took."""
    model, request, storage = run.model, run.request, run.storage
    timings: dict[str, float] = {}
    with storage.scratch(request.analysis_id) as work:
        started = time.monotonic()
        staged = stage_run(model, request, storage, work)
        timings["validate_seconds"] = round(time.monotonic() - started, 3)
        log.info("Analysis %s of %s: inputs checked; action %s", request.analysis_id, model.key, request.action)
        inputs: Path | None = None
        if request.generates_inputs:
            started = time.monotonic()
            keys = steps.lookup_keys(model, staged.exposure, 0, 1, work / "lookup")
            inputs = steps.generate_inputs_from_keys(model, staged.exposure, staged.settings_path, [keys], work)
            storage.publish(inputs, staged.analysis.input, keep=True)  # the losses below read the local copy
            timings["generate_inputs_seconds"] = round(time.monotonic() - started, 3)
            log.info("Input files published to %s", staged.analysis.input)
        if request.runs_losses:
            assert staged.settings_path is not None  # RunRequest requires settings for runs_losses
            started = time.monotonic()
            inputs = inputs or storage.fetch(staged.analysis.input, work / "run_input")
            run_dir = work / "run"
            with storage.published_on_exit(run_dir / "log", staged.analysis.logs):
                output = steps.generate_losses(model, inputs, staged.settings_path, run_dir)
                storage.publish(output, staged.analysis.output)
            timings["generate_losses_seconds"] = round(time.monotonic() - started, 3)
            log.info("Outputs published to %s", staged.analysis.output)
    return {
        "model": model.key,
        "analysis_id": request.analysis_id,
        "action": request.action,
        "input": str(staged.analysis.input),
        "output": str(staged.analysis.output) if request.runs_losses else None,
        **timings,
    }
