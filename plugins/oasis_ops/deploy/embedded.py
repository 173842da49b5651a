"""``make ui``: the embedded stack in the foreground (SQLite, LocalExecutor): api-server with the Oasis
API plugin, scheduler, dag-processor and triggerer, until Ctrl-C or SIGTERM stops them all.

The UI/API user is ``admin`` with the password in ``OASIS_ADMIN_PASSWORD`` (generated and printed
when unset). ``AIRFLOW__API__PORT`` (default 8080) moves the api-server, and the tasks' execution API
URL follows it unless ``AIRFLOW__CORE__EXECUTION_API_SERVER_URL`` is set.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from oasis_ops.deploy.processes import admin_settings, airflow_command, api_is_up, stop_tree
from oasis_ops.deploy.stack import CORE_SERVICES

#: Seconds the services get to stop on Ctrl-C before what is left is killed.
STOP_TIMEOUT = 30


def environment(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    port = env.setdefault("AIRFLOW__API__PORT", "8080")
    env.setdefault("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", f"http://localhost:{port}/execution/")
    return env | admin_settings(home / "passwords.json")


def main() -> int:
    home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
    env = environment(home)
    password = os.environ.get("OASIS_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    (home / "passwords.json").write_text(json.dumps({"admin": password}))
    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    processes = {name: subprocess.Popen(airflow_command(name), env=env, start_new_session=True) for name in CORE_SERVICES}
    port = env["AIRFLOW__API__PORT"]
    announced = False
    try:
        while not stopping.wait(1):
            ended = [name for name, process in processes.items() if process.poll() is not None]
            if ended:
                print(f"{', '.join(ended)} exited; stopping the stack", file=sys.stderr, flush=True)
                return 1
            if not announced and api_is_up(port):
                announced = True
                shown = "the password in OASIS_ADMIN_PASSWORD" if os.environ.get("OASIS_ADMIN_PASSWORD") else f"password {password}"
                print(
                    f"\nAirflow UI: http://localhost:{port} (user admin, {shown})\n"
                    f"Oasis API:  http://localhost:{port}/oasis (oasislmf api ... --server-url http://localhost:{port}/oasis)\n"
                    "Ctrl-C stops everything.\n",
                    flush=True,
                )
        return 0
    finally:
        started = time.monotonic()
        for process in processes.values():
            stop_tree(process.pid, signal.SIGTERM, max(1.0, STOP_TIMEOUT - (time.monotonic() - started)))
            process.wait()
        print("Stopped: " + ", ".join(processes), flush=True)


if __name__ == "__main__":
    sys.exit(main())
