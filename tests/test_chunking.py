"""The Oasis platform's chunk-count rules, and their bounds: never more chunks than rows or events; our
floor on DYNAMIC loss chunks' work, and its estimate from a prepared run folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.registry import write_registry
from oasis_ops.chunking import MAX_CHUNKS, ChunkingConfig, ChunkStrategy
from oasis_ops.errors import OasisInputError
from oasis_ops.tools.synthetic import SyntheticModelSpec, build_synthetic_model

FIXED, DYNAMIC = ChunkStrategy.FIXED_CHUNKS.value, ChunkStrategy.DYNAMIC_CHUNKS.value


def test_defaults_are_the_reference_systems():
    config = ChunkingConfig()
    assert (config.lookup_strategy, config.loss_strategy) == (FIXED, FIXED)
    assert config.lookup_chunks(50_000) == 1 and config.loss_chunks(1447) == 1


@pytest.mark.parametrize(
    "override, locations, expected",
    [
        ({"fixed_lookup_chunks": 3}, 10, 3),
        ({"fixed_lookup_chunks": 30}, 10, 10),  # never more chunks than locations
        ({"lookup_strategy": DYNAMIC, "dynamic_locations_per_lookup": 4}, 10, 3),
        ({"lookup_strategy": DYNAMIC, "dynamic_locations_per_lookup": 1, "dynamic_chunks_max": 7}, 100, 7),
        ({"lookup_strategy": DYNAMIC}, 0, 1),
    ],
)
def test_lookup_chunks(override, locations, expected):
    assert ChunkingConfig().override(override, "t").lookup_chunks(locations) == expected


@pytest.mark.parametrize(
    "override, events, expected",
    [
        ({"fixed_analysis_chunks": 4}, 1447, 4),
        ({"loss_strategy": DYNAMIC, "dynamic_events_per_analysis": 100}, 1447, 15),
        ({"loss_strategy": DYNAMIC}, 1447, 200),  # one event per chunk, capped by dynamic_chunks_max
        ({"loss_strategy": DYNAMIC, "dynamic_chunks_max": MAX_CHUNKS}, 5000, MAX_CHUNKS),
    ],
)
def test_loss_chunks(override, events, expected):
    assert ChunkingConfig().override(override, "t").loss_chunks(events) == expected


@pytest.mark.parametrize(
    "override, events, expected",
    [
        ({"fixed_analysis_chunks": 4}, 3, 3),
        ({"fixed_analysis_chunks": 4}, 1, 1),
        ({"fixed_analysis_chunks": MAX_CHUNKS}, 10, 10),
        ({"loss_strategy": DYNAMIC}, 7, 7),  # one event per chunk
        ({"loss_strategy": DYNAMIC, "dynamic_events_per_analysis": 3}, 10, 4),
        ({"loss_strategy": DYNAMIC, "dynamic_events_per_analysis": 100}, 1, 1),
    ],
)
def test_loss_chunks_of_a_small_run(override, events, expected):
    assert ChunkingConfig().override(override, "t").loss_chunks(events) == expected


@pytest.mark.parametrize(
    "override",
    [
        {"fixed_analysis_chunks": 4},
        {"fixed_analysis_chunks": MAX_CHUNKS},
        {"loss_strategy": DYNAMIC},
        {"loss_strategy": DYNAMIC, "dynamic_chunks_max": MAX_CHUNKS},
        {"loss_strategy": DYNAMIC, "dynamic_events_per_analysis": 3},
    ],
    ids=["fixed 4", "fixed max", "dynamic default", "dynamic up to max", "dynamic 3 per chunk"],
)
def test_loss_chunks_never_exceed_the_runs_events(override):
    """A loss chunk without an event would run an empty pipeline: a run of ``events`` events gets
    at least one chunk and at most ``events``, whatever the strategy."""
    config = ChunkingConfig().override(override, "t")
    counts = {events: config.loss_chunks(events) for events in range(1, 1100)}
    assert {events: count for events, count in counts.items() if not 1 <= count <= events} == {}


@pytest.mark.parametrize(
    "override, message",
    [
        ({"fixed_analysis_chunks": 0}, "chunking: fixed_analysis_chunks must be an integer >= 1, got 0"),
        ({"fixed_lookup_chunks": 2.5}, "chunking: fixed_lookup_chunks must be an integer >= 1, got 2.5"),
        ({"fixed_lookup_chunks": True}, "chunking: fixed_lookup_chunks must be an integer >= 1, got True"),
        ({"fixed_lookup_chunks": 1025}, "chunking: fixed_lookup_chunks must be at most 1024, got 1025"),
        ({"loss_strategy": "SOME"}, "chunking: loss_strategy must be one of ['FIXED_CHUNKS', 'DYNAMIC_CHUNKS'], got 'SOME'"),
        (
            {"chunks": 2},
            "chunking: unknown field(s) ['chunks']; known fields: ['dynamic_chunks_max', 'dynamic_events_per_analysis', "
            "'dynamic_locations_per_lookup', 'fill_pool_slots', 'fixed_analysis_chunks', 'fixed_lookup_chunks', 'lookup_strategy', "
            "'loss_strategy', 'min_chunk_ground_up_samples']",
        ),
        ([1, 2], "chunking: must be a JSON object, got list"),
        ({"fill_pool_slots": 1}, "chunking: fill_pool_slots must be true or false, got 1"),
        ({"fill_pool_slots": "yes"}, "chunking: fill_pool_slots must be true or false, got 'yes'"),
        ({"min_chunk_ground_up_samples": -1}, "chunking: min_chunk_ground_up_samples must be an integer >= 0, got -1"),
        ({"min_chunk_ground_up_samples": 1e8}, "chunking: min_chunk_ground_up_samples must be an integer >= 0, got 100000000.0"),
        ({"min_chunk_ground_up_samples": False}, "chunking: min_chunk_ground_up_samples must be an integer >= 0, got False"),
    ],
)
def test_bad_overrides_name_the_field(override, message):
    with pytest.raises(OasisInputError) as err:
        ChunkingConfig().override(override, "chunking")
    assert str(err.value) == message


@pytest.mark.parametrize(
    "override, events, slots, expected",
    [
        ({"fixed_analysis_chunks": 3}, 1447, 2, 4),  # rounded up: two full waves
        ({"fixed_analysis_chunks": 4}, 1447, 2, 4),  # already a multiple
        ({"fixed_analysis_chunks": 5}, 1447, 4, 8),
        ({"fixed_analysis_chunks": 1}, 1447, 8, 8),
        ({"fixed_analysis_chunks": 3}, 3, 2, 2),  # not more chunks than events: rounded down
        ({"fixed_analysis_chunks": 1}, 1, 2, 1),  # one event: one chunk, whatever the slots
        ({"fixed_analysis_chunks": 3}, 1447, 1, 3),  # one slot: nothing to fill
        ({"loss_strategy": DYNAMIC, "dynamic_events_per_analysis": 100}, 1447, 2, 16),  # 15 -> 16
        ({"loss_strategy": DYNAMIC, "dynamic_events_per_analysis": 1, "dynamic_chunks_max": 15}, 1447, 2, 14),  # capped: down
        ({"loss_strategy": DYNAMIC, "dynamic_events_per_analysis": 1}, 1447, 6, 198),  # 200 max -> 198
    ],
)
def test_fill_pool_slots_makes_the_loss_chunks_a_multiple_of_the_slots(override, events, slots, expected):
    assert ChunkingConfig().override(override | {"fill_pool_slots": True}, "t").loss_chunks(events, slots) == expected


def test_fill_pool_slots_is_off_by_default_and_then_changes_nothing():
    config = ChunkingConfig().override({"fixed_analysis_chunks": 3}, "t")
    assert config.fill_pool_slots is False
    assert config.loss_chunks(1447, 2) == 3


#: The default floor: 50 million ground-up samples a chunk.
FLOOR = ChunkingConfig().min_chunk_ground_up_samples


@pytest.mark.parametrize(
    "override, events, samples, expected",
    [
        ({"loss_strategy": DYNAMIC}, 1447, 10 * FLOOR, 10),  # 200 by events, capped at 10 by the work
        ({"loss_strategy": DYNAMIC}, 1447, 10 * FLOOR - 1, 9),  # rounded down: every chunk gets the floor's work
        ({"loss_strategy": DYNAMIC}, 1447, 1000 * FLOOR, 200),  # dynamic_chunks_max still caps
        ({"loss_strategy": DYNAMIC, "dynamic_events_per_analysis": 100}, 1447, 100 * FLOOR, 15),  # events cap first
        ({"loss_strategy": DYNAMIC}, 1447, 73_100, 1),  # PiWind: never below one chunk
        ({"loss_strategy": DYNAMIC}, 1447, 0, 1),
        ({"loss_strategy": DYNAMIC}, 1447, None, 200),  # no estimate: no floor
        ({"loss_strategy": DYNAMIC, "min_chunk_ground_up_samples": 0}, 1447, 73_100, 200),  # 0: off
        ({"loss_strategy": DYNAMIC, "min_chunk_ground_up_samples": 1000}, 1447, 7000, 7),
        ({"fixed_analysis_chunks": 40}, 1447, 73_100, 40),  # FIXED_CHUNKS is an explicit choice: never capped
    ],
)
def test_dynamic_loss_chunks_get_at_least_the_floors_ground_up_samples(override, events, samples, expected):
    assert ChunkingConfig().override(override, "t").loss_chunks(events, ground_up_samples=samples) == expected


def test_the_floor_applies_to_dynamic_loss_chunks_only():
    assert ChunkingConfig().floors_loss_chunks is False  # FIXED_CHUNKS by default
    assert ChunkingConfig().override({"loss_strategy": DYNAMIC}, "t").floors_loss_chunks is True
    assert ChunkingConfig().override({"loss_strategy": DYNAMIC, "min_chunk_ground_up_samples": 0}, "t").floors_loss_chunks is False
    # Lookup chunks are not loss chunks.
    assert ChunkingConfig().override({"lookup_strategy": DYNAMIC, "dynamic_locations_per_lookup": 1}, "t").lookup_chunks(50) == 50


@pytest.mark.parametrize(
    "samples, slots, expected",
    [
        (3 * FLOOR, 2, 2),  # capped at 3: filling 2 slots rounds down, never above the floor's cap
        (4 * FLOOR, 2, 4),
        (5 * FLOOR, 4, 4),
        (FLOOR, 2, 1),  # capped at 1: one chunk, whatever the slots
        (None, 6, 198),  # no estimate: as before (200 max -> 198)
    ],
)
def test_fill_pool_slots_never_rounds_above_the_floors_cap(samples, slots, expected):
    config = ChunkingConfig().override({"loss_strategy": DYNAMIC, "fill_pool_slots": True}, "t")
    assert config.loss_chunks(1447, slots, samples) == expected


def _exact_ground_up_samples(model: Path, run_dir: Path, samples: int) -> int:
    """Every event's hit items, from the model's own files read with numpy (footprint.idx/.bin, the event
    set) and the keys (one item per row): none of what :func:`steps.ground_up_samples` reads."""
    import numpy as np
    import pandas as pd

    index = np.fromfile(model / "footprint.idx", dtype=[("event_id", "<i4"), ("offset", "<i8"), ("size", "<i8")])
    footprint = (model / "footprint.bin").read_bytes()
    row = np.dtype([("areaperil_id", "<u4"), ("intensity_bin_id", "<i4"), ("probability", "<f4")])
    hit_areaperils = {
        int(e["event_id"]): np.frombuffer(footprint[int(e["offset"]):int(e["offset"]) + int(e["size"])], row)["areaperil_id"]
        for e in index
    }
    items = pd.read_csv(run_dir / "input" / "keys.csv")["AreaPerilID"].to_numpy()
    events = np.fromfile(model / "events_p.bin", dtype="<i4")
    return sum(int(np.isin(items, hit_areaperils[int(event)]).sum()) for event in events if int(event) in hit_areaperils) * samples


def test_ground_up_samples_of_a_prepared_run_folder(tmp_path):
    """The estimate on a synthetic model's prepared run folder: counted on 200 of its 400 events, within 5 %
    of the exact count (in expectation 300 locations x 2 coverages x 20/200 areaperils hit x 400 events x 6
    samples = 144,000); exact when every event is counted; None once the model data links are gone."""
    from oasis_ops.execution.environment import prepare_environment

    prepare_environment()
    from oasis_ops.execution import steps
    from oasis_ops.registry import load_registry

    spec = SyntheticModelSpec(locations=300, events=400, areaperils=200, areaperils_per_event=20, samples=6, vulnerabilities=4)
    root = build_synthetic_model(tmp_path / "model", spec)
    entry = {"supplier_id": "OasisAirflow", "model_id": "Synthetic", "version_id": "1", "path": "model"}
    (model,) = load_registry(write_registry(tmp_path / "registry.yaml", entry)).models
    exposure = {"location": root / "exposure" / "location.csv", "account": root / "exposure" / "account.csv"}
    settings = root / "analysis_settings.json"
    keys = steps.lookup_keys(model, exposure, 0, 1, tmp_path / "keys")
    inputs = steps.generate_inputs_from_keys(model, exposure, settings, [keys], tmp_path)
    run_dir = tmp_path / "run"
    steps.prepare_losses_dir(model, inputs, settings, run_dir)

    exact = _exact_ground_up_samples(root / "model_data", run_dir, spec.samples)
    assert exact == pytest.approx(144_000, rel=0.2)  # the spec's expectation: the locations' areaperils are random
    assert steps.ground_up_samples(run_dir, sample_events=spec.events) == exact
    assert steps.ground_up_samples(run_dir) == pytest.approx(exact, rel=0.05)
    steps.shareable_losses_dir(run_dir)
    assert steps.ground_up_samples(run_dir) is None
