// A small line chart on a canvas: loss and eval loss (left axis), token accuracy (right axis,
// 0–1), over optimizer steps. No library: the page works offline.
export function drawChart(canvas, steps, evals, totalSteps) {
  const ctx = canvas.getContext('2d');
  const W = canvas.width, H = canvas.height;
  const pad = { l: 50, r: 50, t: 12, b: 28 };
  ctx.clearRect(0, 0, W, H);
  ctx.font = '12px system-ui, sans-serif';
  const losses = steps.map((s) => s.loss).concat(evals.map((e) => e.eval_loss)).filter(Number.isFinite);
  const xMax = Math.max(totalSteps || 1, ...steps.map((s) => s.step), 1);
  const hi = losses.length ? Math.max(...losses) : 1;
  const lo = losses.length ? Math.min(...losses) : 0;
  const margin = Math.max((hi - lo) * 0.1, 0.01);
  const yMax = hi + margin;
  const yMin = Math.max(0, lo - margin);
  const x = (step) => pad.l + ((W - pad.l - pad.r) * step) / xMax;
  const y = (v) => H - pad.b - ((H - pad.t - pad.b) * (v - yMin)) / (yMax - yMin || 1);
  const yAcc = (a) => H - pad.b - (H - pad.t - pad.b) * a;

  ctx.strokeStyle = '#dde1e8';
  ctx.fillStyle = '#5b6475';
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = yMin + ((yMax - yMin) * i) / 4;
    ctx.beginPath(); ctx.moveTo(pad.l, y(v)); ctx.lineTo(W - pad.r, y(v)); ctx.stroke();
    ctx.textAlign = 'right'; ctx.fillText(v.toFixed(2), pad.l - 6, y(v) + 4);
    ctx.textAlign = 'left'; ctx.fillText((i / 4).toFixed(2), W - pad.r + 6, yAcc(i / 4) + 4);
  }
  ctx.textAlign = 'center';
  const ticks = Math.min(xMax, 10);
  for (let i = 0; i <= ticks; i++) {
    const s = Math.round((xMax * i) / ticks);
    ctx.fillText(String(s), x(s), H - pad.b + 16);
  }
  ctx.fillText('step', W / 2, H - 2);

  const line = (points, color, fy, dots) => {
    ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach(([px, py], i) => (i ? ctx.lineTo(x(px), fy(py)) : ctx.moveTo(x(px), fy(py))));
    ctx.stroke();
    if (dots) points.forEach(([px, py]) => { ctx.beginPath(); ctx.arc(x(px), fy(py), 3.5, 0, 7); ctx.fill(); });
  };
  line(steps.map((s) => [s.step, s.loss]), '#2458d6', y, steps.length < 40);
  line(steps.map((s) => [s.step, s.token_accuracy]), '#1e9b50', yAcc, false);
  line(evals.map((e) => [e.step, e.eval_loss]), '#d6242e', y, true);
}
