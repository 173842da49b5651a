"""v2, distributed: one plain function per task of the chunked analysis.

Tasks may run on different machines, so they exchange files only through the storage root, in the
run's intermediate folder ``.intermediate/<analysis_id>/<run_id>/``; each task works in a private
local scratch folder and publishes what it produced atomically, so a retried task replaces its
earlier attempt. Everything oasislmf does goes through :mod:`oasis_ops.steps`, as for v1.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass
from typing import Any

from airflow.sdk import ObjectStoragePath

from oasis_ops.chunking import count_events
from oasis_ops.params import RunRequest, default_analysis_id
from oasis_ops.registry import Model
from oasis_ops.storage import Storage
from oasis_ops.tasks import local_exposure, stage_run, write_input_files, write_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chunk:
    """Chunk ``index`` (0-based) of ``count``: the unit a mapped task instance works on."""

    index: int
    count: int

    @property
    def label(self) -> str:
        return f"{self.index + 1}/{self.count}"

    @classmethod
    def all(cls, count: int) -> list[dict[str, int]]:
        """``count`` chunks as the (JSON) values a mapped task expands over."""
        return [asdict(cls(index, count)) for index in range(count)]


@dataclass(frozen=True)
class RunFiles:
    """One v2 run's intermediate files in the storage root."""

    base: ObjectStoragePath

    @classmethod
    def of(cls, storage: Storage, request: RunRequest, run_id: str) -> RunFiles:
        return cls(storage.root / ".intermediate" / request.analysis_id / default_analysis_id(run_id))

    @property
    def exposure(self) -> ObjectStoragePath:
        return self.base / "exposure"

    def keys(self, chunk: Chunk) -> ObjectStoragePath:
        return self.base / "keys" / str(chunk.index)

    @property
    def merged_settings(self) -> ObjectStoragePath:
        return self.base / "losses" / "settings"

    def loss_work(self, chunk: Chunk) -> ObjectStoragePath:
        return self.base / "losses" / f"{chunk.index + 1}.work"

    def loss_log(self, chunk: Chunk) -> ObjectStoragePath:
        return self.base / "losses" / f"{chunk.index + 1}.log"


def prepare(model: Model, request: RunRequest, storage: Storage, run_id: str) -> list[dict[str, int]]:
    """Check everything, stage the exposure, decide the keys-lookup chunks (none for action ``run``)."""
    with storage.scratch(request.analysis_id) as work:
        staged = stage_run(model, request, storage, work)
        if not request.generates_inputs:
            log.info("Action %s: no keys lookup; losses use the inputs in %s", request.action, staged.analysis.input)
            return []
        storage.publish(work / "exposure", RunFiles.of(storage, request, run_id).exposure)
    count = staged.chunking.lookup_chunks(staged.locations)
    log.info(
        "%d locations -> %d keys-lookup chunk(s) (%s)", staged.locations, count, staged.chunking.lookup_strategy
    )
    return Chunk.all(count)


def lookup_chunk(model: Model, request: RunRequest, storage: Storage, run_id: str, chunk: Chunk) -> None:
    """Keys lookup over this chunk's slice of the location rows."""
    from oasis_ops import steps

    files = RunFiles.of(storage, request, run_id)
    with storage.scratch(request.analysis_id) as work:
        exposure = local_exposure(storage.fetch(files.exposure, work / "exposure"))
        keys = steps.lookup_keys(model, exposure, chunk.index, chunk.count, work / "keys")
        storage.publish(keys, files.keys(chunk))
    log.info("Keys chunk %s published", chunk.label)


def write_inputs(model: Model, request: RunRequest, storage: Storage, run_id: str, lookup: list[Chunk]) -> None:
    """Collect the chunks' keys, write the Oasis input files, publish them to ``input/``."""
    if not request.generates_inputs:
        return
    files = RunFiles.of(storage, request, run_id)
    with storage.scratch(request.analysis_id) as work:
        exposure = local_exposure(storage.fetch(files.exposure, work / "exposure"))
        keys = [storage.fetch(files.keys(chunk), work / "lookup" / str(chunk.index)) for chunk in lookup]
        inputs = write_input_files(model, exposure, write_settings(request, work), keys, work)
        target = storage.analysis(request.analysis_id).input
        storage.publish(inputs, target)
    log.info("Input files published to %s", target)


def prepare_losses(model: Model, request: RunRequest, storage: Storage, run_id: str) -> list[dict[str, int]]:
    """Prepare the run folder once (the merged settings every chunk uses) and decide the loss chunks."""
    from oasis_ops import steps

    if not request.runs_losses:
        return []
    files = RunFiles.of(storage, request, run_id)
    chunking = model.chunking.override(request.chunking, "chunking")
    with storage.scratch(request.analysis_id) as work:
        inputs = storage.fetch(storage.analysis(request.analysis_id).input, work / "input")
        run_dir = work / "run"
        merged = steps.prepare_losses_dir(model, inputs, write_settings(request, work), run_dir)
        events = steps.count_events(run_dir)
        settings_folder = work / "settings"
        settings_folder.mkdir()
        shutil.copy2(merged, settings_folder / merged.name)
        storage.publish(settings_folder, files.merged_settings)
    # The reference rule counts the events from the settings; never more chunks than events.
    count = min(chunking.loss_chunks(count_events(request.analysis_settings or {}, model.model_settings()) or events), events)
    log.info("%d events -> %d loss chunk(s) (%s)", events, count, chunking.loss_strategy)
    return Chunk.all(count)


def loss_chunk(model: Model, request: RunRequest, storage: Storage, run_id: str, chunk: Chunk) -> None:
    """One pipeline over this chunk's block of events; publishes its summary binaries."""
    from oasis_ops import steps

    files = RunFiles.of(storage, request, run_id)
    with storage.scratch(request.analysis_id) as work:
        inputs = storage.fetch(storage.analysis(request.analysis_id).input, work / "input")
        settings = storage.fetch(files.merged_settings, work / "settings") / "analysis_settings.json"
        run_dir = work / "run"
        try:
            binaries = steps.generate_losses_chunk(model, inputs, settings, run_dir, chunk.index, chunk.count)
            storage.publish(binaries, files.loss_work(chunk))
        finally:
            if (run_dir / "log").is_dir():
                storage.publish(run_dir / "log", files.loss_log(chunk))
    log.info("Loss chunk %s published", chunk.label)


def aggregate(model: Model, request: RunRequest, storage: Storage, run_id: str, losses: list[Chunk]) -> dict[str, Any]:
    """Merge the chunks' binaries, write ELT/PLT/ALT/EPT (GenerateLossesOutput), publish ``output/``."""
    from oasis_ops import steps

    analysis = storage.analysis(request.analysis_id)
    result: dict[str, Any] = {"model": model.key, "analysis_id": request.analysis_id, "action": request.action}
    result |= {"input": str(analysis.input), "output": None, "loss_chunks": len(losses)}
    if not request.runs_losses:
        return result
    files = RunFiles.of(storage, request, run_id)
    with storage.scratch(request.analysis_id) as work:
        inputs = storage.fetch(analysis.input, work / "input")
        settings = storage.fetch(files.merged_settings, work / "settings") / "analysis_settings.json"
        run_dir = work / "run"
        steps.prepare_losses_dir(model, inputs, settings, run_dir)
        logs = work / "logs"
        for chunk in losses:
            part = storage.fetch(files.loss_work(chunk), work / "chunks" / str(chunk.index))
            shutil.copytree(part, run_dir / "work", dirs_exist_ok=True)
            if files.loss_log(chunk).exists():
                storage.fetch(files.loss_log(chunk), logs / f"chunk-{chunk.index + 1}")
        try:
            output = steps.generate_losses_output(model, inputs, settings, run_dir, len(losses))
            storage.publish(output, analysis.output)
        finally:
            if (run_dir / "log").is_dir():
                shutil.copytree(run_dir / "log", logs / "output", dirs_exist_ok=True)
            if logs.is_dir():
                storage.publish(logs, analysis.logs)
    log.info("Outputs published to %s", analysis.output)
    return result | {"output": str(analysis.output)}


def cleanup(model: Model, request: RunRequest, storage: Storage, run_id: str, succeeded: bool) -> None:
    """Remove the run's intermediate files once its results are published.

    After a failure they are kept: clearing the failed task in the UI resumes the run from them
    (the other chunks' results included), and the cleanup that follows removes them.
    """
    files = RunFiles.of(storage, request, run_id)
    if not files.base.exists():
        return
    if succeeded:
        files.base.fs.rm(files.base.path, recursive=True)
        if not any(files.base.parent.iterdir()):
            files.base.parent.rmdir()
        log.info("Analysis %s of %s: removed intermediate files %s", request.analysis_id, model.key, files.base)
    else:
        log.warning("The run failed: kept %s so that clearing the failed task resumes the run", files.base)
