"""Critical-path model of a v2 analysis spread over N workers, fitted from measured task instances.

Pure functions and frozen dataclasses, no I/O: ``bench.scaleout`` measures, this module explains and
projects. A v2 run is a graph of stages (as the DAG wires them, read from the measured run): serial
ones run one task, parallel ones one task per chunk, on N single-slot workers. Each task costs
``fixed + per_unit × its work``. Two overheads separate the tasks, both seen in the task instances:

* dispatch: from a task being ready (its upstream done) to its start on an idle worker (scheduler loop,
  Celery, the task process starting);
* turnaround: after a task ends its worker takes this long before it starts another (measured on one
  worker: a task there often starts seconds after the previous one ended, on two almost at once).

The run is simulated as Airflow schedules it (a ready task goes to the worker free first, ties in stage
order), which gives the waves ``ceil(chunks / N)`` of the chunked stages and the worker slot a serial task
beside them takes. For a chain of stages without turnaround it is exactly (:func:`chain_time`)::

    T(N) = lead + Σ serial stages + Σ parallel stages (waves × chunk time + (waves − 1) × dispatch)
           + (stages − 1) × dispatch + tail

Only the per-unit work of the stages chunked by N shrinks with N: the rest is the serial remainder,
which bounds the speed-up (Amdahl). v1 on one core does the same per-unit work in one task, plus a
constant overhead fitted from its measured runs.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class Stage(StrEnum):
    """The v2 DAG's tasks, in the order the scheduler prefers them when ready together (values: their
    task ids, ``oasis_ops.constants.TaskKind``)."""

    PREPARE = "prepare"
    LOOKUP = "lookup_chunk"
    WRITE_INPUT_FILES = "write_input_files"
    PLAN_OUTPUTS = "plan_outputs"
    LOSS = "loss_chunk"
    OUTPUT_PART = "output_part"
    AGGREGATE = "aggregate"

    @property
    def parallel(self) -> bool:
        """Mapped: one task per chunk (or output part), spread over the workers."""
        return self in (Stage.LOOKUP, Stage.LOSS, Stage.OUTPUT_PART)

    @property
    def chunked_by_workers(self) -> bool:
        """Its chunk count follows the workers (lookup and loss chunks); output parts are one per summary
        set of each perspective, whatever the workers."""
        return self in (Stage.LOOKUP, Stage.LOSS)

    @property
    def dimensions(self) -> frozenset[Dimension]:
        """What the stage's work grows with (none: a fixed cost, whatever the analysis)."""
        return _DIMENSIONS[self]


class Dimension(StrEnum):
    """A size of the analysis that some stages' work is proportional to."""

    LOCATIONS = "locations"
    EVENTS = "events"


_DIMENSIONS: dict[Stage, frozenset[Dimension]] = {
    Stage.PREPARE: frozenset({Dimension.LOCATIONS}),  # OED validation and staging
    Stage.LOOKUP: frozenset({Dimension.LOCATIONS}),
    Stage.WRITE_INPUT_FILES: frozenset({Dimension.LOCATIONS}),  # input files, then items, FM and GULMC structures
    Stage.PLAN_OUTPUTS: frozenset(),  # reads the settings
    Stage.LOSS: frozenset({Dimension.LOCATIONS, Dimension.EVENTS}),  # location hits × events × samples
    Stage.OUTPUT_PART: frozenset({Dimension.EVENTS}),  # a summary set's rows: events × samples
    Stage.AGGREGATE: frozenset({Dimension.EVENTS}),  # the output files
}

#: Upstream stages of each stage, as the DAG wires its tasks.
Graph = Mapping[Stage, frozenset[Stage]]


class ScaleAxis(StrEnum):
    """How a projected analysis is larger than a measured one."""

    #: Every stage's per-unit work × k (the neutral assumption: the serial stages grow as fast as the losses).
    WORK = "work"
    #: More events (a bigger event set): losses and outputs grow, lookup and input files do not.
    EVENTS = "events"
    #: More locations: every stage but the output steps grows.
    LOCATIONS = "locations"

    def scales(self, stage: Stage) -> bool:
        if self is ScaleAxis.WORK:
            return bool(stage.dimensions)
        return Dimension(self.value) in stage.dimensions


class ModelError(ValueError):
    """The measurements cannot determine the model (the message says what to measure)."""


@dataclass(frozen=True)
class AnalysisSize:
    """What the stages' work is counted in: a synthetic analysis' spec, reduced."""

    locations: int
    events: int
    samples: int
    #: Share of the locations an event hits (areaperils per event / areaperils).
    hit_fraction: float = 1.0
    #: Output parts (summary sets × perspectives): each part's work is all the events' rows of one set.
    output_parts: int = 1

    def units(self, stage: Stage) -> float:
        """Work of ``stage`` for the whole analysis (all its chunks or parts together)."""
        if stage is Stage.LOSS:
            return self.locations * self.hit_fraction * self.events * self.samples
        if stage is Stage.OUTPUT_PART:
            return float(self.events * self.samples * self.output_parts)
        if Dimension.EVENTS in stage.dimensions:
            return float(self.events * self.samples)
        return float(self.locations) if Dimension.LOCATIONS in stage.dimensions else 0.0


@dataclass(frozen=True)
class Workload:
    """Units of work per stage of one analysis (all chunks together)."""

    units: Mapping[Stage, float]

    @classmethod
    def of(cls, size: AnalysisSize) -> Workload:
        return cls({stage: size.units(stage) for stage in Stage})

    def scaled(self, axis: ScaleAxis, factor: float) -> Workload:
        """The same analysis ``factor`` times larger along ``axis``."""
        return Workload({stage: units * factor if axis.scales(stage) else units for stage, units in self.units.items()})


@dataclass(frozen=True)
class Line:
    """Cost of one task: ``fixed + per_unit × units`` seconds."""

    fixed: float
    per_unit: float

    def __call__(self, units: float) -> float:
        return self.fixed + self.per_unit * units


# --- measurements ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskTiming:
    """One task instance, its times in seconds after the trigger."""

    stage: Stage
    map_index: int
    queued: float
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def queue_gap(self) -> float:
        """Queued (sent to Celery) to started on a worker."""
        return self.start - self.queued


@dataclass(frozen=True)
class V2Run:
    """A v2 run on ``workers`` single-slot workers: its task instances, trigger to end, the DAG's wiring."""

    workload: Workload
    workers: int
    total: float
    tasks: tuple[TaskTiming, ...]
    upstream: Graph

    def stage_tasks(self, stage: Stage) -> list[TaskTiming]:
        return sorted((task for task in self.tasks if task.stage is stage), key=lambda task: (task.start, task.map_index))

    def chunks(self, stage: Stage) -> int:
        return len(self.stage_tasks(stage))

    @property
    def stages(self) -> list[Stage]:
        """The stages that ran, in :class:`Stage` order."""
        return [stage for stage in Stage if self.stage_tasks(stage)]

    def span(self, stage: Stage) -> float:
        """First start to last end of the stage's tasks."""
        tasks = self.stage_tasks(stage)
        return max(task.end for task in tasks) - min(task.start for task in tasks)

    def ready(self, stage: Stage) -> float | None:
        """When the stage's upstream was done (None for the first stage: it waits for the trigger only)."""
        ends = [task.end for before in self.upstream.get(stage, frozenset()) for task in self.stage_tasks(before)]
        return max(ends) if ends else None

    @property
    def lead(self) -> float:
        """Trigger to the first task's start."""
        return min(task.start for task in self.tasks)

    @property
    def tail(self) -> float:
        """The last task's end to the run's end."""
        return self.total - max(task.end for task in self.tasks)

    def waits(self) -> list[float]:
        """Each task's start after the later of its upstream's end and the last end of any task before it
        started: on one worker, the worker's turnaround; on idle workers, the dispatch."""
        found = []
        for task in self.tasks:
            ready = self.ready(task.stage)
            if ready is None:
                continue
            freed = [other.end for other in self.tasks if other.end <= task.start]
            found.append(task.start - max(ready, *freed) if self.workers == 1 and freed else task.start - ready)
        return found


@dataclass(frozen=True)
class V1Run:
    """A measured v1 run on one core: trigger to end."""

    workload: Workload
    total: float


# --- the model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Breakdown:
    """A modelled run: its total, the part of it more workers would not shorten, each stage's span."""

    total: float
    serial: float
    stages: Mapping[Stage, float] = field(default_factory=dict)

    @property
    def parallel(self) -> float:
        return self.total - self.serial


@dataclass(frozen=True)
class CriticalPathModel:
    """Fitted costs (seconds) of a v2 run on N workers, and of v1 on one core."""

    lines: Mapping[Stage, Line]
    upstream: Graph
    dispatch: float
    turnaround: float
    lead: float
    tail: float
    v1_overhead: float
    #: Task counts of the parallel stages not chunked by the workers (output parts), as measured.
    counts: Mapping[Stage, int] = field(default_factory=dict)
    #: Where the measurements did not determine a cost and the fit assumed one: read projections with them.
    notes: tuple[str, ...] = ()

    @property
    def stages(self) -> list[Stage]:
        return [stage for stage in Stage if stage in self.lines]

    def work(self, workload: Workload) -> float:
        """Per-unit work of every stage: what one core must do whatever the overheads."""
        return sum(line.per_unit * workload.units[stage] for stage, line in self.lines.items())

    def v1_time(self, workload: Workload) -> float:
        """v1 on one core: one task doing all the work (one loss pipeline), plus its overhead."""
        return self.v1_overhead + self.work(workload)

    def task_counts(self, workers: int, chunks_per_worker: int = 1) -> dict[Stage, int]:
        """Tasks per stage when lookup and loss chunks are ``chunks_per_worker × workers``."""
        return {stage: chunks_per_worker * workers if stage.chunked_by_workers else self.counts.get(stage, 1) for stage in self.stages}

    def v2_time(self, workload: Workload, workers: int, counts: Mapping[Stage, int]) -> Breakdown:
        """v2 on ``workers`` single-slot workers, ``counts`` tasks per parallel stage (the model's own where not given)."""
        run = simulate_v2_run(self, workload, workers, counts)
        without = dataclasses.replace(self, lines={
            stage: Line(line.fixed, 0.0) if stage.chunked_by_workers else line for stage, line in self.lines.items()
        })
        serial = simulate_v2_run(without, workload, workers, counts).total
        return Breakdown(run.total, serial, {stage: run.span(stage) for stage in run.stages})

    def speedup(self, workload: Workload, workers: int, chunks_per_worker: int = 1) -> float:
        """v1 on one core over v2 on ``workers`` workers, lookup and loss chunks ``chunks_per_worker × workers``."""
        return self.v1_time(workload) / self.v2_time(workload, workers, self.task_counts(workers, chunks_per_worker)).total

    def scale_for(self, workload: Workload, axis: ScaleAxis, v1_seconds: float) -> float:
        """The factor along ``axis`` that makes v1 on one core take ``v1_seconds`` (v1's time is linear in it)."""
        if Stage.LOSS not in self.lines or self.lines[Stage.LOSS].per_unit <= 0:
            raise ModelError("the loss chunks' per-unit cost is not determined (see the caveats), and the losses are what grows")
        base, doubled = self.v1_time(workload), self.v1_time(workload.scaled(axis, 2.0))
        slope = doubled - base
        if slope <= 0:
            raise ModelError(f"v1's time does not grow along {axis}: no per-unit cost was fitted for its stages")
        factor = 1.0 + (v1_seconds - base) / slope
        if factor <= 0:
            raise ModelError(f"v1 takes {base:.0f} s on the measured analysis, more than its fixed part allows for {v1_seconds:.0f} s: ask for longer")
        return factor


def waves(chunks: int, workers: int) -> int:
    """Rounds in which ``workers`` single-slot workers run ``chunks`` equal chunks."""
    if chunks < 1 or workers < 1:
        raise ModelError(f"chunks and workers must be >= 1, got {chunks} chunks on {workers} workers")
    return math.ceil(chunks / workers)


def simulate_v2_run(model: CriticalPathModel, workload: Workload, workers: int, counts: Mapping[Stage, int]) -> V2Run:
    """The run as the scheduler would run the model's tasks: a stage is ready when its upstream stages
    are done; a ready task starts ``dispatch`` later on a worker free by then, or when the first worker
    is free (``turnaround``, at least ``dispatch``, after its last task's end); ties go in :class:`Stage` order."""
    if workers < 1:
        raise ModelError(f"workers must be >= 1, got {workers}")
    stages = model.stages
    free = [0.0] * workers
    ends: dict[Stage, float] = {}
    tasks: list[TaskTiming] = []
    pending = list(stages)
    while pending:
        startable = [stage for stage in pending if model.upstream.get(stage, frozenset()) & set(stages) <= set(ends)]
        if not startable:
            raise ModelError(f"the stages {[s.value for s in pending]} wait on each other: the measured DAG has a cycle")
        readiness = {stage: max((ends[before] for before in model.upstream.get(stage, frozenset()) if before in ends), default=None)
                     for stage in startable}
        stage = min(startable, key=lambda s: (readiness[s] if readiness[s] is not None else -1.0, stages.index(s)))
        ready = readiness[stage]
        earliest = model.lead if ready is None else ready + model.dispatch
        count = max(counts.get(stage, model.counts.get(stage, 1)), 1) if stage.parallel else 1
        seconds = model.lines[stage](workload.units[stage] / count)
        for index in range(count):
            worker = min(range(workers), key=lambda w: (max(free[w], earliest), w))
            start = max(free[worker], earliest)
            tasks.append(TaskTiming(stage, index if stage.parallel else -1, earliest - model.dispatch, start, start + seconds))
            # Its pool slot frees at the end: a task waiting for it is sent then (dispatch), and the worker
            # takes it once its turnaround is over.
            free[worker] = start + seconds + max(model.turnaround, model.dispatch)
        ends[stage] = max(task.end for task in tasks if task.stage is stage)
        pending.remove(stage)
    return V2Run(workload, workers, max(ends.values()) + model.tail, tuple(tasks), model.upstream)


def chain_time(model: CriticalPathModel, workload: Workload, workers: int, counts: Mapping[Stage, int]) -> float:
    """The closed form of :func:`simulate_v2_run` for a chain of stages on workers without turnaround
    (``turnaround <= dispatch``): serial parts + waves × chunk time, and a dispatch before each task."""
    total = model.lead + model.tail + model.dispatch * (len(model.stages) - 1)
    for stage in model.stages:
        count = max(counts.get(stage, model.counts.get(stage, 1)), 1) if stage.parallel else 1
        rounds = waves(count, workers)
        total += rounds * model.lines[stage](workload.units[stage] / count) + (rounds - 1) * model.dispatch
    return total


# --- fitting --------------------------------------------------------------------------------------


def fit_line(points: Sequence[tuple[float, float]], fixed_floor: float | None = None) -> Line:
    """Least-squares ``seconds = fixed + per_unit × units`` through (units, seconds), neither negative.

    With one distinct work size the split is undetermined: ``fixed_floor`` (a task's fixed cost seen on
    a stage where it is determined) is taken as fixed and the rest as per-unit, so that the stage grows
    with the analysis (the cautious reading for projections); without it the time is taken as fixed.
    """
    if not points:
        raise ModelError("no measured task for this stage: run v2 at least once")
    units = [u for u, _ in points]
    seconds = [s for _, s in points]
    mean_u, mean_s = sum(units) / len(units), sum(seconds) / len(seconds)
    if max(units) <= 0:
        return Line(mean_s, 0.0)
    spread = sum((u - mean_u) ** 2 for u in units)
    if spread <= 1e-12 * max(mean_u**2, 1.0):
        if fixed_floor is None:
            return Line(mean_s, 0.0)
        fixed = min(fixed_floor, mean_s)
        return Line(fixed, (mean_s - fixed) / mean_u)
    per_unit = sum((u - mean_u) * (s - mean_s) for u, s in points) / spread
    fixed = mean_s - per_unit * mean_u
    if per_unit < 0:
        return Line(mean_s, 0.0)
    if fixed < 0:
        return Line(0.0, sum(u * s for u, s in points) / sum(u * u for u in units))
    return Line(fixed, per_unit)


def _identifiable(points: Sequence[tuple[float, float]]) -> bool:
    units = {round(u, 6) for u, _ in points}
    return len(units) > 1 and max(units) > 0


def _mean(values: Iterable[float], default: float = 0.0) -> float:
    items = list(values)
    return sum(items) / len(items) if items else default


def _fit_overheads(v2_runs: Sequence[V2Run]) -> tuple[float, float, list[str]]:
    """Dispatch and turnaround, from the waits (:meth:`V2Run.waits`), and what had to be assumed.

    On one worker every task waits for the worker: the mean wait is the turnaround (its mean, as the run's
    time is a sum of them: on the Celery stack it is 5 s or under 1 s, seemingly at random). On more
    workers a wait well under that found a worker idle, or one about to be: their median is the dispatch.
    """
    single = [wait for run in v2_runs if run.workers == 1 for wait in run.waits()]
    spread = [wait for run in v2_runs if run.workers > 1 for wait in run.waits()]
    notes = []
    if single:
        turnaround = _mean(single)
        idle = [wait for wait in spread if wait < turnaround / 2]
        dispatch = statistics.median(idle) if idle else min(single)
    elif spread:
        dispatch = turnaround = statistics.median(spread)
        notes.append("no run on one worker: a worker's turnaround taken as the median wait")
    else:
        dispatch = turnaround = 0.0
    if single and not spread:
        notes.append("no run on two or more workers: dispatch taken as the shortest wait on one")
    return max(dispatch, 0.0), max(turnaround, 0.0), notes


def fit_model(v2_runs: Sequence[V2Run], v1_runs: Sequence[V1Run]) -> CriticalPathModel:
    """The model whose task costs, overheads and wiring best match the measured runs.

    Each task is one point (its work, its seconds); chunked stages get several work sizes from runs with
    different chunk counts, so their fixed cost is determined even from one analysis size; the other
    stages need two analysis sizes for that, and until then borrow the smallest fixed cost determined
    elsewhere (see :func:`fit_line`). Dispatch and turnaround: :func:`_fit_overheads`.
    """
    if not v2_runs:
        raise ModelError("no v2 run measured: the model is fitted from v2 task instances (run --workers 1 2)")
    if not v1_runs:
        raise ModelError("no v1 run measured: the speed-ups are against v1 on one core")
    upstream = v2_runs[0].upstream
    if any(run.upstream != upstream for run in v2_runs):
        raise ModelError("the runs were measured on differently wired v2 DAGs (the DAG changed between them): "
                         "measure every size again on one version (--fresh)")
    stages = sorted({stage for run in v2_runs for stage in run.stages}, key=list(Stage).index)
    points: dict[Stage, list[tuple[float, float]]] = {stage: [] for stage in stages}
    counts: dict[Stage, set[int]] = {stage: set() for stage in stages}
    for run in v2_runs:
        for stage in run.stages:
            tasks = run.stage_tasks(stage)
            points[stage] += [(run.workload.units[stage] / len(tasks), task.seconds) for task in tasks]
            counts[stage].add(len(tasks))
    if Stage.LOSS not in points:
        raise ModelError("no loss chunk in the measured v2 runs: measure runs that generate losses")
    determined = [fit_line(found).fixed for stage, found in points.items() if _identifiable(found) and stage.dimensions]
    floor = min(determined) if determined else None
    lines = {stage: fit_line(found, floor) for stage, found in points.items()}
    notes = []
    for stage, found in points.items():
        if not stage.dimensions:
            continue
        if not _identifiable(found):
            notes.append(f"{stage}: measured at one work size only, so its fixed cost is assumed "
                         f"({lines[stage].fixed:.1f} s) and the rest taken as growing with the work: measure two analysis sizes")
        elif lines[stage].per_unit == 0:
            notes.append(f"{stage}: less work per task did not take less time (contention on the machine?), so it is "
                         "taken as a fixed cost: measure on an idle machine, or a larger analysis")
    dispatch, turnaround, overhead_notes = _fit_overheads(v2_runs)
    notes += overhead_notes
    fixed_counts = {stage: max(found) for stage, found in counts.items() if stage.parallel and not stage.chunked_by_workers}
    partial = CriticalPathModel(
        lines=lines,
        upstream=upstream,
        dispatch=dispatch,
        turnaround=turnaround,
        lead=_mean(run.lead for run in v2_runs),
        tail=_mean(run.tail for run in v2_runs),
        v1_overhead=0.0,
        counts=fixed_counts,
    )
    overhead = _mean(run.total - partial.work(run.workload) for run in v1_runs)
    return dataclasses.replace(partial, v1_overhead=max(overhead, 0.0), notes=tuple(notes))


# --- the 16-core sweep: oasislmf alone, N pipelines on one machine --------------------------------


@dataclass(frozen=True)
class Amdahl:
    """``T(N) = serial + parallel / N``."""

    serial: float
    parallel: float

    def __call__(self, n: float) -> float:
        return self.serial + self.parallel / n

    def speedup(self, n: float) -> float:
        return self(1) / self(n)


#: ``oasislmf model generate-losses`` (2.5.8) with N pipelines on a 16-core Xeon, 10,000 locations × 4,000
#: events × 20 samples, GUL+IL (measured for issue 12; see ``oasis_ops.execution.steps.V1_MAX_PIPELINES``).
SWEEP_16_CORES: tuple[tuple[int, float], ...] = ((1, 121.7), (2, 65.0), (4, 46.8), (8, 39.4), (16, 43.4))


def fit_amdahl(points: Sequence[tuple[int, float]]) -> Amdahl:
    """Least-squares ``serial + parallel / N`` through (N, seconds) up to the fastest N.

    Past the fastest point more pipelines made the run slower (they contend for memory bandwidth on one
    machine): a cost ``serial + parallel / N`` cannot express, which would only inflate ``serial``.
    """
    if len(points) < 2:
        raise ModelError(f"fitting serial + parallel / N needs two N or more, got {list(points)}")
    fastest = min(points, key=lambda point: point[1])[0]
    kept = [(1.0 / n, seconds) for n, seconds in points if n <= fastest]
    if len(kept) < 2:
        raise ModelError(f"the fastest of {list(points)} is the smallest N: nothing to fit before it")
    line = fit_line(kept)
    return Amdahl(serial=line.fixed, parallel=line.per_unit)
