// gittrack UI: small progressive enhancements; every page also works without JavaScript.
"use strict";

function $(sel, root) { return (root || document).querySelector(sel); }
function $all(sel, root) { return Array.from((root || document).querySelectorAll(sel)); }

function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  return new Promise(function (resolve, reject) {
    var s = document.createElement("script");
    s.src = "/static/plotly.min.js";
    s.onload = function () { resolve(window.Plotly); };
    s.onerror = reject;
    document.head.appendChild(s);
  });
}

// -- runs table: selection, column chooser ----------------------------------------------------
function wireTable() {
  var form = $("#compare-form");
  if (!form) return;
  var button = $("#compare-button");
  function update() {
    var n = $all("input[name=ids]:checked", form).length;
    button.disabled = n < 1;
    button.textContent = n ? "Compare " + n + " selected" : "Compare selected";
    if (overlayButton) overlayButton.disabled = n < 1;
  }
  var overlayButton = $("#overlay-button");
  if (overlayButton) overlayButton.addEventListener("click", function () {
    overlay($all("input[name=ids]:checked", form).map(function (i) { return i.value; }));
  });
  form.addEventListener("change", update);
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var ids = $all("input[name=ids]:checked", form).map(function (i) { return i.value; });
    window.location.href = "/compare?ids=" + encodeURIComponent(ids.join(","));
  });
  var apply = $("#apply-columns");
  if (apply) apply.addEventListener("click", function () {
    var cols = $all(".colpick:checked").map(function (c) { return c.value; });
    var url = new URL(window.location.href);
    url.searchParams.delete("col");
    url.searchParams.set("cols", cols.join(","));
    url.searchParams.delete("offset");
    window.location.href = url.toString();
  });
  update();
}

// -- overlay: one metric's time series across the runs selected in the table -------------------
var overlayData = null;

async function overlay(ids) {
  var box = $("#overlay");
  if (!box || !ids.length) return;
  box.hidden = false;
  var note = $("#overlay-note"), select = $("#overlay-metric");
  note.textContent = "Reading the time series of " + ids.length + " run" + (ids.length === 1 ? "" : "s") + "…";
  var answer = await fetch("/api/series?" + new URLSearchParams({ ids: ids.join(",") }), { cache: "no-store" });
  var data = await answer.json();
  if (data.error) { note.textContent = data.error; return; }
  overlayData = data;
  var metrics = [];
  Object.keys(data).forEach(function (id) {
    Object.keys(data[id]).forEach(function (k) { if (k !== "step" && metrics.indexOf(k) < 0) metrics.push(k); });
  });
  var chosen = select.value;
  select.innerHTML = "";
  metrics.forEach(function (k) { var o = document.createElement("option"); o.textContent = k; select.appendChild(o); });
  if (metrics.indexOf(chosen) >= 0) select.value = chosen;
  var without = Object.keys(data).filter(function (id) { return !Object.keys(data[id]).length; }).length;
  note.textContent = !metrics.length ? "None of the selected runs logged a time series (gittrack.log)."
    : without ? without + " of the " + ids.length + " selected runs " + (without === 1 ? "has" : "have") + " no time series." : "";
  drawOverlay();
  box.scrollIntoView({ block: "nearest" });
}

async function drawOverlay() {
  var data = overlayData, k = $("#overlay-metric").value;
  if (!data || !k) return;
  var Plotly = await loadPlotly();
  var ids = Object.keys(data).filter(function (id) { return data[id][k]; });
  $("#overlay-what").textContent = "(" + k + ", " + ids.length + " run" + (ids.length === 1 ? "" : "s") + ")";
  var traces = ids.map(function (id) {
    var s = data[id], x = s.step || s[k].map(function (_, i) { return i; });
    return { type: "scatter", mode: "lines", name: id.slice(0, 8), x: x, y: s[k],
             hovertemplate: id.slice(0, 8) + " step %{x}: %{y}<extra></extra>" };
  });
  Plotly.react("overlay-chart", traces, {
    height: 340, margin: { l: 60, r: 16, t: 30, b: 44 }, showlegend: true,
    legend: { orientation: "h", x: 1, xanchor: "right", y: 1.02, yanchor: "bottom", font: { size: 11 } },
    xaxis: { title: { text: "step", standoff: 4 } }, yaxis: { title: { text: k }, type: $("#overlay-logy").checked ? "log" : "linear" },
  }, { displaylogo: false, responsive: true });
}

function overlayControls() {
  var select = $("#overlay-metric");
  if (!select) return;
  select.addEventListener("change", drawOverlay);
  $("#overlay-logy").addEventListener("change", drawOverlay);
  $("#overlay-close").addEventListener("click", function () { $("#overlay").hidden = true; });
}

// -- live updates: server-sent events when a run is recorded, starts or dies ------------------
function live() {
  var badge = $("#live");
  async function refresh() {
    var area = $("#table-area");
    if (area) {
      var picked = $all("input[name=ids]:checked").map(function (i) { return i.value; });
      var url = new URL(window.location.href);
      url.searchParams.set("partial", "1");
      var html = await (await fetch(url, { cache: "no-store" })).text();
      area.innerHTML = html;
      picked.forEach(function (id) { var box = $("input[name=ids][value='" + CSS.escape(id) + "']"); if (box) box.checked = true; });
      var total = $("#count"), form = $("#compare-form");
      if (total && form) total.textContent = form.dataset.total + (form.dataset.total === "1" ? " run" : " runs");
      wireTable();
      document.dispatchEvent(new Event("gittrack:refreshed"));
    } else if (document.body.dataset.reloadOnChange) {
      window.location.reload();
    }
  }
  if (window.EventSource) {
    var events = new EventSource("/api/events");
    events.addEventListener("change", refresh);
    events.onopen = function () { if (badge) badge.classList.remove("stale"); };
    events.onerror = function () { if (badge) badge.classList.add("stale"); };
    return;
  }
  var tip = document.body.dataset.tip || null;  // no EventSource: poll the branch tip
  setInterval(async function () {
    try {
      var now = (await (await fetch("/api/tip", { cache: "no-store" })).json()).tip;
      if (badge) badge.classList.remove("stale");
      if (tip !== null && now !== tip) await refresh();
      tip = now;
    } catch (e) { if (badge) badge.classList.add("stale"); }
  }, 3000);
}

// -- a running run's page: elapsed time, logs and time series as they grow ---------------------
function duration(s) { return s < 120 ? s.toFixed(1) + " s" : (s / 60).toFixed(1) + " min"; }

function liveRun() {
  var id = document.body.dataset.liveRun;
  var clock = $("#elapsed");
  if (!id || !window.EventSource) return;
  var started = Date.now() - 1000 * parseFloat((clock && clock.dataset.elapsed) || "0");
  setInterval(function () { if (clock) clock.textContent = duration((Date.now() - started) / 1000); }, 1000);
  var events = new EventSource("/api/runs/" + encodeURIComponent(id) + "/events");
  events.addEventListener("update", function (ev) {
    var d = JSON.parse(ev.data);
    started = Date.now() - 1000 * d.elapsed_s;
    Object.keys(d.logs).forEach(function (name) {
      var pre = $("pre[data-log='" + CSS.escape(name) + "']");
      if (pre && pre.textContent !== d.logs[name]) pre.textContent = d.logs[name];
    });
    var badge = $("#status");
    if (badge && badge.textContent !== d.status) { badge.textContent = d.status; badge.className = "badge " + d.status; }
    if (Object.keys(d.series).length) { var all = {}; all[id.slice(0, 8)] = d.series; drawSeries(all); }
  });
  events.addEventListener("finished", function () { events.close(); window.location.reload(); });
}

// -- plots ------------------------------------------------------------------------------------
var STATUS_COLOURS = { completed: "#16a34a", failed: "#dc2626", died: "#9333ea", running: "#0284c7", interrupted: "#ca8a04" };
var STATUSES = Object.keys(STATUS_COLOURS);

function short(c) { return c.replace(/^(params|metrics)\./, ""); }

function meanStderr(xs, ys) {  // {x: [...], y: mean, err: standard error} over repeated x
  var groups = {};
  xs.forEach(function (x, i) {
    if (typeof x !== "number" || typeof ys[i] !== "number") return;
    (groups[x] = groups[x] || []).push(ys[i]);
  });
  var keys = Object.keys(groups).map(Number).sort(function (a, b) { return a - b; });
  var out = { x: [], y: [], err: [], repeated: false };
  keys.forEach(function (k) {
    var v = groups[k], n = v.length, m = v.reduce(function (a, b) { return a + b; }, 0) / n;
    var sd = n > 1 ? Math.sqrt(v.reduce(function (a, b) { return a + (b - m) * (b - m); }, 0) / (n - 1)) : 0;
    out.x.push(k); out.y.push(m); out.err.push(sd / Math.sqrt(n));
    if (n > 1) out.repeated = true;
  });
  return out;
}

function plots() {
  var box = $("#plots");
  if (!box) return;
  var drawn = false, data = null, cols = [], keep = [];
  async function draw() {
    if (drawn) return;
    drawn = true;
    await loadPlotly();
    var params = new URLSearchParams({ where: box.dataset.where, cols: box.dataset.cols });
    if (box.dataset.experiment) params.set("experiment", box.dataset.experiment);
    data = await (await fetch("/api/plot?" + params)).json();
    if (data.error) { box.insertAdjacentHTML("beforeend", "<pre class=error></pre>"); $("pre.error", box).textContent = data.error; return; }
    var n = data.id.length;
    function numeric(c) { return data[c] ? data[c].filter(function (v) { return typeof v === "number"; }).length : 0; }
    // axes: numeric columns most runs have; lines: the runs that have all of them
    cols = box.dataset.cols.split(",").filter(function (c) { return numeric(c) >= Math.max(2, n / 2); });
    keep = data.id.map(function (_, i) { return cols.every(function (c) { return typeof data[c][i] === "number"; }); });
    var metric = cols.filter(function (c) { return c.indexOf("metrics.") === 0; })[0] || cols[cols.length - 1];
    var numericCols = box.dataset.cols.split(",").filter(function (c) { return numeric(c) > 0; });
    var xdefault = numericCols.filter(function (c) { return c.indexOf("params.") === 0; })[0];
    [["#sx", numericCols, xdefault], ["#sy", numericCols, metric], ["#colour", ["status"].concat(numericCols), metric]].forEach(function (t) {
      var select = $(t[0]);
      select.innerHTML = "";
      t[1].forEach(function (c) { var o = document.createElement("option"); o.textContent = c; o.selected = c === t[2]; select.appendChild(o); });
    });
    parcoords();
    scatter();
  }
  function colourOf(c, rows) {  // [values, plotly colour options] for a colour column
    if (c === "status") {
      return { color: rows.map(function (i) { return Math.max(0, STATUSES.indexOf(data.status[i])); }),
               colorscale: STATUSES.map(function (s, k) { return [k / (STATUSES.length - 1), STATUS_COLOURS[s]]; }),
               cmin: 0, cmax: STATUSES.length - 1 };
    }
    return { color: rows.map(function (i) { return data[c][i]; }), colorscale: "Viridis", showscale: true,
             colorbar: { title: { text: short(c) } } };
  }
  function parcoords() {
    if (cols.length < 2) { $("#parcoords").textContent = "Too few numeric params and metrics to draw parallel coordinates."; return; }
    var rows = data.id.map(function (_, i) { return i; }).filter(function (i) { return keep[i]; });
    var dims = cols.map(function (c) { return { label: short(c), values: rows.map(function (i) { return data[c][i]; }) }; });
    window.Plotly.react("parcoords", [{ type: "parcoords", dimensions: dims, line: colourOf($("#colour").value, rows) }],
      { margin: { l: 70, r: 70, t: 60, b: 30 }, font: { size: 12 } }, { displaylogo: false, responsive: true });
    var plot = $("#parcoords");
    if (!plot.dataset.brushing) {
      plot.dataset.brushing = "1";
      plot.on("plotly_restyle", function () { brush(rows); });
    }
  }
  // brushing the axes of the parallel coordinates keeps only those runs in the table below
  function brush(rows) {
    var dims = $("#parcoords").data[0].dimensions;
    var inside = {};
    rows.forEach(function (i, k) {
      var ok = dims.every(function (d) {
        var r = d.constraintrange;
        if (!r) return true;
        var ranges = Array.isArray(r[0]) ? r : [r];
        return ranges.some(function (x) { return d.values[k] >= x[0] && d.values[k] <= x[1]; });
      });
      if (ok) inside[data.id[i]] = true;
    });
    var active = dims.some(function (d) { return d.constraintrange; });
    var shown = 0;
    $all("#runs tbody tr[data-id]").forEach(function (tr) {
      var on = !active || inside[tr.dataset.id];
      tr.hidden = !on;
      if (on) shown += 1;
    });
    var note = $("#brush-note");
    if (note) note.textContent = active ? shown + " runs of this page lie in the brushed ranges (drag an axis' range off to clear)." : "";
  }
  function scatter() {
    var x = $("#sx").value, y = $("#sy").value, c = $("#colour").value;
    var rows = data.id.map(function (_, i) { return i; });
    var marker = c === "status"
      ? { size: 8, opacity: .8, color: data.status.map(function (s) { return STATUS_COLOURS[s] || "#5b6778"; }) }
      : Object.assign({ size: 8, opacity: .85 }, colourOf(c, rows));
    var traces = [{
      type: "scatter", mode: "markers", name: "runs", x: data[x], y: data[y], text: data.id.map(function (i) { return i.slice(0, 8); }),
      marker: marker, hovertemplate: "%{text}<br>" + x + "=%{x}<br>" + y + "=%{y}<extra></extra>",
    }];
    var agg = meanStderr(data[x], data[y]);
    var aggBox = $("#agg");
    if (aggBox) aggBox.disabled = !agg.repeated;
    if (aggBox && aggBox.checked && agg.repeated) {
      traces.push({ type: "scatter", mode: "lines+markers", name: "mean ± standard error", x: agg.x, y: agg.y,
        error_y: { type: "data", array: agg.err, visible: true }, line: { color: "#0f172a" }, marker: { color: "#0f172a", size: 6 } });
    }
    window.Plotly.react("scatter", traces, { xaxis: { title: { text: x } }, yaxis: { title: { text: y } }, showlegend: traces.length > 1,
      legend: { orientation: "h", x: 1, xanchor: "right", y: 1.02, yanchor: "bottom" }, margin: { l: 60, r: 20, t: 30, b: 50 } },
    { displaylogo: false, responsive: true });
    var plot = $("#scatter");
    if (!plot.dataset.clicks) {
      plot.dataset.clicks = "1";
      plot.on("plotly_click", function (ev) { if (ev.points[0].curveNumber === 0) window.location.href = "/runs/" + data.id[ev.points[0].pointIndex]; });
    }
  }
  box.addEventListener("toggle", function () { if (box.open) draw(); });
  ["#sx", "#sy", "#agg"].forEach(function (sel) { var el = $(sel); if (el) el.addEventListener("change", function () { if (data) scatter(); }); });
  $("#colour").addEventListener("change", function () { if (data) { parcoords(); scatter(); } });
  if (box.open) draw();
}

// -- compare: the compared runs' params and metrics, one line / one point per run ------------
var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
function colour(i) { return PALETTE[i % PALETTE.length]; }

async function comparePlots() {
  var holder = $("#compare-data");
  if (!holder) return;
  var d = JSON.parse(holder.textContent), cols = Object.keys(d.columns);
  var Plotly = await loadPlotly();
  var labels = d.id.map(function (id, i) { return id.slice(0, 8) + (d.name[i] ? " " + d.name[i] : ""); });
  var pc = $("#compare-parcoords");
  if (d.common.length >= 2) {
    var dims = d.common.slice(0, 12).map(function (c) { return { label: short(c), values: d.columns[c] }; });
    Plotly.react(pc, [{ type: "parcoords", dimensions: dims,
      line: { color: d.id.map(function (_, i) { return i; }), cmin: 0, cmax: Math.max(1, d.id.length - 1),
              colorscale: d.id.length < 2 ? [[0, colour(0)], [1, colour(0)]]
                : d.id.map(function (_, i) { return [i / (d.id.length - 1), colour(i)]; }) } }],
      { margin: { l: 70, r: 70, t: 60, b: 30 }, font: { size: 12 }, height: 340 }, { displaylogo: false, responsive: true });
  } else {
    pc.textContent = "The compared runs share fewer than two numeric params and metrics: no parallel coordinates.";
  }
  var sx = $("#cmp-x"), sy = $("#cmp-y");
  var firstParam = cols.filter(function (c) { return c.indexOf("params.") === 0; })[0] || cols[0];
  var firstMetric = cols.filter(function (c) { return c.indexOf("metrics.") === 0; })[0] || cols[cols.length - 1];
  sx.value = firstParam; sy.value = firstMetric;
  function scatter() {
    var x = sx.value, y = sy.value;
    var traces = d.id.map(function (id, i) {  // one trace per run: its own colour and legend entry
      return { type: "scatter", mode: "markers", name: labels[i], x: [d.columns[x][i]], y: [d.columns[y][i]],
               marker: { size: 11, color: colour(i) }, hovertemplate: labels[i] + "<br>" + x + "=%{x}<br>" + y + "=%{y}<extra></extra>" };
    });
    Plotly.react("compare-scatter", traces, { xaxis: { title: { text: x } }, yaxis: { title: { text: y } }, height: 320,
      legend: { orientation: "h", x: 1, xanchor: "right", y: 1.02, yanchor: "bottom" }, margin: { l: 60, r: 20, t: 40, b: 50 } },
      { displaylogo: false, responsive: true });
  }
  sx.addEventListener("change", scatter);
  sy.addEventListener("change", scatter);
  scatter();
  var plot = $("#compare-scatter");
  plot.on("plotly_click", function (ev) { window.location.href = "/runs/" + d.id[ev.points[0].curveNumber]; });
}

// -- time series (run page and compare) -------------------------------------------------------
async function series() {
  var holder = $("#series-data");
  if (!holder) return;
  var all = JSON.parse(holder.textContent);
  if (Object.keys(all).every(function (k) { return !Object.keys(all[k]).length; })) return;
  await drawSeries(all);
}

var lastSeries = null;

function smooth(values, alpha) {  // exponential moving average, gaps kept
  if (!alpha) return values;
  var out = [], acc = null;
  values.forEach(function (v) {
    if (typeof v !== "number") { out.push(v); return; }
    acc = acc === null ? v : alpha * acc + (1 - alpha) * v;
    out.push(acc);
  });
  return out;
}

// one chart per metric; every run in `all` ({short id: {column: values}}) overlaid on each
async function drawSeries(all) {
  lastSeries = all;
  var Plotly = await loadPlotly();
  var box = $("#series");
  if (!box) return;
  var alpha = parseFloat(($("#smooth") || {}).value || "0");
  var logx = ($("#logx") || {}).checked, logy = ($("#logy") || {}).checked;
  var metrics = [];
  Object.keys(all).forEach(function (run) {
    Object.keys(all[run]).forEach(function (k) { if (k !== "step" && metrics.indexOf(k) < 0) metrics.push(k); });
  });
  box.querySelectorAll(".series-chart").forEach(function (el) {
    if (metrics.indexOf(el.dataset.metric) < 0) { Plotly.purge(el); el.remove(); }
  });
  var runs = Object.keys(all);
  metrics.forEach(function (k) {
    var el = box.querySelector(".series-chart[data-metric='" + CSS.escape(k) + "']");
    if (!el) { el = document.createElement("div"); el.className = "series-chart"; el.dataset.metric = k; box.appendChild(el); }
    var traces = runs.filter(function (run) { return all[run][k]; }).map(function (run) {
      var s = all[run];
      var x = s.step || s[k].map(function (_, i) { return i; });
      return { type: "scatter", mode: "lines", name: run.slice(0, 8), x: x, y: smooth(s[k], alpha),
               hovertemplate: run.slice(0, 8) + " step %{x}: %{y}<extra></extra>" };
    });
    Plotly.react(el, traces, {
      title: { text: k, font: { size: 13 }, x: 0.02, xanchor: "left" }, height: 260,
      margin: { l: 56, r: 12, t: 34, b: 40 }, showlegend: runs.length > 1,
      legend: { orientation: "h", x: 1, xanchor: "right", y: 1.02, yanchor: "bottom", font: { size: 11 } },
      xaxis: { title: { text: "step", standoff: 4 }, type: logx ? "log" : "linear" },
      yaxis: { type: logy ? "log" : "linear" },
    }, { displaylogo: false, responsive: true });
  });
}

function seriesControls() {
  ["#smooth", "#logx", "#logy"].forEach(function (sel) {
    var el = $(sel);
    if (el) el.addEventListener("input", function () { if (lastSeries) drawSeries(lastSeries); });
  });
}

// -- flow graph: pan and zoom by rewriting the SVG viewBox; folded nodes expand in place ----
function flow() {
  var box = $("#flow");
  if (!box || !$("svg", box)) return;
  var svg = null, home = null, view = null;
  function set() { svg.setAttribute("viewBox", view.join(" ")); }
  function fit() {
    // a small graph is magnified at most 1.6 times: pad the view to the box instead
    var rect = box.getBoundingClientRect();
    var w = Math.max(home[2], rect.width / 1.6), h = Math.max(home[3], rect.height / 1.6);
    view = [home[0] - (w - home[2]) / 2, home[1] - (h - home[3]) / 2, w, h];
    set();
  }
  // take over an SVG; with `focus` (an experiment's name) the zoom is kept and the view moves
  // to that experiment's cluster, otherwise the graph is fitted to the box
  function install(el, focus) {
    var before = view;
    svg = el;
    svg.removeAttribute("width");
    svg.removeAttribute("height");
    var vb = svg.viewBox.baseVal;
    home = [vb.x, vb.y, vb.width, vb.height];
    if (!before || focus === undefined) { fit(); return; }
    var centre = [before[0] + before[2] / 2, before[1] + before[3] / 2];
    var cluster = $all("g.cluster", svg).filter(function (g) {
      var t = $("text", g); return t && t.textContent.trim() === "experiment " + focus;
    })[0];
    if (cluster) {
      var bb = cluster.getBBox();
      var m = svg.querySelector("g").transform.baseVal.consolidate();  // graphviz translates its graph
      var dx = m ? m.matrix.e : 0, dy = m ? m.matrix.f : 0;
      centre = [bb.x + dx + bb.width / 2, bb.y + dy + bb.height / 2];
    }
    view = [centre[0] - before[2] / 2, centre[1] - before[3] / 2, before[2], before[3]];
    set();
  }
  install($("svg", box));
  box.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var rect = svg.getBoundingClientRect();
    var scale = Math.max(view[2] / rect.width, view[3] / rect.height);
    var fx = (ev.clientX - rect.left - (rect.width - view[2] / scale) / 2) / (view[2] / scale);
    var fy = (ev.clientY - rect.top - (rect.height - view[3] / scale) / 2) / (view[3] / scale);
    var k = ev.deltaY > 0 ? 1.15 : 1 / 1.15;
    var w = view[2] * k, h = view[3] * k;
    view = [view[0] + (view[2] - w) * fx, view[1] + (view[3] - h) * fy, w, h];
    set();
  }, { passive: false });
  var start = null, moved = false;
  box.addEventListener("mousedown", function (ev) { start = [ev.clientX, ev.clientY, view[0], view[1]]; moved = false; box.classList.add("dragging"); });
  window.addEventListener("mousemove", function (ev) {
    if (!start) return;
    var rect = svg.getBoundingClientRect();
    var scale = Math.max(view[2] / rect.width, view[3] / rect.height);
    var dx = ev.clientX - start[0], dy = ev.clientY - start[1];
    if (Math.abs(dx) + Math.abs(dy) > 3) moved = true;
    view[0] = start[2] - dx * scale; view[1] = start[3] - dy * scale;
    set();
  });
  window.addEventListener("mouseup", function () { start = null; box.classList.remove("dragging"); });
  box.addEventListener("click", function (ev) { if (moved) { ev.preventDefault(); ev.stopPropagation(); moved = false; } }, true);
  var reset = $("#zoom-reset");
  if (reset) reset.addEventListener("click", fit);
  function zoom(k) {  // about the centre of the view
    var w = view[2] * k, h = view[3] * k;
    view = [view[0] + (view[2] - w) / 2, view[1] + (view[3] - h) / 2, w, h];
    set();
  }
  var zin = $("#zoom-in"), zout = $("#zoom-out");
  if (zin) zin.addEventListener("click", function () { zoom(1 / 1.25); });
  if (zout) zout.addEventListener("click", function () { zoom(1.25); });
  document.addEventListener("keydown", function (ev) {
    if (/^(INPUT|TEXTAREA|SELECT)$/.test(ev.target.tagName || "") || ev.ctrlKey || ev.metaKey) return;
    if (ev.key === "+" || ev.key === "=") zoom(1 / 1.25);
    else if (ev.key === "-") zoom(1.25);
    else if (ev.key === "0") fit();
  });
  // "expand" draws a folded experiment run by run without leaving the page: the new graph is
  // fetched and swapped in, and the address changes so that a reload shows the same graph
  var area = $("#flow-area");
  if (!area) return;
  area.addEventListener("click", async function (ev) {
    var link = ev.target.closest && ev.target.closest("a.expand");
    if (!link || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
    ev.preventDefault();
    var url = new URL(link.href, window.location.href);
    var fetchUrl = new URL(url);
    fetchUrl.searchParams.set("partial", "1");
    var status = $("#flow-status");
    if (status) status.textContent = "Drawing " + link.dataset.name + " run by run…";
    try {
      var answer = await fetch(fetchUrl, { cache: "no-store" });
      if (!answer.ok) throw new Error(answer.status + " " + answer.statusText);
      var holder = document.createElement("template");
      holder.innerHTML = await answer.text();
      var meta = $("#flow-meta", holder.content), next = $("#flow svg", holder.content);
      $("#flow-meta").replaceWith(meta);
      if (next) { svg.replaceWith(next); install(next, link.dataset.name); }
      var count = $("#flow-count");
      if (count) count.textContent = meta.dataset.count;
      window.history.replaceState(null, "", url.pathname + url.search);
      if (status) status.textContent = link.dataset.name + " expanded.";
    } catch (e) {
      if (status) status.textContent = "Could not expand " + link.dataset.name + " (" + e.message + "); reloading.";
      window.location.href = url.toString();
    }
  });
}

// -- output previews: 1-D arrays as a line, 2-D arrays as a heat map --------------------------
async function outputPreviews() {
  var holders = $all("script.preview-data");
  if (!holders.length) return;
  var Plotly = await loadPlotly();
  holders.forEach(function (holder) {
    var d = JSON.parse(holder.textContent);
    var trace = holder.dataset.kind === "line"
      ? { type: "scatter", mode: "lines", x: d.x, y: d.y }
      : { type: "heatmap", z: d.z, colorscale: "Viridis" };
    Plotly.newPlot(holder.dataset.target, [trace], { margin: { l: 50, r: 20, t: 10, b: 30 }, height: 280 },
      { displaylogo: false, responsive: true });
  });
}

// -- keyboard: "/" focuses the filter, Escape closes open menus -------------------------------
function keyboard() {
  document.addEventListener("keydown", function (ev) {
    var typing = /^(INPUT|TEXTAREA|SELECT)$/.test((ev.target && ev.target.tagName) || "");
    if (ev.key === "/" && !typing && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
      var where = $("#where");
      if (where) { ev.preventDefault(); where.focus(); where.select(); }
    } else if (ev.key === "Escape") {
      $all("details.chooser[open]").forEach(function (d) { d.open = false; var s = $("summary", d); if (s) s.focus(); });
    }
  });
  document.addEventListener("click", function (ev) {  // a click elsewhere closes the chooser too
    $all("details.chooser[open]").forEach(function (d) { if (!d.contains(ev.target)) d.open = false; });
  });
}

document.addEventListener("DOMContentLoaded", function () {
  keyboard();
  seriesControls();
  wireTable();
  overlayControls();
  live();
  plots();
  series();
  comparePlots();
  liveRun();
  outputPreviews();
  flow();
});
