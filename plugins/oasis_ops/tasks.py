"""What the tasks do, as plain functions of (model, request, storage): no Airflow context needed.

``stage_run`` is every run's first step: all the cheap checks, then the run's files copied from the
storage root into a private work folder. Heavy modules (oasislmf, ods-tools) load inside tasks only.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oasis_ops.chunking import ChunkingConfig
from oasis_ops.errors import OasisInputError
from oasis_ops.params import RunRequest
from oasis_ops.registry import Model
from oasis_ops.storage import AnalysisLocation, Storage
from oasis_ops.validation import check_analysis_settings, check_exposure_file, check_oed, FIELD_OF_ROLE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagedRun:
    """A checked run with its files in a local work folder."""

    request: RunRequest
    analysis: AnalysisLocation
    chunking: ChunkingConfig
    #: OED role -> local copy of the exposure file (empty for action ``run``).
    exposure: dict[str, Path]
    settings_path: Path | None
    #: Rows of the location file (0 for action ``run``).
    locations: int


def stage_run(model: Model, request: RunRequest, storage: Storage, work: Path) -> StagedRun:
    """Check the run's conf, files and settings, cheapest first, and copy its files into ``work``.

    Raises :class:`OasisInputError` before any heavy work when anything is wrong.
    """
    chunking = model.chunking.override(request.chunking, "chunking")
    if request.analysis_settings:
        check_analysis_settings(request.analysis_settings, model)
    sources = {role: storage.resolve(path, FIELD_OF_ROLE[role]) for role, path in request.exposure.items()}
    for role, source in sources.items():
        check_exposure_file(source, role)
    analysis = storage.analysis(request.analysis_id)
    if not request.generates_inputs and not analysis.input.exists():
        raise OasisInputError(
            f"analysis_id: no inputs were generated for {request.analysis_id!r} (expected {analysis.input}); "
            "run action 'generate_inputs' or 'generate_and_run' first"
        )
    exposure = {role: storage.fetch(src, work / "exposure" / role / src.name) for role, src in sources.items()}
    locations = check_oed(exposure, request.exposure) if exposure else 0
    return StagedRun(request, analysis, chunking, exposure, write_settings(request, work), locations)


def write_settings(request: RunRequest, work: Path) -> Path | None:
    """The run's analysis settings as the JSON file oasislmf reads (``None`` if it has none)."""
    if not request.analysis_settings:
        return None
    path = work / "analysis_settings.json"
    path.write_text(json.dumps(request.analysis_settings, indent=2))
    return path


def local_exposure(folder: Path) -> dict[str, Path]:
    """OED role -> file of a staged ``exposure/<role>/<file>`` folder."""
    return {role.name: next(role.iterdir()) for role in sorted(folder.iterdir())}


def write_input_files(
    model: Model, exposure: dict[str, Path], settings: Path | None, key_chunks: list[Path], work: Path
) -> Path:
    """Collect the keys of every lookup chunk in a fixed order, then oasislmf's GenerateFiles."""
    from oasis_ops import steps

    keys = steps.collect_keys(key_chunks, work / "keys")
    return steps.generate_files(model, exposure, settings, keys, work / "input")


def run_single_server(model: Model, request: RunRequest, storage: Storage) -> dict[str, Any]:
    """v1: file preparation then losses generation in this process, with every core of this machine."""
    from oasis_ops import steps

    timings: dict[str, float] = {}
    with storage.scratch(request.analysis_id) as work:
        started = time.monotonic()
        staged = stage_run(model, request, storage, work)
        timings["validate_seconds"] = round(time.monotonic() - started, 3)
        log.info("Analysis %s of %s: inputs checked; action %s", request.analysis_id, model.key, request.action)
        if request.generates_inputs:
            started = time.monotonic()
            keys = steps.lookup_keys(model, staged.exposure, 0, 1, work / "lookup")
            inputs = write_input_files(model, staged.exposure, staged.settings_path, [keys], work)
            storage.publish(inputs, staged.analysis.input)
            timings["generate_inputs_seconds"] = round(time.monotonic() - started, 3)
            log.info("Input files published to %s", staged.analysis.input)
        if request.runs_losses:
            started = time.monotonic()
            inputs = storage.fetch(staged.analysis.input, work / "run_input")
            run_dir = work / "run"
            try:
                output = steps.generate_losses(model, inputs, staged.settings_path, run_dir)
                storage.publish(output, staged.analysis.output)
            finally:
                if (run_dir / "log").is_dir():
                    storage.publish(run_dir / "log", staged.analysis.logs)
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
