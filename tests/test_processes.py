"""The task-process discipline (``execution.processes``): oasislmf's process pool works in a process
forked the way Airflow forks a task from a Celery pool process, a dead child fails the task at once
with a message naming it, and nothing a task started outlives it.

Each scenario runs in a fresh interpreter: it forks, installs signal handlers and becomes a subreaper.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"

#: The Celery worker's process tree as Airflow 3 builds it: a ``multiprocessing`` child started by
#: the worker (its log server), a billiard pool process, and the task as a bare ``os.fork()`` of it.
CELERY_LIKE_TASK = """
import multiprocessing, os, sys, time
import billiard

def log_server():
    time.sleep(120)

def task():
    {body}

def pool_process():
    pid = os.fork()  # Airflow's supervisor forks the task process
    if pid == 0:
        try:
            task()
            code = 0
        except BaseException as exc:
            print(f"task failed: {{type(exc).__name__}}: {{exc}}", flush=True)
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    os._exit(os.waitstatus_to_exitcode(status))

if __name__ == "__main__":
    server = multiprocessing.Process(target=log_server, daemon=True)
    server.start()
    pool = billiard.Process(target=pool_process)
    pool.start()
    pool.join(90)
    print("pool exit code", pool.exitcode, flush=True)
    server.terminate()
"""

#: oasislmf's own process pool (the keys lookup's), with results big enough to be buffered by its
#: queue feeder threads: they are lost if a pool process dies before flushing them.
LOOKUP_POOL = """
    from oasislmf.utils.multiproc import run_multiproc
    from oasis_ops.execution.processes import task_processes

    chunks = [list(range(i, i + 20000)) for i in range(0, 200000, 20000)]
    with task_processes():
        total = run_multiproc(chunks, lambda worker: lambda chunk: [str(x) * 8 for x in chunk], 2,
                              lambda results: sum(len(r) for r in results))
    print("lookup rows", total, flush=True)
"""


def run_python(code: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(PLUGINS)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


def test_oasislmf_process_pool_completes_in_a_task_forked_from_a_celery_pool_process():
    result = run_python(CELERY_LIKE_TASK.format(body=textwrap.indent(textwrap.dedent(LOOKUP_POOL), "    ").strip()))
    assert "lookup rows 200000" in result.stdout, result.stdout + result.stderr[-3000:]
    assert "can only join a child process" not in result.stderr
    assert "pool exit code 0" in result.stdout


def test_a_pool_process_killed_by_a_signal_fails_the_task_at_once_naming_it():
    result = run_python(
        """
        import multiprocessing, os, signal, time
        from oasis_ops.execution.processes import ChildProcessDied, task_processes

        started = time.monotonic()
        try:
            with task_processes():
                worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,), name="LookupWorker-1")
                worker.start()
                time.sleep(1)
                os.kill(worker.pid, signal.SIGKILL)  # as the OOM killer would
                while time.monotonic() - started < 60:  # a pool waiting for its workers' results
                    time.sleep(0.1)
        except ChildProcessDied as exc:
            print(f"died after {time.monotonic() - started:.1f} s: {exc}")
        """
    )
    assert "died after" in result.stdout, result.stdout + result.stderr
    seconds = float(result.stdout.split("died after ")[1].split(" s")[0])
    assert seconds < 10
    assert "child process LookupWorker-1 (pid " in result.stdout and "was killed by SIGKILL" in result.stdout


def test_a_pool_process_exiting_with_an_error_fails_the_task_but_commands_are_their_callers_business():
    result = run_python(
        """
        import multiprocessing, os, subprocess, time
        from oasis_ops.execution.processes import ChildProcessDied, task_processes

        with task_processes():
            # the caller of a command sees how it ended: a failure, or a kill (oasislmf's scripts kill helpers)
            assert subprocess.run(["sh", "-c", "exit 3"]).returncode == 3
            assert subprocess.run(["sh", "-c", "kill -9 $$"]).returncode == -9
            time.sleep(2)
            print("commands are their caller's business")
        try:
            with task_processes():
                worker = multiprocessing.get_context("fork").Process(target=os._exit, args=(7,))
                worker.start()
                time.sleep(30)
        except ChildProcessDied as exc:
            print(exc)
        """
    )
    assert "commands are their caller's business" in result.stdout, result.stderr
    assert "exited with code 7" in result.stdout, result.stdout + result.stderr


def test_nothing_the_task_started_outlives_it_orphans_included(tmp_path):
    result = run_python(
        """
        import subprocess, psutil
        from oasis_ops.execution.processes import task_processes

        try:
            with task_processes():
                child = subprocess.Popen(["sleep", "300"])
                # a pipeline whose shell exits at once: its sleep is orphaned, and adopted by the task
                subprocess.run(["sh", "-c", "sleep 301 & echo $!"], stdout=open("orphan.pid", "w"), check=True)
                print("started", child.pid, open("orphan.pid").read().strip(), flush=True)
                raise RuntimeError("the step fails")
        except RuntimeError:
            pass
        """,
        cwd=tmp_path,
    )
    started = result.stdout.split("started ")[1].split()
    for pid in map(int, started):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, (
            f"process {pid} outlived its task"
        )


def pipeline_tools(tmp_path: Path) -> Path:
    """Stand-ins of three pipeline tools: ``fmpy`` logs that it finished and ends, ``gulmc`` logs that it
    started and runs, ``summarypy`` waits (as on a pipe whose writer never opens it); a ``run/log`` folder."""
    tools = tmp_path / "bin"
    tools.mkdir()
    bodies = {
        "fmpy": 'echo "finishing process" > log/fmpy_$$_x.log',
        "gulmc": 'echo "starting process" > log/gulmc_$$_x.log; sleep 60',
        "summarypy": 'echo "starting process" > log/summarypy_$$_x.log; sleep 60',
    }
    for tool, body in bodies.items():
        (tools / tool).write_text(f"#!/bin/sh\n{body}\n")
        (tools / tool).chmod(0o755)
    (tmp_path / "run" / "log").mkdir(parents=True)
    return tools


def test_a_pipeline_tool_killed_before_it_finished_fails_the_task_naming_it(tmp_path):
    """A ``gulmc`` killed before opening its output pipe leaves the next tool waiting for ever: the
    task must not wait with it. A tool that logged ``finishing process`` may end as it likes."""
    tools = pipeline_tools(tmp_path)
    result = run_python(
        f"""
        import os, signal, subprocess, time
        from oasis_ops.execution.processes import ChildProcessDied, task_processes

        started = time.monotonic()
        try:
            with task_processes():
                subprocess.run(["{tools / 'fmpy'}"], cwd="run", check=True)  # ends after logging that it finished
                script = subprocess.Popen(["sh", "-c", "{tools / 'gulmc'} & {tools / 'summarypy'} & wait"], cwd="run")
                time.sleep(1.5)
                print("an ended tool that finished is fine", flush=True)
                gulmc = [p for p in __import__("psutil").Process().children(recursive=True) if p.name() == "gulmc"][0]
                os.kill(gulmc.pid, signal.SIGKILL)
                script.wait(timeout=60)  # the next tool waits on its pipe for ever, the script with it
        except ChildProcessDied as exc:
            print(f"died after {{time.monotonic() - started:.1f}} s: {{exc}}")
        """,
        cwd=tmp_path,
    )
    assert "an ended tool that finished is fine" in result.stdout, result.stdout + result.stderr
    assert "died after" in result.stdout, result.stdout + result.stderr
    assert float(result.stdout.split("died after ")[1].split(" s")[0]) < 10
    assert "loss pipeline process gulmc (pid " in result.stdout and "ended without finishing (killed?)" in result.stdout


def test_a_run_folder_removed_after_its_pipelines_ended_is_no_death(tmp_path):
    """A task removes its scratch run folder, the tools' logs with it, right after oasislmf returned: a
    tool whose end the watchdog notices only then ended with its pipeline, and oasislmf, which checks
    every tool's log before it returns, judged it (a chunk failed so, after its losses were published)."""
    tools = pipeline_tools(tmp_path)
    result = run_python(
        f"""
        import shutil, subprocess, time
        from oasis_ops.execution.processes import task_processes

        with task_processes():
            script = subprocess.Popen(["sh", "-c", "{tools / 'gulmc'}"], cwd="run")
            time.sleep(1.5)  # seen running
            script.terminate()
            [gulmc] = [p for p in __import__("psutil").Process().children(recursive=True) if p.name() == "gulmc"]
            gulmc.terminate()
            gulmc.wait(timeout=30)
            shutil.rmtree("run")  # the scratch folder removed, logs and all
            time.sleep(3)  # several polls of the watchdog
        print("the task ended normally", flush=True)
        """,
        cwd=tmp_path,
    )
    assert "the task ended normally" in result.stdout, result.stdout + result.stderr
    assert "ChildProcessDied" not in result.stderr, result.stderr


def test_a_sigterm_stops_the_task_body_after_airflows_handler_and_its_pipeline(tmp_path):
    """oasislmf's scripts exit 0 on SIGTERM: the step must not carry on as if its pipeline had finished."""
    result = run_python(
        """
        import os, signal, subprocess, threading, time
        from oasis_ops.execution.processes import TaskStopped, task_processes

        signal.signal(signal.SIGTERM, lambda signum, frame: print("airflow's handler ran", flush=True))
        threading.Timer(1, os.kill, (os.getpid(), signal.SIGTERM)).start()
        try:
            with task_processes():
                pipeline = subprocess.Popen(["sleep", "300"])
                print("pipeline", pipeline.pid, flush=True)
                pipeline.wait()
                print("RESULT PUBLISHED", flush=True)
        except TaskStopped as exc:
            print(f"stopped: {exc}", flush=True)
        """,
        cwd=tmp_path,
    )
    assert "airflow's handler ran" in result.stdout, result.stdout + result.stderr
    assert "stopped: the task was stopped (SIGTERM); nothing of this attempt is published" in result.stdout
    assert "RESULT PUBLISHED" not in result.stdout
    pid = int(result.stdout.split("pipeline ")[1].split()[0])
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
