"""The embedded stack as a user starts it: ``make ui AIRFLOW_HOME=<home>`` from the repository root
(``python -m oasis_ops.deploy.embedded``: api-server with the Oasis API under ``/oasis``, scheduler,
dag-processor and triggerer, LocalExecutor on SQLite), in a throw-away Airflow home, on a free port.

``stop()`` is what Ctrl-C or a service manager does (SIGTERM to ``make``) and checks that every
process of the stack, and every process its tasks started, is gone within a bound.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from types import TracebackType

import psutil

from harness.airflow_home import BIN, REPO, AirflowHome, clean_environ
from harness.local_stack import free_port
from harness.polling import poll_until
from harness.rest import RestClient

#: Longest the stack may take to answer and parse the model DAGs (the first start migrates nothing:
#: :meth:`AirflowHome.create` did), and to stop (the launcher gives its services 30 s, then kills).
START_TIMEOUT = 240
STOP_TIMEOUT = 90
#: Written to the log before each start.
START_MARK = "===== make ui"


class EmbeddedStack:
    """``make ui`` on ``base/airflow`` serving ``registry``'s models on ``storage``; the UI/API user is
    ``admin`` with ``password``. ``extra_env`` reaches ``make`` and so every service and task."""

    def __init__(self, base: Path, registry: Path, storage: Path, password: str, extra_env: dict[str, str] | None = None) -> None:
        self.base, self.password = base, password
        self.airflow = AirflowHome.create(base / "airflow", registry, storage)
        self.port = free_port()
        self.extra_env = dict(extra_env or {})
        self.make: subprocess.Popen | None = None
        self._rest = RestClient(self.url, password)
        #: Every process seen in the stack's tree while it ran (services, tasks, pipelines).
        self._seen: dict[int, psutil.Process] = {}

    @property
    def home(self) -> Path:
        return self.airflow.home

    @property
    def storage(self) -> Path:
        return self.airflow.storage

    @property
    def log(self) -> Path:
        """What ``make ui`` printed, every start appended."""
        return self.base / "make-ui.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def oasis_url(self) -> str:
        """The ``--server-url`` of oasislmf's client."""
        return f"{self.url}/oasis"

    @property
    def rest(self) -> RestClient:
        """Airflow's own REST API as ``admin`` (its token outlives a restart: same home, same secret)."""
        return self._rest

    def env(self) -> dict[str, str]:
        """``make``'s environment: the developer's own Airflow/Oasis settings dropped, the stack's set.
        ``AIRFLOW_HOME`` is given on ``make``'s command line, as the README says."""
        env = {k: v for k, v in clean_environ().items() if k != "AIRFLOW_HOME"}
        return env | {
            "OASIS_ADMIN_PASSWORD": self.password,
            "AIRFLOW__API__PORT": str(self.port),
            "OASIS_MODEL_REGISTRY": str(self.airflow.registry),
            "OASIS_STORAGE_ROOT": str(self.airflow.storage),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        } | self.extra_env

    # --- life cycle ---

    def start(self, dag_ids: list[str], timeout: float = START_TIMEOUT) -> None:
        """``make ui``, then return once the API and the Oasis API answer and ``dag_ids`` are parsed."""
        assert self.make is None or self.make.poll() is not None, "the stack is already running"
        with self.log.open("a") as out:
            out.write(f"\n{START_MARK} AIRFLOW_HOME={self.home} (port {self.port}) =====\n")
            out.flush()
            self.make = subprocess.Popen(
                ["make", "ui", f"AIRFLOW_HOME={self.home}"],
                cwd=REPO, env=self.env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        rest = self.rest

        def ready() -> bool:
            assert self.make is not None
            if self.make.poll() is not None:
                raise RuntimeError(f"make ui exited with {self.make.returncode} at start-up:\n{self.log_tail()}")
            self._remember()
            if not (rest.is_up() and self.oasis_is_up()):
                return False
            return rest.has_dags(dag_ids)

        try:
            poll_until(ready, timeout, lambda: f"make ui not ready (API, /oasis, DAGs {dag_ids}):\n{self.log_tail()}", 1)
        except BaseException:
            self.stop(check=False)
            raise

    def oasis_is_up(self) -> bool:
        """The Oasis API's health check answers without a token."""
        try:
            with urllib.request.urlopen(f"{self.oasis_url}/healthcheck/", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self, timeout: float = STOP_TIMEOUT, check: bool = True) -> None:
        """SIGTERM to ``make`` (which passes it on to the launcher), then every process of the stack
        must be gone within ``timeout`` s; what is left is killed and, with ``check``, reported."""
        if self.make is not None and self.make.poll() is None:
            self._remember()
            with contextlib.suppress(ProcessLookupError):
                self.make.send_signal(signal.SIGTERM)
        left = self.wait_stopped(timeout)
        if left:
            for process in left:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            psutil.wait_procs(left, timeout=10)
        if self.make is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.make.wait(timeout=10)
        self._seen.clear()
        if check:
            assert not left, f"still running {timeout:.0f} s after SIGTERM: {[_describe(p) for p in left]}\n{self.log_tail()}"

    def wait_stopped(self, timeout: float) -> list[psutil.Process]:
        """Wait until ``make`` and every process of the stack has exited; returns what is still alive
        after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._remember()
            alive = self.processes()
            if not alive and (self.make is None or self.make.poll() is not None):
                return []
            time.sleep(1)
        return self.processes()

    def __enter__(self) -> EmbeddedStack:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop(check=kind is None)

    # --- processes ---

    def _tree(self) -> list[psutil.Process]:
        if self.make is None:
            return []
        try:
            root = psutil.Process(self.make.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _remember(self) -> None:
        for process in self._tree():
            self._seen.setdefault(process.pid, process)

    def processes(self) -> list[psutil.Process]:
        """The stack's live processes: those seen in ``make``'s tree, and any process on the machine
        whose environment names this Airflow home (a task's pipeline that outlived its parent)."""
        alive = {pid: p for pid, p in self._seen.items() if _alive(p)}
        for process in psutil.process_iter():
            if process.pid not in alive and self.belongs(process):
                alive[process.pid] = process
        return list(alive.values())

    def belongs(self, process: psutil.Process) -> bool:
        """``process`` runs for this stack: its environment's ``AIRFLOW_HOME`` is this home."""
        try:
            return _alive(process) and process.environ().get("AIRFLOW_HOME") == str(self.home)
        except psutil.Error:
            return False

    def service(self, name: str) -> psutil.Process:
        """The running service (``api-server``, ``scheduler``, ...): a child of the launcher, named by its
        command line or by the title Airflow gives its process (``airflow api_server -- ...``)."""
        launchers = [p for p in self._tree() if "oasis_ops.deploy.embedded" in _command(p)]
        for launcher in launchers:
            for process in launcher.children():
                # ``airflow <name>``, ``python3 .../airflow <name>``, or the title ``airflow api_server -- ...``
                if name in _command(process).replace("_", "-").split()[1:3]:
                    return process
        raise LookupError(f"no {name} in the stack's processes: {[_describe(p) for p in self._tree()]}")

    def log_tail(self, chars: int = 6000) -> str:
        return self.last_log()[-chars:]

    def last_log(self) -> str:
        """What the latest ``make ui`` printed."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[text.rfind(START_MARK) :] if START_MARK in text else text

    # --- users ---

    def token(self, username: str, role: str) -> str:
        """A token of the stack's auth manager (Airflow's simple auth manager) for a user with ``role``
        (``viewer``, ``user``, ``op``, ``admin``), signed as ``POST /auth/token`` signs them: the
        launcher configures the one user ``admin``, so other roles are tested with such tokens."""
        code = (
            "from airflow.api_fastapi.app import create_auth_manager\n"
            "from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser\n"
            f"print(create_auth_manager().generate_jwt(SimpleAuthManagerUser(username={username!r}, role={role!r})))\n"
        )
        env = self.airflow.env() | {
            "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        }
        result = subprocess.run([str(BIN / "python"), "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
        return result.stdout.strip().splitlines()[-1]


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _command(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def _describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())[:160]}"
    except psutil.Error:
        return str(process.pid)


def wait_for_exit(process: psutil.Process, timeout: float) -> None:
    """Wait for one process to exit (bounded)."""
    poll_until(lambda: not _alive(process), timeout, f"{_describe(process)} did not exit", 0.5)
