"""An analysis' figures read from its ``output/`` folder: AAL, OEP/AEP curves and losses at the
standard return periods, per perspective (GUL / IL / RI), summary set and summary id.

ORD outputs (``ept``, ``psept``, ``palt``/``alt``/``altmeanonly``, CSV or parquet) and legacy ktools
outputs (``leccalc_*``, ``aalcalc``) are read alike. Return-period losses are not additive, so they are
never summed across summary ids: each summary id keeps its own curve, and the portfolio's curve is
that of a portfolio-level summary set (one summary id for all the exposure), listed first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import ObjectStoragePath

    Folder = Path | ObjectStoragePath

#: Return periods users look for in a loss table; those a curve has are shown.
STANDARD_RETURN_PERIODS = (10, 25, 50, 100, 200, 250, 500, 1000)
#: Summary ids of one summary set whose figures are given (the lowest ids): a location-level set may
#: have tens of thousands, whose curves no page can show; the files hold them all.
MAX_SUMMARY_IDS = 50


class Perspective(StrEnum):
    """Ground-up, insured (direct) and net of reinsurance losses."""

    GUL = "gul"
    IL = "il"
    RI = "ri"


class EPType(StrEnum):
    """Occurrence (largest event loss in a period) and aggregate (sum over a period) exceedance."""

    OEP = "OEP"
    AEP = "AEP"


class EPCalc(StrEnum):
    """How a curve treats the samples: all pooled, averaged per period first, or one curve per
    sample averaged by return period."""

    FULL_UNCERTAINTY = "full_uncertainty"
    SAMPLE_MEAN = "sample_mean"
    PER_SAMPLE_MEAN = "per_sample_mean"


class AALType(StrEnum):
    ANALYTICAL = "analytical"
    SAMPLE = "sample"


class OutputKind(StrEnum):
    ORD = "ORD"
    LEGACY = "legacy"


#: ORD codes (``EPCalc``, ``EPType`` of EPT files; ``SampleType`` of ALT files) and their legacy twins
#: (``type`` of leccalc sample-mean files and of aalcalc files: 1 analytical, 2 from the samples).
ORD_EP_CALC = {2: EPCalc.FULL_UNCERTAINTY, 4: EPCalc.SAMPLE_MEAN, 3: EPCalc.PER_SAMPLE_MEAN}
ORD_EP_TYPE = {1: EPType.OEP, 3: EPType.AEP}
SAMPLE_TYPE = {1: AALType.ANALYTICAL, 2: AALType.SAMPLE}
LEGACY_SAMPLES = 2
LEGACY_EP_CALC = {
    "full_uncertainty": EPCalc.FULL_UNCERTAINTY,
    "sample_mean": EPCalc.SAMPLE_MEAN,
    "wheatsheaf_mean": EPCalc.PER_SAMPLE_MEAN,
}
#: Settings switches that ask for EP outputs: ORD ``ord_output`` keys, legacy ``leccalc`` keys.
ORD_EP_SWITCH = re.compile(r"^(ept|psept)_")
LEGACY_EP_SWITCHES = tuple(f"{name}_{ep}" for name in (*LEGACY_EP_CALC, "wheatsheaf") for ep in ("oep", "aep"))
#: ``<perspective>_S<set>_<report>.<csv|parquet>``: the final (net) outputs; RI's intermediate
#: inuring priorities (``ri_IP1_S1_…``) are downloads only.
OUTPUT_FILE = re.compile(
    r"^(?P<perspective>gul|il|ri)_S(?P<set>\d+)_(?P<report>ept|psept|palt|alt|altmeanonly|aalcalc|summary-info"
    r"|leccalc_(?P<calc>full_uncertainty|sample_mean|wheatsheaf_mean|wheatsheaf)_(?P<ep>oep|aep))\.(?P<ext>csv|parquet)$"
)
#: Reports of each kind of outputs.
ORD_REPORTS = frozenset({"ept", "psept", "palt", "alt", "altmeanonly"})
LEGACY_REPORT = re.compile(r"^(aalcalc|leccalc_.*)$")
#: summary-info columns (normalised by :func:`_normal`) that are not the set's grouping fields.
INFO_COLUMNS = frozenset({"summaryid", "tiv", "notset"})


@dataclass(frozen=True)
class AAL:
    perspective: Perspective
    summary_set: int
    summary_id: int
    type: AALType
    mean: float
    #: None where the file has no standard deviation (``altmeanonly``).
    sd: float | None
    file: str


@dataclass(frozen=True)
class Curve:
    """One exceedance curve, return periods ascending."""

    perspective: Perspective
    summary_set: int
    summary_id: int
    ep_type: EPType
    calc: EPCalc
    return_periods: tuple[float, ...]
    losses: tuple[float, ...]
    file: str

    def at(self, return_period: float) -> float | None:
        """The loss at a return period the curve has (no interpolation)."""
        for period, loss in zip(self.return_periods, self.losses, strict=True):
            if abs(period - return_period) < 1e-6:
                return loss
        return None


@dataclass(frozen=True)
class SummaryId:
    id: int
    #: The grouping fields' values (``LocNumber=3``), or ``All`` for a portfolio-level set.
    label: str
    tiv: float | None


@dataclass(frozen=True)
class SummarySet:
    """One perspective's summary set: what it groups by and its summary ids."""

    perspective: Perspective
    id: int
    #: OED fields the set groups by (none: the whole portfolio in one summary id).
    fields: tuple[str, ...]
    summary_ids: tuple[SummaryId, ...]
    #: Summary ids the outputs hold, of which the figures give the first :data:`MAX_SUMMARY_IDS`.
    total_summary_ids: int

    @property
    def portfolio_level(self) -> bool:
        """No grouping field: the set's one summary id holds all the exposure."""
        return not self.fields


@dataclass(frozen=True)
class Results:
    """Everything the results page and ``GET …/summary`` show of one output folder."""

    kind: OutputKind | None
    #: From the analysis settings: whether any summary asked for EP outputs (None: no settings).
    ep_requested: bool | None
    summary_sets: tuple[SummarySet, ...]
    aal: tuple[AAL, ...]
    curves: tuple[Curve, ...]
    files: tuple[str, ...] = field(default=())

    @property
    def set_ids(self) -> list[int]:
        """Summary set ids, portfolio-level sets (in every perspective that has them) first."""
        ids = sorted({s.id for s in self.summary_sets})
        return sorted(ids, key=lambda i: not all(s.portfolio_level for s in self.summary_sets if s.id == i))

    def aal_of(self, perspective: Perspective, summary_set: int, summary_id: int, kind: AALType) -> AAL | None:
        return next((a for a in self.aal if (a.perspective, a.summary_set, a.summary_id, a.type) == (perspective, summary_set, summary_id, kind)), None)

    @property
    def ep_message(self) -> str | None:
        """Why there is no curve, when there is none."""
        if self.curves:
            return None
        if self.ep_requested is False:
            return "This analysis requested no EP outputs: no summary of its analysis settings has an ept_* or psept_* output (or legacy leccalc)."
        if not self.files:
            return "There are no outputs (yet)."
        return "The outputs hold no EP files (ept, psept or leccalc)."

    def return_period_losses(self) -> list[dict[str, Any]]:
        """Losses at the standard return periods each curve has, one row per curve and return period."""
        rows = []
        for curve in self.curves:
            for period in STANDARD_RETURN_PERIODS:
                loss = curve.at(period)
                if loss is not None:
                    rows.append(_key(curve) | {"ep_type": curve.ep_type, "calc": curve.calc, "return_period": period, "loss": loss})
        return rows

    def to_json(self) -> dict[str, Any]:
        sets = []
        for set_id in self.set_ids:
            members = [s for s in self.summary_sets if s.id == set_id]
            sets.append(
                {
                    "id": set_id,
                    "portfolio_level": all(s.portfolio_level for s in members),
                    "description": describe_set(members),
                    "perspectives": {
                        s.perspective.value: {
                            "fields": list(s.fields),
                            "summary_ids": [asdict(i) for i in s.summary_ids],
                            "total_summary_ids": s.total_summary_ids,
                        }
                        for s in members
                    },
                }
            )
        return {
            "kind": self.kind,
            "ep_requested": self.ep_requested,
            "ep_message": self.ep_message,
            "perspectives": [p.value for p in Perspective if any(s.perspective is p for s in self.summary_sets)],
            "summary_sets": sets,
            "aal": [asdict(a) for a in self.aal],
            "curves": [asdict(c) | {"return_periods": list(c.return_periods), "losses": list(c.losses)} for c in self.curves],
            "standard_return_periods": list(STANDARD_RETURN_PERIODS),
            "return_period_losses": self.return_period_losses(),
            "files": list(self.files),
        }


def _key(item: AAL | Curve) -> dict[str, Any]:
    return {"perspective": item.perspective, "summary_set": item.summary_set, "summary_id": item.summary_id}


def describe_set(members: Iterable[SummarySet]) -> str:
    """``portfolio level`` or ``by LocNumber (10 summary ids)``, naming the perspectives where they differ."""
    texts: dict[str, list[str]] = {}
    for s in members:
        text = "portfolio level (one summary id for all the exposure)" if s.portfolio_level else (
            f"by {', '.join(s.fields) or 'summary id'} ({s.total_summary_ids} summary ids"
            + (f", the first {len(s.summary_ids)} shown)" if len(s.summary_ids) < s.total_summary_ids else ")")
        )
        texts.setdefault(text, []).append(s.perspective.value.upper())
    if len(texts) == 1:
        return next(iter(texts))
    return "; ".join(f"{'/'.join(perspectives)}: {text}" for text, perspectives in texts.items())


# --- reading ---


def read_results(output: Folder, settings: Mapping[str, Any] | None = None) -> Results:
    """The figures of an ``output/`` folder. The analysis settings say which EP outputs were asked
    for and what each summary set groups by: the folder's own ``analysis_settings.json`` (oasislmf
    writes the settings the outputs were made with there), else ``settings``."""
    import json

    names = sorted(p.name for p in output.iterdir() if p.is_file()) if output.exists() else []
    if "analysis_settings.json" in names:
        settings = json.loads((output / "analysis_settings.json").read_text())
    files: dict[tuple[Perspective, int], dict[str, str]] = {}
    for name in names:
        match = OUTPUT_FILE.match(name)
        if match:
            report = match["report"] if not match["calc"] else f"leccalc_{match['calc']}_{match['ep']}"
            files.setdefault((Perspective(match["perspective"]), int(match["set"])), {})[report] = name
    sets, aal, curves = [], [], []
    for (perspective, set_id), reports in sorted(files.items()):
        if set(reports) == {"summary-info"}:
            continue  # a set with only element-level outputs (ELT, PLT): nothing to show here
        summary_set = _summary_set(output, perspective, set_id, reports, settings)
        wanted = {i.id for i in summary_set.summary_ids}
        sets.append(summary_set)
        aal += _aal(output, perspective, set_id, reports, wanted)
        curves += _curves(output, perspective, set_id, reports, wanted)
    found = {report for reports in files.values() for report in reports}
    kind = OutputKind.ORD if found & ORD_REPORTS else OutputKind.LEGACY if any(LEGACY_REPORT.match(r) for r in found) else None
    return Results(kind, ep_requested(settings) if settings is not None else None, tuple(sets), tuple(aal), tuple(curves), tuple(names))


def ep_requested(settings: Mapping[str, Any]) -> bool:
    """Whether any summary of an enabled perspective asks for an EP output (ORD or legacy)."""
    for perspective in Perspective:
        if not settings.get(f"{perspective}_output"):
            continue
        for summary in settings.get(f"{perspective}_summaries") or []:
            ord_output = summary.get("ord_output") or {}
            if any(ORD_EP_SWITCH.match(key) and value for key, value in ord_output.items()):
                return True
            leccalc = summary.get("leccalc") or {}
            if summary.get("lec_output") and any(leccalc.get(key) for key in LEGACY_EP_SWITCHES):
                return True
    return False


def _normal(column: str) -> str:
    """A column name lower-cased without underscores: ORD's ``SummaryId`` and ktools' ``summary_id`` alike."""
    return column.lower().replace("_", "")


def _table(output: Folder, name: str, normalise: bool = True) -> pd.DataFrame:
    """An output file, CSV or parquet, with :func:`_normal` column names unless not ``normalise``."""
    import pandas as pd

    with (output / name).open("rb") as handle:
        table = pd.read_parquet(handle) if name.endswith(".parquet") else pd.read_csv(handle)
    if normalise:
        table.columns = [_normal(str(c)) for c in table.columns]
    return table


def _summary_set(
    output: Folder, perspective: Perspective, set_id: int, reports: Mapping[str, str], settings: Mapping[str, Any] | None
) -> SummarySet:
    fields: tuple[str, ...] | None = None
    for summary in (settings or {}).get(f"{perspective}_summaries") or []:
        if summary.get("id") == set_id:
            oed_fields = summary.get("oed_fields") or []
            fields = (oed_fields,) if isinstance(oed_fields, str) else tuple(oed_fields)
    ids: list[SummaryId] = []
    if "summary-info" in reports:
        info = _table(output, reports["summary-info"], normalise=False)
        columns = {_normal(str(c)): str(c) for c in info.columns}
        grouping = [original for normal, original in columns.items() if normal not in INFO_COLUMNS]
        if fields is None:
            fields = tuple(grouping)
        for _, row in info.sort_values(columns["summaryid"]).iterrows():
            label = ", ".join(f"{c}={row[c]}" for c in grouping) or "All"
            tiv = float(row[columns["tiv"]]) if "tiv" in columns else None
            ids.append(SummaryId(int(row[columns["summaryid"]]), label, tiv))
    else:
        found: set[int] = set()
        for report in reports.values():
            found |= {int(i) for i in _table(output, report)["summaryid"].unique()}
        ids = [SummaryId(i, f"summary id {i}", None) for i in sorted(found)]
    return SummarySet(perspective, set_id, fields or (), tuple(ids[:MAX_SUMMARY_IDS]), len(ids))


def _aal(output: Folder, perspective: Perspective, set_id: int, reports: Mapping[str, str], wanted: set[int]) -> list[AAL]:
    name = next((reports[r] for r in ("palt", "alt", "altmeanonly", "aalcalc") if r in reports), None)
    if name is None:
        return []
    table = _table(output, name)
    legacy = "meanloss" not in table.columns
    mean, sd, kind = ("mean", "standarddeviation", "type") if legacy else ("meanloss", "sdloss", "sampletype")
    rows = []
    for row in table[table["summaryid"].isin(wanted)].sort_values(["summaryid", kind]).itertuples(index=False):
        values = row._asdict()
        sample_type = SAMPLE_TYPE.get(int(values[kind]))
        if sample_type is not None:
            deviation = float(values[sd]) if sd in values else None
            rows.append(AAL(perspective, set_id, int(values["summaryid"]), sample_type, float(values[mean]), deviation, name))
    return rows


def _curves(output: Folder, perspective: Perspective, set_id: int, reports: Mapping[str, str], wanted: set[int]) -> list[Curve]:
    """The set's curves from its EPT (else PSEPT) or legacy leccalc files; the per-sample mean comes
    from the per-sample curves (PSEPT, wheatsheaf) when no file gives it."""
    curves: dict[tuple[int, EPType, EPCalc], Curve] = {}

    def add(table: pd.DataFrame, ep_type: EPType, calc: EPCalc, name: str) -> None:
        for summary_id, rows in table[table["summaryid"].isin(wanted)].groupby("summaryid"):
            rows = rows.sort_values("returnperiod")
            key = (int(summary_id), ep_type, calc)
            curves.setdefault(key, Curve(perspective, set_id, *key, tuple(rows["returnperiod"].astype(float)), tuple(rows["loss"].astype(float)), name))

    def per_sample_mean(table: pd.DataFrame, ep_type: EPType, name: str) -> None:
        add(table.groupby(["summaryid", "returnperiod"], as_index=False)["loss"].mean(), ep_type, EPCalc.PER_SAMPLE_MEAN, name)

    if "ept" in reports:
        table = _table(output, reports["ept"])
        for (code, type_code), rows in table.groupby(["epcalc", "eptype"]):
            if int(code) in ORD_EP_CALC and int(type_code) in ORD_EP_TYPE:
                add(rows, ORD_EP_TYPE[int(type_code)], ORD_EP_CALC[int(code)], reports["ept"])
    if "psept" in reports:
        table = _table(output, reports["psept"])
        for type_code, rows in table.groupby("eptype"):
            if int(type_code) in ORD_EP_TYPE:
                per_sample_mean(rows, ORD_EP_TYPE[int(type_code)], reports["psept"])
    for calc_name, calc in LEGACY_EP_CALC.items():
        for ep_type in EPType:
            name = reports.get(f"leccalc_{calc_name}_{ep_type.lower()}")
            if name is not None:
                table = _table(output, name)
                # Full uncertainty files of older ktools have no type column; the type-1 rows of the
                # others are the analytical mean, not a curve of the samples.
                add(table[table["type"] == LEGACY_SAMPLES] if "type" in table.columns else table, ep_type, calc, name)
    for ep_type in EPType:
        name = reports.get(f"leccalc_wheatsheaf_{ep_type.lower()}")
        if name is not None:
            per_sample_mean(_table(output, name), ep_type, name)
    return sorted(curves.values(), key=lambda c: (c.summary_id, list(EPType).index(c.ep_type), list(EPCalc).index(c.calc)))
