"""docker-compose.yaml is rendered from the same source of truth as `make celery-up` and is current."""

from __future__ import annotations

import re
import subprocess

import yaml

from harness.airflow_home import REPO
from harness.registry import write_registry
from oasis_ops.deploy.celery_local import environment
from oasis_ops.deploy.compose import render
from oasis_ops.deploy.stack import SHARED_SETTINGS, services
from oasis_ops.registry import load_registry
from oasis_ops.tools.synthetic import SyntheticModelSpec, build_synthetic_model

COMPOSE = REPO / "docker-compose.yaml"


def default_registry(tmp_path):
    """The project's default registry (its synthetic model), with the model built in tmp_path."""
    build_synthetic_model(tmp_path / "synthetic", SyntheticModelSpec(locations=5, events=3))
    entry = {"supplier_id": "OasisAirflow", "model_id": "Synthetic", "version_id": "1", "path": "synthetic"}
    return write_registry(tmp_path / "registry.yaml", entry)


def test_the_committed_compose_file_is_the_rendered_one(tmp_path):
    assert COMPOSE.read_text() == render(default_registry(tmp_path)), "re-render: python -m oasis_ops.deploy.compose > docker-compose.yaml"


def test_compose_and_the_local_launcher_run_the_same_services_and_settings(tmp_path, monkeypatch):
    registry = default_registry(tmp_path)
    compose = yaml.safe_load(COMPOSE.read_text())
    expected = services(load_registry(registry))
    for service in expected:
        assert compose["services"][service.name]["command"] == list(service.command)
    workers = {name: spec["command"] for name, spec in compose["services"].items() if spec.get("command", [""])[0] == "celery" and "worker" in spec["command"]}
    assert workers == {s.name: list(s.command) for s in expected if s.queue}
    assert workers["worker-oasisairflow-synthetic-1"][-2:] == ["--concurrency", "1"]  # v1: one job at a time
    assert {"postgres", "redis", "airflow-init", "flower"} <= set(compose["services"])
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    for name, value in SHARED_SETTINGS.items():
        assert compose["x-airflow-common"]["environment"][name] == value == environment()[name]


def test_secrets_come_from_the_env_file_which_is_documented_and_ignored():
    text = COMPOSE.read_text()
    referenced = set(re.findall(r"(?<!\$)\$\{(\w+)", text))  # $${...} is a container variable
    assert {"AIRFLOW_JWT_SECRET", "AIRFLOW_FERNET_KEY", "OASIS_ADMIN_PASSWORD"} <= referenced
    documented = set(re.findall(r"^(\w+)=", (REPO / ".env.example").read_text(), re.M))
    assert referenced <= documented
    # Required secrets fail compose loudly when unset rather than defaulting to something guessable.
    for secret in ("AIRFLOW_JWT_SECRET", "AIRFLOW_FERNET_KEY", "OASIS_ADMIN_PASSWORD"):
        assert f"${{{secret}:?" in text
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO)
    assert ignored.returncode == 0, ".env must be git-ignored"
