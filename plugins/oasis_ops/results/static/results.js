/* The Oasis results pages (oasis_ops/results): the list of analyses and one DAG run's results,
   drawn from GET …/summary with uPlot (vendored next to this file). No build step, no CDN. */
"use strict";

const OasisResults = (() => {
  const PERSPECTIVES = { gul: { label: "GUL", color: "#1f6fb4" }, il: { label: "IL", color: "#e07b00" }, ri: { label: "RI", color: "#2a9d3a" } };
  const CALCS = {
    full_uncertainty: { label: "full uncertainty", dash: [] },
    sample_mean: { label: "sample mean", dash: [8, 4] },
    per_sample_mean: { label: "per-sample mean", dash: [2, 3] },
  };
  const EP_TYPES = ["OEP", "AEP"];
  const POLL_MS = 5000;
  /* What the page shows, for scripts and tests: the summary, the plots, and what each plot drew. */
  const state = { summary: null, plots: {}, rendered: [] };

  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) node.append(child);
    return node;
  };
  const money = (v) => (v === null || v === undefined ? "" : v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }));
  const short = (v) => {
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(a >= 1e10 ? 0 : 1) + "B";
    if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
    if (a >= 1e3) return (v / 1e3).toFixed(a >= 1e4 ? 0 : 1) + "k";
    return String(Math.round(v));
  };
  const duration = (seconds) => {
    if (seconds === null || seconds === undefined || seconds === "") return "";
    const s = Math.round(Number(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  };
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");

  /* The page lives in the Airflow UI's iframe, whose sandbox forbids navigating the UI: Airflow pages
     are opened through the UI's own router (same origin), or as a plain link outside the UI. */
  function airflowLinks(root) {
    for (const link of root.querySelectorAll("a[data-airflow]:not([data-bound])")) {
      link.dataset.bound = "1";
      link.addEventListener("click", (event) => {
        if (window.top === window) return;
        try {
          window.top.history.pushState(null, "", link.getAttribute("href"));
          window.top.dispatchEvent(new PopStateEvent("popstate", { state: null }));
          event.preventDefault();
        } catch (error) {
          /* another origin: let the link open in the frame */
        }
      });
    }
  }

  function listPage() {
    for (const node of document.querySelectorAll("time[data-iso]")) node.textContent = when(node.dataset.iso);
    for (const node of document.querySelectorAll("td[data-seconds]")) node.textContent = duration(node.dataset.seconds);
    airflowLinks(document);
  }

  // --- one analysis ---

  function about(analysis) {
    const dl = document.getElementById("about");
    dl.replaceChildren();
    const add = (term, ...value) => dl.append(el("dt", { text: term }), el("dd", {}, ...value));
    add("Model", analysis.model);
    add("Portfolio", analysis.portfolio);
    add("Mode", analysis.mode_label);
    add("Action", analysis.action);
    add("DAG run", el("a", { href: analysis.airflow_href, "data-airflow": true, text: `${analysis.dag_id} / ${analysis.run_id}` }));
    if (analysis.api_analysis) add("Oasis API", el("a", { href: analysis.api_analysis.href, text: `analysis ${analysis.api_analysis.id}` }));
    add("Started", when(analysis.started));
    add("Duration", duration(analysis.duration_seconds) + (analysis.running ? " (running)" : ""));
    document.getElementById("name").textContent = analysis.name;
    const status = document.getElementById("status");
    status.textContent = analysis.status;
    status.className = `status status-${analysis.status.toLowerCase()}`;
  }

  function progress(summary) {
    const section = document.getElementById("progress");
    section.hidden = !summary.analysis.running;
    const bars = document.getElementById("progress-bars");
    bars.replaceChildren();
    const items = [["Keys chunks", summary.progress.keys_chunks], ["Loss chunks", summary.progress.loss_chunks], ["Tasks", summary.progress.tasks]];
    for (const [label, { done, total }] of items) {
      if (!total) continue;
      bars.append(
        el("div", { class: "bar", "data-progress": label },
          el("span", { text: `${label}: ${done} / ${total} done` }),
          el("progress", { max: total, value: done })),
      );
    }
  }

  function failures(summary) {
    const list = document.getElementById("failure-list");
    list.replaceChildren();
    document.getElementById("failures").hidden = summary.failures.length === 0;
    for (const failure of summary.failures) {
      const where = `Task ${failure.task_id}` + (failure.chunk ? ` (chunk ${failure.chunk})` : "") + `, try ${failure.try_number}`;
      list.append(
        el("div", { class: "failure", "data-task": failure.task_id, "data-chunk": failure.chunk },
          el("h3", { text: where }),
          el("pre", { class: "failure-message", text: failure.message }),
          failure.report ? el("details", {}, el("summary", { text: "Error report" }), el("pre", { text: failure.report })) : "",
          el("a", { href: failure.log_href, "data-airflow": true, text: "Task log in Airflow" })),
      );
    }
  }

  function aalTable(results) {
    const table = document.getElementById("aal");
    table.replaceChildren(el("thead", {}, el("tr", {}, ...["Perspective", "Summary set", "Summary id", "AAL (analytical)", "SD", "AAL (sample)", "SD"].map((h) => el("th", { text: h })))));
    const rows = new Map();
    for (const item of results.aal) {
      const key = `${item.perspective}|${item.summary_set}|${item.summary_id}`;
      if (!rows.has(key)) rows.set(key, { item, analytical: null, sample: null });
      rows.get(key)[item.type] = item;
    }
    const body = el("tbody");
    for (const { item, analytical, sample } of rows.values()) {
      const cells = [PERSPECTIVES[item.perspective].label, item.summary_set, item.summary_id].map((v) => el("td", { text: v }));
      for (const entry of [analytical, sample]) {
        const attrs = entry ? { "data-perspective": entry.perspective, "data-summary-set": entry.summary_set, "data-summary-id": entry.summary_id, "data-type": entry.type } : {};
        cells.push(el("td", { ...attrs, class: "num aal-mean", "data-value": entry ? entry.mean : null, text: entry ? money(entry.mean) : "" }));
        cells.push(el("td", { ...attrs, class: "num aal-sd", "data-value": entry && entry.sd !== null ? entry.sd : null, text: entry ? money(entry.sd) : "" }));
      }
      body.append(el("tr", {}, ...cells));
    }
    if (!rows.size) body.append(el("tr", {}, el("td", { colspan: 7, text: "No ALT (or aalcalc) output." })));
    table.append(body);
  }

  /* The summary set and summary id whose curves are shown: the portfolio-level set comes first. */
  const choice = { set: null, id: null };

  function epControls(results) {
    const sets = results.summary_sets;
    const controls = document.getElementById("ep-controls");
    controls.replaceChildren();
    if (!sets.length) return;
    if (!sets.some((s) => s.id === choice.set)) choice.set = sets[0].id;
    const chosen = sets.find((s) => s.id === choice.set);
    const ids = new Map();
    for (const p of Object.values(chosen.perspectives)) for (const i of p.summary_ids) if (!ids.has(i.id)) ids.set(i.id, i.label);
    if (!ids.has(choice.id)) choice.id = ids.keys().next().value;
    const setSelect = el("select", { id: "summary-set" }, ...sets.map((s) => el("option", { value: s.id, selected: s.id === choice.set, text: `Summary set ${s.id}: ${s.description}` })));
    const idSelect = el("select", { id: "summary-id" }, ...[...ids].map(([id, label]) => el("option", { value: id, selected: id === choice.id, text: `Summary id ${id}: ${label}` })));
    setSelect.addEventListener("change", () => { choice.set = Number(setSelect.value); choice.id = null; renderResults(state.summary); });
    idSelect.addEventListener("change", () => { choice.id = Number(idSelect.value); renderResults(state.summary); });
    controls.append(el("label", {}, "Summary set ", setSelect), el("label", {}, "Summary id ", idSelect));
    const which = chosen.portfolio_level
      ? `Summary set ${chosen.id} is the portfolio level: its summary id ${choice.id} holds all the exposure.`
      : `Summary set ${chosen.id} (${chosen.description}) has a curve per summary id; return-period losses do not add up across summary ids, so each is shown alone: summary id ${choice.id} (${ids.get(choice.id)}).`;
    document.getElementById("ep-which").textContent = which;
  }

  function selectedCurves(results) {
    return results.curves.filter((c) => c.summary_set === choice.set && c.summary_id === choice.id);
  }

  function plot(epType, curves) {
    const target = document.getElementById(`plot-${epType}`);
    if (state.plots[epType]) state.plots[epType].destroy();
    delete state.plots[epType];
    target.replaceChildren();
    const mine = curves.filter((c) => c.ep_type === epType);
    if (!mine.length) {
      target.append(el("p", { class: "message", text: `No ${epType} curve in the outputs.` }));
      return;
    }
    const xs = [...new Set(mine.flatMap((c) => c.return_periods))].sort((a, b) => a - b);
    const data = [xs];
    const series = [{ label: "Return period" }];
    for (const curve of mine) {
      const byPeriod = new Map(curve.return_periods.map((rp, i) => [rp, curve.losses[i]]));
      data.push(xs.map((x) => (byPeriod.has(x) ? byPeriod.get(x) : null)));
      const p = PERSPECTIVES[curve.perspective];
      series.push({
        label: `${p.label} ${CALCS[curve.calc].label}`,
        stroke: p.color,
        dash: CALCS[curve.calc].dash,
        width: 2,
        spanGaps: true,
        points: { show: true, size: 5 },
        value: (u, v) => (v === null ? "" : money(v)),
      });
    }
    const width = Math.max(320, Math.min(target.clientWidth || 600, 900));
    const chart = new uPlot(
      {
        width,
        height: 320,
        scales: { x: { time: false, distr: 3, log: 10 }, y: { auto: true } },
        axes: [
          { label: "Return period (years, log scale)", values: (u, vals) => vals.map((v) => (v === null ? "" : String(v))) },
          { label: "Loss", size: 70, values: (u, vals) => vals.map(short) },
        ],
        legend: { live: false },
        series,
      },
      data,
      target,
    );
    state.plots[epType] = chart;
    chart.series.slice(1).forEach((s, i) => {
      const curve = mine[i];
      state.rendered.push({
        ep_type: epType, perspective: curve.perspective, calc: curve.calc, summary_set: curve.summary_set, summary_id: curve.summary_id,
        points: chart.data[i + 1].filter((v) => v !== null).length, label: s.label,
      });
    });
  }

  /* One column per EP type and perspective: its full-uncertainty curve, else the first it has (the
     other curves' losses are in the plots and in the JSON). */
  function rpTable(results, curves) {
    const table = document.getElementById("rp-table");
    table.replaceChildren();
    const columns = [];
    for (const epType of EP_TYPES) {
      for (const perspective of Object.keys(PERSPECTIVES)) {
        const mine = curves.filter((c) => c.ep_type === epType && c.perspective === perspective);
        const chosen = mine.find((c) => c.calc === "full_uncertainty") || mine[0];
        if (chosen) columns.push(chosen);
      }
    }
    const periods = results.standard_return_periods.filter((rp) => columns.some((c) => c.return_periods.includes(rp)));
    if (!periods.length) {
      table.append(el("tbody", {}, el("tr", {}, el("td", { text: "The curves have none of the standard return periods." }))));
      return;
    }
    const head = (c) => `${PERSPECTIVES[c.perspective].label} ${c.ep_type}` + (c.calc === "full_uncertainty" ? "" : ` (${CALCS[c.calc].label})`);
    table.append(el("thead", {}, el("tr", {}, el("th", { text: "Return period" }), ...columns.map((c) => el("th", { text: head(c) })))));
    const body = el("tbody");
    for (const rp of periods) {
      body.append(el("tr", { "data-return-period": rp }, el("td", { class: "num", text: `${rp}` }), ...columns.map((c) => {
        const i = c.return_periods.indexOf(rp);
        return el("td", { class: "num", "data-perspective": c.perspective, "data-ep-type": c.ep_type, "data-calc": c.calc, text: i < 0 ? "" : money(c.losses[i]) });
      })));
    }
    table.append(body);
  }

  function renderResults(summary) {
    const results = summary.results;
    const section = document.getElementById("results");
    section.hidden = results.files.length === 0 && !summary.analysis.status.startsWith("RUN_COMPLETED");
    const note = document.getElementById("results-note");
    note.hidden = !summary.results_note;
    note.textContent = summary.results_note || "";
    aalTable(results);
    epControls(results);
    const curves = selectedCurves(results);
    const message = document.getElementById("ep-message");
    message.hidden = !results.ep_message;
    message.textContent = results.ep_message || "";
    document.getElementById("plots").hidden = !results.curves.length;
    state.rendered = [];
    for (const epType of EP_TYPES) if (results.curves.length) plot(epType, curves); else if (state.plots[epType]) { state.plots[epType].destroy(); delete state.plots[epType]; }
    rpTable(results, curves);
  }

  function downloads(summary, page) {
    const list = document.getElementById("download-list");
    list.replaceChildren(...summary.downloads.map((d) => el("li", {}, el("a", { href: page + d.href, download: true, text: d.label }))));
    document.getElementById("downloads").hidden = summary.downloads.length === 0;
  }

  function render(summary, page) {
    state.summary = summary;
    about(summary.analysis);
    progress(summary);
    failures(summary);
    renderResults(summary);
    downloads(summary, page);
    airflowLinks(document);
    document.body.dataset.loaded = summary.analysis.status;
  }

  async function analysisPage() {
    const main = document.getElementById("page");
    const url = main.dataset.summary;
    const page = url.slice(0, -"summary".length);
    const errorBox = document.getElementById("load-error");
    for (;;) {
      let summary = null;
      try {
        const response = await fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } });
        if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status} ${await response.text()}`);
        summary = await response.json();
        errorBox.hidden = true;
        render(summary, page);
      } catch (error) {
        errorBox.hidden = false;
        errorBox.textContent = String(error);
      }
      if (summary && !summary.analysis.running) return;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  return { listPage, analysisPage, state };
})();
window.oasisResults = OasisResults.state;
