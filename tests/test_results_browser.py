"""The results pages in a real browser: headless Chromium (Debian's ``chromium``, driven by
Playwright) logs in to ``make ui``'s stack like a user, opens the "Oasis results" tab of finished
PiWind runs — GUL+IL+RI in ORD CSV through v1, and in parquet through v2 with chunks — and of a failed
run, and the "Oasis analyses" nav page; the figures it shows are checked against the output files."""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from harness.embedded_stack import EmbeddedStack
from harness.piwind import CASES, V1_DAG, V2_DAG, piwind_workspace

pytestmark = pytest.mark.stack

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "results-browser-test"
#: Longest the three runs may take together (PiWind's 10 locations: one to three minutes each here).
RUN_TIMEOUT = 1200
#: Longest a page may take to show its figures.
PAGE_TIMEOUT_MS = 60_000
#: The runs: dag, run id, analysis id, how they end.
CSV = (V1_DAG, "results_csv", "piwind-csv")
PARQUET = (V2_DAG, "results_parquet", "piwind-parquet")
FAILED = (V2_DAG, "results_failed", "piwind-missing-file")
#: ORD codes of the EPT rows the plots draw: EPCalc (full uncertainty, sample mean) and EPType (OEP, AEP).
EP_CALC = {"full_uncertainty": 2, "sample_mean": 4}
EP_TYPE = {"OEP": 1, "AEP": 3}
SAMPLE_TYPE = {"analytical": 1, "sample": 2}


def parquet_settings() -> dict[str, Any]:
    """The control set's settings (GUL, IL, RI) as parquet, with sample-mean EP curves and per-sample
    (PSEPT) curves too."""
    settings = CASES["control_set"].settings()
    for perspective in ("gul", "il", "ri"):
        for summary in settings[f"{perspective}_summaries"]:
            summary["ord_output"] |= {"parquet_format": True, "ept_mean_sample_oep": True, "ept_mean_sample_aep": True, "psept_oep": True}
    return settings


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, piwind_root: Path) -> Iterator[EmbeddedStack]:
    """``make ui`` serving PiWind, with three finished runs triggered over REST as the UI's form does:
    the control set through v1 (ORD CSV), the same as parquet through v2 (2 keys and 2 loss chunks),
    and a v2 run whose location file does not exist."""
    base = tmp_path_factory.mktemp("results_browser")
    storage, registry = piwind_workspace(base)
    embedded = EmbeddedStack(base, registry, storage, PASSWORD)
    embedded.start([V1_DAG, V2_DAG])
    try:
        case = CASES["control_set"]
        rest = embedded.rest
        rest.trigger(CSV[0], CSV[1], case.conf(CSV[2]))
        chunking = {"fixed_lookup_chunks": 2, "fixed_analysis_chunks": 2}
        rest.trigger(PARQUET[0], PARQUET[1], case.conf(PARQUET[2], analysis_settings=parquet_settings(), chunking=chunking))
        rest.trigger(FAILED[0], FAILED[1], case.conf(FAILED[2], location_file="exposure/missing.csv"))
        for (dag_id, run_id, _), wanted in ((CSV, "success"), (PARQUET, "success"), (FAILED, "failed")):
            assert rest.wait(dag_id, run_id, timeout=RUN_TIMEOUT) == wanted, f"{run_id} did not end {wanted}:\n{embedded.log_tail()}"
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.skip(f"no {CHROMIUM}: `make browser` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, stack: EmbeddedStack) -> Iterator[Any]:
    """A browser tab logged in through the UI's login form, as ``admin``."""
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    tab = context.new_page()
    tab.set_default_timeout(PAGE_TIMEOUT_MS)
    tab.goto(f"{stack.url}/")
    tab.fill("input[name=username]", "admin")
    tab.fill("input[name=password]", PASSWORD)
    tab.click("button:has-text('Sign in')")
    tab.wait_for_url(f"{stack.url}/")
    yield tab
    context.close()


def results_tab(page: Any, stack: EmbeddedStack, dag_id: str, run_id: str) -> Any:
    """The DAG run's page in the UI, "Oasis results" tab: the results page's frame once it shows its figures."""
    page.goto(f"{stack.url}/dags/{dag_id}/runs/{run_id}")
    page.get_by_role("link", name="Oasis results").click()  # the run page's tabs are links
    page.wait_for_url(re.compile(r".*/plugin/oasis-results$"))
    frame = page.wait_for_selector("iframe[title='Oasis results']").content_frame()
    frame.wait_for_selector("body[data-loaded]")
    return frame


def output_table(stack: EmbeddedStack, analysis_id: str, name: str) -> pd.DataFrame:
    path = stack.storage / "analyses" / analysis_id / "output" / name
    return pd.read_parquet(path) if name.endswith(".parquet") else pd.read_csv(path)


def assert_figures(frame: Any, stack: EmbeddedStack, analysis_id: str, extension: str, calcs: tuple[str, ...]) -> None:
    """The plots drew one point per return period of the EPT file, for each perspective, EP type and
    curve, on a canvas; the AAL cells show the ALT file's values."""
    rendered = frame.evaluate("window.oasisResults.rendered")
    for perspective in ("gul", "il", "ri"):
        ept = output_table(stack, analysis_id, f"{perspective}_S1_ept.{extension}")
        for ep_type, code in EP_TYPE.items():
            for calc in calcs:
                rows = ept[(ept.SummaryId == 1) & (ept.EPCalc == EP_CALC[calc]) & (ept.EPType == code)]
                drawn = [r for r in rendered if (r["perspective"], r["ep_type"], r["calc"]) == (perspective, ep_type, calc)]
                assert [r["points"] for r in drawn] == [rows.ReturnPeriod.nunique()], f"{perspective} {ep_type} {calc}: {drawn}"
                assert len(rows) > 0
        palt = output_table(stack, analysis_id, f"{perspective}_S1_palt.{extension}")
        for sample_type, code in SAMPLE_TYPE.items():
            want = float(palt[(palt.SummaryId == 1) & (palt.SampleType == code)].MeanLoss.iloc[0])
            cell = frame.locator(f"td.aal-mean[data-perspective={perspective}][data-type={sample_type}]")
            assert float(cell.get_attribute("data-value")) == want
            assert float(cell.inner_text().replace(",", "")) == round(want, 2)
    for ep_type in EP_TYPE:
        box = frame.locator(f"#plot-{ep_type} canvas").first.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 200


def test_csv_run_shows_the_outputs_figures(page, stack, tmp_path):
    dag_id, run_id, analysis_id = CSV
    frame = results_tab(page, stack, dag_id, run_id)
    assert frame.locator("#status").inner_text() == "RUN_COMPLETED"
    assert "portfolio level" in frame.locator("#ep-which").inner_text()
    assert_figures(frame, stack, analysis_id, "csv", ("full_uncertainty",))
    rp_rows = frame.locator("#rp-table tbody tr").evaluate_all("rows => rows.map(r => Number(r.dataset.returnPeriod))")
    ept = output_table(stack, analysis_id, "gul_S1_ept.csv")
    assert rp_rows == [rp for rp in (10, 25, 50, 100, 200, 250, 500, 1000) if rp in set(ept.ReturnPeriod)]
    page.screenshot(path=str(tmp_path / "results-csv.png"), full_page=True)


def test_parquet_run_shows_the_outputs_figures(page, stack, tmp_path):
    dag_id, run_id, analysis_id = PARQUET
    frame = results_tab(page, stack, dag_id, run_id)
    assert frame.locator("#status").inner_text() == "RUN_COMPLETED"
    assert_figures(frame, stack, analysis_id, "parquet", ("full_uncertainty", "sample_mean"))
    drawn = {(r["perspective"], r["ep_type"], r["calc"]) for r in frame.evaluate("window.oasisResults.rendered")}
    assert ("ri", "OEP", "per_sample_mean") in drawn  # from the PSEPT's samples
    links = frame.locator("#download-list a").evaluate_all("links => links.map(a => a.textContent)")
    assert {"All outputs (output.tar.gz)", "gul_S1_ept.parquet", "Input files (input.tar.gz)", "Keys errors (keys-errors.csv)"} <= set(links)
    page.screenshot(path=str(tmp_path / "results-parquet.png"), full_page=True)


def test_failed_run_shows_the_failing_task_and_error(page, stack, tmp_path):
    dag_id, run_id, _ = FAILED
    frame = results_tab(page, stack, dag_id, run_id)
    assert frame.locator("#status").inner_text() == "INPUTS_GENERATION_ERROR"
    failure = frame.locator(".failure")
    assert failure.get_attribute("data-task") == "prepare"
    message = failure.locator(".failure-message").inner_text()
    assert message.startswith("OasisInputError: location_file:") and "missing.csv does not exist in the storage root" in message
    assert frame.locator("#results").is_hidden()
    page.screenshot(path=str(tmp_path / "results-failed.png"), full_page=True)


def test_nav_page_lists_the_analyses_and_opens_their_results(page, stack, tmp_path):
    page.goto(f"{stack.url}/")
    page.get_by_role("link", name="Oasis analyses").click()
    frame = page.wait_for_selector("iframe[title='Oasis analyses']").content_frame()
    rows = frame.locator("#analyses tbody tr")
    rows.first.wait_for()
    listed = rows.evaluate_all("rows => rows.map(r => [r.dataset.analysisId, r.querySelector('.status').textContent])")
    assert listed == [[FAILED[2], "INPUTS_GENERATION_ERROR"], [PARQUET[2], "RUN_COMPLETED"], [CSV[2], "RUN_COMPLETED"]]
    page.screenshot(path=str(tmp_path / "analyses.png"))
    # A results link opens the DAG run's tab in the UI itself, not inside the nav page's frame.
    frame.locator(f"tr[data-analysis-id={CSV[2]}] a", has_text="results").click()
    page.wait_for_url(re.compile(rf".*/dags/{CSV[0]}/runs/{CSV[1]}/plugin/oasis-results$"))
    page.wait_for_selector("iframe[title='Oasis results']").content_frame().wait_for_selector("body[data-loaded]")


def test_summary_json_and_downloads_for_scripts(stack):
    """What the page reads is there for scripts too, with a Bearer token; downloads are the storage's bytes."""
    dag_id, run_id, analysis_id = CSV
    headers = {"Authorization": f"Bearer {stack.rest.token()}"}
    base = f"{stack.oasis_url}/results/dags/{dag_id}/runs/{run_id}/"
    summary = requests.get(base + "summary", headers=headers, timeout=60).json()
    assert summary["analysis"]["status"] == "RUN_COMPLETED" and summary["results"]["kind"] == "ORD"
    assert {c["perspective"] for c in summary["results"]["curves"]} == {"gul", "il", "ri"}
    output = stack.storage / "analyses" / analysis_id / "output"
    single = requests.get(base + "download/output/il_S1_ept.csv", headers=headers, timeout=60)
    assert single.content == (output / "il_S1_ept.csv").read_bytes()
    archive = requests.get(base + "download/output.tar.gz", headers=headers, timeout=120)
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        assert sorted(tar.getnames()) == sorted(f"output/{p.name}" for p in output.iterdir())
    assert requests.get(base + "summary", timeout=60).status_code == 401
    assert requests.get(base + "download/output/../input/keys.csv", headers=headers, timeout=60).status_code == 404
    other = requests.get(f"{stack.oasis_url}/results/dags/not_an_oasis_dag/runs/x/", headers=headers, timeout=60)
    assert other.status_code == 404 and "not_an_oasis_dag is not an Oasis model" in other.text
