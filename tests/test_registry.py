from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_registry

from oasis_ops.chunking import ChunkingConfig
from oasis_ops.registry import load_registry
from oasis_ops.scaling import ScalingConfig


def make_model(root: Path, **meta: dict) -> Path:
    (root / "meta-data").mkdir(parents=True)
    (root / "oasislmf.json").write_text(json.dumps({"model_data_dir": "model_data"}))
    (root / "meta-data" / "model_settings.json").write_text("{}")
    for name, content in meta.items():
        (root / "meta-data" / f"{name}.json").write_text(json.dumps(content))
    return root


def test_piwind_entry_loads_with_its_meta_data(tmp_path, piwind_entry):
    registry = load_registry(write_registry(tmp_path / "r.yaml", piwind_entry))
    assert registry.errors == ()
    (model,) = registry.models
    assert model.dag_id("v1") == "oasislmf_piwind_1_v1"
    assert model.queue == "OasisLMF-PiWind-1"
    assert model.v2_queue == "OasisLMF-PiWind-1-v2"
    # PiWind ships chunking_configuration.json: its values win over the defaults, the rest stay default.
    assert model.chunking.fixed_lookup_chunks == 5
    assert model.chunking.dynamic_events_per_analysis == 100
    assert model.chunking.dynamic_chunks_max == 200
    assert model.scaling.worker_count_min == 0


def test_relative_paths_are_relative_to_the_registry_file(tmp_path):
    make_model(tmp_path / "models" / "m")
    registry = load_registry(
        write_registry(tmp_path / "r.yaml", {"supplier_id": "Acme", "model_id": "Quake EU", "version_id": 2, "path": "models/m"})
    )
    (model,) = registry.models
    assert model.root == (tmp_path / "models" / "m").resolve()
    assert model.chunking == ChunkingConfig() and model.scaling == ScalingConfig()
    assert model.dag_id("v1") == "acme_quake_eu_2_v1"
    assert model.queue == "Acme-Quake EU-2"


def test_a_broken_entry_is_reported_and_the_others_still_load(tmp_path):
    make_model(tmp_path / "good")
    make_model(tmp_path / "badchunk", chunking_configuration={"fixed_analysis_chunks": 0})
    (tmp_path / "badjson" / "meta-data").mkdir(parents=True)
    (tmp_path / "badjson" / "oasislmf.json").write_text("{not json")
    registry = load_registry(
        write_registry(
            tmp_path / "r.yaml",
            {"supplier_id": "A", "model_id": "Good", "version_id": "1", "path": "good"},
            {"supplier_id": "A", "model_id": "Missing", "version_id": "1", "path": "nowhere"},
            {"supplier_id": "A", "model_id": "BadChunk", "version_id": "1", "path": "badchunk"},
            {"supplier_id": "A", "model_id": "BadJson", "version_id": "1", "path": "badjson"},
            {"supplier_id": "A", "model_id": "NoVersion", "path": "good"},
            {"supplier_id": "A", "model_id": "Good", "version_id": "1", "path": "good"},
        )
    )
    assert [m.model_id for m in registry.models] == ["Good"]
    reasons = [str(e) for e in registry.errors]
    assert len(reasons) == 5
    assert "A/Missing/1" in reasons[0] and "not a folder" in reasons[0]
    assert "fixed_analysis_chunks must be an integer >= 1, got 0" in reasons[1]
    assert "chunking_configuration.json" in reasons[1]
    assert "oasislmf.json is not valid JSON" in reasons[2]
    assert "missing field(s) ['version_id']" in reasons[3]
    assert "already taken" in reasons[4]


def test_an_unreadable_registry_is_one_error(tmp_path):
    registry = load_registry(tmp_path / "absent.yaml")
    assert registry.models == () and "cannot read the model registry" in str(registry.errors[0])
    (tmp_path / "list.yaml").write_text("- just a list\n")
    assert "top-level 'models:' list" in str(load_registry(tmp_path / "list.yaml").errors[0])


@pytest.mark.parametrize(
    "scaling, message",
    [
        ({"scaling_strategy": "MAGIC"}, "scaling_strategy must be one of"),
        ({"worker_count_min": 5, "worker_count_max": 2}, "worker_count_min (5) exceeds worker_count_max (2)"),
        ({"workers": 3}, "unknown field(s) ['workers']"),
    ],
)
def test_bad_scaling_configuration_names_the_field(tmp_path, scaling, message):
    make_model(tmp_path / "m", scaling_configuration=scaling)
    registry = load_registry(write_registry(tmp_path / "r.yaml", {"supplier_id": "A", "model_id": "M", "version_id": "1", "path": "m"}))
    assert registry.models == ()
    assert message in str(registry.errors[0]) and "scaling_configuration.json" in str(registry.errors[0])
