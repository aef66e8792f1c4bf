// The training worker: owns the wasm module, the WebGPU device, the model and the run, so the
// page stays responsive. Messages in: init, loadModel, train, resumeRun, savedRun, discardRun,
// pause, resume, stop, generate, exportAdapter, exportZip, metrics, cachedModels, deleteCached.
// Messages out: ready, model, download (progress), configured, restored, data, plan, step, eval,
// checkpoint, done, generated, adapter, metrics, cachedModels, deleted, error (each with `id`
// when it answers a request).
import init, { Afinador, defaultConfig, version } from './pkg/afinador_web.js';
import { download, listCached, openCached, removeCached } from './models.js';
import { clearRun, loadRun, saveRun } from './store.js';

let af = null;
// Where the model and the data came from ({ file } or { url }), kept with checkpoints.
let modelSource = null;
let dataSource = null;
let paused = false;
let stopping = false;
let resumeWaiters = [];

// wasm calls are serialized: a generate() between two steps waits for the step to finish.
let lock = Promise.resolve();
function serial(fn) {
  const p = lock.then(fn);
  lock = p.catch(() => {});
  return p;
}

const post = (msg, transfer) => self.postMessage(msg, transfer || []);
const message = (e) => (e && e.message) || String(e);

async function openStream(source) {
  if (source.file) return source.file.stream().getReader();
  const resp = await fetch(source.url);
  if (!resp.ok) throw new Error(`fetching ${source.url}: HTTP ${resp.status}`);
  return resp.body.getReader();
}

async function waitWhilePaused() {
  while (paused && !stopping) await new Promise((r) => resumeWaiters.push(r));
}

// Runs steps while the pass has batches ready; false when the run must end.
async function drain() {
  for (;;) {
    if (paused && !stopping) {
      await checkpoint();
      await waitWhilePaused();
    }
    if (stopping) return false;
    const ev = await serial(() => af.step());
    if (ev === undefined) return !af.stopReason();
    post({ type: 'step', ev });
    if (af.stopReason()) return false;
  }
}

// One pass over the data; false when the run must end.
async function pass(source) {
  const kind = af.beginPass();
  const reader = await openStream(source);
  let lastReport = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      af.pushChunk(value);
      if (Date.now() - lastReport > 250) {
        post({ type: 'data', kind, stats: af.dataStats() });
        lastReport = Date.now();
      }
      if (kind === 'train' && !(await drain())) {
        await reader.cancel();
        return false;
      }
    }
  } catch (e) {
    await reader.cancel().catch(() => {});
    throw e;
  }
  const end = af.endPass();
  post({ type: 'data', kind, stats: af.dataStats() });
  if (kind === 'scan') {
    post({ type: 'plan', plan: end });
    return true;
  }
  return drain();
}

// Save the run to IndexedDB (on pause, stop and at the end of each epoch).
async function checkpoint() {
  const c = await serial(() => af.saveCheckpoint());
  const state = JSON.parse(c.stateJson);
  await saveRun({ savedAt: Date.now(), step: state.step, config: state.config, tensors: c.tensors,
    stateJson: c.stateJson, metricsJsonl: af.metricsJsonl(), model: modelSource, data: dataSource });
  post({ type: 'checkpoint', step: state.step });
}

// Train; `saved`: a run from IndexedDB to continue (its configuration wins).
async function train(config, source, saved) {
  paused = false;
  stopping = false;
  dataSource = source;
  const resolved = af.configure(saved ? saved.config : config);
  post({ type: 'configured', config: resolved });
  await pass(source); // count the sequences, collect the validation set
  if (saved) {
    const step = af.resumeFrom(saved.tensors, saved.stateJson, saved.metricsJsonl);
    post({ type: 'restored', step, metrics: saved.metricsJsonl.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) });
  }
  for (;;) {
    if (af.stopReason() || stopping) break;
    if (!(await pass(source))) break;
    const end = await serial(() => af.endEpoch());
    if (end.eval) post({ type: 'eval', ev: end.eval });
    if (!end.continue) break;
    await checkpoint();
  }
  if (stopping) await checkpoint();
  const summary = await serial(() => af.finish(stopping));
  if (summary.final_eval) post({ type: 'eval', ev: summary.final_eval });
  if (!stopping) await clearRun();
  return summary;
}

async function loadModel(source) {
  // A File is read one tensor at a time (FileReaderSync, in this worker): never whole in memory.
  // A URL is downloaded once into the model cache (models.js) and read from there the same way.
  if (source.file) {
    const info = await serial(() => af.loadModelFile(source.file));
    modelSource = source;
    return info;
  }
  let got = await openCached(source.url);
  let from = 'cache';
  if (!got) {
    // The header is also checked against this adapter's limits, before the tensors download.
    got = await download(source.url, (p) => post({ type: 'download', url: source.url, ...p }), af.adapterInfo());
    from = got.cached ? 'download' : 'download, not cached (this browser has no Origin Private File System)';
  }
  const info = await serial(() => af.loadModelFile(got.file));
  modelSource = source;
  const { url, bytes, sha256, savedAt } = got.entry;
  return { ...info, source: { url, bytes, sha256, savedAt, from } };
}

const describe = (run) => run && {
  step: run.step, savedAt: run.savedAt, maxSteps: run.config.max_steps,
  model: run.model.file ? run.model.file.name : run.model.url,
  data: run.data.file ? run.data.file.name : run.data.url,
};

async function handle(msg) {
  switch (msg.type) {
    case 'init': {
      await init();
      if (!self.navigator.gpu) {
        throw Object.assign(new Error('WebGPU is not available in this worker (navigator.gpu is missing).'), { kind: 'webgpu' });
      }
      af = await Afinador.create();
      return { type: 'ready', version: version(), adapter: af.adapterInfo(), defaults: defaultConfig() };
    }
    case 'loadModel':
      return { type: 'model', info: await loadModel(msg.file ? { file: msg.file } : { url: msg.url }) };
    case 'train':
      return { type: 'done', summary: await train(msg.config, msg.source) };
    case 'savedRun':
      return { type: 'savedRun', run: describe(await loadRun()) };
    case 'discardRun':
      await clearRun();
      return { type: 'discarded' };
    case 'resumeRun': {
      const saved = await loadRun();
      if (!saved) throw new Error('no saved run to resume');
      post({ type: 'model', info: await loadModel(saved.model) });
      return { type: 'done', summary: await train(null, saved.data, saved) };
    }
    case 'pause':
      paused = true;
      return null;
    case 'resume':
      paused = false;
      resumeWaiters.splice(0).forEach((r) => r());
      return null;
    case 'stop':
      stopping = true;
      resumeWaiters.splice(0).forEach((r) => r());
      return null;
    case 'generate': {
      // With `messages` ([{ role, content }]: a system prompt, then the user's), in the chat template.
      const r = await serial(() => (msg.messages
        ? af.generateMessages(msg.messages, msg.maxNewTokens, msg.withAdapter, 0, BigInt(0))
        : af.generate(msg.prompt, msg.maxNewTokens, msg.withAdapter, msg.chat, 0, BigInt(0))));
      return { type: 'generated', withAdapter: msg.withAdapter, result: r };
    }
    case 'exportAdapter': {
      const files = await serial(() => af.exportAdapter(false)); // the final adapter, as the CLI's adapter/
      const safetensors = files.safetensors;
      const gguf = files.gguf;
      return { type: 'adapter', configJson: files.configJson, safetensors, gguf, transfer: [safetensors.buffer, gguf.buffer] };
    }
    case 'exportZip': {
      const zip = await serial(() => af.exportZip(false)); // the final adapter, as the CLI's run folder
      return { type: 'zip', zip, transfer: [zip.buffer] };
    }
    case 'cachedModels':
      return { type: 'cachedModels', ...(await listCached()) };
    case 'deleteCached':
      if (modelSource?.url === msg.url) {
        throw new Error('this model is in use in this tab (generation reads it again): reload the page, then delete it');
      }
      return { type: 'deleted', removed: await removeCached(msg.url) };
    case 'metrics':
      return { type: 'metrics', format: msg.format, text: msg.format === 'csv' ? af.metricsCsv() : af.metricsJsonl() };
    default:
      throw new Error(`unknown message ${msg.type}`);
  }
}

self.onmessage = async (event) => {
  const msg = event.data;
  try {
    const reply = await handle(msg);
    if (reply) {
      const { transfer, ...rest } = reply;
      post({ ...rest, id: msg.id }, transfer);
    }
  } catch (e) {
    post({ type: 'error', id: msg.id, request: msg.type, kind: e.kind || null, message: message(e) });
  }
};
