"""Scale-out benchmark: v2 over N single-core workers against v1 on one core, with a critical-path model.

On the Celery stack (``make celery-up`` on a fresh database, as ``bench.bench --executor celery``) every
worker of the model is pinned to one core, so that each stands for one machine: v1 gets one single-slot
worker (so one loss pipeline), v2 N single-slot workers on cores 0..N-1 and a v2 pool of N slots. One
synthetic, loss-heavy analysis (GUL+IL) runs through v1 and through v2 for each N; each run is triggered
over REST and timed trigger to end, each stage's time read from its task instances. v1 and v2 outputs
must be byte-identical. A critical-path model (``bench.scaleout_model``) is fitted from the stage times,
checked against the measured runs and a 16-core sweep of oasislmf alone, and projects N up to 64 and
analyses of hours on one core.

Results accumulate by size in ``bench/scaleout.json``; ``bench/scaleout.md`` and ``bench/scaleout.png``
are rendered from it (``--render-only`` re-renders without running). From the repository root:

    PYTHONPATH=plugins .venv/bin/python -m bench.scaleout --size tiny      # smoke test: v1 under a minute, ~7 min in all
    PYTHONPATH=plugins .venv/bin/python -m bench.scaleout --size small     # v1 about 5 minutes on one core
    PYTHONPATH=plugins .venv/bin/python -m bench.scaleout --size large     # v1 about 15 minutes on one core
    PYTHONPATH=plugins .venv/bin/python -m bench.scaleout --render-only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import psutil

from bench.bench import RUN_TIMEOUT, celery_stack, deploy_synthetic, host
from bench.scaleout_model import (
    SWEEP_16_CORES,
    AnalysisSize,
    CriticalPathModel,
    Graph,
    ModelError,
    ScaleAxis,
    Stage,
    TaskTiming,
    V1Run,
    V2Run,
    Workload,
    fit_amdahl,
    fit_model,
)
from harness.celery_stack import CeleryStack
from harness.outputs import assert_same_files
from harness.polling import poll_until
from harness.rest import RestClient

try:
    from oasis_ops.constants import Mode
    from oasis_ops.deploy.stack import worker
    from oasis_ops.execution.environment import prepare_environment
    from oasis_ops.registry import Model
    from oasis_ops.tools.synthetic import SyntheticModelSpec
except ModuleNotFoundError as missing:  # the product is plugins/, which Airflow (not pip) puts on sys.path
    raise SystemExit(f"{missing}: run from the repository root with PYTHONPATH=plugins (the Makefile exports it)") from None

HERE = Path(__file__).resolve().parent
RESULTS, TABLE, PLOT = HERE / "scaleout.json", HERE / "scaleout.md", HERE / "scaleout.png"
#: Longest a started worker may take to log that it is ready.
WORKER_START_TIMEOUT = 180
#: Worker counts the model projects to.
PROJECTED_WORKERS = (1, 2, 4, 8, 16, 32, 64)
#: One-core (v1) times of the projected analyses, seconds: 30 minutes to 4 hours.
PROJECTED_SECONDS = (1800, 3600, 7200, 14400)
#: The issue's goal: 16 workers at least 12 times faster than one core on an analysis of 30 minutes or more.
GOAL_WORKERS, GOAL_SPEEDUP, GOAL_SECONDS = 16, 12.0, 1800


class Size(StrEnum):
    """Analysis presets, by v1's time on one core of the project's CI machine kind (estimated, see PRESETS)."""

    TINY = "tiny"
    SMALL = "small"
    LARGE = "large"


#: GUL+IL, loss-heavy: each event hits a fifth of the locations, so the loss chunks dominate; 20 samples and
#: small's 10,000 locations as in the 16-core sweep. Large differs from small in locations and in events, so
#: that every stage is measured at two work sizes and the fit determines each one's fixed and per-unit cost.
#: Sized from two one-core ``taskset -c 0 oasislmf model run -n 1`` runs of small's shape (oasislmf 2.5.8;
#: 250 and 1,000 events: 40 s and 85 s of CPU): 1.5 µs per location hit × event × sample, 25 s fixed, plus
#: v1's task overhead: small about 5.5 minutes on one core, large (3× small's loss work) about 15.5 minutes.
PRESETS: dict[Size, SyntheticModelSpec] = {
    Size.TINY: SyntheticModelSpec(locations=1_000, events=200, samples=10, areaperils=100, areaperils_per_event=20,
                                  vulnerabilities=10, damage_bins=20),
    Size.SMALL: SyntheticModelSpec(locations=10_000, events=5_000, samples=20, areaperils=1_000, areaperils_per_event=200,
                                   vulnerabilities=50, damage_bins=50),
    Size.LARGE: SyntheticModelSpec(locations=20_000, events=7_500, samples=20, areaperils=1_000, areaperils_per_event=200,
                                   vulnerabilities=50, damage_bins=50),
}


class LookupChunking(StrEnum):
    """Keys-lookup chunks of a v2 run: one, or one per worker (as the loss chunks by default)."""

    ONE = "one"
    PER_WORKER = "per-worker"

    def chunks(self, workers: int) -> int:
        return 1 if self is LookupChunking.ONE else workers


# --- measured results, as kept in scaleout.json ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TaskRecord:
    """One task instance, its times in seconds after the trigger."""

    task_id: str
    map_index: int
    queued: float
    start: float
    end: float


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One timed DAG run: v1 on one pinned worker, or v2 on ``workers`` pinned workers."""

    mode: Mode
    workers: int
    lookup_chunks: int | None
    loss_chunks: int | None
    total: float  # trigger to the run's end, seconds
    tasks: tuple[TaskRecord, ...]

    @property
    def label(self) -> str:
        if self.mode is Mode.V1:
            return "v1, 1 core"
        return f"v2, {self.workers} worker{'s' if self.workers > 1 else ''}"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        tasks = tuple(TaskRecord(**task) for task in data["tasks"])
        return cls(Mode(data["mode"]), data["workers"], data["lookup_chunks"], data["loss_chunks"], data["total"], tasks)


@dataclasses.dataclass(frozen=True)
class SizeRecord:
    """The runs of one analysis size, where and when they were measured, and the v2 DAG's wiring."""

    name: str
    spec: SyntheticModelSpec
    measured: str  # ISO date and time, UTC
    host: Mapping[str, Any]
    runs: tuple[RunRecord, ...]
    #: v2 task id -> its upstream task ids, as the API listed the DAG's tasks.
    v2_upstream: Mapping[str, list[str]]

    @property
    def size(self) -> AnalysisSize:
        parts = max((sum(task.task_id == Stage.OUTPUT_PART for task in run.tasks) for run in self.v2), default=0)
        return analysis_size(self.spec, max(parts, 1))

    @property
    def graph(self) -> Graph:
        return {stage_of(task): frozenset(stage_of(up) for up in ups) for task, ups in self.v2_upstream.items()}

    @property
    def workload(self) -> Workload:
        return Workload.of(self.size)

    @property
    def v1(self) -> RunRecord:
        (v1,) = [run for run in self.runs if run.mode is Mode.V1]
        return v1

    @property
    def v2(self) -> list[RunRecord]:
        return sorted((run for run in self.runs if run.mode is Mode.V2), key=lambda run: run.workers)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"spec": dataclasses.asdict(self.spec)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SizeRecord:
        runs = tuple(RunRecord.from_json(run) for run in data["runs"])
        return cls(data["name"], SyntheticModelSpec(**data["spec"]), data["measured"], data["host"], runs, data["v2_upstream"])


def stage_of(task_id: str) -> Stage:
    try:
        return Stage(task_id)
    except ValueError:
        raise ModelError(f"the v2 DAG has a task {task_id!r} that bench/scaleout_model.py's Stage does not know: add it there "
                         "(its order, whether it is mapped, what its work grows with)") from None


def analysis_size(spec: SyntheticModelSpec, output_parts: int = 1) -> AnalysisSize:
    hit = (spec.areaperils_per_event or spec.areaperils) / spec.areaperils
    return AnalysisSize(spec.locations, spec.events, spec.samples, hit, output_parts)


def v2_run(record: RunRecord, size: SizeRecord) -> V2Run:
    tasks = tuple(TaskTiming(stage_of(task.task_id), task.map_index, task.queued, task.start, task.end) for task in record.tasks)
    return V2Run(size.workload, record.workers, record.total, tasks, size.graph)


def load_results(path: Path) -> dict[str, SizeRecord]:
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text())
        return {name: SizeRecord.from_json(data) for name, data in document["sizes"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{path} is not a scale-out results file ({exc!r}): move it away or pass --fresh") from None


def save_results(path: Path, sizes: Mapping[str, SizeRecord]) -> None:
    document = {"sizes": {name: record.to_json() for name, record in sizes.items()}}
    path.write_text(json.dumps(document, indent=1) + "\n")


def fit(sizes: Mapping[str, SizeRecord]) -> CriticalPathModel:
    """The critical-path model of every measured size's runs together."""
    v2 = [v2_run(run, record) for record in sizes.values() for run in record.v2]
    v1 = [V1Run(record.workload, record.v1.total) for record in sizes.values()]
    return fit_model(v2, v1)


# --- the stack: pinned workers, timed runs --------------------------------------------------------


class PinnedWorkers:
    """The model's Celery workers on a running stack, worker i pinned to core i, one slot each: N
    workers stand for N one-core machines. The launcher's own (unpinned) workers are stopped."""

    def __init__(self, celery: CeleryStack, model: Model) -> None:
        self.celery, self.model = celery, model
        self.cores = sorted(os.sched_getaffinity(0))
        self.names: dict[Mode, list[str]] = {mode: [] for mode in Mode}
        for mode in Mode:
            celery.stop_service(worker(self.model, mode).name)

    def resize(self, mode: Mode, count: int) -> None:
        """Exactly ``count`` workers on ``mode``'s queue, each ready to take a task; its pool ``count`` slots."""
        if count > len(self.cores):
            raise SystemExit(f"{count} pinned workers need {count} cores, this process may use {len(self.cores)}: lower --workers")
        names = self.names[mode]
        while len(names) > count:
            self.celery.stop_service(names.pop())
        while len(names) < count:
            core = self.cores[len(names)]
            name = f"{worker(self.model, mode).name}-core{core}"
            self.celery.add_worker(name, self.model.queue(mode), 1, cores=[core])
            self._wait_ready(name, core)
            names.append(name)
        if count:
            pool = self.model.queue(mode)
            body = {"pool": pool, "slots": count, "include_deferred": False}
            self.celery.rest.request("PATCH", f"/api/v2/pools/{pool}?update_mask=slots", body)

    def _wait_ready(self, name: str, core: int) -> None:
        def ready() -> bool:
            # Celery's "<name>@<host> ready." (Airflow's log format may add fields after it)
            return any(f"{name}@" in line and " ready." in line for line in self.celery.log(name).splitlines())

        poll_until(ready, WORKER_START_TIMEOUT, f"worker {name} did not log 'ready.'; see {self.celery.home / 'celery' / 'logs'}", 1)
        affinity = psutil.Process(self.celery.pids()[name]).cpu_affinity()
        if affinity != [core]:
            raise RuntimeError(f"worker {name} runs on cores {affinity}, not [{core}]: is taskset installed (util-linux)?")


def _seconds_after(moment: str | None, origin: datetime, what: str) -> float:
    if moment is None:
        raise RuntimeError(f"{what} has no time recorded: the run did not finish as the bench expects")
    return (datetime.fromisoformat(moment) - origin).total_seconds()


def upstream_tasks(rest: RestClient, dag_id: str) -> dict[str, list[str]]:
    """Task id -> its upstream task ids: the DAG's wiring, which the model follows."""
    upstream: dict[str, list[str]] = {}
    for task in rest.request("GET", f"/api/v2/dags/{dag_id}/tasks")["tasks"]:
        upstream.setdefault(task["task_id"], [])
        for downstream in task["downstream_task_ids"] or []:
            upstream.setdefault(downstream, []).append(task["task_id"])
    return {task: sorted(ups) for task, ups in sorted(upstream.items())}


def timed_run(rest: RestClient, dag_id: str, run_id: str, conf: Mapping[str, Any], home: Path) -> tuple[float, tuple[TaskRecord, ...]]:
    """Trigger over REST and wait: trigger to the run's end (from the run's own end date, not the polling
    interval), and every task instance's times after the trigger."""
    rest.token()  # outside the timed part
    triggered = datetime.now(UTC)
    rest.trigger(dag_id, run_id, conf)
    state = rest.wait(dag_id, run_id, timeout=RUN_TIMEOUT, interval=1)
    if state != "success":
        raise RuntimeError(f"{dag_id} {run_id} ended {state}; see the task logs under {home}")
    run = rest.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
    total = _seconds_after(run["end_date"], triggered, f"run {run_id}")
    tasks = tuple(
        TaskRecord(
            ti["task_id"],
            ti["map_index"],
            _seconds_after(ti["queued_when"] or ti["start_date"], triggered, f"{ti['task_id']}[{ti['map_index']}]"),
            _seconds_after(ti["start_date"], triggered, f"{ti['task_id']}[{ti['map_index']}]"),
            _seconds_after(ti["end_date"], triggered, f"{ti['task_id']}[{ti['map_index']}]"),
        )
        for ti in sorted(rest.task_instances(dag_id, run_id), key=lambda ti: (ti["start_date"] or "", ti["map_index"]))
    )
    return total, tasks


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one bench invocation measures."""

    name: str
    spec: SyntheticModelSpec
    workers: tuple[int, ...]
    loss_chunks: int | None  # None: one per worker
    lookup: LookupChunking
    warm_up: bool


def measure(plan: Plan, base: Path) -> SizeRecord:
    """v1 on one pinned core, then v2 on each worker count; outputs checked byte-identical to v1's."""
    workspace = deploy_synthetic(plan.spec, base, plan.warm_up)
    machine = host() | {"load_average_before": [round(load, 2) for load in os.getloadavg()]}
    model = workspace.model
    v1_dag, v2_dag = model.dag_id(Mode.V1), model.dag_id(Mode.V2)
    runs: list[RunRecord] = []
    with celery_stack(base, workspace.registry, workspace.storage, [v1_dag, v2_dag]) as celery:
        v2_upstream = upstream_tasks(celery.rest, v2_dag)
        workers = PinnedWorkers(celery, model)
        workers.resize(Mode.V1, 1)
        total, tasks = timed_run(celery.rest, v1_dag, "scaleout-v1", workspace.conf | {"analysis_id": "scaleout-v1"}, celery.home)
        runs.append(RunRecord(Mode.V1, 1, None, None, total, tasks))
        print(f"  {runs[-1].label}: {total:.1f} s", flush=True)
        workers.resize(Mode.V1, 0)
        for count in plan.workers:
            workers.resize(Mode.V2, count)
            lookup, losses = plan.lookup.chunks(count), plan.loss_chunks or count
            run_id = f"scaleout-v2-n{count}"
            conf = workspace.conf | {"analysis_id": run_id, "chunking": {"fixed_lookup_chunks": lookup, "fixed_analysis_chunks": losses}}
            total, tasks = timed_run(celery.rest, v2_dag, run_id, conf, celery.home)
            runs.append(RunRecord(Mode.V2, count, lookup, losses, total, tasks))
            print(f"  {runs[-1].label} ({lookup} lookup, {losses} loss chunks): {total:.1f} s", flush=True)
            assert_same_files(workspace.output("scaleout-v1"), workspace.output(run_id))
    measured = datetime.now(UTC).isoformat(timespec="seconds")
    return SizeRecord(plan.name, plan.spec, measured, machine, tuple(runs), v2_upstream)


# --- rendering -------------------------------------------------------------------------------------


def _fmt_units(seconds_per_unit: float) -> str:
    return f"{seconds_per_unit * 1e6:.3g} µs" if seconds_per_unit else "0"


def _chunks(record: RunRecord) -> dict[Stage, int]:
    """The run's lookup and loss chunks (the model knows the output parts)."""
    return {Stage.LOOKUP: record.lookup_chunks or 1, Stage.LOSS: record.loss_chunks or 1}


@dataclasses.dataclass(frozen=True)
class Projection:
    """One projected analysis: its name, its work, v1's one-core time."""

    name: str
    workload: Workload
    v1_seconds: float


def grown(model: CriticalPathModel, sizes: Mapping[str, SizeRecord], axis: ScaleAxis, v1_seconds: float) -> Workload:
    """The largest measured analysis grown along ``axis`` until v1 takes ``v1_seconds`` on one core
    (:class:`ModelError` if the fit gave that growth no cost)."""
    largest = max(sizes.values(), key=lambda record: model.v1_time(record.workload)).workload
    return largest.scaled(axis, model.scale_for(largest, axis, v1_seconds))


def projections(model: CriticalPathModel, sizes: Mapping[str, SizeRecord], axis: ScaleAxis) -> tuple[list[Projection], list[str]]:
    """The measured sizes, then the largest grown along ``axis`` to :data:`PROJECTED_SECONDS` on one core;
    and why those could not be projected, if they could not."""
    cases = [Projection(name, record.workload, model.v1_time(record.workload)) for name, record in sizes.items()]
    try:
        cases += [Projection(_duration(seconds), grown(model, sizes, axis, seconds), seconds) for seconds in PROJECTED_SECONDS]
    except ModelError as exc:
        return cases, [f"analyses of {', '.join(_duration(s) for s in PROJECTED_SECONDS)} not projected: {exc}"]
    return cases, []


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"


@dataclasses.dataclass(frozen=True)
class Goal:
    """The model's answer to the issue's question for one scaling axis."""

    axis: ScaleAxis
    v1_seconds: float
    v2_seconds: float
    serial: float

    @property
    def speedup(self) -> float:
        return self.v1_seconds / self.v2_seconds

    @property
    def bound(self) -> float:
        """Speed-up with infinitely many workers: one-core time over the serial remainder (Amdahl)."""
        return self.v1_seconds / self.serial

    @property
    def met(self) -> bool:
        return self.speedup >= GOAL_SPEEDUP


def goals(model: CriticalPathModel, sizes: Mapping[str, SizeRecord]) -> list[Goal | str]:
    """16 workers on a 30-minute (one core) analysis, grown from the largest measured one along each axis
    (or why the model cannot tell)."""
    found: list[Goal | str] = []
    for axis in ScaleAxis:
        try:
            workload = grown(model, sizes, axis, GOAL_SECONDS)
        except ModelError as exc:
            found.append(f"{GOAL_WORKERS} workers, {_duration(GOAL_SECONDS)} on one core along {axis}: not determined: {exc}")
            continue
        breakdown = model.v2_time(workload, GOAL_WORKERS, model.task_counts(GOAL_WORKERS))
        found.append(Goal(axis, model.v1_time(workload), breakdown.total, breakdown.serial))
    return found


def goal_line(goal: Goal | str, markdown: bool) -> str:
    if isinstance(goal, str):
        return goal
    strong = "**" if markdown else ""
    return (f"{GOAL_WORKERS} workers, an analysis of {_duration(goal.v1_seconds)} on one core grown along {goal.axis}: "
            f"{strong}{goal.speedup:.1f}×{strong} ({goal.v2_seconds:.0f} s; goal ≥ {GOAL_SPEEDUP:g}×: {'met' if goal.met else 'not met'}); "
            f"serial remainder {goal.serial:.0f} s ({goal.serial / goal.v2_seconds:.0%} of the run), capping the speed-up at "
            f"{goal.bound:.0f}× with unlimited workers")


def measured_stages(record: SizeRecord) -> list[Stage]:
    return sorted({stage_of(task.task_id) for run in record.v2 for task in run.tasks}, key=list(Stage).index)


def stage_breakdown_rows(record: SizeRecord) -> list[str]:
    """v1's one task, then each v2 run's stages: where the time of a run goes."""
    stages = measured_stages(record)
    v1 = record.v1
    (task,) = v1.tasks
    blank = " |" * (len(stages) - 1)
    rows = [f"| {v1.label} | {task.start:.1f} | run_analysis {task.end - task.start:.1f} |{blank} – | {task.start - task.queued:.2f} | "
            f"{v1.total - task.end:.1f} | {v1.total:.1f} |"]
    for run in record.v2:
        timing = v2_run(run, record)
        cells = [run.label, f"{timing.lead:.1f}"]
        for stage in stages:
            tasks = timing.stage_tasks(stage)
            if not tasks:
                cells.append("–")
            elif stage.parallel:
                cells.append(f"{timing.span(stage):.1f} ({max(task.seconds for task in tasks):.1f})")
            else:
                cells.append(f"{timing.span(stage):.1f}")
        waits, queue = timing.waits(), [task.queue_gap for task in timing.tasks]
        cells += [f"{sum(waits) / len(waits):.2f}", f"{sum(queue) / len(queue):.2f}", f"{timing.tail:.1f}", f"{run.total:.1f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def render_table(model: CriticalPathModel, sizes: Mapping[str, SizeRecord], axis: ScaleAxis) -> str:
    lines = ["# Scale-out of v2: N one-core workers against v1 on one core (issue 12)", "",
             "Written by `PYTHONPATH=plugins .venv/bin/python -m bench.scaleout` from `bench/scaleout.json` "
             "(re-render: `--render-only`). Each worker is a Celery worker pinned to one core (`taskset`), one slot: "
             "it stands for one machine. Speed-up: v1 on one core over v2 on N workers, trigger to end. "
             "v1 and v2 outputs byte-identical in every run.", "", "## The model's answer", ""]
    if model.notes:
        lines += ["Caveats of this fit (the projections rest on them):", "", *(f"- {note}" for note in model.notes), ""]
    lines += [f"- {goal_line(goal, markdown=True)}." for goal in goals(model, sizes)]
    lines += ["", "Grown along *work*: every stage's per-unit work alike; *events*: a bigger event set (losses and output "
              "grow, lookup and input files do not); *locations*: a bigger portfolio (all but the output steps grow).", ""]

    lines += ["## Measured", ""]
    for name, record in sizes.items():
        spec = record.spec
        lines += [f"### {name}: {spec.locations:,} locations × {spec.events:,} events × {spec.samples} samples, "
                  f"{spec.areaperils_per_event or spec.areaperils} of {spec.areaperils} areaperils per event, GUL+IL", "",
                  f"Measured {record.measured} on {record.host.get('cores')} cores, {record.host.get('memory_gib')} GiB "
                  f"(load average before: {record.host.get('load_average_before')}).", "",
                  "| run | chunks (lookup / loss) | trigger to end, s | modelled, s | speed-up, measured | modelled |",
                  "|---|---|---|---|---|---|"]
        v1_modelled = model.v1_time(record.workload)
        lines.append(f"| {record.v1.label} | – | {record.v1.total:.1f} | {v1_modelled:.1f} | 1.00× | 1.00× |")
        for run in record.v2:
            modelled = model.v2_time(record.workload, run.workers, _chunks(run)).total
            lines.append(f"| {run.label} | {run.lookup_chunks} / {run.loss_chunks} | {run.total:.1f} | {modelled:.1f} | "
                         f"{record.v1.total / run.total:.2f}× | {v1_modelled / modelled:.2f}× |")
        header = ["run", "lead", *(stage.value for stage in measured_stages(record)), "wait, mean", "queue gap, mean", "tail", "total"]
        lines += ["", "Stages, seconds (first start to last end; mapped stages: the longest task in brackets); lead: "
                  "trigger to the first task's start; wait: a task's start after its upstream's end (on one worker: after "
                  "the later of that and the worker's previous task's end); queue gap: queued to started on a worker; "
                  "tail: the last task's end to the run's end.", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header), *stage_breakdown_rows(record), ""]

    lines += ["## Fitted model", "",
              "Per task: fixed + per unit × its work (units: locations; loss: location hits × events × samples; "
              "output part and aggregate: events × samples).", "", "| stage | kind | fixed, s | per unit |", "|---|---|---|---|"]
    for stage in model.stages:
        line = model.lines[stage]
        kind = ("mapped, N chunks" if stage.chunked_by_workers else f"mapped, {model.counts.get(stage, 1)} tasks") if stage.parallel else "one task"
        lines.append(f"| {stage.value} | {kind} | {line.fixed:.2f} | {_fmt_units(line.per_unit)} |")
    lines += ["", f"Dispatch (ready to started on an idle worker) {model.dispatch:.2f} s; a worker's turnaround (its task's end "
              f"to its next start) {model.turnaround:.2f} s; lead {model.lead:.2f} s; tail {model.tail:.2f} s; v1's overhead "
              f"over its work {model.v1_overhead:.1f} s. Runs are simulated as the scheduler runs them, on the DAG's wiring.", ""]

    cases, problems = projections(model, sizes, axis)
    lines += [f"## Projected speed-up (chunks = workers; analyses beyond the measured grown along *{axis}*)", "",
              *(f"{problem}." for problem in problems), *([""] if problems else []),
              "| workers | ideal | " + " | ".join(f"{case.name} ({case.v1_seconds:.0f} s)" for case in cases) + " |",
              "|---|---|" + "---|" * len(cases)]
    for count in PROJECTED_WORKERS:
        cells = [f"{model.speedup(case.workload, count):.1f}×" for case in cases]
        lines.append(f"| {count} | {count}× | " + " | ".join(cells) + " |")
    serial = [model.v2_time(case.workload, GOAL_WORKERS, model.task_counts(GOAL_WORKERS)).serial for case in cases]
    lines += [f"| serial remainder at {GOAL_WORKERS}, s | | " + " | ".join(f"{s:.0f}" for s in serial) + " |", ""]
    return "\n".join(lines + sweep_check(model, sizes))


def sweep_check(model: CriticalPathModel, sizes: Mapping[str, SizeRecord]) -> list[str]:
    """The 16-core sweep of oasislmf alone beside the DAG model for an analysis of the same one-core time."""
    sweep, one_core = fit_amdahl(SWEEP_16_CORES), SWEEP_16_CORES[0][1]
    lines = ["## Check against the 16-core sweep (oasislmf 2.5.8 alone, N pipelines on one machine)", "",
             f"10,000 locations × 4,000 events × 20 samples, GUL+IL. `T(N) = S + P/N` fitted up to the fastest N: "
             f"S = {sweep.serial:.1f} s, P = {sweep.parallel:.1f} s. Beside it, the DAG model for an analysis of the same "
             f"one-core time ({one_core:g} s, grown along *work* from the largest measured) on N one-core workers.", ""]
    try:
        workload = grown(model, sizes, ScaleAxis.WORK, one_core)
    except ModelError as exc:
        workload, lines = None, [*lines, f"DAG model not determined: {exc}.", ""]
    lines += ["| N | sweep, s | S + P/N, s | sweep speed-up | DAG model, s | DAG model speed-up |", "|---|---|---|---|---|---|"]
    for count, seconds in SWEEP_16_CORES:
        dag = "– | –"
        if workload:
            modelled = model.v2_time(workload, count, model.task_counts(count)).total
            dag = f"{modelled:.1f} | {model.v1_time(workload) / modelled:.2f}×"
        lines.append(f"| {count} | {seconds:.1f} | {sweep(count):.1f} | {one_core / seconds:.2f}× | {dag} |")
    remainder = f"{model.v2_time(workload, 16, model.task_counts(16)).serial:.0f} s" if workload else "not determined"
    lines += ["", f"oasislmf alone cannot parallelise {sweep.serial:.0f} s of its {one_core:g} s on one machine; the DAG's "
              f"serial remainder for that analysis on 16 workers: {remainder} (serial stages, task starts, dispatch and turnarounds). "
              "Past 8 pipelines one machine got slower (memory bandwidth); separate workers do not share it.", ""]
    return lines


def render_plot(model: CriticalPathModel, sizes: Mapping[str, SizeRecord], axis: ScaleAxis, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 6))
    counts = list(PROJECTED_WORKERS)
    axes.plot(counts, counts, "k--", linewidth=1, label="ideal (N×)")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    cases, problems = projections(model, sizes, axis)
    if problems:
        axes.text(0.98, 0.02, "longer analyses not projected: see the caveats in scaleout.md", transform=axes.transAxes,
                  ha="right", va="bottom", fontsize=8, color="darkred")
    for index, case in enumerate(cases):
        colour = colours[index % len(colours)]
        measured_case = case.name in sizes
        axes.plot(counts, [model.speedup(case.workload, n) for n in counts], "-" if measured_case else ":", color=colour,
                  label=f"{case.name} ({case.v1_seconds:.0f} s on one core), model")
        if measured_case:
            record = sizes[case.name]
            axes.plot([run.workers for run in record.v2], [record.v1.total / run.total for run in record.v2], "o", color=colour,
                      markersize=8, label=f"{case.name}, measured")
    sweep = [n for n, _ in SWEEP_16_CORES]
    axes.plot(sweep, [SWEEP_16_CORES[0][1] / seconds for _, seconds in SWEEP_16_CORES], "s-", color="grey", alpha=0.6,
              label="oasislmf alone, N pipelines on one 16-core machine")
    axes.plot([GOAL_WORKERS], [GOAL_SPEEDUP], "r*", markersize=14, label=f"goal: {GOAL_SPEEDUP:g}× on {GOAL_WORKERS} workers")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log", base=2)
    axes.set_xticks(counts, [str(n) for n in counts])
    low, _ = axes.get_ylim()  # autoscaled to what is drawn: ticks only over that
    ticks = [2.0**power for power in range(-6, 7) if 2.0**power >= low / 2]
    axes.set_yticks(ticks, [f"{t:g}" for t in ticks])
    axes.set_xlabel("workers N (one core each)")
    axes.set_ylabel("speed-up over v1 on one core")
    axes.set_title(f"v2 scale-out: measured and modelled (grown along {axis})")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def report(sizes: Mapping[str, SizeRecord], axis: ScaleAxis, table: Path, plot: Path) -> None:
    """Fit the model, print measured against modelled and the answer, write the table and the plot."""
    model = fit(sizes)
    for name, record in sizes.items():
        print(f"\n{name}: {'run':14} {'measured s':>10} {'modelled s':>10} {'speed-up':>8} {'modelled':>8}")
        v1_modelled = model.v1_time(record.workload)
        print(f"{'':{len(name)}}  {record.v1.label:14} {record.v1.total:10.1f} {v1_modelled:10.1f} {1:8.2f} {1:8.2f}")
        for run in record.v2:
            modelled = model.v2_time(record.workload, run.workers, _chunks(run)).total
            print(f"{'':{len(name)}}  {run.label:14} {run.total:10.1f} {modelled:10.1f} "
                  f"{record.v1.total / run.total:8.2f} {v1_modelled / modelled:8.2f}")
    print()
    for note in model.notes:
        print(f"caveat: {note}")
    for goal in goals(model, sizes):
        print(f"model: {goal_line(goal, markdown=False)}")
    sweep = fit_amdahl(SWEEP_16_CORES)
    print(f"16-core sweep: S + P/N with S = {sweep.serial:.1f} s, P = {sweep.parallel:.1f} s")
    table.write_text(render_table(model, sizes, axis))
    render_plot(model, sizes, axis, plot)
    print(f"wrote {table}, {plot}")


# --- command line ----------------------------------------------------------------------------------


def plan_from(args: argparse.Namespace) -> Plan:
    preset = PRESETS[args.size]
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(SyntheticModelSpec) if getattr(args, f.name) is not None}
    try:
        spec = dataclasses.replace(preset, **overrides)
    except ValueError as exc:
        raise SystemExit(f"--size {args.size} with {overrides}: {exc}") from None
    name = args.size.value + ("" if not overrides else " (" + ", ".join(f"{k}={v}" for k, v in overrides.items()) + ")")
    workers = tuple(sorted(set(args.workers)))
    if not workers or min(workers) < 1:
        raise SystemExit(f"--workers {args.workers}: give worker counts >= 1, e.g. --workers 1 2")
    if args.loss_chunks is not None and args.loss_chunks < 1:
        raise SystemExit(f"--loss-chunks {args.loss_chunks}: give a count >= 1, or leave it out for one per worker")
    available = len(os.sched_getaffinity(0))
    if max(workers) > available:
        raise SystemExit(f"--workers {max(workers)} needs {max(workers)} cores (one per worker), this process may use {available}")
    return Plan(name, spec, workers, args.loss_chunks, args.lookup_chunks, args.warm_up)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=Size, choices=list(Size), default=Size.TINY,
                        help="analysis preset: tiny (smoke test), small (v1 ~5 min on one core), large (~15 min)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="v2 worker counts to measure (one core each)")
    parser.add_argument("--loss-chunks", type=int, default=None, help="v2 loss chunks (default: one per worker)")
    parser.add_argument("--lookup-chunks", type=LookupChunking, choices=list(LookupChunking), default=LookupChunking.PER_WORKER,
                        help="v2 keys-lookup chunks: one, or one per worker (default)")
    parser.add_argument("--axis", type=ScaleAxis, choices=list(ScaleAxis), default=ScaleAxis.WORK,
                        help="how the projected analyses grow beyond the measured ones (default: every stage's work alike)")
    parser.add_argument("--no-warm-up", dest="warm_up", action="store_false", help="skip the untimed CLI run that warms numba's cache")
    parser.add_argument("--render-only", action="store_true", help="re-render the table and plot from --results, measure nothing")
    parser.add_argument("--fresh", action="store_true", help="discard the other sizes' results in --results (default: keep them)")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"results file (default {RESULTS.relative_to(HERE.parent)})")
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--plot", type=Path, default=PLOT)
    for spec_field in dataclasses.fields(SyntheticModelSpec):
        parser.add_argument(f"--{spec_field.name.replace('_', '-')}", type=int, default=None,
                            help=f"override the preset: {spec_field.metadata.get('help')}")
    args = parser.parse_args(argv)
    sizes = {} if args.fresh else load_results(args.results)
    if not args.render_only:
        plan = plan_from(args)
        # The tasks' NUMBA_CACHE_DIR for the CLI warm-up too (see bench.bench).
        prepare_environment()
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="oasis-scaleout-") as tmp:
            sizes[plan.name] = measure(plan, Path(tmp))
        save_results(args.results, sizes)
        print(f"measured {plan.name} in {time.monotonic() - started:.0f} s; results in {args.results}")
    if not sizes:
        raise SystemExit(f"{args.results} holds no results: run a size first (e.g. --size tiny)")
    try:
        report(sizes, args.axis, args.table, args.plot)
    except ModelError as exc:
        raise SystemExit(f"cannot fit the model: {exc}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
