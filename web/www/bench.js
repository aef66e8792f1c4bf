// The kernel benchmark page: runs the core's kernel suite (the one `afinador bench kernels`
// runs) on this tab's WebGPU adapter, one case at a time, draws each row as it comes and offers
// the JSON `afinador bench compare` reads. It runs in the page itself: every call awaits the
// GPU, so the page stays responsive between cases.
// bench.html?run=quick (or ?run=full) starts at once (the tests use it).
import init, { Afinador, version } from './pkg/afinador_web.js';

const $ = (id) => document.getElementById(id);
// For tests and the console: the rows so far and, at the end, the report.
const state = { rows: [], skipped: [], report: null, running: false };
window.afinadorBench = state;

function showMessage(text) {
  const div = document.createElement('div');
  div.textContent = text;
  $('messages').appendChild(div);
}

const fixed = (x, digits) => (x === undefined || x === null ? '-' : x.toFixed(digits));
// Rates over five orders of magnitude (a software adapter's 0.004 GB/s, a GPU's 3000): three
// significant digits.
const sig = (x) => (x === undefined || x === null ? '-' : x >= 1000 ? x.toFixed(0) : x.toPrecision(3));

function addRow(row) {
  const tr = $('results').tBodies[0].insertRow();
  const rate = row.gflops !== undefined ? `${sig(row.gflops)} GFLOP/s` : `${sig(row.gbps)} GB/s`;
  for (const [text, num] of [[row.kernel], [row.shape], [row.variant], [fixed(row.time_us, 1), true],
    [rate, true], [fixed(row.peak_pct, 1), true]]) {
    const td = tr.insertCell();
    td.textContent = text;
    if (num) td.className = 'num';
  }
}

async function run(af, quick) {
  Object.assign(state, { rows: [], skipped: [], report: null, running: true });
  $('results').tBodies[0].textContent = '';
  $('download').disabled = true;
  for (const b of ['run-quick', 'run-full']) $(b).disabled = true;
  try {
    const { cases, timestamps } = af.benchKernelsStart(quick);
    $('progress').max = cases.length;
    $('timer').textContent = timestamps ? 'timed with GPU timestamps (timestamp-query)'
      : 'this adapter has no timestamp-query: timed with the wall clock';
    for (let i = 0; ; i++) {
      $('progress').value = i;
      $('status').textContent = i < cases.length ? `${i + 1}/${cases.length}: ${cases[i]}…` : '';
      const next = await af.benchKernelsNext();
      if (!next) break;
      if (next.row) { state.rows.push(next.row); addRow(next.row); }
      else state.skipped.push(next.skipped);
    }
    state.report = af.benchKernelsReport();
    $('status').textContent = `${state.rows.length} kernels timed` +
      (state.skipped.length ? `, ${state.skipped.length} skipped` : '');
    $('timer').textContent = `timer: ${state.report.timer}` +
      state.skipped.map((s) => `\nskipped ${s}`).join('');
    $('download').disabled = false;
  } catch (e) {
    $('status').textContent = 'failed';
    showMessage(`The benchmark failed: ${e.message || e}`);
  } finally {
    state.running = false;
    for (const b of ['run-quick', 'run-full']) $(b).disabled = false;
  }
}

$('download').onclick = () => {
  const blob = new Blob([JSON.stringify(state.report, null, 1)], { type: 'application/json' });
  const a = Object.assign(document.createElement('a'), { href: URL.createObjectURL(blob), download: 'afinador-bench.json' });
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
};

async function start() {
  if (!navigator.gpu) {
    $('gpu-info').textContent = 'no WebGPU';
    showMessage('This browser does not expose WebGPU (navigator.gpu is missing): see the trainer page for the browsers that do.');
    return;
  }
  let af;
  try {
    await init();
    af = await Afinador.create();
  } catch (e) {
    $('gpu-info').textContent = 'no GPU';
    showMessage(e.message || String(e));
    return;
  }
  const a = af.adapterInfo();
  $('version').textContent = `v${version()}`;
  $('gpu-info').textContent = `${a.name} · ${a.vendor} · ${a.backend} · ${a.device_type}\n` +
    `features: ${a.features.join(', ') || 'none optional'}`;
  $('run-quick').onclick = () => run(af, true);
  $('run-full').onclick = () => run(af, false);
  $('run-quick').disabled = false;
  $('run-full').disabled = false;
  const auto = new URLSearchParams(location.search).get('run');
  if (auto === 'quick' || auto === 'full') run(af, auto === 'quick');
}

start();
