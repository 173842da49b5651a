"""The synthetic model: registry layout, valid OED and settings, determinism, keys lookup.

A full loss run is left to the project's end-to-end tests; these stay at a few seconds each.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oasis_ops.config import OasisConfig

os.environ.setdefault("NUMBA_CACHE_DIR", str(OasisConfig.from_env().numba_cache_dir))

from ods_tools.oed import OedExposure
from ods_tools.oed.common import DEFAULT_VALIDATION_CONFIG
from ods_tools.oed.settings import AnalysisSettingHandler, ModelSettingHandler

from oasis_ops.tools.synthetic import SyntheticModelSpec, build_synthetic_model, main

TINY = SyntheticModelSpec(locations=12, events=7, areaperils=5, vulnerabilities=3, intensity_bins=4, damage_bins=5,
                          samples=2, periods=20, locations_per_account=5)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def default_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_synthetic_model(tmp_path_factory.mktemp("default") / "model")


def test_layout_and_oasislmf_json_paths_are_relative(default_model: Path) -> None:
    config = json.loads((default_model / "oasislmf.json").read_text())
    for key in ("lookup_config_json", "lookup_data_dir", "model_data_dir", "model_settings_json"):
        assert not os.path.isabs(config[key]), key
        assert (default_model / config[key]).exists(), key
    for name in ("exposure/location.csv", "exposure/account.csv", "analysis_settings.json",
                 "meta-data/model_settings.json", "keys_data/lookup_config.json"):
        assert (default_model / name).is_file(), name
    model_data = default_model / config["model_data_dir"]
    for name in ("footprint.bin", "footprint.idx", "vulnerability.bin", "damage_bin_dict.bin",
                 "events_p.bin", "occurrence.bin", "returnperiods.bin"):
        assert (model_data / name).stat().st_size > 0, name
    assert json.loads((default_model / "synthetic_spec.json").read_text()) == dataclasses.asdict(SyntheticModelSpec())


def test_model_data_sizes_follow_the_spec(default_model: Path) -> None:
    spec = SyntheticModelSpec()
    model_data = default_model / "model_data"
    events = np.fromfile(model_data / "events_p.bin", dtype="i4")
    assert events.tolist() == list(range(1, spec.events + 1))
    assert np.fromfile(model_data / "vulnerability.bin", dtype="i4", count=1)[0] == spec.damage_bins
    assert np.fromfile(model_data / "footprint.bin", dtype="i4", count=1)[0] == spec.intensity_bins
    index = np.fromfile(model_data / "footprint.idx", dtype=[("event_id", "i4"), ("offset", "i8"), ("size", "i8")])
    assert index["event_id"].tolist() == list(range(1, spec.events + 1))


def test_exposure_passes_every_ods_tools_check(default_model: Path) -> None:
    strict = [dict(check, on_error="raise") for check in DEFAULT_VALIDATION_CONFIG]
    exposure = OedExposure(location=str(default_model / "exposure/location.csv"),
                           account=str(default_model / "exposure/account.csv"))
    exposure.check(validation_config=strict)
    locations = exposure.location.dataframe
    assert len(locations) == SyntheticModelSpec().locations
    assert set(locations["AccNumber"]) == set(exposure.account.dataframe["AccNumber"])


def test_settings_validate_as_oasislmf_loads_them(default_model: Path) -> None:
    spec = SyntheticModelSpec()
    model_settings_path = default_model / "meta-data/model_settings.json"
    model_settings = ModelSettingHandler.make().load(model_settings_path)
    assert model_settings["model_default_samples"] == spec.samples
    assert model_settings["model_settings"]["event_set"]["options"] == [
        {"id": "p", "desc": "Probabilistic", "number_of_events": spec.events}
    ]
    # raise_warnings as in oasislmf's own loader; model_setting_json checks the event set against the model's.
    handler = AnalysisSettingHandler.make(model_setting_json=str(model_settings_path), raise_warnings=True)
    analysis = handler.load(default_model / "analysis_settings.json")
    assert analysis["model_settings"]["event_set"] == "p"
    assert analysis["number_of_samples"] == spec.samples
    assert analysis["gul_output"] and analysis["il_output"]


def test_same_spec_gives_identical_files(tmp_path: Path) -> None:
    first = _files(build_synthetic_model(tmp_path / "a", TINY))
    second = _files(build_synthetic_model(tmp_path / "b", TINY))
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []


def test_other_seed_gives_other_data(tmp_path: Path) -> None:
    first = _files(build_synthetic_model(tmp_path / "a", TINY))
    second = _files(build_synthetic_model(tmp_path / "b", dataclasses.replace(TINY, seed=TINY.seed + 1)))
    changed = {name for name in first if first[name] != second[name]}
    assert {"exposure/location.csv", "model_data/footprint.bin", "model_data/vulnerability.bin"} <= changed


def test_build_leaves_numpy_global_random_state_alone(tmp_path: Path) -> None:
    np.random.seed(99)
    expected = np.random.random(3)
    np.random.seed(99)
    build_synthetic_model(tmp_path / "m", TINY)
    assert np.random.random(3).tolist() == expected.tolist()


def test_existing_model_is_replaced_only_with_overwrite(tmp_path: Path) -> None:
    root = build_synthetic_model(tmp_path / "m", TINY)
    (root / "stale.txt").write_text("from an earlier build")
    with pytest.raises(FileExistsError, match="not empty"):
        build_synthetic_model(root, TINY)
    build_synthetic_model(root, TINY, overwrite=True)
    assert not (root / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging folder left behind


def test_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"SyntheticModelSpec\.vulnerabilities needs 500000 occupancy x construction"):
        build_synthetic_model(tmp_path / "m", SyntheticModelSpec(vulnerabilities=1_000_000))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(SyntheticModelSpec)])
@pytest.mark.parametrize("value", [0, -3, 2.5, "10", True])
def test_spec_rejects_non_positive_or_non_integer_values(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"SyntheticModelSpec\.{name} must be an integer >= 1"):
        SyntheticModelSpec(**{name: value})


def test_spec_rejects_inconsistent_values() -> None:
    with pytest.raises(ValueError, match=r"SyntheticModelSpec\.damage_bins must be >= 2"):
        SyntheticModelSpec(damage_bins=1)
    with pytest.raises(ValueError, match=r"areaperils_per_event \(6\) must not exceed areaperils \(5\)"):
        SyntheticModelSpec(areaperils=5, areaperils_per_event=6)
    assert SyntheticModelSpec(areaperils=5, areaperils_per_event=5).areaperils_per_event == 5


def test_cli_builds_the_spec_from_its_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flags = {"--locations": 9, "--events": 4, "--areaperils": 3, "--areaperils-per-event": 2, "--samples": 3}
    main(["--out", str(tmp_path / "m"), *[str(x) for item in flags.items() for x in item]])
    assert capsys.readouterr().out.strip() == str(tmp_path / "m")
    written = json.loads((tmp_path / "m" / "synthetic_spec.json").read_text())
    expected = SyntheticModelSpec(locations=9, events=4, areaperils=3, areaperils_per_event=2, samples=3)
    assert written == dataclasses.asdict(expected)


def test_cli_reports_invalid_values_as_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "m"), "--events", "0"])
    assert exit_info.value.code == 2
    assert "SyntheticModelSpec.events must be an integer >= 1" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_keys_lookup_maps_every_location(tmp_path: Path) -> None:
    from oasislmf.manager import OasisManager

    spec = dataclasses.replace(TINY, locations=60, areaperils=20, vulnerabilities=7)
    root = build_synthetic_model(tmp_path / "m", spec)
    config = json.loads((root / "oasislmf.json").read_text())
    inputs = tmp_path / "inputs"
    OasisManager().generate_files(
        oasis_files_dir=str(inputs),
        lookup_config_json=str(root / config["lookup_config_json"]),
        lookup_data_dir=str(root / config["lookup_data_dir"]),
        model_settings_json=str(root / config["model_settings_json"]),
        analysis_settings_json=str(root / "analysis_settings.json"),
        oed_location_csv=str(root / "exposure/location.csv"),
        oed_accounts_csv=str(root / "exposure/account.csv"),
    )
    assert pd.read_parquet(inputs / "keys-errors.parquet").empty
    keys = pd.read_parquet(inputs / "keys.parquet")
    assert len(keys) == 2 * spec.locations  # a building and a contents key per location
    assert sorted(keys["LocID"].unique()) == list(range(1, spec.locations + 1))
    assert set(keys["CoverageTypeID"]) == {1, 3}
    assert keys["AreaPerilID"].between(1, spec.areaperils).all()
    assert set(keys["VulnerabilityID"]) <= set(range(1, spec.vulnerabilities + 1))
    for name in ("items.bin", "coverages.bin", "correlations.bin", "fm_programme.bin", "fm_profile.bin",
                 "gul_summary_map.csv", "fm_summary_map.csv"):
        assert (inputs / name).is_file(), name
