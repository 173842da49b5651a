"""Storage hygiene: working folders name their owner; the hygiene DAG removes the intermediate files of
runs that ended longer than the retention ago and the scratch folders of tasks no longer running, and
never a queued or running analysis' files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.airflow_home import BIN, REPO, output_tail
from harness.matching import exactly
from harness.piwind import V2_DAG
from oasis_ops.config import OasisConfig
from oasis_ops.context import TaskRun
from oasis_ops.errors import OasisInputError
from oasis_ops.hygiene import RunState, sweep
from oasis_ops.storage import OWNER_FILE, Owner, Storage

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def _age(folder: Path, when: datetime) -> None:
    """Make everything in ``folder`` look last changed at ``when``."""
    stamp = when.timestamp()
    for parent, names, files in os.walk(folder):
        for name in (*names, *files):
            os.utime(os.path.join(parent, name), (stamp, stamp))
    os.utime(folder, (stamp, stamp))


def _intermediates(storage: Storage, analysis_id: str, owner: Owner, tmp_path: Path) -> Path:
    """A run's intermediate folder as its tasks leave it: the exposure a prepare task published."""
    staged = tmp_path / f"staged-{owner.run_id}"
    staged.mkdir()
    (staged / "location.csv").write_text("LocNumber\n" + "1\n" * 500)
    folder = storage.intermediate(analysis_id, owner.run_id)
    Storage(storage.uri, owner).publish(staged, folder / "exposure")
    return Path(folder.path)


# --- owner records ---


def test_a_tasks_storage_records_its_task_in_scratch_folders_and_its_run_in_intermediate_folders(tmp_path, monkeypatch):
    ti = SimpleNamespace(dag_id="m_v2", run_id="manual__2026-11-30T10:00:00+00:00", task_id="loss_chunk", map_index=2)
    context = {"params": {"location_file": "a.csv", "analysis_id": "a1", "action": "generate_inputs"}, "run_id": ti.run_id, "ti": ti}
    monkeypatch.setenv("OASIS_STORAGE_ROOT", str(tmp_path))
    run = TaskRun.of(SimpleNamespace(), context)
    task = Owner("m_v2", ti.run_id, "loss_chunk", 2)
    with run.storage.scratch("a1") as work:
        assert work.parent == tmp_path / ".work" and Owner.read(work) == task
    assert not work.exists()
    folder = _intermediates(run.storage, "a1", task, tmp_path)
    assert folder == tmp_path / ".intermediate" / "a1" / "manual__2026-11-30T10_00_00_00_00"
    # The run owns its intermediate files, whichever task published first.
    assert Owner.read(folder) == Owner("m_v2", ti.run_id)
    assert sorted(p.name for p in folder.iterdir()) == [OWNER_FILE, "exposure"]


def test_publishing_outside_intermediate_folders_or_without_an_owner_records_nothing(tmp_path):
    staged = tmp_path / "out"
    staged.mkdir()
    owned = Storage(str(tmp_path / "root"), Owner("d", "r", "aggregate"))
    owned.publish(staged, owned.analysis("a1").output)
    assert not list((tmp_path / "root").rglob(OWNER_FILE))
    staged.mkdir()
    Storage(str(tmp_path / "root")).publish(staged, owned.intermediate("a1", "r") / "exposure")
    assert not list((tmp_path / "root").rglob(OWNER_FILE))


def test_removing_a_runs_intermediates_frees_its_bytes_and_its_analysis_folder_once_empty(tmp_path):
    storage = Storage(str(tmp_path / "root"))
    first = _intermediates(storage, "a1", Owner("d", "r1"), tmp_path)
    second = _intermediates(storage, "a1", Owner("d", "r2"), tmp_path)
    size = sum(p.stat().st_size for p in first.rglob("*") if p.is_file())
    assert storage.remove_intermediates(storage.intermediate("a1", "r1")) == size
    assert not first.exists() and second.exists()
    assert storage.remove_intermediates(storage.intermediate("a1", "r1")) is None
    storage.remove_intermediates(storage.intermediate("a1", "r2"))
    assert not (tmp_path / "root" / ".intermediate" / "a1").exists()


# --- configuration ---


def test_the_retention_and_schedule_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("OASIS_INTERMEDIATE_RETENTION_DAYS", raising=False)
    monkeypatch.delenv("OASIS_HYGIENE_SCHEDULE", raising=False)
    assert (OasisConfig.from_env().intermediate_retention, OasisConfig.from_env().hygiene_schedule) == (WEEK, "@hourly")
    monkeypatch.setenv("OASIS_INTERMEDIATE_RETENTION_DAYS", "0.5")
    monkeypatch.setenv("OASIS_HYGIENE_SCHEDULE", "*/10 * * * *")
    assert (OasisConfig.from_env().intermediate_retention, OasisConfig.from_env().hygiene_schedule) == (timedelta(hours=12), "*/10 * * * *")


@pytest.mark.parametrize("value", ["7d", "-1", "nan", "inf"])
def test_a_bad_retention_names_the_variable_and_the_fix(monkeypatch, value):
    monkeypatch.setenv("OASIS_INTERMEDIATE_RETENTION_DAYS", value)
    reason = f"OASIS_INTERMEDIATE_RETENTION_DAYS: {value!r} is not a number of days >= 0; set it to e.g. 7 (or unset it: 7)"
    with pytest.raises(OasisInputError, match=exactly(reason)):
        OasisConfig.from_env()


# --- the sweep's decisions ---


@dataclass
class KnownRuns:
    """What Airflow would answer: the runs it has, and the task instances running."""

    runs: dict[tuple[str, str], RunState] = field(default_factory=dict)
    running: set[Owner] = field(default_factory=set)

    def dag_run(self, dag_id: str, run_id: str) -> RunState | None:
        return self.runs.get((dag_id, run_id))

    def is_running(self, owner: Owner) -> bool:
        return owner in self.running


def test_the_sweep_decides_by_run_end_task_state_and_age(tmp_path):
    storage = Storage(str(tmp_path / "root"))
    root = tmp_path / "root"
    ended = {
        "old-failed": RunState("failed", NOW - timedelta(days=8)),
        "old-success": RunState("success", NOW - timedelta(days=30)),
        "recent-failed": RunState("failed", NOW - timedelta(days=6)),
        "running": RunState("running", None),
        "cleared": RunState("queued", NOW - timedelta(days=9)),  # a failed run cleared to resume it
    }
    runs = KnownRuns({("d", run_id): state for run_id, state in ended.items()})
    for run_id in [*ended, "deleted"]:
        _age(_intermediates(storage, "a", Owner("d", run_id, "prepare"), tmp_path), NOW - timedelta(days=60))
    legacy_old, legacy_new = root / ".intermediate" / "b" / "old", root / ".intermediate" / "b" / "new"
    for folder, age in ((legacy_old, timedelta(days=8)), (legacy_new, timedelta(days=1))):
        (folder / "keys").mkdir(parents=True)
        (folder / "keys" / "keys.csv").write_text("x" * 100)
        _age(folder, NOW - age)
    runs.running.add(Owner("d", "running", "loss_chunk", 0))
    scratch = {
        "live": (Owner("d", "running", "loss_chunk", 0), timedelta(days=2)),
        "killed": (Owner("d", "running", "loss_chunk", 1), timedelta(hours=1)),
        "just-killed": (Owner("d", "running", "loss_chunk", 2), timedelta(minutes=5)),
        "legacy-old": (None, timedelta(days=8)),
        "legacy-new": (None, timedelta(days=1)),
    }
    for name, (owner, age) in scratch.items():
        folder = root / ".work" / name
        folder.mkdir(parents=True)
        (folder / "data.bin").write_bytes(b"x" * 1000)
        if owner:
            (folder / OWNER_FILE).write_text(owner.to_json())
        _age(folder, NOW - age)

    removed = sweep(storage, runs, WEEK, NOW)

    assert {Path(r.folder).name: r.reason for r in removed} == {
        "old-failed": "DAG run d old-failed ended failed at 2026-11-23 12:00 UTC, over 7 days ago",
        "old-success": "DAG run d old-success ended success at 2026-11-01 12:00 UTC, over 7 days ago",
        "deleted": "DAG run d deleted no longer exists",
        "old": "no owner record, unchanged since 2026-11-23 12:00 UTC, over 7 days ago",
        "killed": "task loss_chunk[1] of d running is not running",
        "legacy-old": "no owner record, unchanged since 2026-11-23 12:00 UTC, over 7 days ago",
    }
    assert sorted(p.name for p in (root / ".intermediate" / "a").iterdir()) == ["cleared", "recent-failed", "running"]
    assert sorted(p.name for p in (root / ".work").iterdir()) == ["just-killed", "legacy-new", "live"]
    assert {Path(r.folder).name: r.freed for r in removed if r.kind == "scratch folder"} == {"killed": 1000 + len(Owner("d", "running", "loss_chunk", 1).to_json()), "legacy-old": 1000}
    assert sweep(storage, runs, WEEK, NOW) == []


def test_a_fresh_storage_root_has_nothing_to_sweep(tmp_path):
    """A new deployment's first hygiene run: no analysis ran yet, so no ``.intermediate/`` or ``.work/``."""
    storage = Storage(str(tmp_path))
    assert storage.intermediate_folders() == [] and storage.scratch_folders() == []
    assert sweep(storage, KnownRuns({}), WEEK, NOW) == []


def test_on_object_storage_intermediates_go_by_their_runs_end_or_their_last_change(tmp_path):
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    attach("memory", fs=MemoryFileSystem())
    storage = Storage("memory://hygiene/oasis")
    for run_id, owner in (("ended", Owner("d", "ended", "prepare")), ("running", Owner("d", "running", "prepare")), ("legacy", None)):
        staged = tmp_path / run_id
        staged.mkdir()
        (staged / "location.csv").write_text("x" * 300)
        Storage(storage.uri, owner).publish(staged, storage.intermediate("a", run_id) / "exposure")
    now = datetime.now(UTC)  # the memory store's files were changed now
    runs = KnownRuns({("d", "ended"): RunState("failed", now - timedelta(days=8)), ("d", "running"): RunState("running", None)})
    assert [(r.folder, r.freed) for r in sweep(storage, runs, WEEK, now)] == [("memory://hygiene/oasis/.intermediate/a/ended", 300 + len(Owner("d", "ended").to_json()))]
    assert [r.folder for r in sweep(storage, runs, WEEK, now + timedelta(days=8))] == ["memory://hygiene/oasis/.intermediate/a/legacy"]
    assert [f.name for f in storage.intermediate_folders()] == ["running"] and storage.scratch_folders() == []


# --- the DAG, end to end on a real Airflow ---

#: Enters one scratch folder per owner, as tasks do, then dies by SIGKILL: a task killed mid-way.
KILLED_TASKS = """
import contextlib, json, os, signal, sys
from oasis_ops.storage import Owner, Storage
stack = contextlib.ExitStack()
for owner in json.loads(sys.argv[2]):
    work = stack.enter_context(Storage(sys.argv[1], Owner(**owner)).scratch("a"))
    (work / "events.bin").write_bytes(b"x" * 4096)
    print(work.name, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.e2e
def test_the_hygiene_dag_removes_ended_runs_and_killed_tasks_leftovers_and_never_a_running_analysis(piwind_dags_airflow, tmp_path):
    airflow, root = piwind_dags_airflow, piwind_dags_airflow.storage
    storage = Storage(str(root))
    runs = [
        ["ended-8-days-ago", "failed", 8, {}],
        ["ended-30-days-ago", "success", 30, {}],
        ["ended-yesterday", "failed", 1, {}],
        ["running", "running", None, {"prepare": [-1, "success"], "loss_chunk": [0, "running"]}],
        ["queued", "queued", 9, {}],  # a failed run cleared to resume it
    ]
    env = airflow.env()
    airflow.make_runs(V2_DAG, runs)
    long_ago = datetime.now(UTC) - timedelta(days=40)
    # Every run's intermediate files, and one of a run deleted since; all unchanged for 40 days.
    for run_id in [*(r[0] for r in runs), "deleted"]:
        _age(_intermediates(storage, "a", Owner(V2_DAG, run_id, "prepare"), tmp_path), long_ago)
    # The running run's tasks: loss chunk 1 running, chunk 2 (and the prepare task) killed mid-way.
    owners = [{"dag_id": V2_DAG, "run_id": "running", "task_id": task, "map_index": index} for task, index in (("loss_chunk", 0), ("loss_chunk", 1), ("prepare", -1))]
    killed = subprocess.run([str(BIN / "python"), "-c", KILLED_TASKS, str(root), json.dumps(owners)], env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    live, chunk_2, prepare = (root / ".work" / name for name in killed.stdout.split())
    for folder in (live, chunk_2):
        _age(folder, datetime.now(UTC) - timedelta(hours=1))
    # The prepare task was killed a minute ago: within the grace period.
    _age(prepare, datetime.now(UTC) - timedelta(minutes=1))
    legacy = root / ".work" / "a-legacy01"
    legacy.mkdir()
    (legacy / "old.bin").write_bytes(b"x" * 2048)
    _age(legacy, datetime.now(UTC) - timedelta(days=8))

    result = airflow.dags_test_ok("oasis_storage_hygiene", {})
    log = result.stdout + result.stderr

    assert sorted(p.name for p in (root / ".intermediate" / "a").iterdir()) == ["ended-yesterday", "queued", "running"]
    assert sorted(p.name for p in (root / ".work").iterdir()) == sorted([live.name, prepare.name])
    for run_id, why in (
        ("ended-8-days-ago", "ended failed at"),
        ("ended-30-days-ago", "ended success at"),
        ("deleted", "no longer exists"),
    ):
        folder = storage.intermediate("a", run_id).path
        assert f"Removed intermediate files file://{folder}: " in log and f"DAG run {V2_DAG} {run_id} {why}" in log, output_tail(result)
    assert f"Removed scratch folder {chunk_2}: 4," in log and f"(task loss_chunk[1] of {V2_DAG} running is not running)" in log
    assert f"Removed scratch folder {legacy}: 2,048 bytes freed (no owner record" in log
    assert "Storage hygiene freed " in log and f" in 5 folders of file://{root}" in log, output_tail(result)


PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder=sys.argv[1]).dags["oasis_storage_hygiene"]
print(json.dumps({"timetable": dag.timetable.expression, "queues": [t.queue for t in dag.tasks], "pools": [t.pool for t in dag.tasks]}))
"""


@pytest.mark.parametrize(("schedule", "summary"), [(None, "0 * * * *"), ("*/10 * * * *", "*/10 * * * *")])
def test_the_hygiene_dag_runs_hourly_by_default_on_the_default_queue(tmp_path, schedule, summary):
    env = {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONPATH": str(REPO / "plugins"), "PATH": "/usr/bin:/bin"}
    if schedule:
        env["OASIS_HYGIENE_SCHEDULE"] = schedule
    out = subprocess.run([str(BIN / "python"), "-c", PARSE, str(REPO / "dags" / "oasis_storage_hygiene.py")], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"timetable": summary, "queues": ["default"], "pools": ["default_pool"]}
