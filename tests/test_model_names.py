"""Model ids that differ only in their punctuation (``Pi-Wind`` and ``Pi--Wind``) are distinct models
everywhere a name is derived from them: DAG ids, queues and pools, stack services, compose services
and Kubernetes objects (one naming rule, ``oasis_ops.constants.slug``, replacing one for one)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from harness.piwind import piwind_entry
from harness.registry import write_registry
from oasis_ops.constants import Mode
from oasis_ops.deploy.compose import render
from oasis_ops.deploy.kubernetes import render_manifests
from oasis_ops.deploy.pools import model_pools
from oasis_ops.deploy.stack import services
from oasis_ops.registry import Registry, load_registry

#: model id -> (v1 DAG id, v1 queue, v1 worker service, v2 worker service, v1 Kubernetes name, v2 Kubernetes name)
NAMES = {
    "Pi-Wind": (
        "oasislmf_pi_wind_1_v1", "OasisLMF-Pi-Wind-1",
        "worker-oasislmf-pi-wind-1", "worker-oasislmf-pi-wind-1-v2",
        "oasislmf-pi-wind-1-worker", "oasislmf-pi-wind-1-v2-worker",
    ),
    "Pi--Wind": (
        "oasislmf_pi__wind_1_v1", "OasisLMF-Pi--Wind-1",
        "worker-oasislmf-pi--wind-1", "worker-oasislmf-pi--wind-1-v2",
        "oasislmf-pi--wind-1-worker", "oasislmf-pi--wind-1-v2-worker",
    ),
}


@pytest.fixture
def two_piwinds(tmp_path: Path, piwind_root: Path) -> Path:
    """A registry of PiWind twice, as ``Pi-Wind`` and ``Pi--Wind`` (same supplier and version)."""
    return write_registry(tmp_path / "registry.yaml", *(piwind_entry(model_id=model_id) for model_id in NAMES))


def test_the_registry_loads_both_with_their_own_dag_ids_and_queues(two_piwinds):
    registry = load_registry(two_piwinds)
    assert registry.errors == ()
    assert {m.model_id: (m.dag_id(Mode.V1), m.queue(Mode.V1)) for m in registry.models} == {
        model_id: names[:2] for model_id, names in NAMES.items()
    }
    v2_dags = {m.model_id: m.dag_id(Mode.V2) for m in registry.models}
    assert v2_dags == {"Pi-Wind": "oasislmf_pi_wind_1_v2", "Pi--Wind": "oasislmf_pi__wind_1_v2"}
    pools = [name for model in registry.models for name in model_pools(model)]
    assert sorted(pools) == ["OasisLMF-Pi--Wind-1", "OasisLMF-Pi--Wind-1-v2", "OasisLMF-Pi-Wind-1", "OasisLMF-Pi-Wind-1-v2"]


def test_each_gets_its_own_stack_services(two_piwinds):
    workers = {s.name: s.queue for s in services(load_registry(two_piwinds)) if s.queue}
    assert workers == {
        "worker-maintenance": "default",
        "worker-oasislmf-pi-wind-1": "OasisLMF-Pi-Wind-1",
        "worker-oasislmf-pi-wind-1-v2": "OasisLMF-Pi-Wind-1-v2",
        "worker-oasislmf-pi--wind-1": "OasisLMF-Pi--Wind-1",
        "worker-oasislmf-pi--wind-1-v2": "OasisLMF-Pi--Wind-1-v2",
    }


def test_compose_keeps_both_models_workers(two_piwinds):
    compose = yaml.safe_load(render(two_piwinds))["services"]
    workers = {name: spec["command"] for name, spec in compose.items() if name.startswith("worker-")}
    assert workers == {
        "worker-maintenance": ["celery", "worker", "--queues", "default", "--concurrency", "1"],
        "worker-oasislmf-pi-wind-1": ["celery", "worker", "--queues", "OasisLMF-Pi-Wind-1", "--concurrency", "1"],
        "worker-oasislmf-pi-wind-1-v2": ["celery", "worker", "--queues", "OasisLMF-Pi-Wind-1-v2", "--concurrency", "2"],
        "worker-oasislmf-pi--wind-1": ["celery", "worker", "--queues", "OasisLMF-Pi--Wind-1", "--concurrency", "1"],
        "worker-oasislmf-pi--wind-1-v2": ["celery", "worker", "--queues", "OasisLMF-Pi--Wind-1-v2", "--concurrency", "2"],
    }


def test_kubernetes_objects_are_distinct_and_select_only_their_own_pods(two_piwinds):
    manifests = render_manifests(load_registry(two_piwinds).models)
    deployments = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Deployment"}
    scaled = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "ScaledObject"}
    expected = sorted(name for names in NAMES.values() for name in names[4:])
    assert sorted(deployments) == sorted(scaled) == expected
    assert len(manifests) == 2 * len(expected)
    # Each Deployment's selector matches its own pods only, and each serves and scales on its own queue.
    selectors = [tuple(sorted(d["spec"]["selector"]["matchLabels"].items())) for d in deployments.values()]
    assert len(set(selectors)) == len(selectors)
    queues = {name: d["spec"]["template"]["spec"]["containers"][0]["args"][4] for name, d in deployments.items()}
    assert queues == {
        "oasislmf-pi-wind-1-worker": "OasisLMF-Pi-Wind-1",
        "oasislmf-pi-wind-1-v2-worker": "OasisLMF-Pi-Wind-1-v2",
        "oasislmf-pi--wind-1-worker": "OasisLMF-Pi--Wind-1",
        "oasislmf-pi--wind-1-v2-worker": "OasisLMF-Pi--Wind-1-v2",
    }
    for name, queue in queues.items():
        assert f"WHERE queue = '{queue}' AND" in scaled[name]["spec"]["triggers"][0]["metadata"]["query"]


def test_services_refuse_two_models_whose_workers_would_share_a_name(tmp_path, piwind_root):
    """One service name would be one container (compose) or one process (the launcher): an error.

    Built directly (the registry refuses it, see below): version ``1-v2``'s v1 worker is named like
    version ``1``'s v2 worker.
    """
    (model,) = load_registry(write_registry(tmp_path / "r.yaml", piwind_entry(model_id="M"))).models
    clash = Registry(tmp_path / "r.yaml", (model, replace(model, version_id="1-v2")), ())
    with pytest.raises(ValueError, match=r"^services \['worker-oasislmf-m-1-v2'\] would be named alike; give the models distinct ids$"):
        services(clash)


def test_services_refuse_models_the_registry_would_not_load_together(two_piwinds):
    """Built directly (the registry refuses it: its DAG ids clash), a model ``PiWind`` next to ``piwind``."""
    (model, _) = load_registry(two_piwinds).models
    clash = Registry(two_piwinds, (replace(model, model_id="PiWind"), replace(model, model_id="piwind")), ())
    with pytest.raises(ValueError, match=r"^services \['worker-oasislmf-piwind-1', 'worker-oasislmf-piwind-1-v2'\] would be named alike"):
        services(clash)


def test_a_model_whose_v1_queue_is_another_models_v2_queue_is_a_registry_error(tmp_path: Path, piwind_root: Path):
    registry = load_registry(
        write_registry(tmp_path / "registry.yaml", piwind_entry(model_id="M", version_id="1"), piwind_entry(model_id="M", version_id="1-v2"))
    )
    assert [m.key for m in registry.models] == ["OasisLMF/M/1"]
    (error,) = registry.errors
    assert error.entry.endswith("models[1] (OasisLMF/M/1-v2)")
    assert error.reason.startswith("its DAG id or queue OasisLMF-M-1-v2 is already taken by ")
