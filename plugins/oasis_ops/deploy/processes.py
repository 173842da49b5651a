"""Starting and stopping Airflow's services as local processes: shared by ``make celery-up`` /
``celery-down`` (:mod:`.celery_local`) and ``make ui`` (:mod:`.embedded`)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import urllib.request
from pathlib import Path

import psutil

SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def airflow_command(*args: str) -> list[str]:
    """``airflow <args>`` from this interpreter's venv, activated or not."""
    return [str(Path(sys.executable).parent / "airflow"), *args]


def admin_settings(passwords_file: Path) -> dict[str, str]:
    """Airflow's simple auth manager with one user, ``admin`` (role admin), whose password is in
    ``passwords_file`` (``{"admin": "..."}``)."""
    return {
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
    }


def api_is_up(port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://localhost:{port}/api/v2/monitor/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def _tree(pid: int) -> list[psutil.Process]:
    """The service's process and all its descendants, wherever their process group: Airflow puts each
    task in a group of its own, and a task's pipelines or lookup processes are descendants of it."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop_tree(pid: int, sig: signal.Signals, timeout: float) -> None:
    """Send ``sig`` to the service's process tree, wait for all of it to exit, SIGKILL what is left
    after ``timeout`` (a Celery worker's warm shutdown would otherwise wait for its running tasks)."""
    tree = _tree(pid)
    for process in tree:
        with contextlib.suppress(psutil.Error):
            process.send_signal(sig)
    _, alive = psutil.wait_procs(tree, timeout=timeout)
    # Descendants started while it shut down (e.g. a task's pipeline) are stopped too.
    left = list({p.pid: p for p in [*alive, *(c for p in alive for c in _tree(p.pid))]}.values())
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(left, timeout=10)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if this process started it


