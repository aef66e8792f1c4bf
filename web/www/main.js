// The page: talks to the training worker, renders the model, data, progress, chart and outputs.
import { drawChart } from './chart.js';

const $ = (id) => document.getElementById(id);
const state = { steps: [], evals: [], totalSteps: 0, startedAt: 0, pausedMs: 0, pausedAt: 0, running: false,
  modelLoaded: false, trained: false, downloads: [], cache: null, adapter: null, demo: null,
  answers: {} };
// For tests and the console: every step and evaluation event, and the final summary.
window.afinador = state;

// The CLI's defaults come from the wasm module (defaultConfig) with the worker's `ready`; these
// are the fields the form shows.
const FIELDS = [
  ['max_steps', 'number', 'steps (0: use epochs)'], ['epochs', 'number', 'epochs'],
  ['batch_size', 'number', 'batch size'], ['grad_accum', 'number', 'gradient accumulation'],
  ['seq_len', 'number', 'sequence length'], ['lr', 'number', 'learning rate'],
  ['lr_schedule', ['cosine', 'linear', 'constant'], 'schedule'], ['warmup_ratio', 'number', 'warm-up ratio'],
  ['weight_decay', 'number', 'weight decay'], ['lora_r', 'number', 'LoRA r'],
  ['lora_alpha', 'number', 'LoRA alpha'], ['lora_dropout', 'number', 'LoRA dropout'],
  ['target_modules', 'text', 'target modules'], ['val_ratio', 'number', 'eval split (val ratio)'],
  ['eval_every', 'number', 'eval every N steps (0: per epoch)'], ['seed', 'number', 'seed'],
  ['format', ['', 'text', 'prompt-completion', 'messages', 'instruction'], 'format (blank: detect)'],
  ['train_on_prompt', 'checkbox', 'train on prompt'], ['strict', 'checkbox', 'strict (stop at a bad record)'],
];

function showMessage(text, warn = false) {
  const div = document.createElement('div');
  div.textContent = text;
  if (warn) div.className = 'warn';
  $('messages').appendChild(div);
}

// --- the worker and its requests --------------------------------------------------------------
const worker = new Worker('worker.js', { type: 'module' });
let nextId = 1;
const pending = new Map();
function request(msg) {
  const id = nextId++;
  worker.postMessage({ ...msg, id });
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}
worker.onmessage = ({ data }) => {
  if (data.id && pending.has(data.id) && data.type !== 'data') {
    const { resolve, reject } = pending.get(data.id);
    pending.delete(data.id);
    return data.type === 'error' ? reject(data) : resolve(data);
  }
  events[data.type]?.(data);
};
worker.onerror = (e) => showMessage(`The worker failed: ${e.message}`);

const events = {
  configured: ({ config }) => fillForm(config),
  model: ({ info }) => renderModel(info),
  download: (p) => renderDownload(p),
  restored: ({ step, metrics }) => {
    state.steps = metrics.filter((l) => l.loss !== undefined);
    state.evals = metrics.filter((l) => l.eval_loss !== undefined);
    $('status').textContent = `resumed at step ${step}`;
    redraw();
  },
  checkpoint: ({ step }) => { state.checkpointStep = step; },
  data: ({ kind, stats }) => renderData(kind, stats),
  plan: ({ plan }) => {
    state.totalSteps = plan.plan.total_steps;
    $('progress').max = state.totalSteps;
    $('stats').textContent = `${plan.plan.per_epoch} training sequences per epoch, ` +
      `${plan.validation_sequences} validation; ${state.totalSteps} steps; ` +
      `${plan.lora_parameters.toLocaleString()} LoRA parameters; format ${plan.format}`;
    state.startedAt = performance.now();
  },
  step: ({ ev }) => {
    if (ev.skipped) return showMessage(`step ${ev.step + 1}: gradient norm ${ev.grad_norm}, skipped`, true);
    state.steps.push(ev);
    if (ev.eval_loss !== undefined) state.evals.push(ev);
    renderProgress(ev);
  },
  eval: ({ ev }) => { state.evals.push(ev); redraw(); },
  done: ({ summary }) => {
    state.summary = summary;
    state.running = false;
    state.trained = true;
    $('status').textContent = `${summary.stop_reason}: ${summary.steps} steps, ` +
      `${Math.round(summary.tokens_per_s)} tok/s`;
    setButtons();
  },
};

// --- rendering ------------------------------------------------------------------------------
function renderModel(info) {
  const c = info.config;
  const t = info.tokenizer;
  const from = info.source ? `${info.source.from === 'cache'
    ? `from this browser's cache (downloaded ${new Date(info.source.savedAt).toLocaleString()})`
    : info.source.from === 'download' ? 'downloaded' : info.source.from}: ${info.source.url}\n` +
    `sha256 ${info.source.sha256}\n` : '';
  $('model-info').textContent = from + `${c.name || '(no name)'} · ${c.arch.name}: ${c.n_layer} layers, ` +
    `C ${c.n_embd}, FF ${c.n_ff}, ${c.n_head} heads (${c.n_head_kv} KV), V ${c.vocab_size}, ` +
    `context ${c.context_length}\n${(info.parameters / 1e6).toFixed(2)} M parameters, file ${mib(info.file_bytes)}, ` +
    `on the GPU ${mib(info.gpu_bytes)}\ntokenizer: ${t.pre}, ${t.vocab_size} tokens, ` +
    `chat template ${t.chat_template ? 'yes' : 'no (ChatML)'}`;
  state.modelLoaded = true;
  $('load-model').disabled = true; // one model per worker
}

function mib(bytes) { return `${(bytes / 2 ** 20).toFixed(1)} MiB`; }
function size(bytes) { return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : mib(bytes); }

// A download's progress: bytes, rate, ETA (the total is unknown when the server sends no
// Content-Length).
function renderDownload(p) {
  state.downloads.push(p);
  $('download-box').hidden = false;
  const rate = p.seconds > 0 ? p.received / p.seconds : 0;
  const bar = $('download-progress');
  if (p.total) { bar.max = p.total; bar.value = p.received; } else bar.removeAttribute('value');
  const of = p.total ? ` of ${size(p.total)}` : '';
  const eta = p.total && rate ? ` · ETA ${formatTime((p.total - p.received) / rate)}` : '';
  $('download-status').textContent = p.sha256
    ? `downloaded ${size(p.received)} in ${formatTime(p.seconds)} (${mib(rate)}/s)`
    : `${size(p.received)}${of} · ${mib(rate)}/s${eta}`;
}

// The models kept in this browser (OPFS), with their sizes, a Load and a Delete button.
async function refreshCache() {
  const { models, storage, cacheable } = await request({ type: 'cachedModels' });
  state.cache = models;
  const table = $('cache-list');
  table.textContent = '';
  $('cache-box').hidden = !models.length;
  $('cache-storage').textContent = !cacheable ? '' : storage
    ? `(this site uses ${size(storage.usage)} of the ${size(storage.quota)} the browser allows it)` : '';
  for (const m of models) {
    const row = table.insertRow();
    row.dataset.url = m.url;
    row.insertCell().textContent = m.url;
    row.cells[0].className = 'url';
    const bytes = row.insertCell();
    bytes.textContent = size(m.bytes);
    bytes.className = 'num';
    const sha = document.createElement('code');
    sha.textContent = `sha256 ${m.sha256.slice(0, 16)}…`;
    sha.title = m.sha256;
    row.insertCell().appendChild(sha);
    row.insertCell().textContent = new Date(m.savedAt).toLocaleDateString();
    const actions = row.insertCell();
    const load = Object.assign(document.createElement('button'), { textContent: 'Load', className: 'load' });
    load.disabled = state.modelLoaded;
    load.onclick = () => { $('model-url').value = m.url; $('model-file').value = ''; $('load-model').click(); };
    const del = Object.assign(document.createElement('button'), { textContent: 'Delete', className: 'delete' });
    del.onclick = async () => {
      try {
        await request({ type: 'deleteCached', url: m.url });
      } catch (e) { fail('Deleting the cached model')(e); }
      await refreshCache();
    };
    actions.append(load, ' ', del);
  }
}

function renderData(kind, { data, format }) {
  const lines = [`${kind === 'scan' ? 'reading' : 'training pass'}: ${data.records} records ` +
    `(${data.val_records} validation), ${data.bad_records} skipped, ${data.sequences} sequences, ` +
    `${data.tokens} tokens; format: ${format || 'not detected yet'}`];
  for (const bad of data.first_bad) lines.push(`  skipped line ${bad.line}: ${bad.reason}`);
  if (data.bad_records > data.first_bad.length) lines.push(`  … and ${data.bad_records - data.first_bad.length} more`);
  $('data-info').textContent = lines.join('\n');
}

function renderProgress(ev) {
  const done = ev.step, total = ev.total_steps;
  $('progress').value = done;
  const elapsed = (performance.now() - state.startedAt - state.pausedMs) / 1000;
  const eta = done ? (elapsed / done) * (total - done) : 0;
  $('status').textContent = `step ${done}/${total} · loss ${ev.loss.toFixed(4)} · ` +
    `acc ${ev.token_accuracy.toFixed(3)} · lr ${ev.lr.toExponential(2)} · ` +
    `${Math.round(ev.tokens_per_s)} tok/s · ETA ${formatTime(eta)}` +
    (ev.eval_loss !== undefined ? ` · eval loss ${ev.eval_loss.toFixed(4)}` : '');
  redraw();
}

function formatTime(s) {
  if (!Number.isFinite(s)) return '?';
  if (s < 10) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return m ? `${m} min ${Math.round(s % 60)} s` : `${Math.round(s)} s`;
}

function redraw() { drawChart($('chart'), state.steps, state.evals, state.totalSteps); }

function setButtons() {
  const data = $('data-file').files.length || $('data-url').value;
  $('start').disabled = !state.modelLoaded || !data || state.running;
  $('pause').disabled = !state.running;
  $('stop').disabled = !state.running;
  for (const id of ['download-adapter', 'download-jsonl', 'download-csv', 'gen-adapter']) {
    $(id).disabled = !state.steps.length || (state.running && !state.paused);
  }
  $('gen-base').disabled = !state.modelLoaded || (state.running && !state.paused);
}

function buildForm(defaults) {
  const form = $('config');
  for (const [key, type, label] of FIELDS) {
    const wrap = document.createElement('label');
    wrap.textContent = label;
    let input;
    if (Array.isArray(type)) {
      input = document.createElement('select');
      for (const v of type) input.add(new Option(v || '(detect)', v));
      input.value = defaults[key] ?? '';
    } else {
      input = document.createElement('input');
      input.type = type;
      if (type === 'checkbox') input.checked = !!defaults[key];
      else {
        // f32 defaults (0.03 arrives as 0.029999999329447746): show them as typed.
        const v = defaults[key];
        input.value = typeof v === 'number' ? String(Number(v.toPrecision(7))) : v;
        if (type === 'number') input.step = 'any';
      }
    }
    input.id = `cfg-${key}`;
    input.dataset.key = key;
    wrap.appendChild(input);
    form.appendChild(wrap);
  }
}

function fillForm(config) {
  for (const [key, type] of FIELDS) {
    const input = $(`cfg-${key}`);
    const v = config[key];
    if (type === 'checkbox') input.checked = !!v;
    else input.value = typeof v === 'number' ? String(Number(v.toPrecision(7))) : (v ?? '');
  }
}

function readForm() {
  const config = {};
  for (const [key, type] of FIELDS) {
    const input = $(`cfg-${key}`);
    if (type === 'checkbox') config[key] = input.checked;
    else if (type === 'number') config[key] = Number(input.value);
    else if (input.value === '' && key === 'format') config[key] = null;
    else config[key] = input.value;
  }
  return config;
}

function download(name, data, type) {
  const url = URL.createObjectURL(new Blob([data], { type }));
  const a = document.createElement('a');
  a.href = url; a.download = name;
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

const fail = (what) => (e) => showMessage(`${what}: ${e.message || e}`);

// --- actions --------------------------------------------------------------------------------
async function start() {
  if (!navigator.gpu) {
    $('gpu-info').textContent = '';
    showMessage('This browser does not expose WebGPU (navigator.gpu is missing). Use Chrome or Edge 113+ ' +
      '(on Linux start it with --enable-unsafe-webgpu, or enable chrome://flags/#enable-unsafe-webgpu), ' +
      'Firefox 141+ on Windows (Nightly elsewhere, dom.webgpu.enabled), or Safari 26+.' +
      (window.isSecureContext ? '' : ' The page must also come from https or http://127.0.0.1 (a secure context).'));
    return;
  }
  try {
    const ready = await request({ type: 'init' });
    const a = ready.adapter;
    state.adapter = a;
    $('version').textContent = `v${ready.version}`;
    $('gpu-info').textContent = `${a.name} · ${a.vendor} · ${a.backend} · ${a.device_type}\n` +
      `features: ${a.features.join(', ') || 'none optional'}\n` +
      `max storage binding ${mib(a.max_storage_buffer_binding_size)}, max buffer ${mib(a.max_buffer_size)}, ` +
      `workgroup storage ${a.max_compute_workgroup_storage_size / 1024} KiB, ` +
      `${a.max_compute_invocations_per_workgroup} invocations per workgroup`;
    buildForm(ready.defaults);
    $('load-model').disabled = false;
    await prepareDemo().catch(fail('Preparing the demo'));
    await refreshCache().catch(fail('Reading the model cache'));
    const { run } = await request({ type: 'savedRun' });
    if (run) {
      $('resume-info').textContent = `An unfinished run was saved at step ${run.step}` +
        `${run.maxSteps ? ` of ${run.maxSteps}` : ''} (model ${run.model}, data ${run.data}, ` +
        `${new Date(run.savedAt).toLocaleString()}).`;
      $('resume-box').hidden = false;
    }
  } catch (e) {
    $('gpu-info').textContent = 'no GPU';
    showMessage(e.message || String(e));
  }
}

// Load the model picked as a file or given by URL; true when it loaded.
async function loadModel() {
  const file = $('model-file').files[0];
  const url = $('model-url').value.trim();
  if (!file && !url) { showMessage('Choose a GGUF file or give its URL.'); return false; }
  $('messages').textContent = '';
  $('model-info').textContent = 'loading…';
  $('download-box').hidden = true;
  state.downloads = [];
  $('load-model').disabled = true;
  let loaded = false;
  try {
    const { info } = await request({ type: 'loadModel', file, url: file ? undefined : url });
    renderModel(info);
    loaded = true;
  } catch (e) {
    $('model-info').textContent = '';
    $('load-model').disabled = false;
    showMessage(`Loading the model failed: ${e.message}`);
  }
  if (url && !file) await refreshCache().catch(fail('Reading the model cache'));
  setButtons();
  return loaded;
}
$('load-model').onclick = loadModel;

$('data-file').onchange = setButtons;
$('data-url').oninput = setButtons;

async function run(msg) {
  Object.assign(state, { steps: [], evals: [], running: true, paused: false, pausedMs: 0, summary: null });
  $('messages').textContent = '';
  $('resume-box').hidden = true;
  $('status').textContent = 'reading the data…';
  setButtons();
  try {
    events.done(await request(msg));
  } catch (e) {
    state.running = false;
    $('status').textContent = 'failed';
    showMessage(`Training failed: ${e.message}`);
  }
  setButtons();
}

$('start').onclick = () => {
  const file = $('data-file').files[0];
  const url = $('data-url').value.trim();
  run({ type: 'train', config: readForm(), source: file ? { file } : { url } });
};
// Resume the run saved in IndexedDB: its model, data and configuration.
$('resume-run').onclick = () => run({ type: 'resumeRun' });
$('discard-run').onclick = async () => {
  await request({ type: 'discardRun' });
  $('resume-box').hidden = true;
};

$('pause').onclick = () => {
  state.paused = !state.paused;
  if (state.paused) { state.pausedAt = performance.now(); worker.postMessage({ type: 'pause' }); }
  else { state.pausedMs += performance.now() - state.pausedAt; worker.postMessage({ type: 'resume' }); }
  $('pause').textContent = state.paused ? 'Resume' : 'Pause';
  setButtons();
};
$('stop').onclick = () => worker.postMessage({ type: 'stop' });

$('download-adapter').onclick = async () => {
  try {
    const r = await request({ type: 'exportZip' });
    download('afinador-run.zip', r.zip, 'application/zip');
  } catch (e) { fail('Exporting the adapter')(e); }
};
$('download-jsonl').onclick = async () =>
  download('metrics.jsonl', (await request({ type: 'metrics', format: 'jsonl' })).text, 'application/x-ndjson');
$('download-csv').onclick = async () =>
  download('metrics.csv', (await request({ type: 'metrics', format: 'csv' })).text, 'text/csv');

async function generate(withAdapter) {
  const out = $(withAdapter ? 'out-adapter' : 'out-base');
  out.textContent = '…';
  delete out.dataset.done;
  const chat = $('chat').checked;
  const system = $('system').value.trim();
  const prompt = $('prompt').value;
  try {
    const { result } = await request({ type: 'generate', prompt, withAdapter, chat,
      messages: chat && system ? [{ role: 'system', content: system }, { role: 'user', content: prompt }] : undefined,
      maxNewTokens: Number($('max-new').value) });
    // An answer of only newlines or spaces would look like no answer at all.
    out.textContent = result.text.trim() ? result.text
      : `(${result.tokens} tokens of whitespace only: ${JSON.stringify(result.text)})`;
    state.answers[withAdapter ? 'adapter' : 'base'] = result;
    out.dataset.done = 'true';
    return true;
  } catch (e) { out.textContent = ''; fail('Generating')(e); return false; }
}
$('gen-base').onclick = () => generate(false);
$('gen-adapter').onclick = () => generate(true);

// --- the one-click demo ---------------------------------------------------------------------
// demo.json (beside the page) names the model and the data: { name, model, train, validation },
// URLs relative to it; `?model=URL` on the page's address replaces the model.
async function prepareDemo() {
  const resp = await fetch('demo.json');
  if (!resp.ok) throw new Error(`demo.json: HTTP ${resp.status}`);
  const demo = await resp.json();
  const at = (u) => new URL(u, resp.url).href;
  const model = new URLSearchParams(location.search).get('model');
  state.demo = {
    name: model ? model.split('/').pop() : demo.name,
    model: model ? new URL(model, location.href).href : at(demo.model),
    train: at(demo.train), validation: at(demo.validation), question: -1, questions: null,
  };
  $('demo-model').textContent = state.demo.name;
  $('demo-source').textContent = `model: ${state.demo.model} (downloaded once, then kept in this browser)`;
  $('demo-start').disabled = false;
}

// The run, sized for the adapter: on a software (fallback) adapter such as SwiftShader a few
// short steps of one sequence, which still take minutes with a real model; on a GPU a short
// real run. Returns the configuration (the form's keys) and the answer length.
function demoSettings(adapter) {
  const common = { epochs: 1, grad_accum: 1, lr_schedule: 'constant', warmup_ratio: 0, weight_decay: 0,
    lora_dropout: 0, target_modules: 'q_proj,k_proj,v_proj,o_proj', seed: 42, format: 'messages',
    train_on_prompt: false, strict: false };
  const software = adapter.fallback || adapter.device_type === 'Cpu';
  return software
    ? { software, newTokens: 8, config: { ...common, max_steps: 4, batch_size: 1, seq_len: 256, lr: 2e-3,
      lora_r: 8, lora_alpha: 16, val_ratio: 0, eval_every: 0 } }
    : { software, newTokens: 48, config: { ...common, max_steps: 60, batch_size: 4, seq_len: 320, lr: 1e-3,
      lora_r: 16, lora_alpha: 32, val_ratio: 0.05, eval_every: 20 } };
}

// Put validation question `i` (system and user messages, and the expected answer) into Try it.
async function showQuestion(i) {
  const d = state.demo;
  if (!d.questions) {
    const resp = await fetch(d.validation);
    if (!resp.ok) throw new Error(`${d.validation}: HTTP ${resp.status}`);
    d.questions = (await resp.text()).split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l).messages);
  }
  d.question = i % d.questions.length;
  const m = d.questions[d.question];
  const content = (role) => m.find((x) => x.role === role)?.content ?? '';
  $('system').value = content('system');
  $('prompt').value = content('user');
  $('prompt').rows = Math.min(10, $('prompt').value.split('\n').length + 1);
  $('chat').checked = true;
  $('reference').textContent = content('assistant');
  $('reference-box').hidden = false;
}

// Both models answer the question in Try it, one after the other.
async function askBoth() {
  $('try-section').scrollIntoView({ behavior: 'smooth', block: 'start' });
  return (await generate(false)) && (await generate(true));
}

async function runDemo() {
  const say = (t) => { $('demo-status').textContent = t; };
  $('demo-start').disabled = true;
  $('demo-next').disabled = true;
  try {
    const d = state.demo;
    if (!state.modelLoaded) {
      say('loading the model…');
      $('model-file').value = '';
      $('model-url').value = d.model;
      if (!(await loadModel())) throw new Error('the model did not load');
    }
    const settings = demoSettings(state.adapter);
    fillForm({ ...readForm(), ...settings.config });
    $('data-file').value = '';
    $('data-url').value = d.train;
    say(`fine-tuning: ${settings.config.max_steps} steps of ${settings.config.batch_size} × ` +
      `${settings.config.seq_len} tokens${settings.software ? ' (a software adapter: a short run)' : ''}…`);
    await run({ type: 'train', config: readForm(), source: { url: d.train } });
    if (!state.summary) throw new Error('the training run failed');
    $('max-new').value = settings.newTokens;
    await showQuestion(0);
    say('asking the base model and the adapted one…');
    if (!(await askBoth())) throw new Error('generation failed');
    say(`done: ${state.summary.steps} steps; the answers are in “6. Try it”`);
    state.demoDone = true;
  } catch (e) {
    say('');
    showMessage(`The demo stopped: ${e.message} (see above).`);
  }
  $('demo-start').disabled = state.running;
  $('demo-next').disabled = !state.demoDone;
}
$('demo-start').onclick = runDemo;
$('demo-next').onclick = async () => {
  $('demo-next').disabled = true;
  try {
    await showQuestion(state.demo.question + 1);
    await askBoth();
  } catch (e) { fail('The demo')(e); }
  $('demo-next').disabled = false;
};

start();
