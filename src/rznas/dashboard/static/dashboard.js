// rznas dashboard: polls the read-only JSON API and renders the run (no framework; plotly for the chart).
"use strict";
const REFRESH_MS = Number(document.body.dataset.refreshMs) || 2000;
const state = { run: new URLSearchParams(location.search).get("run"), selectedCall: null, chartKey: null, timer: null, ticks: 0 };

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}
function num(value, digits = 6) {
  if (value === null || value === undefined) return "-";
  return Number(value).toPrecision(digits).replace(/\.?0+(e|$)/, "$1");
}
function fillRows(table, rows, makeRow) {
  const body = document.querySelector(`#${table} tbody`);
  const fragment = document.createDocumentFragment();
  rows.forEach((row) => fragment.appendChild(makeRow(row)));
  body.replaceChildren(fragment);
}
function cells(tr, values) {
  values.forEach(([value, cls]) => tr.appendChild(el("td", value, cls)));
  return tr;
}
const NOTE_CHARS = 160;  // the trials table shows the start of a reflection note; the whole note is its tooltip
function noteCell(td, note) {
  if (note && note.length > NOTE_CHARS) {
    td.textContent = note.slice(0, NOTE_CHARS) + "…";
    td.title = note;
  }
  return td;
}
async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function renderRuns(listing) {
  const select = document.getElementById("run-select");
  if (!state.run && listing.runs.length) state.run = listing.runs[0].id;
  const options = listing.runs.map((r) => {
    const option = el("option", `${r.id} (${r.status}, ${r.iterations_done}/${r.iterations} iterations)`);
    option.value = r.id;
    option.selected = r.id === state.run;
    return option;
  });
  select.replaceChildren(...options);
}

function renderSummary(data) {
  const s = data.summary;
  const status = document.getElementById("status");
  status.textContent = s.status;
  status.className = `badge ${s.status}`;
  document.getElementById("refresh-note").textContent = s.live
    ? `live: refreshing every ${REFRESH_MS / 1000} s`
    : `not live${s.reason ? ": " + s.reason : ""}`;
  const parts = [
    ["space", s.space], ["proxy", s.proxy], ["proposer", s.llm ? `${s.proposer} (${s.llm})` : s.proposer],
    ["seed", s.seed], ["population", s.population], ["iterations", `${s.iterations_done} / ${s.iterations}`],
    ["trials", s.trials], ["best score", num(s.best_score)], ["best trial", s.best_trial ?? "-"],
    ["LLM calls", s.llm_calls], ["tokens in / out", `${s.input_tokens} / ${s.output_tokens}`],
    ["cost", s.cost_usd === null ? "unknown" : `$${Number(s.cost_usd).toFixed(4)}`],
  ];
  const box = document.getElementById("summary");
  box.replaceChildren(...parts.map(([k, v]) => {
    const span = el("span");
    span.appendChild(el("b", `${k}: `));
    span.appendChild(document.createTextNode(String(v)));
    return span;
  }));
}

function renderChart(data) {
  const key = JSON.stringify(data.series);
  if (key === state.chartKey) return;
  state.chartKey = key;
  const xs = data.series.map((p) => p.iteration);
  const traces = [
    { x: xs, y: data.series.map((p) => p.best), name: "best", mode: "lines+markers" },
    { x: xs, y: data.series.map((p) => p.median), name: "median", mode: "lines+markers" },
  ];
  const layout = {
    margin: { t: 10, r: 10, b: 40, l: 60 },
    xaxis: { title: { text: "iteration" } },
    yaxis: { title: { text: `${data.summary.proxy} score` } },
    legend: { orientation: "h" },
  };
  Plotly.react("chart", traces, layout, { displaylogo: false, responsive: true });
}

function renderTables(data) {
  document.getElementById("population-count").textContent = `(${data.population.length} of ${data.summary.population})`;
  fillRows("population", data.population, (t) =>
    cells(el("tr"), [[t.number], [t.iteration], [num(t.score), "num"], [t.encoded, "code"]]));
  document.getElementById("trial-count").textContent = `(${data.trials.length})`;
  fillRows("trials", [...data.trials].reverse(), (t) => {
    const tr = cells(el("tr", undefined, `state-${t.state}`), [
      [t.number], [t.iteration], [t.state], [num(t.score), "num"], [t.encoded, "code"],
      [t.parent_number ?? "-"], [t.reason], [t.reflection ?? "", "note"], [t.total_s === null ? "-" : num(t.total_s, 3), "num"],
    ]);
    noteCell(tr.children[7], t.reflection);
    tr.dataset.trial = t.number;
    return tr;
  });
  document.getElementById("call-count").textContent = `(${data.calls.length})`;
  fillRows("calls", [...data.calls].reverse(), (c) => {
    const tr = cells(el("tr"), [
      [c.id], [c.trial_number], [c.purpose], [c.model], [num(c.temperature, 3)], [c.input_tokens, "num"],
      [c.output_tokens, "num"], [c.cost_usd === null ? "unknown" : Number(c.cost_usd).toFixed(6), "num"], [num(c.latency_s, 3), "num"],
      [c.cache_hit ? "yes" : "no"], [c.reply_preview, "code"],
    ]);
    tr.dataset.call = c.id;
    if (c.id === state.selectedCall) tr.classList.add("selected");
    tr.addEventListener("click", () => showCall(c.id));
    return tr;
  });
  const final = data.final_selection;
  document.getElementById("final-section").hidden = !final;
  if (final) {
    document.getElementById("final-table-name").textContent = `(table ${final.table})`;
    const head = el("tr");
    final.columns.forEach((c) => head.appendChild(el("th", c)));
    document.querySelector("#final-selection thead").replaceChildren(head);
    fillRows("final-selection", final.rows, (r) => cells(el("tr"), r.map((v) => [v === null ? "-" : v])));
  }
}

async function showCall(id) {
  state.selectedCall = id;
  document.querySelectorAll("#calls tbody tr").forEach((tr) => tr.classList.toggle("selected", Number(tr.dataset.call) === id));
  const box = document.getElementById("call-detail");
  try {
    const c = await getJSON(`/api/call?run=${encodeURIComponent(state.run)}&id=${id}`);
    const parts = [el("h3", `call ${c.id}: ${c.purpose} for trial ${c.trial_number}`),
      el("p", `${c.model}, temperature ${num(c.temperature, 3)}, ${c.input_tokens} tokens in / ${c.output_tokens} out, ` +
        `${c.cost_usd === null ? "cost unknown" : "$" + Number(c.cost_usd).toFixed(6)}, ${num(c.latency_s, 3)} s${c.cache_hit ? ", from the reply cache" : ""}`)];
    c.messages.forEach((m, i) => {
      parts.push(el("h4", `prompt message ${i + 1}: ${m.role}`));
      parts.push(el("pre", m.content, "prompt"));
    });
    parts.push(el("h4", "reply"));
    parts.push(el("pre", c.reply_text, "reply"));
    if (c.reflection) {
      parts.push(el("h4", "reflection of this trial (kept note)"));
      parts.push(el("pre", c.reflection.note || "(empty)", "reflection"));
    }
    box.replaceChildren(...parts);
  } catch (err) {
    box.replaceChildren(el("p", `could not load call ${id}: ${err.message}`, "error"));
  }
  box.hidden = false;
}

async function tick() {
  let live = false;
  const error = document.getElementById("error");
  try {
    // the run list (a summary of every run) is re-read every fifth refresh
    if (state.ticks++ % 5 === 0 || !state.run) renderRuns(await getJSON("/api/runs"));
    if (state.run) {
      const data = await getJSON(`/api/run?run=${encodeURIComponent(state.run)}`);
      renderSummary(data);
      renderChart(data);
      renderTables(data);
      live = data.summary.live;
      document.body.dataset.trials = data.trials.length;
      document.body.dataset.status = data.summary.status;
    }
    error.hidden = true;
  } catch (err) {
    error.textContent = `refresh failed: ${err.message}`;
    error.hidden = false;
  }
  // a live run refreshes every REFRESH_MS; a settled one is re-read now and then (it may be resumed)
  clearTimeout(state.timer);
  state.timer = setTimeout(tick, live ? REFRESH_MS : 5 * REFRESH_MS);
}

document.getElementById("run-select").addEventListener("change", (event) => {
  state.run = event.target.value;
  state.selectedCall = null;
  state.chartKey = null;
  document.getElementById("call-detail").hidden = true;
  history.replaceState(null, "", `?run=${encodeURIComponent(state.run)}`);
  clearTimeout(state.timer);
  tick();
});
tick();
