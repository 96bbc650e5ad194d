// The camcount dashboard: cameras, live previews, counts that move, last hour.
//
// Counts are exact without double counting: a camera's status gives its
// totals together with the event time of the last frame they include; a
// live crossing or zone transition is added only when it is later than that.
// Previews are fetched only for cards on screen while the page is visible,
// which is what makes a camera draw them at all.
//
// Open alerts come from GET /alerts once, then from the live `alert` kind:
// a firing change adds one, its resolved change (same alert_id) takes it
// away. Each counter with forecasts gets a chart of its counts at the
// forecast window size beside the band and the forecast line; for every
// window, the nearest forecast (the latest issued) is drawn.
"use strict";

(() => {
  const LIVE_KINDS = ["crossing", "zone_transition", "window_row", "alert", "forecast"];
  const ACK_EVERY = 20;
  const ALERTS_RELOAD_MS = 15000;
  const HOUR_S = 3600;
  const params = new URLSearchParams(location.search);
  const forceSse = params.get("transport") === "sse";

  const state = {
    token: null,
    cameras: new Map(), // id -> camera model
    lastSeq: null, // last update seen, the resume point
    transport: null,
    ws: null,
    sse: null,
    wsFailures: 0,
    unacked: 0,
    previewFps: 2,
    windowS: null,
    forecastS: null, // the window size whose forecasts are charted
    noWarehouse: false, // GET /alerts and /forecasts said the pipeline has none
    alerts: new Map(), // alert_id -> its firing change
    resolved: new Set(), // alert ids seen resolved, so a late answer cannot reopen them
  };

  // ---------------------------------------------------------------- token

  function takeToken() {
    const hash = new URLSearchParams(location.hash.slice(1));
    const fromHash = hash.get("token");
    if (fromHash) {
      sessionStorage.setItem("camcount-token", fromHash);
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem("camcount-token");
  }

  function askToken(message) {
    const form = document.getElementById("login");
    form.hidden = false;
    document.getElementById("login-error").textContent = message || "";
    form.onsubmit = (ev) => {
      ev.preventDefault();
      sessionStorage.setItem("camcount-token", document.getElementById("token").value.trim());
      location.reload();
    };
  }

  async function api(path) {
    const res = await fetch(path, { headers: { Authorization: `Bearer ${state.token}` } });
    if (res.status === 401) {
      sessionStorage.removeItem("camcount-token");
      askToken("The token was refused.");
      throw new Error("unauthorized");
    }
    return res;
  }

  // ---------------------------------------------------------------- cameras

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const c of children) node.append(c);
    return node;
  }

  function makeCard(id) {
    const card = el("section", { class: "camera", "data-camera": id });
    const title = el("h2", {}, el("span", { class: "camera-id", title: id }, id),
      el("span", { class: "state" }));
    const img = el("img", { class: "preview", alt: `live preview of ${id}` });
    const total = el("div", {},
      el("span", { class: "total", "data-total": id }, "0"),
      el("span", { class: "total-label" }, " counted (in + enter)"));
    const table = el("table", { class: "counts" },
      el("thead", {}, el("tr", {}, el("th", {}, "counter"), el("th", {}, "in / enter"),
        el("th", {}, "out / exit"))),
      el("tbody"));
    const canvas = el("canvas", { class: "chart", "aria-label": `last hour of ${id}` });
    const meta = el("div", { class: "meta" });
    const forecasts = el("div", { class: "forecasts" });
    card.append(title, img, total, table, canvas, forecasts, meta);
    document.getElementById("cameras").append(card);
    const cam = {
      id, card, img, canvas, meta,
      state: title.querySelector(".state"), total: total.querySelector(".total"),
      tbody: table.querySelector("tbody"),
      baseline: { time: -Infinity, totals: new Map() },
      pending: [], // live events later than the baseline: [time, key]
      seen: new Set(),
      rows: new Map(), // window_start -> {t, in, out} for the chart
      latest: null, // newest event time seen, the chart's right edge
      visible: false,
      previewTimer: null,
      previewUrl: null,
      counters: new Set(),
      forecasts, // the counter charts' container
      fc: new Map(), // counter -> {svg, actual: Map t -> row, band: Map series -> Map t -> point}
    };
    visibility.observe(card);
    return cam;
  }

  function keyOf(counter, direction) {
    return `${counter}\u0000${direction}`;
  }

  function setBaseline(cam, status) {
    const totals = new Map();
    for (const t of status.totals || []) {
      const k = keyOf(t.counter_id, t.direction);
      totals.set(k, (totals.get(k) || 0) + t.count);
      cam.counters.add(t.counter_id);
    }
    const time = status.last_frame_time ?? -Infinity;
    if (time >= cam.baseline.time) {
      cam.baseline = { time, totals };
      cam.pending = cam.pending.filter(([t]) => t > time);
    }
    if (status.last_frame_time) cam.latest = Math.max(cam.latest || 0, status.last_frame_time);
    cam.state.textContent = status.state;
    cam.state.dataset.state = status.state;
    const lag = status.lag_s == null ? "" : ` · lag ${status.lag_s.toFixed(1)} s`;
    cam.meta.textContent =
      `${status.fps} fps · ${status.frames_processed} frames · ${status.frames_dropped} dropped${lag}`;
    render(cam);
  }

  function count(cam, k) {
    let n = cam.baseline.totals.get(k) || 0;
    for (const [, key] of cam.pending) if (key === k) n += 1;
    return n;
  }

  function render(cam) {
    const rows = [];
    let total = 0;
    for (const counter of [...cam.counters].sort()) {
      const inn = count(cam, keyOf(counter, "in")) + count(cam, keyOf(counter, "enter"));
      const out = count(cam, keyOf(counter, "out")) + count(cam, keyOf(counter, "exit"));
      total += inn;
      rows.push(el("tr", { "data-counter": counter }, el("td", {}, counter),
        el("td", { class: "in" }, String(inn)), el("td", { class: "out" }, String(out))));
    }
    cam.tbody.replaceChildren(...rows);
    cam.total.textContent = String(total);
  }

  function drawChart(cam) {
    if (!state.windowS) return;
    const to = (cam.latest || Date.now() / 1000);
    const points = [...cam.rows.values()].sort((a, b) => a.t - b.t);
    CamChart.draw(cam.canvas, points, { from: to - HOUR_S, to }, state.windowS);
  }

  async function loadCounters(cam) {
    // Every line and zone gets a row, counted or not yet.
    const res = await api(`/cameras/${encodeURIComponent(cam.id)}`);
    if (!res.ok) return;
    const { config } = await res.json();
    for (const c of [...config.lines, ...config.zones]) cam.counters.add(c.id);
    render(cam);
  }

  async function loadHistory(cam) {
    if (!state.windowS || !cam.latest) return;
    const start = Math.floor(cam.latest - HOUR_S);
    const res = await api(`/counts?camera=${encodeURIComponent(cam.id)}&window=${state.windowS}` +
      `&start=${Math.max(0, start)}&limit=10000`);
    if (!res.ok) return;
    for (const r of (await res.json()).rows) addRow(cam, r);
    drawChart(cam);
  }

  function addRow(cam, r) {
    if (r.window_size_s !== state.windowS) return;
    const dir = r.direction;
    const side = dir === "in" || dir === "enter" ? "in" : dir === "out" || dir === "exit" ? "out" : null;
    if (!side) return;
    const p = cam.rows.get(r.window_start) || { t: r.window_start, in: 0, out: 0, parts: new Map() };
    // A row is final and keyed: the same row twice (a resume) changes nothing.
    // /counts names the class `class`, a live window_row `class_name`
    const cls = r.class_name;
    p.parts.set(`${r.counter_id}\u0000${cls}\u0000${dir}`, [side, r.count]);
    p.in = 0;
    p.out = 0;
    for (const [s, n] of p.parts.values()) p[s] += n;
    cam.rows.set(r.window_start, p);
    cam.latest = Math.max(cam.latest || 0, r.window_start + r.window_size_s);
    for (const [t] of cam.rows) if (t < cam.latest - 2 * HOUR_S) cam.rows.delete(t);
  }

  // ---------------------------------------------------------------- forecasts

  function sideOf(direction) {
    if (direction === "in" || direction === "enter") return "in";
    if (direction === "out" || direction === "exit") return "out";
    return null;
  }

  function counterChart(cam, counter) {
    let c = cam.fc.get(counter);
    if (!c) {
      const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      svg.setAttribute("class", "counter-chart");
      svg.setAttribute("data-counter", counter);
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", `${counter}: counts and forecast band`);
      const box = el("figure", { class: "counter-forecast", "data-counter": counter },
        el("figcaption", {}, counter), svg);
      const after = [...cam.forecasts.children].find((n) => n.dataset.counter > counter);
      cam.forecasts.insertBefore(box, after || null);
      c = { svg, actual: new Map(), band: new Map() };
      cam.fc.set(counter, c);
    }
    return c;
  }

  function addForecast(cam, f) {
    // The nearest forecast of a window is the one issued last.
    if (f.window_size_s !== state.forecastS || !sideOf(f.direction)) return;
    const c = counterChart(cam, f.counter_id);
    const key = `${f.class_name}\u0000${f.direction}`;
    const points = c.band.get(key) || new Map();
    const old = points.get(f.window_start);
    if (!old || old.issued_for <= f.issued_for) {
      points.set(f.window_start, { issued_for: f.issued_for, value: f.value, lower: f.lower, upper: f.upper });
    }
    c.band.set(key, points);
  }

  function addForecastActual(cam, r) {
    if (r.window_size_s !== state.forecastS) return;
    const side = sideOf(r.direction);
    const c = cam.fc.get(r.counter_id);
    if (!side || !c) return;
    const p = c.actual.get(r.window_start) || { t: r.window_start, parts: new Map() };
    p.parts.set(`${r.class_name}\u0000${r.direction}`, [side, r.count]);
    c.actual.set(r.window_start, p);
  }

  function drawForecasts(cam) {
    const step = state.forecastS;
    if (!step) return;
    const now = cam.latest || Date.now() / 1000;
    for (const c of cam.fc.values()) {
      // A counter's band per side is its classes' bands added up.
      const byT = new Map();
      let end = now;
      for (const [key, points] of c.band) {
        const side = sideOf(key.split("\u0000")[1]);
        for (const [t, f] of points) {
          if (t < now - 2 * HOUR_S) {
            points.delete(t);
            continue;
          }
          const p = byT.get(t) || { t, in: null, out: null };
          const s = p[side] || { value: 0, lower: 0, upper: 0 };
          p[side] = { value: s.value + f.value, lower: s.lower + f.lower, upper: s.upper + f.upper };
          byT.set(t, p);
          end = Math.max(end, t + step);
        }
      }
      const actual = [];
      for (const [t, p] of c.actual) {
        if (t < now - 2 * HOUR_S) {
          c.actual.delete(t);
          continue;
        }
        const sums = { t, in: 0, out: 0 };
        for (const [side, n] of p.parts.values()) sums[side] += n;
        actual.push(sums);
      }
      // The hour behind (less while the pipeline is younger) and the band ahead.
      const first = Math.min(...actual.map((p) => p.t), ...byT.keys());
      const from = Math.max(now - HOUR_S, Number.isFinite(first) ? first - step : now - HOUR_S);
      CamChart.drawForecast(c.svg, actual, [...byT.values()], { from, to: end }, step);
    }
  }

  async function loadForecastActuals(cam) {
    if (!state.forecastS || !cam.fc.size) return;
    const start = Math.max(0, Math.floor((cam.latest || Date.now() / 1000) - HOUR_S));
    const res = await api(`/counts?camera=${encodeURIComponent(cam.id)}&window=${state.forecastS}` +
      `&start=${start}&limit=10000`);
    if (!res.ok) return;
    for (const r of (await res.json()).rows) addForecastActual(cam, r);
    drawForecasts(cam);
  }

  async function loadForecasts(cam) {
    if (state.noWarehouse) return;
    const res = await api(`/forecasts?camera=${encodeURIComponent(cam.id)}`);
    if (res.status === 404) state.noWarehouse = true;
    if (!res.ok) return; // no warehouse: the live forecasts still come
    const { series } = await res.json();
    if (!series.length) return;
    // One size per page: the smallest forecast, the one that moves most.
    const first = state.forecastS === null;
    if (first) state.forecastS = Math.min(...series.map((s) => s.window_size_s));
    for (const s of series) {
      for (const p of s.points) addForecast(cam, { ...s, ...p });
    }
    if (first) for (const other of state.cameras.values()) if (other !== cam) loadForecastActuals(other);
    await loadForecastActuals(cam);
  }

  function onForecast(f) {
    const cam = state.cameras.get(f.camera_id);
    if (!cam) return; // a group's: no card to draw it on
    if (state.forecastS === null) {
      state.forecastS = f.window_size_s;
      addForecast(cam, f);
      for (const c of state.cameras.values()) loadForecastActuals(c);
      return;
    }
    const isNew = !cam.fc.has(f.counter_id);
    addForecast(cam, f);
    if (isNew && cam.fc.has(f.counter_id)) loadForecastActuals(cam);
    else drawForecasts(cam);
  }

  // ---------------------------------------------------------------- alerts

  function utc(t) {
    return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19);
  }

  function number(v) {
    return Number.isInteger(v) ? String(v) : v.toFixed(2);
  }

  function applyAlert(a) {
    if (a.state === "resolved") {
      state.resolved.add(a.alert_id);
      state.alerts.delete(a.alert_id);
    } else if (!state.resolved.has(a.alert_id)) {
      state.alerts.set(a.alert_id, a);
    }
  }

  function renderAlerts() {
    const order = { critical: 0, warning: 1, info: 2 };
    const open = [...state.alerts.values()].sort(
      (a, b) => (order[a.severity] ?? 3) - (order[b.severity] ?? 3) || a.opened_at - b.opened_at);
    const rows = open.map((a) => el("tr", { "data-alert": String(a.alert_id), "data-rule": a.rule_id,
      "data-severity": a.severity, title: a.message },
      el("td", {}, el("span", { class: "severity", "data-severity": a.severity }, a.severity)),
      el("td", {}, a.rule_id), el("td", { class: "target" }, a.target),
      el("td", {}, utc(a.opened_at)),
      el("td", { class: "value" }, `${number(a.value)} / ${number(a.threshold)}`)));
    document.getElementById("alert-rows").replaceChildren(...rows);
    document.getElementById("alert-count").textContent = String(open.length);
    document.getElementById("no-alerts").hidden = open.length > 0;
  }

  async function loadAlerts() {
    if (state.noWarehouse) return; // the live changes are all there is
    try {
      const res = await api("/alerts?limit=1000");
      if (res.status === 404) state.noWarehouse = true;
      if (!res.ok) return;
      const body = await res.json();
      for (const a of body.changes) if (a.state === "resolved") applyAlert(a);
      for (const a of body.open) applyAlert(a);
      renderAlerts();
    } catch (err) {
      // the next reload tries again
    }
  }

  async function refreshCameras() {
    const res = await api("/status");
    if (!res.ok) return;
    const status = await res.json();
    // An hour of one-minute bars reads better than 360 ten-second ones.
    const sizes = [...status.window_sizes_s].sort((a, b) => a - b);
    state.windowS = sizes.find((w) => w >= 60) ?? sizes[sizes.length - 1];
    state.previewFps = status.preview_fps;
    const ids = new Set();
    for (const s of status.cameras) {
      ids.add(s.camera_id);
      let cam = state.cameras.get(s.camera_id);
      const isNew = !cam;
      if (isNew) {
        cam = makeCard(s.camera_id);
        state.cameras.set(s.camera_id, cam);
      }
      setBaseline(cam, s);
      if (isNew) {
        loadCounters(cam);
        loadHistory(cam).then(() => drawChart(cam));
        loadForecasts(cam);
      }
    }
    for (const [id, cam] of state.cameras) {
      if (!ids.has(id)) {
        visibility.unobserve(cam.card);
        stopPreview(cam);
        cam.card.remove();
        state.cameras.delete(id);
      }
    }
    document.getElementById("empty").hidden = state.cameras.size > 0;
    for (const cam of state.cameras.values()) {
      drawChart(cam);
      drawForecasts(cam);
    }
  }

  // ---------------------------------------------------------------- previews

  const visibility = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const cam = state.cameras.get(e.target.dataset.camera);
      if (!cam) continue;
      cam.visible = e.isIntersecting;
      if (cam.visible && document.visibilityState === "visible") startPreview(cam);
      else stopPreview(cam);
    }
  });

  document.addEventListener("visibilitychange", () => {
    for (const cam of state.cameras.values()) {
      if (cam.visible && document.visibilityState === "visible") startPreview(cam);
      else stopPreview(cam);
    }
  });

  function startPreview(cam) {
    if (cam.previewTimer) return;
    const tick = async () => {
      try {
        const res = await api(`/cameras/${encodeURIComponent(cam.id)}/preview.jpg`);
        if (res.ok) {
          const url = URL.createObjectURL(await res.blob());
          cam.img.onload = () => {
            if (cam.previewUrl) URL.revokeObjectURL(cam.previewUrl);
            cam.previewUrl = url;
            cam.img.dataset.loaded = String(Number(cam.img.dataset.loaded || 0) + 1);
          };
          cam.img.src = url;
        }
      } catch (err) {
        // the next tick tries again
      }
      if (cam.previewTimer) cam.previewTimer = setTimeout(tick, 1000 / state.previewFps);
    };
    cam.previewTimer = setTimeout(tick, 0);
  }

  function stopPreview(cam) {
    if (cam.previewTimer) clearTimeout(cam.previewTimer);
    cam.previewTimer = null;
  }

  // ---------------------------------------------------------------- live

  function setConn(text, s) {
    const c = document.getElementById("conn");
    c.textContent = text;
    c.dataset.state = s;
  }

  function onUpdate(u) {
    state.lastSeq = u.seq;
    document.getElementById("seq").textContent = `seq ${u.seq}`;
    // Alerts and forecasts may be a group's, which has no card.
    if (u.kind === "alert") {
      applyAlert(u.data);
      renderAlerts();
      return;
    }
    if (u.kind === "forecast") {
      onForecast(u.data);
      return;
    }
    const cam = state.cameras.get(u.camera_id);
    if (!cam) {
      refreshCameras();
      return;
    }
    const d = u.data;
    if (u.kind === "window_row") {
      addRow(cam, d);
      drawChart(cam);
      if (d.window_size_s === state.forecastS) {
        addForecastActual(cam, d);
        drawForecasts(cam);
      }
      return;
    }
    if (cam.seen.has(d.event_id)) return;
    cam.seen.add(d.event_id);
    if (cam.seen.size > 50000) cam.seen.clear();
    cam.latest = Math.max(cam.latest || 0, d.event_time);
    cam.counters.add(d.counter_id);
    if (d.event_time > cam.baseline.time) {
      cam.pending.push([d.event_time, keyOf(d.counter_id, d.direction)]);
      render(cam);
    }
  }

  function onGap() {
    // Some updates are gone: take the totals and the history again.
    refreshCameras();
    loadAlerts();
    for (const cam of state.cameras.values()) {
      loadHistory(cam);
      loadForecasts(cam);
    }
  }

  async function liveWsUrl() {
    // A live replica's own port (writes straight to the socket), least
    // loaded first; the relayed route through the API's port when none.
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const relayed = `${proto}//${location.host}/live/ws`;
    try {
      const res = await api("/live/endpoints");
      if (res.ok) return (await res.json()).ws || relayed;
    } catch (err) {
      if (err.message === "unauthorized") throw err;
    }
    return relayed;
  }

  async function connectWs() {
    let url;
    try {
      url = await liveWsUrl();
    } catch (err) {
      return; // the token was refused: askToken is showing
    }
    // batch=1: updates that arrive together come in one frame
    const ws = new WebSocket(`${url}?batch=1`);
    state.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      ws.send(JSON.stringify({ type: "auth", token: state.token }));
    };
    ws.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      switch (m.type) {
        case "hello": {
          state.wsFailures = 0;
          state.transport = "ws";
          setConn("live (WebSocket)", "live");
          const sub = { type: "subscribe", id: "dashboard", kinds: LIVE_KINDS };
          sub.after = state.lastSeq ?? m.seq;
          ws.send(JSON.stringify(sub));
          loadAlerts(); // what changed before this subscription
          break;
        }
        case "update":
        case "updates":
          for (const u of m.type === "updates" ? m.updates : [m]) onUpdate(u);
          state.unacked += m.type === "updates" ? m.updates.length : 1;
          if (state.unacked >= ACK_EVERY) ack();
          break;
        case "gap":
          onGap();
          break;
        case "overflow":
          setConn("too slow: reconnecting", "down");
          break;
        default:
          break;
      }
    };
    ws.onclose = (ev) => {
      state.ws = null;
      if (ev.code === 4401) {
        sessionStorage.removeItem("camcount-token");
        askToken("The token was refused.");
        return;
      }
      if (!opened) state.wsFailures += 1;
      setConn("reconnecting…", "down");
      if (state.wsFailures >= 3) connectSse();
      else setTimeout(connectWs, Math.min(1000 * 2 ** state.wsFailures, 10000));
    };
  }

  function ack() {
    if (state.ws && state.ws.readyState === WebSocket.OPEN && state.lastSeq != null) {
      state.ws.send(JSON.stringify({ type: "ack", seq: state.lastSeq }));
    }
    state.unacked = 0;
  }

  function connectSse() {
    const q = new URLSearchParams({ access_token: state.token, kinds: LIVE_KINDS.join(",") });
    if (state.lastSeq != null) q.set("after", String(state.lastSeq));
    const es = new EventSource(`/live/events?${q}`);
    state.sse = es;
    es.addEventListener("hello", () => {
      state.transport = "sse";
      setConn("live (SSE)", "live");
      loadAlerts();
    });
    es.addEventListener("update", (ev) => onUpdate(JSON.parse(ev.data)));
    es.addEventListener("gap", onGap);
    es.onerror = () => setConn("reconnecting…", "down");
  }

  // ---------------------------------------------------------------- start

  async function main() {
    state.token = takeToken();
    if (!state.token) {
      askToken();
      return;
    }
    document.getElementById("alerts").hidden = false;
    await refreshCameras();
    await loadAlerts();
    if (forceSse || typeof WebSocket === "undefined") connectSse();
    else connectWs();
    setInterval(refreshCameras, 5000);
    // The warehouse takes alerts at each checkpoint: one raised before this
    // page subscribed shows up here even if its live update was missed.
    setInterval(loadAlerts, ALERTS_RELOAD_MS);
    setInterval(ack, 1000);
  }

  main().catch((err) => setConn(`error: ${err.message}`, "down"));
})();
