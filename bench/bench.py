"""Benchmark: the same analysis through ``oasislmf model run``, the v1 DAG and the v2 DAG (N chunks).

Runs the DAGs on a real Airflow triggered over REST: ``--executor local`` (default) a local stack
(api-server, scheduler, dag-processor; LocalExecutor on SQLite, the model's pools), ``--executor celery``
the production stack as ``make celery-up`` starts it (PostgreSQL and Redis on localhost, a fresh
database). Prints wall time, peak memory (summed RSS of every process of the run) and the ratios
to the plain oasislmf CLI. A first, untimed CLI run warms numba's cache. v1 and v2 outputs are
checked byte-identical.

From the repository root (``plugins/`` on ``PYTHONPATH``, as the Makefile exports it):

    PYTHONPATH=plugins .venv/bin/python -m bench.bench piwind --chunks 4
    PYTHONPATH=plugins .venv/bin/python -m bench.bench synthetic --chunks 4 --locations 40000 --events 1000 ...
    PYTHONPATH=plugins .venv/bin/python -m bench.bench piwind --chunks 4 --executor celery
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import psutil

from harness.airflow_home import BIN, REPO, AirflowHome
from harness.celery_stack import CeleryStack
from harness.local_stack import LocalStack
from harness.memory import PeakMemory
from harness.outputs import assert_same_files
from harness.piwind import PIWIND, piwind_entry, require_piwind
from harness.polling import poll_until
from harness.registry import write_registry
from harness.rest import RestClient, RestError

try:
    from oasis_ops.constants import Executor, Mode
    from oasis_ops.execution.environment import prepare_environment
    from oasis_ops.hygiene import DAG_ID as HYGIENE_DAG_ID
    from oasis_ops.registry import Model, load_registry
    from oasis_ops.tools.synthetic import SyntheticModelSpec, build_synthetic_model
except ModuleNotFoundError as missing:  # the product is plugins/, which Airflow (not pip) puts on sys.path
    raise SystemExit(f"{missing}: run from the repository root with PYTHONPATH=plugins (the Makefile exports it)") from None

PASSWORD = "bench"
#: Longest one timed DAG run may take.
RUN_TIMEOUT = 7200


class BenchExecutor(StrEnum):
    """Which stack runs the DAG legs. Not :class:`oasis_ops.constants.Executor`: that lists what a
    registry entry may name (Airflow class names), and the LocalExecutor is not one of them."""

    LOCAL = "local"
    CELERY = "celery"

    @property
    def airflow_name(self) -> str:
        return "LocalExecutor" if self is BenchExecutor.LOCAL else Executor.CELERY.value


@dataclasses.dataclass(frozen=True)
class Case:
    model_root: Path
    exposure: dict[str, str]  # run parameter -> file name in the model's exposure folder
    settings: Path
    entry: dict


def piwind_case() -> Case:
    require_piwind()
    files = {
        "location_file": "SourceLocOEDPiWind.csv",
        "accounts_file": "SourceAccOEDPiWind.csv",
        "ri_info_file": "SourceReinsInfoOEDPiWind.csv",
        "ri_scope_file": "SourceReinsScopeOEDPiWind.csv",
    }
    return Case(PIWIND, files, PIWIND / "analysis_settings" / "RI_analysis_settings.json", piwind_entry())


def synthetic_case(base: Path, spec: SyntheticModelSpec) -> Case:
    root = build_synthetic_model(base / "synthetic", spec)
    entry = {"supplier_id": "OasisAirflow", "model_id": "Synthetic", "version_id": "1", "path": str(root)}
    files = {"location_file": "location.csv", "accounts_file": "account.csv"}
    return Case(root, files, root / "analysis_settings.json", entry)


def exposure_folder(case: Case) -> Path:
    return case.model_root / "exposure"


CLI_FLAGS = {"location_file": "-x", "accounts_file": "-y", "ri_info_file": "-i", "ri_scope_file": "-s"}


def run_cli(case: Case, run_dir: Path) -> tuple[float, int]:
    command = [str(BIN / "oasislmf"), "model", "run", "-C", str(case.model_root / "oasislmf.json"), "-a", str(case.settings), "-r", str(run_dir)]
    for param, name in case.exposure.items():
        command += [CLI_FLAGS[param], str(exposure_folder(case) / name)]
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    with PeakMemory(lambda: [process.pid]) as memory:
        if process.wait() != 0:
            raise RuntimeError(f"oasislmf model run failed: {' '.join(command)}")
    return time.monotonic() - started, memory.peak


@dataclasses.dataclass(frozen=True)
class RunningStack:
    """What a DAG leg needs of a started stack, whichever its executor."""

    rest: RestClient
    root_pids: Callable[[], list[int]]  # the stack's services: their process trees hold every task
    home: Path  # Airflow home, with the services' logs


def dags_parsed(rest: RestClient, dag_ids: list[str]) -> bool:
    try:
        for dag_id in dag_ids:
            rest.request("GET", f"/api/v2/dags/{dag_id}")
    except RestError:
        return False
    return True


def first_task(rest: RestClient) -> None:
    """Run the storage hygiene DAG's task, untimed: the api-server answers its first task-start request
    3.5 s late (Airflow builds its execution API then), which the first timed run would pay."""
    rest.trigger(HYGIENE_DAG_ID, "bench-first-task", {})
    if rest.wait(HYGIENE_DAG_ID, "bench-first-task", interval=1) != "success":
        raise RuntimeError(f"{HYGIENE_DAG_ID} failed before the benchmark; see its task log")


@contextlib.contextmanager
def celery_stack(base: Path, registry: Path, storage: Path, dag_ids: list[str]) -> Iterator[CeleryStack]:
    """``make celery-up`` on a fresh database, ``dag_ids`` parsed, every worker ready (a first analysis timed
    beside workers still importing oasislmf would pay for their start-up), a first task run; stopped (its
    database dropped) on exit."""
    celery = CeleryStack(base / "celery", registry, storage, PASSWORD)
    try:
        celery.up()
        poll_until(lambda: dags_parsed(celery.rest, [*dag_ids, HYGIENE_DAG_ID]), 180, f"DAGs {dag_ids} not parsed; see {celery.home / 'celery'}")
        poll_until(celery.workers_ready, 180, f"workers not ready; see their logs in {celery.home / 'celery' / 'logs'}")
        first_task(celery.rest)
        yield celery
    finally:
        celery.down()


@contextlib.contextmanager
def running_stack(executor: BenchExecutor, base: Path, registry: Path, storage: Path, dag_ids: list[str]) -> Iterator[RunningStack]:
    """The stack of ``executor``, started with ``dag_ids`` parsed and a first task run; stopped (and its
    database dropped) on exit."""
    if executor is BenchExecutor.LOCAL:
        airflow = AirflowHome.create(base / "airflow", registry, storage)
        with LocalStack(airflow, REPO / "dags", PASSWORD) as local:
            local.start([*dag_ids, HYGIENE_DAG_ID])
            first_task(local.rest)
            yield RunningStack(local.rest, lambda: [p.pid for p in local.processes], airflow.home)
        return
    with celery_stack(base, registry, storage, dag_ids) as celery:
        pids = list(celery.pids().values())  # process group leaders, started with the stack
        yield RunningStack(celery.rest, lambda: pids, celery.home)


def run_dag(stack: RunningStack, dag_id: str, run_id: str, conf: dict) -> tuple[float, int]:
    """Trigger over the REST API (as API clients do) and wait: wall time and peak memory of the stack.
    Prints each task instance's queued, start and end times after the trigger: where the time went."""
    stack.rest.token()  # outside the timed part
    triggered = datetime.now(UTC)
    with PeakMemory(stack.root_pids) as memory:
        stack.rest.trigger(dag_id, run_id, conf)
        state = stack.rest.wait(dag_id, run_id, timeout=RUN_TIMEOUT)
    if state != "success":
        raise RuntimeError(f"{dag_id} {run_id} ended {state}; see {stack.home}")
    # The run's end as Airflow recorded it, not when the (3 s) polling saw it.
    ended = stack.rest.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["end_date"]
    wall = (datetime.fromisoformat(ended) - triggered).total_seconds()
    print(f"  {run_id}: task            queued   start     end  (s after the trigger; run {wall:.1f} s)")
    for ti in sorted(stack.rest.task_instances(dag_id, run_id), key=lambda ti: (ti["start_date"] or "", ti["map_index"])):
        times = [(datetime.fromisoformat(ti[key]) - triggered).total_seconds() if ti[key] else float("nan")
                 for key in ("queued_when", "start_date", "end_date")]
        name = ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")
        print(f"    {name:24} {times[0]:7.2f} {times[1]:7.2f} {times[2]:7.2f}")
    return wall, memory.peak


@dataclasses.dataclass(frozen=True)
class Workspace:
    """A case deployed for the DAG legs: its storage root (exposure copied in), registry and model."""

    storage: Path
    registry: Path
    model: Model
    #: The run conf every leg shares: the exposure files (relative to the storage root) and the settings.
    conf: dict

    def output(self, analysis_id: str) -> Path:
        return self.storage / "analyses" / analysis_id / "output"


def deploy(case: Case, base: Path) -> Workspace:
    """The case's exposure in a fresh storage root and its model in a registry of its own, under ``base``."""
    storage = base / "storage"
    shutil.copytree(exposure_folder(case), storage / "exposure")
    registry = write_registry(base / "registry.yaml", case.entry)
    (model,) = load_registry(registry).models
    conf = {param: f"exposure/{name}" for param, name in case.exposure.items()}
    conf["analysis_settings"] = json.loads(case.settings.read_text())
    return Workspace(storage, registry, model, conf)


def deploy_synthetic(spec: SyntheticModelSpec, base: Path, warm_up: bool) -> Workspace:
    """The synthetic model of ``spec`` built and deployed under ``base``; with ``warm_up``, numba's cache
    warmed first by an untimed CLI run of it."""
    case = synthetic_case(base, spec)
    workspace = deploy(case, base)
    if warm_up:
        print("warming numba's cache with an untimed CLI run ...", flush=True)
        run_cli(case, base / "warmup")
    return workspace


def host() -> dict[str, Any]:
    """The machine a benchmark ran on, for its results."""
    return {"cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)}


def bench(case: Case, chunks: int, base: Path, executor: BenchExecutor, warm_up: bool = True) -> list[tuple[str, float, int]]:
    workspace = deploy(case, base)
    storage, registry, model, conf = workspace.storage, workspace.registry, workspace.model, workspace.conf
    v1, v2 = model.dag_id(Mode.V1), model.dag_id(Mode.V2)
    if warm_up:
        print("warming numba's cache with an untimed CLI run ...", flush=True)
        run_cli(case, base / "warmup")
    results = [("oasislmf model run", *run_cli(case, base / "cli"))]
    print(f"  {results[-1][0]}: {results[-1][1]:.1f} s", flush=True)
    with running_stack(executor, base, registry, storage, [v1, v2]) as stack:
        results.append(("v1 DAG", *run_dag(stack, v1, "bench-v1", conf | {"analysis_id": "bench-v1"})))
        print(f"  {results[-1][0]}: {results[-1][1]:.1f} s", flush=True)
        chunking = {"fixed_lookup_chunks": chunks, "fixed_analysis_chunks": chunks}
        conf_v2 = conf | {"analysis_id": "bench-v2", "chunking": chunking}
        results.append((f"v2 DAG, {chunks} chunks", *run_dag(stack, v2, "bench-v2", conf_v2)))
    assert_same_files(workspace.output("bench-v1"), workspace.output("bench-v2"))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench", description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=["piwind", "synthetic"])
    parser.add_argument("--chunks", type=int, default=4, help="v2 lookup and loss chunks (FIXED)")
    parser.add_argument("--executor", type=BenchExecutor, choices=list(BenchExecutor), default=BenchExecutor.LOCAL,
                        help="stack of the DAG legs: local (LocalExecutor, SQLite) or celery (make celery-up: PostgreSQL, Redis)")
    parser.add_argument("--no-warm-up", dest="warm_up", action="store_false", help="skip the untimed warm-up run (cache already warm)")
    for spec_field in dataclasses.fields(SyntheticModelSpec):
        parser.add_argument(f"--{spec_field.name.replace('_', '-')}", type=int, default=None, help=spec_field.metadata.get("help"))
    args = parser.parse_args()
    # The tasks' NUMBA_CACHE_DIR for the CLI legs too: the warm-up run must warm the cache the DAG legs
    # load from (numba's default, beside oasislmf's sources, is another one).
    prepare_environment()
    with tempfile.TemporaryDirectory(prefix="oasis-bench-") as tmp:
        base = Path(tmp)
        if args.model == "piwind":
            case = piwind_case()
        else:
            sizes = {f.name: getattr(args, f.name) for f in dataclasses.fields(SyntheticModelSpec) if getattr(args, f.name) is not None}
            case = synthetic_case(base, SyntheticModelSpec(**sizes))
        results = bench(case, args.chunks, base, args.executor, args.warm_up)
    cli_time, cli_memory = results[0][1], results[0][2]
    print(f"\n{args.model} on {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.1f} GiB, DAGs on the {args.executor.airflow_name}")
    print(f"{'':28} {'wall s':>8} {'x CLI':>6} {'peak MiB':>9} {'x CLI':>6}")
    for name, wall, memory in results:
        print(f"{name:28} {wall:8.1f} {wall / cli_time:6.2f} {memory / 2**20:9.0f} {memory / max(cli_memory, 1):6.2f}")
    print("v1 and v2 outputs: byte-identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
