// A tiny canvas bar chart for the dashboard: in and out per window over event time.
// Written here, not loaded from anywhere, so the page works with no internet.
"use strict";

const CamChart = (() => {
  const COLORS = { in: "#3fb950", out: "#f0883e", axis: "#2d3a46", text: "#8b98a5" };

  function pad2(n) {
    return String(n).padStart(2, "0");
  }

  function label(t) {
    const d = new Date(t * 1000);
    return `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
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

  return { draw };
})();
