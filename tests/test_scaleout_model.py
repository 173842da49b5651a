"""The scale-out bench's critical-path model (``bench.scaleout_model``): pure functions, no stack.

A model with known costs generates task timings (``simulate_v2_run``); fitting them must give the
costs back. On a chain of stages the simulation is the closed form ``serial + waves × chunk``.
Projections must grow with the workers and stay under the ideal line, and the 16-core sweep of
oasislmf alone must fit ``S + P/N`` with S in the 22-29 s the issue reports.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest

from bench.scaleout_model import (
    SWEEP_16_CORES,
    AnalysisSize,
    CriticalPathModel,
    Line,
    ModelError,
    ScaleAxis,
    Stage,
    TaskTiming,
    V1Run,
    V2Run,
    Workload,
    chain_time,
    fit_amdahl,
    fit_line,
    fit_model,
    simulate_v2_run,
    waves,
)

S = Stage
#: The v2 DAG with output parts planned beside the loss chunks (dag_factory.build_v2_dag).
GRAPH = {
    S.PREPARE: frozenset(),
    S.LOOKUP: frozenset({S.PREPARE}),
    S.WRITE_INPUT_FILES: frozenset({S.LOOKUP, S.PREPARE}),
    S.PLAN_OUTPUTS: frozenset({S.WRITE_INPUT_FILES}),
    S.LOSS: frozenset({S.WRITE_INPUT_FILES}),
    S.OUTPUT_PART: frozenset({S.LOSS, S.PLAN_OUTPUTS, S.WRITE_INPUT_FILES}),
    S.AGGREGATE: frozenset({S.OUTPUT_PART, S.PLAN_OUTPUTS, S.WRITE_INPUT_FILES, S.LOSS}),
}
#: Costs of the same order as a v2 run on the Celery stack: seconds per task, and per unit of work.
KNOWN = CriticalPathModel(
    lines={
        S.PREPARE: Line(4.0, 2e-4),
        S.LOOKUP: Line(6.0, 8e-4),
        S.WRITE_INPUT_FILES: Line(12.0, 8e-4),
        S.PLAN_OUTPUTS: Line(2.5, 0.0),
        S.LOSS: Line(9.0, 1.5e-6),
        S.OUTPUT_PART: Line(8.0, 5e-5),
        S.AGGREGATE: Line(3.0, 1e-5),
    },
    upstream=GRAPH,
    dispatch=0.7,
    turnaround=5.1,
    lead=1.0,
    tail=0.5,
    v1_overhead=12.0,
    counts={S.OUTPUT_PART: 2},
)
#: The earlier v2 DAG: one chain, the output step in aggregate.
CHAIN_STAGES = (S.PREPARE, S.LOOKUP, S.WRITE_INPUT_FILES, S.LOSS, S.AGGREGATE)
CHAIN = dataclasses.replace(
    KNOWN,
    lines={stage: KNOWN.lines[stage] for stage in CHAIN_STAGES},
    upstream={after: frozenset({before}) for before, after in itertools.pairwise(CHAIN_STAGES)},
    turnaround=0.3,
    counts={},
)
SMALL = Workload.of(AnalysisSize(locations=10_000, events=5_000, samples=20, hit_fraction=0.2, output_parts=2))
LARGE = Workload.of(AnalysisSize(locations=20_000, events=7_500, samples=20, hit_fraction=0.2, output_parts=2))


def measured(model: CriticalPathModel, workloads: list[Workload], workers: tuple[int, ...] = (1, 2)) -> tuple[list[V2Run], list[V1Run]]:
    v2 = [simulate_v2_run(model, workload, n, model.task_counts(n)) for workload in workloads for n in workers]
    v1 = [V1Run(workload, model.v1_time(workload)) for workload in workloads]
    return v2, v1


def assert_same_model(fitted: CriticalPathModel, known: CriticalPathModel) -> None:
    assert fitted.stages == known.stages and fitted.upstream == known.upstream and fitted.counts == known.counts
    for stage in known.stages:
        assert fitted.lines[stage].fixed == pytest.approx(known.lines[stage].fixed, rel=1e-6, abs=1e-6), stage
        assert fitted.lines[stage].per_unit == pytest.approx(known.lines[stage].per_unit, rel=1e-6, abs=1e-12), stage
    for name in ("dispatch", "lead", "tail", "v1_overhead"):
        assert getattr(fitted, name) == pytest.approx(getattr(known, name), rel=1e-6), name
    # A turnaround shorter than the dispatch never shows (a freed slot's next task is sent first): it is the dispatch.
    assert fitted.turnaround == pytest.approx(max(known.turnaround, known.dispatch), rel=1e-6)


def test_waves_are_rounds_of_one_chunk_per_worker():
    assert [waves(chunks, 4) for chunks in (1, 3, 4, 5, 8, 9)] == [1, 1, 1, 2, 2, 3]
    assert waves(16, 16) == 1 and waves(64, 16) == 4 and waves(2, 64) == 1
    with pytest.raises(ModelError, match="chunks and workers"):
        waves(0, 2)
    with pytest.raises(ModelError, match="chunks and workers"):
        waves(2, 0)


@pytest.mark.parametrize(("workers", "chunks"), [(1, 1), (2, 2), (4, 9), (16, 16), (16, 40), (64, 64)])
def test_on_a_chain_the_simulation_is_serial_parts_plus_waves_of_chunks(workers, chunks):
    counts = {S.LOOKUP: chunks, S.LOSS: chunks}
    run = simulate_v2_run(CHAIN, LARGE, workers, counts)
    assert run.total == pytest.approx(chain_time(CHAIN, LARGE, workers, counts))
    loss = CHAIN.lines[S.LOSS](LARGE.units[S.LOSS] / chunks)
    assert run.span(S.LOSS) == pytest.approx(waves(chunks, workers) * loss + (waves(chunks, workers) - 1) * CHAIN.dispatch)


def test_a_serial_task_beside_the_chunks_takes_a_worker_from_them():
    run = simulate_v2_run(KNOWN, SMALL, 2, KNOWN.task_counts(2))
    (prepared,), (plan,) = run.stage_tasks(S.WRITE_INPUT_FILES), run.stage_tasks(S.PLAN_OUTPUTS)
    first, second = run.stage_tasks(S.LOSS)
    # Ready together: plan_outputs goes first (stage order) to the idle worker, a chunk to write_input_files'
    # worker once its turnaround is over, and the other chunk waits for plan_outputs' worker.
    assert plan.start == pytest.approx(prepared.end + KNOWN.dispatch)
    assert first.start == pytest.approx(prepared.end + KNOWN.turnaround)
    assert second.start == pytest.approx(plan.end + KNOWN.turnaround)
    # On one worker every task waits for the worker's turnaround; on two, mostly the dispatch only.
    single = simulate_v2_run(KNOWN, SMALL, 1, KNOWN.task_counts(1))
    assert set(map(lambda w: round(w, 9), single.waits())) == {KNOWN.turnaround}
    assert min(run.waits()) == pytest.approx(KNOWN.dispatch)


def test_fit_line_recovers_fixed_and_per_unit_cost():
    line = fit_line([(u, 3.0 + 0.002 * u) for u in (100, 400, 1600)])
    assert (line.fixed, line.per_unit) == (pytest.approx(3.0), pytest.approx(0.002))
    # Never negative: a falling or offset-negative cloud is clamped to a mean or a line through zero.
    assert fit_line([(1, 5.0), (2, 4.0)]) == Line(4.5, 0.0)
    clamped = fit_line([(1, 1.0), (2, 3.0)])
    assert clamped.fixed == 0.0 and clamped.per_unit == pytest.approx(7 / 5)
    # One work size: the fixed cost seen elsewhere is fixed, the rest grows with the work.
    assert fit_line([(1000, 10.0), (1000, 10.0)], fixed_floor=4.0) == Line(4.0, 6.0 / 1000)
    assert fit_line([(1000, 3.0)], fixed_floor=4.0) == Line(3.0, 0.0)
    assert fit_line([(0, 2.0), (0, 4.0)]) == Line(3.0, 0.0)
    with pytest.raises(ModelError, match="no measured task"):
        fit_line([])


@pytest.mark.parametrize("model", [KNOWN, CHAIN], ids=["output parts", "chain"])
def test_fit_recovers_every_known_cost_from_two_sizes_of_measured_stage_times(model):
    v2, v1 = measured(model, [SMALL, LARGE])
    fitted = fit_model(v2, v1)
    assert_same_model(fitted, model)
    assert fitted.notes == ()
    for run in v2:
        assert fitted.v2_time(run.workload, run.workers, {s: run.chunks(s) for s in run.stages}).total == pytest.approx(run.total)


def test_fit_from_one_size_determines_the_chunked_stages_from_their_chunk_sizes():
    v2, v1 = measured(KNOWN, [SMALL])
    fitted = fit_model(v2, v1)
    for stage in (S.LOOKUP, S.LOSS):
        assert fitted.lines[stage].fixed == pytest.approx(KNOWN.lines[stage].fixed)
        assert fitted.lines[stage].per_unit == pytest.approx(KNOWN.lines[stage].per_unit)
    # A stage measured at one work size borrows the smallest determined fixed cost (lookup's 6 s):
    # write_input_files (12 s fixed) is then read as growing faster with the work than it does, and the
    # caveat says so; its time on the measured analysis, and so every measured run, stays exact.
    assert fitted.lines[S.WRITE_INPUT_FILES].fixed == pytest.approx(6.0)
    assert any(note.startswith("write_input_files: measured at one work size only") for note in fitted.notes)
    for run in v2:
        assert fitted.v2_time(SMALL, run.workers, {s: run.chunks(s) for s in run.stages}).total == pytest.approx(run.total)


def test_measured_runs_are_reduced_to_lead_waits_and_tail():
    tasks = (
        TaskTiming(S.PREPARE, -1, queued=1.0, start=2.0, end=5.0),
        TaskTiming(S.LOSS, 0, queued=5.5, start=6.0, end=16.0),
        TaskTiming(S.LOSS, 1, queued=5.5, start=7.0, end=17.0),
        TaskTiming(S.AGGREGATE, -1, queued=18.0, start=19.0, end=25.0),
    )
    graph = {S.LOSS: frozenset({S.PREPARE}), S.AGGREGATE: frozenset({S.LOSS})}
    run = V2Run(SMALL, workers=2, total=27.0, tasks=tasks, upstream=graph)
    assert (run.lead, run.tail) == (2.0, 2.0)
    assert run.ready(S.PREPARE) is None and run.ready(S.AGGREGATE) == 17.0
    assert run.waits() == [1.0, 2.0, 2.0]
    assert run.span(S.LOSS) == 11.0 and run.chunks(S.LOSS) == 2
    assert [task.queue_gap for task in tasks] == [1.0, 0.5, 1.5, 1.0]
    # On one worker a task waits from the later of its upstream's end and the worker's last task's end.
    alone = V2Run(SMALL, workers=1, total=40.0, tasks=(*tasks[:2], TaskTiming(S.LOSS, 1, 16.0, 21.0, 31.0),
                                                        TaskTiming(S.AGGREGATE, -1, 31.5, 36.0, 39.0)), upstream=graph)
    assert alone.waits() == [1.0, 5.0, 5.0]


def test_a_turnaround_that_comes_and_goes_is_fitted_as_its_mean_so_that_totals_hold():
    # On the Celery stack a single worker's next task starts 5 s or under 1 s after the previous one:
    # shorten every other wait of a one-worker run to 0.5 s, moving everything after it earlier.
    v2, v1 = measured(KNOWN, [SMALL, LARGE])
    alternating = []
    for run in v2:
        if run.workers > 1:
            alternating.append(run)
            continue
        shift, tasks = 0.0, []
        for number, task in enumerate(sorted(run.tasks, key=lambda t: t.start)):
            shift += (KNOWN.turnaround - 0.5) if number % 2 == 1 else 0.0
            tasks.append(dataclasses.replace(task, queued=task.queued - shift, start=task.start - shift, end=task.end - shift))
        alternating.append(dataclasses.replace(run, total=run.total - shift, tasks=tuple(tasks)))
    fitted = fit_model(alternating, v1)
    single = [wait for run in alternating if run.workers == 1 for wait in run.waits()]
    assert fitted.turnaround == pytest.approx(sum(single) / len(single))
    assert fitted.dispatch == pytest.approx(KNOWN.dispatch)
    for run in alternating:
        if run.workers == 1:
            modelled = fitted.v2_time(run.workload, 1, {s: run.chunks(s) for s in run.stages}).total
            assert modelled == pytest.approx(run.total, abs=KNOWN.turnaround)


def test_fit_names_what_is_missing_or_inconsistent():
    v2, v1 = measured(KNOWN, [SMALL])
    with pytest.raises(ModelError, match="no v2 run"):
        fit_model([], v1)
    with pytest.raises(ModelError, match="no v1 run"):
        fit_model(v2, [])
    no_losses = [dataclasses.replace(run, tasks=tuple(t for t in run.tasks if t.stage is not S.LOSS)) for run in v2]
    with pytest.raises(ModelError, match="no loss chunk"):
        fit_model(no_losses, v1)
    chain_runs, _ = measured(CHAIN, [SMALL])
    with pytest.raises(ModelError, match="differently wired"):
        fit_model([*v2, *chain_runs], v1)


def test_contention_that_hides_the_loss_cost_is_named_and_stops_projections():
    # Two chunks each as slow as one whole (both cores busy with other work): no per-unit cost to fit.
    v2, v1 = measured(KNOWN, [SMALL])
    whole = KNOWN.lines[S.LOSS](SMALL.units[S.LOSS])
    slow = [dataclasses.replace(run, tasks=tuple(dataclasses.replace(t, end=t.start + whole) if t.stage is S.LOSS else t
                                                 for t in run.tasks)) for run in v2]
    fitted = fit_model(slow, v1)
    assert fitted.lines[S.LOSS].per_unit == 0
    assert any(note.startswith("loss_chunk: less work per task did not take less time") for note in fitted.notes)
    with pytest.raises(ModelError, match="loss chunks' per-unit cost is not determined"):
        fitted.scale_for(SMALL, ScaleAxis.EVENTS, 1800)


def test_projection_grows_with_the_workers_and_stays_under_the_ideal_line():
    big = SMALL.scaled(ScaleAxis.WORK, KNOWN.scale_for(SMALL, ScaleAxis.WORK, 1800))
    counts = (1, 2, 4, 8, 16, 32, 64)
    speedups = [KNOWN.speedup(big, n) for n in counts]
    assert speedups == sorted(speedups)
    assert all(s <= n for s, n in zip(speedups, counts, strict=True))
    assert speedups[0] < 1  # one v2 worker pays the stages' task starts and turnarounds over v1
    # The serial remainder is what is left with the chunked work taken away; it bounds the speed-up.
    sixteen = KNOWN.v2_time(big, 16, KNOWN.task_counts(16))
    chunked = sum(KNOWN.lines[s].per_unit * big.units[s] / 16 for s in (S.LOOKUP, S.LOSS))
    assert sixteen.total == pytest.approx(sixteen.serial + chunked)
    assert all(s < KNOWN.v1_time(big) / sixteen.serial for s in speedups)


def test_larger_analyses_scale_better_and_the_size_solves_for_a_one_core_time():
    for axis in ScaleAxis:
        factor = KNOWN.scale_for(SMALL, axis, 3600)
        assert KNOWN.v1_time(SMALL.scaled(axis, factor)) == pytest.approx(3600)
    half_hour, four_hours = (SMALL.scaled(ScaleAxis.WORK, KNOWN.scale_for(SMALL, ScaleAxis.WORK, s)) for s in (1800, 14400))
    assert KNOWN.speedup(four_hours, 16) > KNOWN.speedup(half_hour, 16) > KNOWN.speedup(SMALL, 16)
    with pytest.raises(ModelError, match="ask for longer"):
        KNOWN.scale_for(SMALL, ScaleAxis.WORK, 1.0)


def test_scale_axes_grow_only_the_stages_that_depend_on_them():
    events, locations, work = (SMALL.scaled(axis, 3.0).units for axis in (ScaleAxis.EVENTS, ScaleAxis.LOCATIONS, ScaleAxis.WORK))
    assert events[S.LOOKUP] == SMALL.units[S.LOOKUP] and events[S.OUTPUT_PART] == 3 * SMALL.units[S.OUTPUT_PART]
    assert locations[S.OUTPUT_PART] == SMALL.units[S.OUTPUT_PART] and locations[S.LOOKUP] == 3 * SMALL.units[S.LOOKUP]
    assert all(work[stage] == 3 * SMALL.units[stage] for stage in Stage)
    assert SMALL.units[S.LOSS] == 10_000 * 0.2 * 5_000 * 20 and SMALL.units[S.OUTPUT_PART] == 2 * 5_000 * 20
    assert SMALL.units[S.PLAN_OUTPUTS] == 0


def test_the_16_core_sweep_fits_a_serial_part_of_22_to_29_seconds():
    sweep = fit_amdahl(SWEEP_16_CORES)
    assert 22 <= sweep.serial <= 29
    assert sweep(1) == pytest.approx(121.7, rel=0.05)
    # 16 pipelines were slower than 8 on one machine (contention): past the fastest N the fit stops.
    assert fit_amdahl(SWEEP_16_CORES) == fit_amdahl(SWEEP_16_CORES[:4])
    assert fit_line([(1 / n, s) for n, s in SWEEP_16_CORES]).fixed > 29
    exact = fit_amdahl([(n, 25.0 + 96.0 / n) for n in (1, 2, 4, 8)])
    assert (exact.serial, exact.parallel) == (pytest.approx(25.0), pytest.approx(96.0))
    assert exact.speedup(math.inf) == pytest.approx(121.0 / 25.0)
    with pytest.raises(ModelError, match="two N"):
        fit_amdahl([(1, 100.0)])
