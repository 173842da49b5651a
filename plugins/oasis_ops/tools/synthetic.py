"""A synthetic Oasis model, built on demand: the project may never commit model data.

``make demo`` builds a small one in seconds; benchmarks build big ones where modelling dominates.
The model data (footprint, vulnerability, damage bins, events, occurrence) comes from oasislmf's
own dummy-model writers. Those alone cannot feed ``generate-losses`` (no OED exposure, no keys
lookup, no settings), so this module adds what a real model ships: an OED portfolio, data for
oasislmf's built-in lookup, model and analysis settings, and an ``oasislmf.json`` whose paths are
relative to the model root, as in the registry's layout::

    <root>/oasislmf.json
    <root>/meta-data/model_settings.json
    <root>/model_data/    footprint, vulnerability, damage_bin_dict, events_p, occurrence, returnperiods
    <root>/keys_data/     lookup_config.json, areaperil_dict.csv, vulnerability_dict.csv
    <root>/exposure/      location.csv, account.csv
    <root>/analysis_settings.json
    <root>/synthetic_spec.json   the spec it was built from

Every random draw is seeded from the spec, so a spec always gives byte-identical files.

CLI: ``python -m oasis_ops.tools.synthetic --out DIR [--locations N --events N ...] [--force]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from oasislmf.computation.data.dummy_model.generate import (
    DamageBinDictFile,
    EventsFile,
    FootprintBinFile,
    OccurrenceFile,
    VulnerabilityFile,
)
from oasislmf.pytools.common.data import returnperiods_dtype
from ods_tools.oed import OedSchema

SUPPLIER_ID = "OasisAirflow"  # as in models/registry.yaml
MODEL_ID = "Synthetic"
PERIL = "WTC"
EVENT_SET = "p"
CURRENCY = "USD"
COUNTRY = "US"
#: OED coverage types the lookup pivots every location into: building and contents.
COVERAGE_TYPES = (1, 3)
#: Written to model_data, so that EPT outputs work without ``return_periods`` in the analysis.
RETURN_PERIODS = (10000, 5000, 1000, 500, 250, 200, 100, 50, 25, 10, 5, 2)
#: South-west corner and cell size (degrees) of the grid of areaperils the locations sit in.
GRID_ORIGIN = (25.0, -82.0)
GRID_CELL = 0.01


def _spec_field(default: int | None, doc: str) -> Any:
    """A spec field whose ``doc`` is also its CLI help."""
    return field(default=default, metadata={"help": doc})


@dataclass(frozen=True)
class SyntheticModelSpec:
    """The size of a synthetic model; every field is an integer >= 1 (or None where noted)."""

    locations: int = _spec_field(100, "OED locations, each with a building and a contents coverage")
    events: int = _spec_field(100, "events in the event set 'p'")
    areaperils: int = _spec_field(50, "areaperils (grid cells) the locations are spread over")
    vulnerabilities: int = _spec_field(10, "vulnerability functions")
    intensity_bins: int = _spec_field(20, "hazard intensity bins")
    damage_bins: int = _spec_field(20, "damage bins (>= 2: the first is no damage, the last total loss)")
    samples: int = _spec_field(10, "samples per event (model_default_samples, number_of_samples)")
    seed: int = _spec_field(1234, "seed of every random draw")
    periods: int = _spec_field(1000, "periods (years) of the occurrence file")
    areaperils_per_event: int | None = _spec_field(None, "areaperils each event hits (default: all)")
    locations_per_account: int = _spec_field(10, "locations per OED account (one policy each)")

    def __post_init__(self) -> None:
        for spec_field in dataclasses.fields(self):
            value = getattr(self, spec_field.name)
            if value is None and spec_field.default is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SyntheticModelSpec.{spec_field.name} must be an integer >= 1, got {value!r}")
        if self.damage_bins < 2:
            raise ValueError(
                f"SyntheticModelSpec.damage_bins must be >= 2 (no damage and total loss), got {self.damage_bins}"
            )
        if self.areaperils_per_event is not None and self.areaperils_per_event > self.areaperils:
            raise ValueError(
                f"SyntheticModelSpec.areaperils_per_event ({self.areaperils_per_event}) "
                f"must not exceed areaperils ({self.areaperils})"
            )

    @property
    def vulnerability_classes(self) -> int:
        """Location classes (occupancy x construction), each mapped to one vulnerability per coverage."""
        return math.ceil(self.vulnerabilities / len(COVERAGE_TYPES))


def build_synthetic_model(
    root: Path, spec: SyntheticModelSpec = SyntheticModelSpec(), *, overwrite: bool = False
) -> Path:
    """Write the synthetic model of ``spec`` at ``root`` and return ``root``.

    The model is built in a sibling temporary folder and renamed into place, so a reader never
    sees a half-written model and a failed build leaves nothing behind. An existing non-empty
    ``root`` is replaced only with ``overwrite``.
    """
    root = Path(root)
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(f"{root} exists and is not empty (pass overwrite=True / --force to replace it)")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide the model from workers running as another user
    try:
        _write_model(staging, spec)
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root


def _write_model(root: Path, spec: SyntheticModelSpec) -> None:
    for folder in ("meta-data", "model_data", "keys_data", "exposure"):
        (root / folder).mkdir()
    classes = _vulnerability_classes(spec.vulnerability_classes)
    _write_model_data(root / "model_data", spec)
    _write_keys_data(root / "keys_data", spec, classes)
    _write_exposure(root / "exposure", spec, classes)
    _write_json(root / "meta-data" / "model_settings.json", _model_settings(spec))
    _write_json(root / "analysis_settings.json", _analysis_settings(spec))
    _write_json(
        root / "oasislmf.json",
        {
            "lookup_config_json": "keys_data/lookup_config.json",
            "lookup_data_dir": "keys_data",
            "model_data_dir": "model_data",
            "model_settings_json": "meta-data/model_settings.json",
            "gulmc": True,
        },
    )
    _write_json(root / "synthetic_spec.json", dataclasses.asdict(spec))


@contextmanager
def _numpy_global_seed_restored() -> Iterator[None]:
    """oasislmf's writers seed numpy's global generator; leave the caller's state as it was."""
    state = np.random.get_state()
    try:
        yield
    finally:
        np.random.set_state(state)


def _write_model_data(model_data: Path, spec: SyntheticModelSpec) -> None:
    """Model files from oasislmf's dummy-model writers, named as an event set 'p' model expects."""
    directory = str(model_data)
    writers = [
        VulnerabilityFile(spec.vulnerabilities, spec.intensity_bins, spec.damage_bins, 1.0, spec.seed, directory),
        FootprintBinFile(
            spec.events, spec.areaperils, spec.areaperils_per_event or spec.areaperils,
            spec.intensity_bins, 1.0, False, spec.seed, directory,
        ),
        DamageBinDictFile(spec.damage_bins, directory),
        EventsFile(spec.events, directory),
        OccurrenceFile(spec.events, spec.periods, spec.seed, directory, mean=1, stddev=0),
    ]
    with _numpy_global_seed_restored():
        for writer in writers:
            writer.write_file()
    # oasislmf picks events_<event_set>.bin when the analysis names an event set.
    (model_data / "events.bin").rename(model_data / f"events_{EVENT_SET}.bin")
    return_periods = np.empty(len(RETURN_PERIODS), dtype=returnperiods_dtype)
    return_periods["return_period"] = RETURN_PERIODS
    return_periods.tofile(model_data / "returnperiods.bin")


def _vulnerability_classes(count: int) -> list[tuple[int, int]]:
    """``count`` distinct (OccupancyCode, ConstructionCode) pairs, all valid OED codes."""
    schema = OedSchema.from_oed_schema_info(None).schema
    occupancy = sorted(int(code) for code in schema["occupancy"])
    construction = sorted(int(code) for code in schema["construction"])
    if count > len(occupancy) * len(construction):
        raise ValueError(
            f"SyntheticModelSpec.vulnerabilities needs {count} occupancy x construction classes, "
            f"OED has {len(occupancy) * len(construction)}"
        )
    return [(occupancy[k % len(occupancy)], construction[k // len(occupancy)]) for k in range(count)]


def _postal_code(areaperil_id: int) -> str:
    return f"SYN{areaperil_id:07d}"


def _write_keys_data(keys_data: Path, spec: SyntheticModelSpec, classes: Sequence[tuple[int, int]]) -> None:
    """Lookup by merges only (no geometry): PostalCode -> areaperil, class and coverage -> vulnerability."""
    areaperil_ids = np.arange(1, spec.areaperils + 1)
    pd.DataFrame({"POSTALCODE": [_postal_code(int(a)) for a in areaperil_ids], "AREA_PERIL_ID": areaperil_ids}).to_csv(
        keys_data / "areaperil_dict.csv", index=False
    )
    rows = [
        (coverage_type, occupancy, construction, (len(COVERAGE_TYPES) * k + j) % spec.vulnerabilities + 1)
        for k, (occupancy, construction) in enumerate(classes)
        for j, coverage_type in enumerate(COVERAGE_TYPES)
    ]
    pd.DataFrame(rows, columns=["COVERAGE_TYPE", "OCCUPANCYCODE", "CONSTRUCTIONCODE", "VULNERABILITY_ID"]).to_csv(
        keys_data / "vulnerability_dict.csv", index=False
    )
    lookup_config = {
        "model": {"supplier_id": SUPPLIER_ID, "model_id": MODEL_ID, "model_version": "1"},
        "builtin_lookup_type": "new_lookup",
        "keys_data_path": "./",
        "step_definition": {
            "split_loc_perils_covered": {
                "type": "split_loc_perils_covered",
                "columns": ["locperilscovered"],
                "parameters": {"model_perils_covered": [PERIL]},
            },
            "areaperil": {
                "type": "merge",
                "columns": ["postalcode"],
                "parameters": {"file_path": "%%KEYS_DATA_PATH%%/areaperil_dict.csv", "id_columns": ["area_peril_id"]},
            },
            "create_coverage_type": {
                "type": "simple_pivot",
                "parameters": {"pivots": [{"new_cols": {"coverage_type": c}} for c in COVERAGE_TYPES]},
            },
            "vulnerability": {
                "type": "merge",
                "columns": ["coverage_type", "occupancycode", "constructioncode"],
                "parameters": {
                    "file_path": "%%KEYS_DATA_PATH%%/vulnerability_dict.csv",
                    "id_columns": ["vulnerability_id"],
                },
            },
        },
        "strategy": ["split_loc_perils_covered", "areaperil", "create_coverage_type", "vulnerability"],
    }
    _write_json(keys_data / "lookup_config.json", lookup_config)


def _write_exposure(exposure: Path, spec: SyntheticModelSpec, classes: Sequence[tuple[int, int]]) -> None:
    """OED locations spread over the areaperil grid, and one single-layer policy per account.

    The policy has a blanket deductible and a limit below the account's value, so insured losses
    are non-zero and differ from ground-up ones.
    """
    rng = np.random.default_rng(spec.seed)
    n = spec.locations
    areaperil = rng.integers(1, spec.areaperils + 1, size=n)
    vuln_class = rng.integers(0, len(classes), size=n)
    offset = rng.random((n, 2))
    building_tiv = rng.integers(100, 1001, size=n) * 1000
    contents_tiv = building_tiv // 2
    columns = math.ceil(math.sqrt(spec.areaperils))
    row, column = np.divmod(areaperil - 1, columns)
    account = np.arange(n) // spec.locations_per_account + 1
    occupancy, construction = np.array(classes).T
    locations = pd.DataFrame(
        {
            "PortNumber": 1,
            "AccNumber": [f"A{a}" for a in account],
            "LocNumber": [f"L{i}" for i in range(1, n + 1)],
            "CountryCode": COUNTRY,
            "Latitude": np.round(GRID_ORIGIN[0] + (row + offset[:, 0]) * GRID_CELL, 6),
            "Longitude": np.round(GRID_ORIGIN[1] + (column + offset[:, 1]) * GRID_CELL, 6),
            "PostalCode": [_postal_code(a) for a in areaperil],
            "OccupancyCode": occupancy[vuln_class],
            "ConstructionCode": construction[vuln_class],
            "LocPerilsCovered": PERIL,
            "BuildingTIV": building_tiv,
            "ContentsTIV": contents_tiv,
            "LocCurrency": CURRENCY,
        }
    )
    locations.to_csv(exposure / "location.csv", index=False)

    account_tiv = pd.Series(building_tiv + contents_tiv).groupby(account).sum()
    accounts = pd.DataFrame(
        {
            "PortNumber": 1,
            "AccNumber": [f"A{a}" for a in account_tiv.index],
            "AccCurrency": CURRENCY,
            "PolNumber": [f"P{a}" for a in account_tiv.index],
            "PolPerilsCovered": PERIL,
            "PolPeril": PERIL,
            "PolDedType6All": 0,
            "PolDed6All": (account_tiv.to_numpy() // 50).round(-3),
            "LayerNumber": 1,
            "LayerParticipation": 1.0,
            "LayerAttachment": 0,
            "LayerLimit": (account_tiv.to_numpy() * 6 // 10).round(-3),
        }
    )
    accounts.to_csv(exposure / "account.csv", index=False)


def _model_settings(spec: SyntheticModelSpec) -> dict[str, Any]:
    """One peril in one correlation group, as PiWind has, so gulmc's correlated sampling is exercised."""
    return {
        "version": "3",
        "model_supplier_id": SUPPLIER_ID,
        "model_name_id": MODEL_ID,
        "model_default_samples": spec.samples,
        "model_settings": {
            "event_set": {
                "name": "Event Set",
                "desc": "Synthetic event set",
                "default": EVENT_SET,
                "options": [{"id": EVENT_SET, "desc": "Probabilistic", "number_of_events": spec.events}],
            },
        },
        "lookup_settings": {
            "supported_perils": [{"id": PERIL, "desc": "Single Peril: Tropical Cyclone", "peril_correlation_group": 1}],
        },
        "correlation_settings": [
            {"peril_correlation_group": 1, "damage_correlation_value": "0.5", "hazard_correlation_value": "0.0"},
        ],
    }


def _analysis_settings(spec: SyntheticModelSpec) -> dict[str, Any]:
    """GUL and IL, with ELT, PLT, ALT (for AAL) and EPT (for loss exceedance curves).

    Each output is one or more pytools processes that take 1-4 s each just to start, so the
    list is kept short: it sets the fixed cost of every run, whatever the model's size.

    Only ORD outputs: oasislmf 2.5 rejects the legacy ``aalcalc``/``leccalc``/``eltcalc``/``pltcalc``
    keys ("'aalcalc' has no effect in oasis 2.5.x and newer" is a validation error there).
    """
    summary = {
        "id": 1,
        "ord_output": {
            "elt_sample": True,
            "plt_sample": True,
            "plt_moment": True,
            "alt_period": True,
            "ept_full_uncertainty_aep": True,
            "ept_full_uncertainty_oep": True,
            "ept_mean_sample_aep": True,
            "ept_mean_sample_oep": True,
            "return_period_file": True,
        },
    }
    return {
        "version": "3",
        "source_tag": "oasis_ops",
        "analysis_tag": "synthetic",
        "model_supplier_id": SUPPLIER_ID,
        "model_name_id": MODEL_ID,
        "model_settings": {"event_set": EVENT_SET},
        "number_of_samples": spec.samples,
        "gul_threshold": 0,
        "gul_output": True,
        "gul_summaries": [summary],
        "il_output": True,
        "il_summaries": [summary],
    }


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=4) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m oasis_ops.tools.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="model root to write")
    parser.add_argument("--force", action="store_true", help="replace an existing non-empty --out")
    for spec_field in dataclasses.fields(SyntheticModelSpec):
        parser.add_argument(
            f"--{spec_field.name.replace('_', '-')}",
            type=int,
            default=spec_field.default,
            help=f"{spec_field.metadata['help']} (default: {spec_field.default})",
        )
    args = parser.parse_args(argv)
    try:
        spec = SyntheticModelSpec(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SyntheticModelSpec)})
        print(build_synthetic_model(args.out, spec, overwrite=args.force))
    except (ValueError, FileExistsError) as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    main()
