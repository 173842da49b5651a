"""The results page's reader on every output flavour: PiWind's expected ORD CSV outputs, the same as
parquet (with oasislmf's column types), legacy ktools outputs, settings that ask for no EP output, and
several summary sets (the portfolio-level set first; return-period losses never summed across summary
ids); and the failure messages the page shows."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from oasis_ops.results.reader import (
    MAX_SUMMARY_IDS,
    SAMPLE_TYPE,
    STANDARD_RETURN_PERIODS,
    AALType,
    EPCalc,
    EPType,
    OutputKind,
    Perspective,
    Results,
    read_results,
)
from oasis_ops.tools.summary import format_summary

#: ORD EPT codes of the curves the page draws.
FULL, OEP, AEP = 2, 1, 3


@pytest.fixture
def ord_csv(piwind_root: Path) -> Path:
    """PiWind's control set outputs: GUL, IL and RI, ORD CSV, one portfolio-level summary set."""
    return piwind_root / "expected" / "control_set"


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text.strip() + "\n")


def as_parquet(source: Path, target: Path) -> Path:
    """``source``'s CSV outputs as oasislmf writes them with ``parquet_format``: int32 ids and codes,
    float32 losses (summary-info keeps pandas' own types)."""
    target.mkdir()
    for csv in source.glob("*.csv"):
        table = pd.read_csv(csv)
        if not csv.name.endswith("summary-info.csv"):
            table = table.astype({c: "int32" if pd.api.types.is_integer_dtype(t) else "float32" for c, t in table.dtypes.items()})
        table.to_parquet(target / csv.with_suffix(".parquet").name, index=False)
    shutil.copy(source / "analysis_settings.json", target)
    return target


def values(results: Results) -> dict[str, list[tuple]]:
    """What the page shows, without the file names."""
    return {
        "aal": [(a.perspective, a.summary_set, a.summary_id, a.type, a.mean, a.sd) for a in results.aal],
        "curves": [(c.perspective, c.summary_set, c.summary_id, c.ep_type, c.calc, c.return_periods, c.losses) for c in results.curves],
    }


def test_ord_csv_figures_are_the_files_values(ord_csv):
    results = read_results(ord_csv)
    assert (results.kind, results.ep_requested, results.ep_message) == (OutputKind.ORD, True, None)
    assert results.set_ids == [1]
    assert [(s.perspective, s.portfolio_level, [i.id for i in s.summary_ids]) for s in results.summary_sets] == [
        (p, True, [1]) for p in Perspective
    ]
    for perspective in Perspective:
        for row in pd.read_csv(ord_csv / f"{perspective}_S1_palt.csv").itertuples():
            aal = results.aal_of(perspective, 1, row.SummaryId, SAMPLE_TYPE[row.SampleType])
            assert aal is not None and (aal.mean, aal.sd) == (row.MeanLoss, row.SDLoss)
        ept = pd.read_csv(ord_csv / f"{perspective}_S1_ept.csv")
        for code, ep_type in ((OEP, EPType.OEP), (AEP, EPType.AEP)):
            rows = ept[(ept.EPCalc == FULL) & (ept.EPType == code)].sort_values("ReturnPeriod")
            (curve,) = [c for c in results.curves if (c.perspective, c.ep_type) == (perspective, ep_type)]
            assert curve.calc is EPCalc.FULL_UNCERTAINTY
            assert list(curve.return_periods) == list(rows.ReturnPeriod) and list(curve.losses) == list(rows.Loss)
            table = {r["return_period"]: r["loss"] for r in results.return_period_losses() if (r["perspective"], r["ep_type"]) == (perspective, ep_type)}
            present = [rp for rp in STANDARD_RETURN_PERIODS if rp in set(rows.ReturnPeriod)]
            assert table == {rp: float(rows[rows.ReturnPeriod == rp].Loss.iloc[0]) for rp in present} and present


def test_ord_parquet_reads_as_csv(ord_csv, tmp_path):
    parquet = read_results(as_parquet(ord_csv, tmp_path / "parquet"))
    csv = read_results(ord_csv)
    assert parquet.kind is OutputKind.ORD and all(a.file.endswith(".parquet") for a in parquet.aal)
    got, want = values(parquet), values(csv)
    assert [c[:6] for c in got["curves"]] == [c[:6] for c in want["curves"]]  # all but the losses
    for (*_, losses), (*_, expected) in zip(got["curves"], want["curves"], strict=True):
        assert losses == pytest.approx(expected, rel=1e-6)
    for g, w in zip(got["aal"], want["aal"], strict=True):
        assert g[:4] == w[:4] and g[4:] == pytest.approx(w[4:], rel=1e-6)


def test_sample_means_from_ept_and_per_sample_curves(tmp_path):
    """The sample mean is EPT's EPCalc 4; the per-sample mean EPT's EPCalc 3, else the mean of PSEPT's samples."""
    out = tmp_path / "output"
    write(out, "il_S1_ept.csv", """
SummaryId,EPCalc,EPType,ReturnPeriod,Loss
1,2,1,10,100
1,2,1,100,500
1,4,1,10,90
1,4,1,100,450
1,1,1,10,80
""")
    write(out, "il_S1_psept.csv", """
SummaryId,SampleId,EPType,ReturnPeriod,Loss
1,1,1,10,80
1,2,1,10,100
1,1,1,100,400
1,2,1,100,600
""")
    curves = {c.calc: c for c in read_results(out).curves}
    assert set(curves) == {EPCalc.FULL_UNCERTAINTY, EPCalc.SAMPLE_MEAN, EPCalc.PER_SAMPLE_MEAN}
    assert curves[EPCalc.SAMPLE_MEAN].losses == (90, 450)
    assert curves[EPCalc.PER_SAMPLE_MEAN].losses == (90, 500) and curves[EPCalc.PER_SAMPLE_MEAN].file == "il_S1_psept.csv"


def test_legacy_leccalc_and_aalcalc_outputs(tmp_path):
    out = tmp_path / "output"
    write(out, "analysis_settings.json", json.dumps({
        "gul_output": True,
        "gul_summaries": [{"id": 1, "aalcalc": True, "lec_output": True, "leccalc": {"full_uncertainty_aep": True, "full_uncertainty_oep": True}}],
    }))
    write(out, "gul_S1_summary-info.csv", "summary_id,_not_set_,tiv\n1,All-Risks,3400000.0")
    write(out, "gul_S1_aalcalc.csv", """
summary_id,type,mean,standard_deviation,exposure_value
1,1,13255.950406,82441.004168,870000.187500
1,2,14009.580852,84152.806687,870000.187500
""")
    # ktools 3: type 1 (mean damage) and 2 (full uncertainty); older ktools: no type column.
    write(out, "gul_S1_leccalc_full_uncertainty_aep.csv", """
summary_id,type,return_period,loss
1,1,500,3404420
1,1,10,349520
1,2,500,3368579
1,2,250,3239702
1,2,10,349023.03125
""")
    write(out, "gul_S1_leccalc_full_uncertainty_oep.csv", "summary_id,return_period,loss\n1,100,2000\n1,10,300")
    write(out, "gul_S1_leccalc_wheatsheaf_oep.csv", "summary_id,sidx,return_period,loss\n1,1,10,200\n1,2,10,400")
    results = read_results(out)
    assert (results.kind, results.ep_requested) == (OutputKind.LEGACY, True)
    assert [(a.type, a.mean, a.sd) for a in results.aal] == [(AALType.ANALYTICAL, 13255.950406, 82441.004168), (AALType.SAMPLE, 14009.580852, 84152.806687)]
    curves = {(c.ep_type, c.calc): c for c in results.curves}
    assert curves[EPType.AEP, EPCalc.FULL_UNCERTAINTY].return_periods == (10, 250, 500)
    assert curves[EPType.AEP, EPCalc.FULL_UNCERTAINTY].losses == (349023.03125, 3239702, 3368579)
    assert curves[EPType.OEP, EPCalc.FULL_UNCERTAINTY].losses == (300, 2000)
    assert curves[EPType.OEP, EPCalc.PER_SAMPLE_MEAN].losses == (300,)


def test_settings_without_ep_outputs_say_so(piwind_root, tmp_path):
    # PiWind's case 0 asks for an ELT only: nothing to draw, and the page says why.
    results = read_results(piwind_root / "expected" / "case_0")
    assert (results.ep_requested, results.curves, results.summary_sets) == (False, (), ())
    assert results.ep_message is not None and "requested no EP outputs" in results.ep_message
    # AAL alone: the AAL is shown, the curves' place says there are none by request.
    out = tmp_path / "output"
    write(out, "analysis_settings.json", json.dumps({"gul_output": True, "gul_summaries": [{"id": 1, "ord_output": {"alt_period": True}}]}))
    write(out, "gul_S1_palt.csv", "SummaryId,SampleType,MeanLoss,SDLoss\n1,1,10.5,2.25")
    results = read_results(out)
    assert [(a.mean, a.sd) for a in results.aal] == [(10.5, 2.25)]
    assert "requested no EP outputs" in (results.ep_message or "")
    assert "requested no EP outputs" in format_summary(results)
    # Before any output, the run's own settings tell the same.
    assert "requested no EP outputs" in (read_results(tmp_path / "none", {"gul_output": True, "gul_summaries": [{"id": 1}]}).ep_message or "")
    assert read_results(tmp_path / "none").ep_message == "There are no outputs (yet)."


def test_portfolio_set_first_and_no_sum_across_summary_ids(tmp_path):
    """Set 1 is by location (two summary ids), set 2 the portfolio: set 2 comes first, and each of set
    1's summary ids keeps its own losses (their sum is no return-period loss of anything)."""
    out = tmp_path / "output"
    write(out, "analysis_settings.json", json.dumps({
        "gul_output": True,
        "gul_summaries": [
            {"id": 1, "oed_fields": ["LocNumber"], "ord_output": {"ept_full_uncertainty_oep": True}},
            {"id": 2, "ord_output": {"ept_full_uncertainty_oep": True}},
        ],
    }))
    write(out, "gul_S1_summary-info.csv", "summary_id,LocNumber,tiv\n1,LOC-A,100.0\n2,LOC-B,200.0")
    write(out, "gul_S2_summary-info.csv", "summary_id,_not_set_,tiv\n1,All-Risks,300.0")
    write(out, "gul_S1_ept.csv", "SummaryId,EPCalc,EPType,ReturnPeriod,Loss\n1,2,1,100,70\n2,2,1,100,90\n1,2,1,10,7\n2,2,1,10,9")
    write(out, "gul_S2_ept.csv", "SummaryId,EPCalc,EPType,ReturnPeriod,Loss\n1,2,1,100,120\n1,2,1,10,12")
    results = read_results(out)
    assert results.set_ids == [2, 1]
    by_location = next(s for s in results.summary_sets if s.id == 1)
    assert by_location.fields == ("LocNumber",) and [i.label for i in by_location.summary_ids] == ["LocNumber=LOC-A", "LocNumber=LOC-B"]
    rows = {(r["summary_set"], r["summary_id"], r["return_period"]): r["loss"] for r in results.return_period_losses()}
    assert rows == {(1, 1, 10): 7, (1, 1, 100): 70, (1, 2, 10): 9, (1, 2, 100): 90, (2, 1, 10): 12, (2, 1, 100): 120}
    sets = results.to_json()["summary_sets"]
    assert [(s["id"], s["portfolio_level"], s["description"]) for s in sets] == [
        (2, True, "portfolio level (one summary id for all the exposure)"),
        (1, False, "by LocNumber (2 summary ids)"),
    ]
    printed = format_summary(results)
    assert "Summary set 2: portfolio level" in printed and "100y 120" in printed and "160" not in printed


def test_large_summary_sets_give_their_first_ids(tmp_path):
    out = tmp_path / "output"
    ids = range(1, MAX_SUMMARY_IDS + 11)
    write(out, "gul_S1_summary-info.csv", "summary_id,LocNumber,tiv\n" + "\n".join(f"{i},L{i},1.0" for i in ids))
    write(out, "gul_S1_palt.csv", "SummaryId,SampleType,MeanLoss,SDLoss\n" + "\n".join(f"{i},1,{i}.0,0.0" for i in ids))
    results = read_results(out)
    (summary_set,) = results.summary_sets
    assert (len(summary_set.summary_ids), summary_set.total_summary_ids) == (MAX_SUMMARY_IDS, MAX_SUMMARY_IDS + 10)
    assert [a.summary_id for a in results.aal] == list(range(1, MAX_SUMMARY_IDS + 1))
    assert f"the first {MAX_SUMMARY_IDS} shown" in results.to_json()["summary_sets"][0]["description"]


def test_failures_show_the_error_line_of_each_report(tmp_path):
    from oasis_ops.api.status import AnalysisStatus, DagRunAnalysis, RunView
    from oasis_ops.constants import Mode
    from oasis_ops.results.analysis import failures
    from oasis_ops.storage import Storage

    storage = Storage(str(tmp_path))
    location = storage.analysis("a1")
    report = location.error_report("manual__1", "loss_chunk", 2)
    report.parent.mkdir(parents=True)
    report.write_text(
        "Task loss_chunk (chunk 3), try 1, of DAG run manual__1 (m_v2) failed:\nRuntimeError: Kernel execution error\nsecond line\n\n"
        "Traceback (most recent call last):\n  File ...\nRuntimeError: Kernel execution error\n"
    )
    analysis = DagRunAnalysis("m_v2", "manual__1", None, Mode.V2, {}, "a1", datetime.now(UTC))
    state = RunView(AnalysisStatus.RUN_ERROR, failures=(("loss_chunk", 2, 1), ("aggregate", -1, 3)))
    aggregate, chunk = failures(analysis, state, location)
    assert (chunk.task_id, chunk.chunk, chunk.message) == ("loss_chunk", 3, "RuntimeError: Kernel execution error\nsecond line")
    assert chunk.log_href == "/dags/m_v2/runs/manual__1/tasks/loss_chunk/mapped/2"
    assert (aggregate.chunk, aggregate.report) == (None, None) and "without an error report" in aggregate.message
