// Tiny charts for the dashboard, written here and not loaded from anywhere, so
// the page works with no internet: a camera's in and out per window over event
// time (canvas), and a counter's counts beside its forecast band (SVG: the band
// and the forecast line are elements a test or a stylesheet can find).
"use strict";

const CamChart = (() => {
  const COLORS = { in: "#3fb950", out: "#f0883e", axis: "#2d3a46", text: "#8b98a5" };

  function pad2(n) {
    return String(n).padStart(2, "0");
  }

  function label(t, seconds) {
    const d = new Date(t * 1000);
    const hm = `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
    return seconds ? `${hm}:${pad2(d.getUTCSeconds())}` : hm;
  }

  // points: [{t, in, out}] sorted by t (window starts, epoch seconds);
  // range: {from, to} in epoch seconds; step: the window size.
  function draw(canvas, points, range, step) {
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 460;
    const h = canvas.clientHeight || 150;
    if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(h * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const left = 34, right = 8, top = 14, bottom = 18;
    const plotW = w - left - right, plotH = h - top - bottom;
    const span = Math.max(range.to - range.from, 1);
    const shown = points.filter((p) => p.t >= range.from && p.t <= range.to);
    const ymax = Math.max(1, ...shown.map((p) => Math.max(p.in, p.out)));
    const x = (t) => left + ((t - range.from) / span) * plotW;
    const y = (v) => top + plotH - (v / ymax) * plotH;

    ctx.strokeStyle = COLORS.axis;
    ctx.fillStyle = COLORS.text;
    ctx.font = "10px system-ui, sans-serif";
    ctx.lineWidth = 1;
    for (const v of [0, Math.ceil(ymax / 2), ymax]) {
      ctx.beginPath();
      ctx.moveTo(left, y(v));
      ctx.lineTo(w - right, y(v));
      ctx.stroke();
      ctx.fillText(String(v), 4, y(v) + 3);
    }
    for (let i = 0; i <= 4; i++) {
      const t = range.from + (span * i) / 4;
      const tx = Math.min(Math.max(x(t) - 14, left), w - right - 28);
      ctx.fillText(label(t), tx, h - 4);
    }
    // One pair of bars per window: a window with no row counted nothing.
    const slot = Math.max((step / span) * plotW, 2);
    const bar = Math.max(slot / 2 - 0.5, 1);
    for (const p of shown) {
      const x0 = x(p.t);
      ctx.fillStyle = COLORS.in;
      ctx.fillRect(x0, y(p.in), bar, top + plotH - y(p.in));
      ctx.fillStyle = COLORS.out;
      ctx.fillRect(x0 + bar, y(p.out), bar, top + plotH - y(p.out));
    }
    ctx.fillStyle = COLORS.in;
    ctx.fillText(`in / enter per ${step} s`, left + 4, 10);
    ctx.fillStyle = COLORS.out;
    ctx.fillText("out / exit", left + 110, 10);
  }

  const SVG_NS = "http://www.w3.org/2000/svg";

  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }

  // actual: [{t, in, out}] closed windows; band: [{t, in: {value, lower, upper} | null,
  // out: ...}] forecast windows; range: {from, to}; step: the window size. The band is
  // drawn as steps, one flat stretch per window, and the forecast as a line through them.
  function drawForecast(svg, actual, band, range, step) {
    const w = svg.clientWidth || 460;
    const h = svg.clientHeight || 120;
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    const left = 34, right = 8, top = 14, bottom = 18;
    const plotW = w - left - right, plotH = h - top - bottom;
    const span = Math.max(range.to - range.from, 1);
    const inRange = (p) => p.t + step > range.from && p.t < range.to;
    const shown = actual.filter(inRange);
    const bands = band.filter(inRange);
    const ymax = Math.max(1, ...shown.map((p) => Math.max(p.in, p.out)),
      ...bands.flatMap((p) => [p.in ? p.in.upper : 0, p.out ? p.out.upper : 0]));
    const x = (t) => left + (Math.min(Math.max(t, range.from), range.to) - range.from) / span * plotW;
    const y = (v) => top + plotH - (v / ymax) * plotH;
    const nodes = [];
    for (const v of [0, Math.round(ymax)]) {
      nodes.push(svgEl("line", { x1: left, x2: w - right, y1: y(v), y2: y(v), stroke: COLORS.axis }));
      nodes.push(text(String(v), 4, y(v) + 3));
    }
    for (let i = 0; i <= 4; i++) {
      const t = range.from + (span * i) / 4;
      // A span of minutes (a young pipeline, short windows) needs the seconds.
      const tx = Math.min(Math.max(x(t) - 20, left), w - right - 42);
      nodes.push(text(label(t, span < 600), tx, h - 4));
    }
    const slot = Math.max((step / span) * plotW, 2);
    const bar = Math.max(slot / 2 - 0.5, 1);
    for (const p of shown) {
      for (const [side, dx] of [["in", 0], ["out", bar]]) {
        nodes.push(svgEl("rect", {
          class: "actual", "data-side": side, x: x(p.t) + dx, y: y(p[side]), width: bar,
          height: top + plotH - y(p[side]), fill: COLORS[side],
        }));
      }
    }
    for (const side of ["in", "out"]) {
      const pts = bands.filter((p) => p[side]).sort((a, b) => a.t - b.t);
      if (!pts.length) continue;
      const upper = pts.flatMap((p) => [[x(p.t), y(p[side].upper)], [x(p.t + step), y(p[side].upper)]]);
      const lower = pts.flatMap((p) => [[x(p.t), y(p[side].lower)], [x(p.t + step), y(p[side].lower)]]);
      const line = pts.map((p) => [x(p.t + step / 2), y(p[side].value)]);
      const fmt = (xy) => xy.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(" ");
      nodes.push(svgEl("polygon", {
        class: "forecast-band", "data-side": side, "data-points": pts.length,
        points: fmt([...upper, ...lower.reverse()]), fill: COLORS[side], "fill-opacity": 0.18,
        stroke: "none",
      }));
      nodes.push(svgEl("polyline", {
        class: "forecast-line", "data-side": side, "data-points": pts.length, points: fmt(line),
        fill: "none", stroke: COLORS[side], "stroke-width": 1.5, "stroke-dasharray": "4 3",
      }));
    }
    nodes.push(text(`counts and forecast band per ${step} s`, left + 4, 10));
    svg.replaceChildren(...nodes);
  }

  function text(content, tx, ty) {
    const node = svgEl("text", { x: tx, y: ty, fill: COLORS.text, "font-size": 10 });
    node.textContent = content;
    return node;
  }

  return { draw, drawForecast };
})();
