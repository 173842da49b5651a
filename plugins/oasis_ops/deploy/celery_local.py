"""``make celery-up`` / ``make celery-down``: the production stack (``oasis_ops.deploy.stack``) as local
processes, for machines without Docker, on PostgreSQL and Redis.

Airflow's own settings choose them: ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` (default PostgreSQL on
localhost, database ``airflow``, created if missing), ``AIRFLOW__CELERY__BROKER_URL`` (default Redis on
localhost), ``AIRFLOW__API__PORT`` (default 8080). The UI/API user is ``admin`` with the password in
``OASIS_ADMIN_PASSWORD`` (one is generated and printed if unset). Models and storage come from
``OASIS_MODEL_REGISTRY`` and ``OASIS_STORAGE_ROOT``. Process ids and logs: ``$AIRFLOW_HOME/celery/``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import oasis_ops
from oasis_ops.config import OasisConfig
from oasis_ops.deploy.processes import admin_settings, airflow_command, api_is_up, stop_tree
from oasis_ops.deploy.stack import SHARED_SETTINGS, Service, services
from oasis_ops.registry import load_registry

DEFAULTS = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://postgres@localhost:5432/airflow",
    "AIRFLOW__CELERY__BROKER_URL": "redis://localhost:6379/0",
    "AIRFLOW__API__PORT": "8080",
}


def state_dir() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "celery"


#: The folder ``oasis_ops`` is imported from.
PLUGINS = str(Path(oasis_ops.__file__).resolve().parent.parent)


def environment() -> dict[str, str]:
    """The environment every service runs with: the caller's, Airflow's defaults for this stack,
    the shared settings, and the admin user; ``oasis_ops`` importable (the Celery configuration is
    read from it as Airflow starts, before it loads plugins)."""
    env = DEFAULTS | dict(os.environ)
    paths = env.get("PYTHONPATH", "").split(os.pathsep)
    if PLUGINS not in paths:
        env["PYTHONPATH"] = os.pathsep.join([PLUGINS, *filter(None, paths)])
    port = env["AIRFLOW__API__PORT"]
    env.setdefault("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", f"http://localhost:{port}/execution/")
    return env | SHARED_SETTINGS | admin_settings(state_dir() / "passwords.json")


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database named in ``url`` if it does not exist yet."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    target = make_url(url)
    if not target.drivername.startswith("postgresql"):
        return
    engine = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        exists = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database}).scalar()
        if not exists:
            connection.execute(text(f'CREATE DATABASE "{target.database}"'))
    engine.dispose()


def _start(service: Service, env: dict[str, str]) -> int:
    command = list(service.command)
    if service.queue:  # several workers on one machine need distinct Celery node names
        command += ["--celery-hostname", f"{service.name}@%h"]
    logs = state_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{service.name}.log").open("a") as log:
        process = subprocess.Popen(airflow_command(*command), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return process.pid


def _pids() -> dict[str, int]:
    path = state_dir() / "pids.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save_pids(pids: dict[str, int]) -> None:
    (state_dir() / "pids.json").write_text(json.dumps(pids, indent=2))


def _registry_services() -> list[Service]:
    return services(load_registry(Path(os.environ.get("OASIS_MODEL_REGISTRY") or OasisConfig.from_env().registry_path)))


def start_service(service: Service) -> int:
    """Start one more service in the running stack (e.g. a second worker on a queue)."""
    pids = _pids()
    pids[service.name] = _start(service, environment())
    _save_pids(pids)
    return pids[service.name]


def stop_service(name: str, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> None:
    """Stop one service of the running stack with ``sig``, and every process it started."""
    pids = _pids()
    stop_tree(pids.pop(name), sig, timeout)
    _save_pids(pids)


def restart(name: str) -> int:
    """Stop and start one service, e.g. the scheduler in the middle of a run."""
    (service,) = [s for s in _registry_services() if s.name == name]
    stop_service(name)
    start_service(service)
    print(f"Restarted {name}")
    return 0


def up(timeout: float = 180) -> int:
    """Migrate, create the pools and the admin user, start every service, wait for the API."""
    if (state_dir() / "pids.json").exists():
        print(f"The stack is already up ({state_dir() / 'pids.json'}); run `make celery-down` first.", file=sys.stderr)
        return 1
    env = environment()
    state_dir().mkdir(parents=True, exist_ok=True)
    password = os.environ.get("OASIS_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    (state_dir() / "passwords.json").write_text(json.dumps({"admin": password}))
    ensure_database(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    subprocess.run(airflow_command("db", "migrate"), env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "oasis_ops.deploy.pools"], env=env, check=True)
    pids = {service.name: _start(service, env) for service in _registry_services()}
    _save_pids(pids)
    logs = state_dir() / "logs"
    port = env["AIRFLOW__API__PORT"]
    deadline = time.monotonic() + timeout
    while not api_is_up(port):
        if time.monotonic() > deadline:
            print(f"The API server did not come up; see {logs}", file=sys.stderr)
            return 1
        time.sleep(2)
    print(f"Up: {', '.join(pids)}\nUI and REST API: http://localhost:{port} (user admin"
          + ("" if os.environ.get("OASIS_ADMIN_PASSWORD") else f", password {password}") + f")\nLogs: {logs}")
    return 0


def down(timeout: float = 30) -> int:
    """Stop every service started by :func:`up` and every process it started."""
    pids = _pids()
    if not pids:
        print("Nothing to stop.")
        return 0
    for pid in pids.values():
        stop_tree(pid, signal.SIGTERM, timeout)
    (state_dir() / "pids.json").unlink()
    print(f"Stopped: {', '.join(pids)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oasis_ops.deploy.celery_local", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "restart"])
    parser.add_argument("service", nargs="?", help="for restart: a service name, e.g. scheduler")
    args = parser.parse_args(argv)
    if args.action == "restart":
        return restart(args.service)
    return {"up": up, "down": down}[args.action]()


if __name__ == "__main__":
    sys.exit(main())
