"""The committed ``docker-compose.yaml`` started for real, as a user starts it: a ``.env`` made from
``.env.example`` (secrets generated here), a models folder, ``up -d``. Each stack is a Compose project of
its own (its containers, network and volumes carry the project's name), driven by either Compose
implementation (:class:`harness.docker.ComposeProgram`), and inspected through Docker's labels, which
both implementations set alike."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.airflow_home import REPO
from harness.docker import ComposeProgram, run
from harness.local_stack import free_port
from harness.polling import poll_until
from harness.rest import RestClient

COMPOSE_FILE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
#: Longest a stack may take to become healthy (migrations, then the services one health check apart).
UP_TIMEOUT = 600
#: The Airflow services' storage root in the containers.
STORAGE = "/opt/oasis/storage"


def env_file(path: Path, values: Mapping[str, str]) -> Path:
    """``.env.example`` with ``values`` filled in (and added), written to ``path``; every variable the
    example leaves empty (secrets, the models folder) must be among ``values``."""
    example = dict(re.findall(r"^(\w+)=(.*)$", ENV_EXAMPLE.read_text(), re.M))
    unset = sorted(name for name, value in example.items() if not value and name not in values)
    if unset:
        raise ValueError(f"{ENV_EXAMPLE.name} leaves {unset} to the user: give them values")
    path.write_text("".join(f"{name}={value}\n" for name, value in (example | dict(values)).items()))
    return path


def generated_secrets() -> dict[str, str]:
    """The secrets ``.env.example`` asks for, generated as its comments say."""
    from cryptography.fernet import Fernet

    return {
        "AIRFLOW_JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW_FERNET_KEY": Fernet.generate_key().decode(),
        "OASIS_ADMIN_PASSWORD": secrets.token_urlsafe(16),
    }


@dataclass(frozen=True)
class Container:
    """One container of the project, as ``docker inspect`` describes it."""

    id: str
    name: str
    service: str
    status: str
    #: ``healthy``, ``starting``, ``unhealthy``, or ``""`` without a health check.
    health: str
    exit_code: int
    #: Its address on the project's network: what Airflow records as a task's hostname here.
    address: str

    @classmethod
    def from_inspect(cls, data: dict[str, Any]) -> Container:
        state = data["State"]
        networks = data["NetworkSettings"]["Networks"] or {}
        return cls(
            id=data["Id"][:12],
            name=data["Name"].lstrip("/"),
            service=data["Config"]["Labels"]["com.docker.compose.service"],
            status=state["Status"],
            health=(state.get("Health") or {}).get("Status", ""),
            exit_code=state["ExitCode"],
            address=next((n["IPAddress"] for n in networks.values() if n.get("IPAddress")), ""),
        )

    @property
    def ready(self) -> bool:
        """Running and healthy (or running without a health check)."""
        return self.status == "running" and self.health in ("healthy", "")


class ComposeStack:
    """``docker-compose.yaml`` as project ``project``, with ``env`` (its ``.env``) and ``program``."""

    def __init__(self, program: ComposeProgram, project: str, env: Path, password: str, api_port: int) -> None:
        self.program, self.project, self.env, self.password, self.api_port = program, project, env, password, api_port
        self.rest = RestClient(self.url, password)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def oasis_url(self) -> str:
        """The ``--server-url`` of oasislmf's client."""
        return f"{self.url}/oasis"

    def command(self, *args: str) -> list[str]:
        return [
            *self.program.command, "--project-name", self.project, "--project-directory", str(REPO),
            "--file", str(COMPOSE_FILE), "--env-file", str(self.env), *args,
        ]

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``docker compose <args>`` on this project, checked. Only PATH and HOME reach it: a variable of
        the caller's shell would override the ``.env`` file."""
        env = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME")}
        return run(self.command(*args), timeout=timeout, cwd=REPO, env=env)

    def services(self) -> list[str]:
        return self.compose("config", "--services").stdout.split()

    def containers(self, service: str | None = None) -> list[Container]:
        """The project's containers (of ``service``), stopped ones included."""
        labels = [f"--filter=label=com.docker.compose.project={self.project}"]
        if service:
            labels.append(f"--filter=label=com.docker.compose.service={service}")
        ids = run(["docker", "ps", "-a", "-q", *labels], timeout=60).stdout.split()
        if not ids:
            return []
        return [Container.from_inspect(data) for data in json.loads(run(["docker", "inspect", *ids], timeout=60).stdout)]

    def container(self, service: str) -> Container:
        """The one running container of ``service``."""
        (found,) = [c for c in self.containers(service) if c.status == "running"]
        return found

    def up(self, *args: str, timeout: float = UP_TIMEOUT) -> float:
        """``up -d`` (with ``args``, e.g. ``--scale``), then wait until every service is ready and the init
        job has exited successfully. Returns the seconds it took."""
        started = time.monotonic()
        self.compose("up", "-d", "--no-build", *args, timeout=timeout)
        self.wait_ready(timeout - (time.monotonic() - started))
        return time.monotonic() - started

    def wait_ready(self, timeout: float) -> list[Container]:
        """The project's containers once the init job has exited successfully and every other container
        (each replica of a scaled service) is ready; fails at once if the init job failed."""
        services = set(self.services()) - {"airflow-init"}

        def ready() -> list[Container] | None:
            containers = self.containers()
            init = [c for c in containers if c.service == "airflow-init"]
            if any(c.status == "exited" and c.exit_code != 0 for c in init):
                raise AssertionError(f"airflow-init failed:\n{self.logs('airflow-init')[-6000:]}")
            others = [c for c in containers if c.service != "airflow-init"]
            done = bool(init) and all(c.status == "exited" for c in init)
            return containers if done and {c.service for c in others} >= services and all(c.ready for c in others) else None

        def waiting() -> str:
            return "not ready: " + ", ".join(f"{c.name} {c.status} {c.health}" for c in self.containers() if not c.ready and c.service != "airflow-init")

        return poll_until(ready, timeout, waiting, interval=5)

    def down(self, *args: str) -> None:
        self.compose("down", "--remove-orphans", *args, timeout=300)

    def logs(self, service: str | None = None) -> str:
        command = self.command("logs", "--no-color", *([service] if service else []))
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
        return result.stdout + result.stderr

    def exec(self, container: Container, *command: str, stdin: bytes | None = None) -> bytes:
        """``command`` in ``container`` as the image's user; its standard output."""
        result = subprocess.run(["docker", "exec", "-i", container.id, *command], input=stdin, capture_output=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"docker exec {container.name} {' '.join(command)}: {result.stderr.decode(errors='replace')[-3000:]}")
        return result.stdout

    def put(self, source: Path, names: list[str], target: str = STORAGE) -> None:
        """``source/<names>`` into ``target`` in the api-server's container, owned by the image's user."""
        archive = run_bytes(["tar", "-C", str(source), "-c", *names])
        self.exec(self.container("api-server"), "tar", "-x", "-C", target, stdin=archive)

    def get(self, path: str, target: Path) -> Path:
        """``<storage root>/<path>`` (a folder) copied out to ``target``; returns ``target``."""
        archive = self.exec(self.container("api-server"), "tar", "-C", f"{STORAGE}/{path}", "-c", ".")
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True, timeout=600)
        return target


def run_bytes(command: list[str]) -> bytes:
    return subprocess.run(command, capture_output=True, check=True, timeout=600).stdout


def new_project() -> tuple[str, int, int]:
    """A project name of its own and two free host ports (api-server, flower)."""
    return f"oasistest{secrets.token_hex(4)}", free_port(), free_port()
