"""v2, distributed: one plain function per task of the chunked analysis.

Tasks may run on different machines, so they exchange files only through the storage root, in the
run's intermediate folder ``.intermediate/<analysis_id>/<run_id>/``; each task works in a private
local scratch folder and publishes what it produced atomically, so a retried task replaces its
earlier attempt. Everything oasislmf does goes through :mod:`oasis_ops.execution.steps`, as for v1.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from airflow.sdk import ObjectStoragePath

from oasis_ops.constants import Mode
from oasis_ops.context import TaskRun
from oasis_ops.execution import steps
from oasis_ops.execution.staging import local_exposure, stage_run, write_settings
from oasis_ops.execution.steps import OutputPart

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
    def of(cls, run: TaskRun) -> RunFiles:
        return cls(run.storage.intermediate(run.request.analysis_id, run.run_id))

    @property
    def exposure(self) -> ObjectStoragePath:
        return self.base / "exposure"

    def keys(self, chunk: Chunk) -> ObjectStoragePath:
        return self.base / "keys" / str(chunk.index)

    @property
    def losses_dir(self) -> ObjectStoragePath:
        """The run folder ``write_input_files`` prepared once for every loss chunk and the output step."""
        return self.base / "losses" / "run"

    def loss_work(self, chunk: Chunk) -> ObjectStoragePath:
        return self.base / "losses" / f"{chunk.index + 1}.work"

    def loss_log(self, chunk: Chunk) -> ObjectStoragePath:
        return self.base / "losses" / f"{chunk.index + 1}.log"

    def output_files(self, part: OutputPart) -> ObjectStoragePath:
        return self.base / "outputs" / part.label

    def output_log(self, part: OutputPart) -> ObjectStoragePath:
        return self.base / "outputs" / f"{part.label}.log"


def prepare(run: TaskRun) -> list[dict[str, int]]:
    """Check everything, stage the exposure, decide the keys-lookup chunks (none for action ``run``)."""
    request, storage = run.request, run.storage
    with storage.scratch(request.analysis_id) as work:
        staged = stage_run(run.model, request, storage, work)
        if not request.generates_inputs:
            log.info("Action %s: no keys lookup; losses use the inputs in %s", request.action, staged.analysis.input)
            return []
        storage.publish(work / "exposure", RunFiles.of(run).exposure)
    count = staged.chunking.lookup_chunks(staged.locations)
    log.info(
        "%d locations -> %d keys-lookup chunk(s) (%s)", staged.locations, count, staged.chunking.lookup_strategy
    )
    return Chunk.all(count)


def lookup_chunk(run: TaskRun, chunk: Chunk) -> None:
    """Keys lookup over this chunk's slice of the location rows."""
    files = RunFiles.of(run)
    with run.storage.scratch(run.request.analysis_id) as work:
        exposure = local_exposure(run.storage.fetch(files.exposure, work / "exposure"))
        keys = steps.lookup_keys(run.model, exposure, chunk.index, chunk.count, work / "keys")
        run.storage.publish(keys, files.keys(chunk))
    log.info("Keys chunk %s published", chunk.label)


def write_input_files(run: TaskRun, lookup: list[Chunk]) -> list[dict[str, int]]:
    """Collect the chunks' keys, write the Oasis input files and publish them to ``input/``; then, if the
    action runs losses, prepare the run folder from them and decide the loss chunks.

    One task for both, so that the input files are not fetched back from storage by another task and
    the run pays one task start less.
    """
    request, storage = run.request, run.storage
    analysis = storage.analysis(request.analysis_id)
    with storage.scratch(request.analysis_id) as work:
        inputs, settings = None, write_settings(request, work)
        if request.generates_inputs:
            files = RunFiles.of(run)
            exposure = local_exposure(storage.fetch(files.exposure, work / "exposure"))
            keys = [storage.fetch(files.keys(chunk), work / "lookup" / str(chunk.index)) for chunk in lookup]
            inputs = steps.generate_inputs_from_keys(run.model, exposure, settings, keys, work)
            storage.publish(inputs, analysis.input, keep=True)  # the run folder below reads the local copy
            log.info("Input files published to %s", analysis.input)
        if not request.runs_losses:
            return []
        assert settings is not None  # RunRequest requires settings for runs_losses
        return _prepare_losses(run, inputs or storage.fetch(analysis.input, work / "input"), settings, work / "run")


def _prepare_losses(run: TaskRun, inputs: Path, settings: Path, run_dir: Path) -> list[dict[str, int]]:
    """Prepare the run folder once (``GenerateLossesDir``: the merged settings, the FM and GULMC
    structures) and publish it for every chunk; decide the loss chunks (DYNAMIC_CHUNKS: at least
    ``min_chunk_ground_up_samples`` of estimated work each, from the folder while its model data is linked)."""
    request = run.request
    chunking = run.model.chunking.override(request.chunking, "chunking")
    floored = chunking.floors_loss_chunks
    steps.prepare_losses_dir(run.model, inputs, settings, run_dir)
    events = steps.events_in_run_dir(run_dir)
    samples = steps.ground_up_samples(run_dir) if floored else None
    run.storage.publish(steps.shareable_losses_dir(run_dir), RunFiles.of(run).losses_dir)
    slots = run.model.pool_slots(Mode.V2)
    count = chunking.loss_chunks(events, slots, samples)
    notes = [f"filling {slots} pool slots"] if chunking.fill_pool_slots else []
    if floored and samples is None:
        notes.append("no ground-up samples estimate: no floor")
    elif samples is not None and count < chunking.loss_chunks(events, slots):
        notes.append(f"capped: ~{samples:,} ground-up samples, at least {chunking.min_chunk_ground_up_samples:,} per chunk")
    log.info("%d events -> %d loss chunk(s) (%s)", events, count, ", ".join([chunking.loss_strategy, *notes]))
    return Chunk.all(count)


def plan_outputs(run: TaskRun) -> list[dict[str, Any]]:
    """The output parts of the run (one per summary set of each perspective), from the merged settings
    of the prepared run folder; runs beside the loss chunks."""
    if not run.request.runs_losses:
        return []
    with run.storage.scratch(run.request.analysis_id) as work:
        settings = run.storage.fetch(RunFiles.of(run).losses_dir / "output" / "analysis_settings.json", work / "analysis_settings.json")
        parts = steps.output_parts(settings)
    log.info("%d output part(s): %s", len(parts), ", ".join(part.label for part in parts))
    return [asdict(part) for part in parts]


def _fetch_losses_dir(run: TaskRun, work: Path) -> Path:
    """This machine's copy of the prepared run folder, its model data linked."""
    return steps.relink_losses_dir(run.model, run.storage.fetch(RunFiles.of(run).losses_dir, work / "run"))


def loss_chunk(run: TaskRun, chunk: Chunk) -> None:
    """One pipeline over this chunk's block of events; publishes its summary binaries."""
    files, storage = RunFiles.of(run), run.storage
    with storage.scratch(run.request.analysis_id) as work:
        run_dir = _fetch_losses_dir(run, work)
        with storage.published_on_exit(run_dir / "log", files.loss_log(chunk)):
            binaries = steps.generate_losses_chunk(run.model, run_dir, chunk.index, chunk.count)
            storage.publish(binaries, files.loss_work(chunk))
    log.info("Loss chunk %s published", chunk.label)


def output_part(run: TaskRun, part: OutputPart, losses: list[Chunk]) -> None:
    """One summary set's ELT/PLT/ALT/EPT files from every chunk's binaries (oasislmf's output step run for
    that part alone); publishes the files it wrote and its logs."""
    files, storage = RunFiles.of(run), run.storage
    with storage.scratch(run.request.analysis_id) as work:
        run_dir = _fetch_losses_dir(run, work)
        for chunk in losses:
            shutil.copytree(storage.fetch(files.loss_work(chunk), work / "chunks" / str(chunk.index)), run_dir / "work", dirs_exist_ok=True)
        prepared = {p.relative_to(run_dir) for p in (run_dir / "output").rglob("*") if p.is_file()}
        with storage.published_on_exit(run_dir / "log", files.output_log(part)):
            steps.generate_losses_output(run.model, run_dir, len(losses), part)
        written = work / "written"
        for path in sorted((run_dir / "output").rglob("*")):
            if path.is_file() and path.relative_to(run_dir) not in prepared:
                (written / path.relative_to(run_dir / "output")).parent.mkdir(parents=True, exist_ok=True)
                shutil.move(path, written / path.relative_to(run_dir / "output"))
        if not written.is_dir():
            raise RuntimeError(f"oasislmf's output step wrote no file for {part.label}; see its logs in {files.output_log(part)}")
        storage.publish(written, files.output_files(part))
    log.info("Outputs %s published", part.label)


def aggregate(run: TaskRun, losses: list[Chunk], parts: list[OutputPart]) -> dict[str, Any]:
    """Publish ``output/`` (if the action ran losses), then remove the run's intermediate files."""
    request = run.request
    analysis = run.storage.analysis(request.analysis_id)
    result: dict[str, Any] = {"model": run.model.key, "analysis_id": request.analysis_id, "action": request.action}
    result |= {"input": str(analysis.input), "output": None, "loss_chunks": len(losses), "output_parts": len(parts)}
    if request.runs_losses:
        _publish_outputs(run, losses, parts)
        result["output"] = str(analysis.output)
    _remove_intermediates(run)
    return result


def _publish_outputs(run: TaskRun, losses: list[Chunk], parts: list[OutputPart]) -> None:
    """Publish ``output/``: the output parts' files beside what ``GenerateLossesDir`` wrote there
    (the merged settings, the summary information), all at once.

    ``logs/`` gets each chunk's pipeline logs under ``chunk-<n>/`` and each output part's under
    ``output-<part>/``.
    """
    storage, files = run.storage, RunFiles.of(run)
    analysis = storage.analysis(run.request.analysis_id)
    with storage.scratch(run.request.analysis_id) as work:
        output, logs = storage.fetch(files.losses_dir / "output", work / "output"), work / "logs"
        for part in parts:
            shutil.copytree(storage.fetch(files.output_files(part), work / "parts" / part.label), output, dirs_exist_ok=True)
        for chunk in losses:
            if files.loss_log(chunk).exists():
                storage.fetch(files.loss_log(chunk), logs / f"chunk-{chunk.index + 1}")
        for part in parts:
            if files.output_log(part).exists():
                storage.fetch(files.output_log(part), logs / f"output-{part.label}")
        if logs.is_dir():
            storage.publish(logs, analysis.logs)
        storage.publish(output, analysis.output)
    log.info("Outputs published to %s", analysis.output)


def _remove_intermediates(run: TaskRun) -> None:
    """Remove the run's intermediate files once its results are published: the last thing a run does.

    After a failure they are kept: clearing the failed task in the UI resumes the run from them
    (the other chunks' results included), and its ``aggregate`` removes them; storage hygiene
    removes them once the run ended longer than the retention ago.
    """
    folder = RunFiles.of(run).base
    freed = run.storage.remove_intermediates(folder)
    if freed is not None:
        log.info("Analysis %s of %s: removed intermediate files %s (%s bytes)", run.request.analysis_id, run.model.key, folder, freed)
