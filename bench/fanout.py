"""Fan-out benchmark: what one more v2 loss chunk costs beyond its own work (issue 12).

On the Celery stack (``make celery-up`` on a fresh database, as ``bench.bench --executor celery``; the
model's v2 worker and pool as the registry sizes them, 2 slots by default) one small synthetic analysis
(GUL+IL, few samples: the chunks' own work is small) runs through the v2 DAG twice, 1 keys-lookup chunk
each: with a few loss chunks (default 2, the v2 pool's slots) and with many (default 200, the Oasis
platform's default ``dynamic_chunks_max``), FIXED_CHUNKS through the run conf's ``chunking``. Both
runs' outputs must be byte-identical (the bench fails otherwise, after saving the timings). Each run is triggered over REST and timed trigger to end; the
loss chunks' times come from their task instances, and each chunk's phases (Airflow's task start,
our fetch and relink, oasislmf's set-up and pipeline, our publish, Airflow's task end) from the
timestamps of its task log, read over REST.

The answer: the extra cost per chunk, ``(loss-stage wall(many) - wall(few)) × slots / (many - few)``
(the few-chunk run's loss stage is the work itself plus a few chunks' costs), against the goal of
0.2 s; split into what each task takes longer (its phases) and the gap on a worker slot between one
chunk's end and the next one's start (scheduling, Celery dispatch).

Results go to ``bench/fanout.json``, the table to ``bench/fanout.md`` (``--render-only`` re-renders it).
From the repository root:

    PYTHONPATH=plugins .venv/bin/python -m bench.fanout                 # 200 loss chunks against 2: 30-75 minutes
    PYTHONPATH=plugins .venv/bin/python -m bench.fanout --chunks 10 \\
        --results /tmp/fanout.json --table /tmp/fanout.md               # smoke test: about 8 minutes
    PYTHONPATH=plugins .venv/bin/python -m bench.fanout --render-only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from bench.bench import celery_stack, deploy_synthetic, host
from bench.scaleout import TaskRecord, timed_run
from harness.rest import RestClient, RestError

try:
    from oasis_ops.chunking import MAX_CHUNKS, ChunkStrategy
    from oasis_ops.constants import Mode, TaskKind
    from oasis_ops.execution.environment import prepare_environment
    from oasis_ops.tools.synthetic import SyntheticModelSpec
except ModuleNotFoundError as missing:  # the product is plugins/, which Airflow (not pip) puts on sys.path
    raise SystemExit(f"{missing}: run from the repository root with PYTHONPATH=plugins (the Makefile exports it)") from None

HERE = Path(__file__).resolve().parent
RESULTS, TABLE = HERE / "fanout.json", HERE / "fanout.md"
#: The issue's goal: each loss chunk adds at most this many seconds beyond its own work.
GOAL_SECONDS = 0.2
#: Small and cheap per event (a fifth of the locations hit, 10 samples): the chunks' own work is a few
#: seconds in all, so what 200 chunks add is what is measured. 1,000 events: 5 per chunk at 200.
DEFAULT_SPEC = SyntheticModelSpec(locations=2_000, events=1_000, samples=10, areaperils=100, areaperils_per_event=20,
                                  vulnerabilities=10, damage_bins=20)
LOSS_CHUNK = TaskKind.LOSS_CHUNK.value


# --- a loss chunk's phases, from its task log ---------------------------------------------------------


class Mark(StrEnum):
    """Moments of a loss chunk's task, each the first log event (after the previous mark's) starting with
    its text; START and END are the task instance's start and end dates."""

    START = "start"
    PRE_EXECUTE = "::group::Pre Execute"  # Airflow's task runner, in the task process
    PARSED = "::endgroup::"  # the DAG file parsed in the task: Airflow's start-up done, our body next
    RELINK = "RUNNING: oasislmf.execution.bin.prepare_run_directory"  # oasislmf imported, the run folder fetched
    LOSSES = "RUNNING: oasislmf.manager.interface"  # generate_losses_partial
    PIPELINE = "RUNNING: oasislmf.execution.runner.run_analysis"  # the evepy | gulmc | fmpy | summarypy script
    PIPELINE_DONE = "COMPLETED: oasislmf.execution.runner.run_analysis"
    LOSSES_DONE = "COMPLETED: oasislmf.manager.interface"
    PUBLISHED = "Loss chunk "  # "Loss chunk 3/200 published": binaries and logs published, scratch removed
    DONE = "Done. Returned value was"  # the task body returned (leftover processes stopped)
    END = "end"

    @property
    def in_log(self) -> bool:
        return self not in (Mark.START, Mark.END)


class Owner(StrEnum):
    """Whose code a phase runs."""

    AIRFLOW = "Airflow"
    OURS = "oasis_ops"
    OASISLMF = "oasislmf"


@dataclasses.dataclass(frozen=True)
class Phase:
    """The time of a chunk's task between two marks."""

    name: str
    owner: Owner
    begin: Mark
    end: Mark


PHASES = (
    Phase("task start: process, DAG file parsed", Owner.AIRFLOW, Mark.START, Mark.PARSED),
    Phase("import oasislmf, fetch the prepared run folder", Owner.OURS, Mark.PARSED, Mark.RELINK),
    Phase("relink the model data", Owner.OURS, Mark.RELINK, Mark.LOSSES),
    Phase("settings and set-up", Owner.OASISLMF, Mark.LOSSES, Mark.PIPELINE),
    Phase("the loss pipeline", Owner.OASISLMF, Mark.PIPELINE, Mark.PIPELINE_DONE),
    Phase("output check", Owner.OASISLMF, Mark.PIPELINE_DONE, Mark.LOSSES_DONE),
    Phase("publish binaries and logs, remove scratch", Owner.OURS, Mark.LOSSES_DONE, Mark.PUBLISHED),
    Phase("stop leftover processes", Owner.OURS, Mark.PUBLISHED, Mark.DONE),
    Phase("task end: post-execute, state reported", Owner.AIRFLOW, Mark.DONE, Mark.END),
)


def _is(mark: Mark, event: str) -> bool:
    if mark is Mark.PUBLISHED:
        return event.startswith(mark.value) and event.endswith(" published")
    return event.startswith(mark.value)


def find_marks(events: Sequence[tuple[float, str]]) -> dict[Mark, float]:
    """The log marks found in ``events`` ((seconds after the trigger, text), in log order), each searched
    after the previous one found; a mark not found is left out (the others are still placed)."""
    found: dict[Mark, float] = {}
    position = 0
    for mark in (m for m in Mark if m.in_log):
        for index in range(position, len(events)):
            if _is(mark, events[index][1]):
                found[mark] = events[index][0]
                position = index + 1
                break
    return found


def chunk_log(rest: RestClient, dag_id: str, run_id: str, map_index: int, try_number: int, origin: datetime) -> list[tuple[float, str]]:
    """One loss chunk's task log over REST: (seconds after ``origin``, event text) of each timed line."""
    base = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{LOSS_CHUNK}/logs/{try_number}?map_index={map_index}&full_content=true"
    lines: list[tuple[float, str]] = []
    token: str | None = None
    for _ in range(100):  # a finished task's log comes in one page; follow continuation tokens a while if not
        answer = rest.request("GET", base + (f"&token={token}" if token else ""))
        content = answer.get("content") or []
        for item in content:
            if isinstance(item, Mapping) and item.get("timestamp"):
                lines.append((_seconds(item["timestamp"], origin), str(item.get("event", ""))))
        token = answer.get("continuation_token")
        if not token or not content:
            break
    return lines


def _seconds(moment: str, origin: datetime) -> float:
    return (datetime.fromisoformat(moment.replace("Z", "+00:00")) - origin).total_seconds()


# --- measured results, as kept in fanout.json ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ChunkRecord:
    """One loss chunk's task instance: times in seconds after the trigger, its log marks."""

    map_index: int
    try_number: int
    queued: float
    start: float
    end: float
    marks: Mapping[str, float]

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def at(self, mark: Mark) -> float | None:
        return self.start if mark is Mark.START else self.end if mark is Mark.END else self.marks.get(mark.value)

    def phase(self, phase: Phase) -> float | None:
        begin, end = self.at(phase.begin), self.at(phase.end)
        return None if begin is None or end is None else end - begin


@dataclasses.dataclass(frozen=True)
class SlotGap:
    """A chunk that started on a worker slot as another ended: seconds from that end to this one's queuing
    (the scheduler) and from its queuing to its start (Celery dispatch, the worker's task start)."""

    scheduling: float
    dispatch: float

    @property
    def seconds(self) -> float:
        return self.scheduling + self.dispatch


def slot_gaps(chunks: Iterable[ChunkRecord]) -> list[SlotGap]:
    """Chunks in start order, each placed on the slot freed last before it started (the task whose end let
    the pool take it); a chunk no slot was free for starts a slot and has no gap."""
    slot_ends: list[float] = []
    gaps: list[SlotGap] = []
    for chunk in sorted(chunks, key=lambda chunk: chunk.start):
        freed = [index for index, end in enumerate(slot_ends) if end <= chunk.start]
        if not freed:
            slot_ends.append(chunk.end)
            continue
        slot = max(freed, key=slot_ends.__getitem__)
        gaps.append(SlotGap(chunk.queued - slot_ends[slot], chunk.start - chunk.queued))
        slot_ends[slot] = chunk.end
    return gaps


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _p90(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=10, method="inclusive")[8]


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One timed v2 run: trigger to end, every task instance, the loss chunks in detail."""

    run_id: str
    loss_chunks: int
    total: float
    load_average_before: Sequence[float]
    tasks: tuple[TaskRecord, ...]
    chunks: tuple[ChunkRecord, ...]

    @property
    def loss_wall(self) -> float:
        """First loss chunk's start to the last one's end."""
        return max(chunk.end for chunk in self.chunks) - min(chunk.start for chunk in self.chunks)

    @property
    def durations(self) -> list[float]:
        return [chunk.seconds for chunk in self.chunks]

    @property
    def loss_sum(self) -> float:
        return sum(self.durations)

    @property
    def gaps(self) -> list[SlotGap]:
        return slot_gaps(self.chunks)

    def phase_sum(self, phase: Phase) -> float | None:
        """The phase summed over the chunks; None unless every chunk's log had both its marks."""
        values = [chunk.phase(phase) for chunk in self.chunks]
        return None if any(value is None for value in values) else sum(v for v in values if v is not None)

    def stages(self) -> dict[str, tuple[float, int]]:
        """Task id -> (first start to last end, task instances), in start order."""
        spans: dict[str, tuple[float, float, int]] = {}
        for task in sorted(self.tasks, key=lambda task: task.start):
            first, last, count = spans.get(task.task_id, (task.start, task.end, 0))
            spans[task.task_id] = (min(first, task.start), max(last, task.end), count + 1)
        return {task_id: (last - first, count) for task_id, (first, last, count) in spans.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        tasks = tuple(TaskRecord(**task) for task in data["tasks"])
        chunks = tuple(ChunkRecord(**chunk) for chunk in data["chunks"])
        return cls(data["run_id"], data["loss_chunks"], data["total"], data["load_average_before"], tasks, chunks)


@dataclasses.dataclass(frozen=True)
class OutputCheck:
    """The two runs' outputs compared byte for byte: the files that differ (none: identical)."""

    differing: tuple[str, ...] = ()

    @property
    def identical(self) -> bool:
        return not self.differing

    def summary(self, few: int, many: int) -> str:
        if self.identical:
            return f"outputs of {few} and {many} chunks byte-identical"
        return f"outputs of {few} and {many} chunks DIFFER: {', '.join(self.differing)}"


def compare_outputs(expected: Path, actual: Path) -> OutputCheck:
    """Every file of ``expected`` against ``actual``'s (both must hold the same files)."""
    files = sorted(p.relative_to(expected) for p in expected.rglob("*") if p.is_file())
    if not files or files != sorted(p.relative_to(actual) for p in actual.rglob("*") if p.is_file()):
        raise AssertionError(f"{expected} and {actual} do not hold the same output files")
    return OutputCheck(tuple(f.as_posix() for f in files if (expected / f).read_bytes() != (actual / f).read_bytes()))


@dataclasses.dataclass(frozen=True)
class FanoutRecord:
    """The few-chunk and the many-chunk run of one analysis, where and when they were measured."""

    spec: SyntheticModelSpec
    measured: str  # ISO date and time, UTC
    host: Mapping[str, Any]
    slots: int  # the v2 pool's
    worker_concurrency: int  # the v2 worker's
    few: RunRecord
    many: RunRecord
    outputs: OutputCheck

    @property
    def added(self) -> int:
        return self.many.loss_chunks - self.few.loss_chunks

    @property
    def extra_per_chunk(self) -> float:
        """Slot-seconds each chunk adds beyond its own work: the loss stage's wall × slots, many against few."""
        return (self.many.loss_wall - self.few.loss_wall) * self.slots / self.added

    @property
    def task_extra_per_chunk(self) -> float:
        """What each chunk adds to the summed task durations (its own task's fixed costs)."""
        return (self.many.loss_sum - self.few.loss_sum) / self.added

    @property
    def total_per_chunk(self) -> float:
        """What each chunk adds to the run, trigger to end (output parts and aggregate read every chunk's files)."""
        return (self.many.total - self.few.total) / self.added

    def phase_per_chunk(self, phase: Phase) -> float | None:
        few, many = self.few.phase_sum(phase), self.many.phase_sum(phase)
        return None if few is None or many is None else (many - few) / self.added

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"spec": dataclasses.asdict(self.spec)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FanoutRecord:
        return cls(SyntheticModelSpec(**data["spec"]), data["measured"], data["host"], data["slots"], data["worker_concurrency"],
                   RunRecord.from_json(data["few"]), RunRecord.from_json(data["many"]), OutputCheck(tuple(data["outputs"]["differing"])))


def load_results(path: Path) -> FanoutRecord:
    try:
        return FanoutRecord.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise SystemExit(f"{path} does not exist: measure first") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{path} is not a fan-out results file ({exc!r})") from None


# --- the runs ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one bench invocation measures."""

    spec: SyntheticModelSpec
    few: int
    many: int
    warm_up: bool
    logs: Path | None  # where to keep the loss chunks' task logs (seconds after the trigger, text)


def measured_run(rest: RestClient, dag_id: str, run_id: str, conf: Mapping[str, Any], home: Path, chunks: int,
                 logs: Path | None = None) -> RunRecord:
    """Trigger, wait, then read the task instances and every loss chunk's log (kept in ``logs`` if given)."""
    load = [round(value, 2) for value in os.getloadavg()]
    total, tasks = timed_run(rest, dag_id, run_id, conf, home)
    # timed_run's trigger moment, which its times count from: the run's end less its total
    origin = datetime.fromisoformat(rest.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["end_date"]) - timedelta(seconds=total)
    records: list[ChunkRecord] = []
    for ti in rest.task_instances(dag_id, run_id):
        if ti["task_id"] != LOSS_CHUNK:
            continue
        try:
            lines = chunk_log(rest, dag_id, run_id, ti["map_index"], ti["try_number"], origin)
        except RestError as exc:
            print(f"  no log for chunk {ti['map_index']}: {exc}", file=sys.stderr)
            lines = []
        if logs is not None:
            (logs / run_id).mkdir(parents=True, exist_ok=True)
            (logs / run_id / f"{ti['map_index']}.log").write_text("".join(f"{at:10.3f} {text}\n" for at, text in lines))
        marks = find_marks(lines)
        records.append(ChunkRecord(
            ti["map_index"], ti["try_number"], _seconds(ti["queued_when"] or ti["start_date"], origin),
            _seconds(ti["start_date"], origin), _seconds(ti["end_date"], origin), {mark.value: at for mark, at in marks.items()},
        ))
    if len(records) != chunks:
        raise RuntimeError(f"{run_id}: {len(records)} loss chunks ran, {chunks} were asked for (fewer events than chunks?)")
    retried = [chunk.map_index for chunk in records if chunk.try_number > 1]
    if retried:
        print(f"  warning: loss chunks {retried} were retried; their times are their last try's", file=sys.stderr)
    return RunRecord(run_id, chunks, total, load, tasks, tuple(sorted(records, key=lambda chunk: chunk.map_index)))


def measure(plan: Plan, base: Path) -> FanoutRecord:
    """The few-chunk run, then the many-chunk run, on one Celery stack; their outputs compared."""
    workspace = deploy_synthetic(plan.spec, base, plan.warm_up)
    model = workspace.model
    dag_id = model.dag_id(Mode.V2)
    runs: dict[int, RunRecord] = {}
    with celery_stack(base, workspace.registry, workspace.storage, [dag_id]) as celery:
        slots = celery.rest.pools()[model.queue(Mode.V2)]
        for chunks in (plan.few, plan.many):
            run_id = f"fanout-{chunks}"
            chunking = {"lookup_strategy": ChunkStrategy.FIXED_CHUNKS.value, "loss_strategy": ChunkStrategy.FIXED_CHUNKS.value,
                        "fixed_lookup_chunks": 1, "fixed_analysis_chunks": chunks}
            conf = workspace.conf | {"analysis_id": run_id, "chunking": chunking}
            print(f"  v2, {chunks} loss chunks on {slots} slots ...", flush=True)
            runs[chunks] = record = measured_run(celery.rest, dag_id, run_id, conf, celery.home, chunks, plan.logs)
            print(f"  v2, {chunks} loss chunks: {record.total:.1f} s, loss stage {record.loss_wall:.1f} s", flush=True)
    outputs = compare_outputs(workspace.output(runs[plan.few].run_id), workspace.output(runs[plan.many].run_id))
    measured = datetime.now(UTC).isoformat(timespec="seconds")
    return FanoutRecord(plan.spec, measured, host(), slots, model.worker_concurrency(Mode.V2), runs[plan.few], runs[plan.many], outputs)


# --- rendering ---------------------------------------------------------------------------------------


def _s(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def run_rows(record: FanoutRecord) -> list[list[str]]:
    rows = []
    for run in (record.few, record.many):
        durations, gaps = run.durations, run.gaps
        rows.append([
            f"{run.loss_chunks}", _s(run.total, 1), _s(run.loss_wall, 1), _s(run.loss_sum, 1), _s(_mean(durations)),
            _s(statistics.median(durations)), _s(_p90(durations)), _s(_mean([gap.seconds for gap in gaps])),
            _s(_mean([gap.scheduling for gap in gaps])), _s(_mean([gap.dispatch for gap in gaps])),
        ])
    return rows


RUN_HEADER = ["loss chunks", "trigger to end, s", "loss stage wall, s", "sum of chunk durations, s", "chunk mean, s",
              "median, s", "p90, s", "slot gap mean, s", "of it: to queued", "queued to start"]


def phase_rows(record: FanoutRecord) -> list[list[str]]:
    rows = []
    for phase in PHASES:
        few, many = record.few.phase_sum(phase), record.many.phase_sum(phase)
        rows.append([phase.owner.value, phase.name, _s(None if few is None else few / record.few.loss_chunks),
                     _s(None if many is None else many / record.many.loss_chunks), _s(record.phase_per_chunk(phase))])
    return rows


PHASE_HEADER = ["whose", "phase of a loss chunk's task", "few: mean, s", "many: mean, s", "added per chunk, s"]


def verdict(record: FanoutRecord) -> str:
    extra = record.extra_per_chunk
    return (f"each loss chunk adds {extra:.2f} slot-seconds beyond its own work (goal ≤ {GOAL_SECONDS:g} s: "
            f"{'met' if extra <= GOAL_SECONDS else f'not met, {extra / GOAL_SECONDS:.0f}× over'})")


def render_table(record: FanoutRecord) -> str:
    spec, few, many = record.spec, record.few, record.many
    gaps = many.gaps
    lines = [
        "# Fan-out of v2: what one more loss chunk costs (issue 12)", "",
        "Written by `PYTHONPATH=plugins .venv/bin/python -m bench.fanout` from `bench/fanout.json` (re-render: "
        "`--render-only`). The v2 DAG on the Celery stack (`make celery-up`: PostgreSQL, Redis; the model's v2 worker, "
        f"{record.worker_concurrency} tasks at once, and pool, {record.slots} slots), 1 keys-lookup chunk, FIXED_CHUNKS; "
        f"{few.loss_chunks} and {many.loss_chunks} loss chunks: {record.outputs.summary(few.loss_chunks, many.loss_chunks)}.", "",
        f"Synthetic model, GUL+IL: {spec.locations:,} locations × {spec.events:,} events × {spec.samples} samples, "
        f"{spec.areaperils_per_event or spec.areaperils} of {spec.areaperils} areaperils per event. Measured {record.measured} "
        f"on {record.host.get('cores')} cores, {record.host.get('memory_gib')} GiB (load average before the runs: "
        f"{few.load_average_before}, {many.load_average_before}).", "",
        f"**Answer: {verdict(record)}**: (loss-stage wall {many.loss_wall:.1f} s − {few.loss_wall:.1f} s) × {record.slots} slots "
        f"/ {record.added} chunks. Of it, {record.task_extra_per_chunk:.2f} s is each chunk's task taking longer (its phases "
        f"below) and {_s(_mean([gap.seconds for gap in gaps]))} s the mean gap on a slot between one chunk's end and the next "
        f"one's start. Trigger to end grows by {record.total_per_chunk:.2f} s per chunk (on {record.slots} slots; the "
        "output parts and the aggregate also read every chunk's files).", "",
        "| " + " | ".join(RUN_HEADER) + " |", "|" + "---|" * len(RUN_HEADER),
        *("| " + " | ".join(row) + " |" for row in run_rows(record)), "",
        "Loss stage wall: first loss chunk's start to the last one's end. Slot gap: a chunk's start after the end of the "
        "chunk that freed its slot (the scheduler noticing and queuing it, then Celery and the worker starting it).", "",
        "Where a chunk's task time goes, from the timestamps of its task log (`RUNNING:`/`COMPLETED:` lines of oasislmf, "
        "our `Loss chunk … published`, Airflow's task-runner groups) and the task instance's start and end:", "",
        "| " + " | ".join(PHASE_HEADER) + " |", "|" + "---|" * len(PHASE_HEADER),
        *("| " + " | ".join(row) + " |" for row in phase_rows(record)), "",
        "Stages of the two runs (first start to last end, s; task instances in brackets):", "",
        "| stage | " + f"{few.loss_chunks} chunks | {many.loss_chunks} chunks |", "|---|---|---|",
    ]
    few_stages, many_stages = few.stages(), many.stages()
    for task_id in dict.fromkeys([*few_stages, *many_stages]):
        cells = [f"{stages[task_id][0]:.1f} ({stages[task_id][1]})" if task_id in stages else "–" for stages in (few_stages, many_stages)]
        lines.append(f"| {task_id} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, ""])


def report(record: FanoutRecord, table: Path) -> None:
    """Print the runs, the phases and the answer; write the table."""
    print(f"\n{record.spec.locations:,} locations × {record.spec.events:,} events × {record.spec.samples} samples; "
          f"v2 pool {record.slots} slots, worker concurrency {record.worker_concurrency}")
    widths = [max(len(title), 8) for title in RUN_HEADER]
    print("  ".join(f"{title:>{width}}" for title, width in zip(RUN_HEADER, widths, strict=True)))
    for row in run_rows(record):
        print("  ".join(f"{cell:>{width}}" for cell, width in zip(row, widths, strict=True)))
    print(f"\n{'whose':10} {'phase':45} {'few mean':>9} {'many mean':>9} {'per chunk':>9}")
    for owner, name, few, many, added in phase_rows(record):
        print(f"{owner:10} {name:45} {few:>9} {many:>9} {added:>9}")
    print(f"\n{record.outputs.summary(record.few.loss_chunks, record.many.loss_chunks)}")
    print(verdict(record))
    print(f"  of it: task durations +{record.task_extra_per_chunk:.2f} s per chunk; trigger to end +{record.total_per_chunk:.2f} s per chunk")
    table.write_text(render_table(record))
    print(f"wrote {table}")


# --- command line ------------------------------------------------------------------------------------


def plan_from(args: argparse.Namespace) -> Plan:
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(SyntheticModelSpec) if getattr(args, f.name) is not None}
    try:
        spec = dataclasses.replace(DEFAULT_SPEC, **overrides)
    except ValueError as exc:
        raise SystemExit(f"{overrides}: {exc}") from None
    if not 1 <= args.few < args.chunks:
        raise SystemExit(f"--few {args.few} --chunks {args.chunks}: give 1 <= few < chunks")
    if args.chunks > min(spec.events, MAX_CHUNKS):
        raise SystemExit(f"--chunks {args.chunks}: at most {min(spec.events, MAX_CHUNKS)} (one event per chunk, Airflow's max_map_length)")
    return Plan(spec, args.few, args.chunks, args.warm_up, args.logs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=200, help="loss chunks of the fan-out run (default 200, the platform's dynamic maximum)")
    parser.add_argument("--few", type=int, default=2, help="loss chunks of the reference run (default 2, the v2 pool's slots)")
    parser.add_argument("--no-warm-up", dest="warm_up", action="store_false", help="skip the untimed CLI run that warms numba's cache")
    parser.add_argument("--logs", type=Path, default=None, help="keep the loss chunks' task logs in this folder (<run>/<map index>.log)")
    parser.add_argument("--render-only", action="store_true", help="re-render the table from --results, measure nothing")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"results file (default {RESULTS.relative_to(HERE.parent)})")
    parser.add_argument("--table", type=Path, default=TABLE, help=f"markdown table (default {TABLE.relative_to(HERE.parent)})")
    for spec_field in dataclasses.fields(SyntheticModelSpec):
        default = getattr(DEFAULT_SPEC, spec_field.name)
        parser.add_argument(f"--{spec_field.name.replace('_', '-')}", type=int, default=None,
                            help=f"{spec_field.metadata.get('help')} (default {default})")
    args = parser.parse_args(argv)
    if args.render_only:
        record = load_results(args.results)
    else:
        plan = plan_from(args)
        # The tasks' NUMBA_CACHE_DIR for the CLI warm-up too (see bench.bench).
        prepare_environment()
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="oasis-fanout-") as tmp:
            record = measure(plan, Path(tmp))
        args.results.write_text(json.dumps(record.to_json(), indent=1) + "\n")
        print(f"measured in {time.monotonic() - started:.0f} s; results in {args.results}")
    report(record, args.table)
    if not record.outputs.identical:
        print(f"error: {record.outputs.summary(record.few.loss_chunks, record.many.loss_chunks)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
