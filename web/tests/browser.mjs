// Browser tests of the trainer page in real headless Chromium (WebGPU on SwiftShader).
// Usage: node web/tests/browser.mjs --url URL [--afinador-web URL] --model tiny.gguf --data train.jsonl
//          --malformed bad.jsonl --native metrics.jsonl --config '{"max_steps":…}' --out DIR
//          [--only mime,cache,bench,train,malformed,demo]
//        node web/tests/browser.mjs --bench --url URL --model M.gguf --data D.jsonl --config '{…}' --out DIR
//          [--new-tokens N] (manual benchmark: train, report tokens/s, then generate N tokens
//          with the base model; no comparison)
// Exits non-zero with a message on the first failed check.
import { chromium } from 'playwright-core';
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    url: { type: 'string' }, 'afinador-web': { type: 'string' }, model: { type: 'string' }, data: { type: 'string' },
    malformed: { type: 'string' }, native: { type: 'string' }, config: { type: 'string' },
    out: { type: 'string' }, only: { type: 'string' }, bench: { type: 'boolean', default: false }, 'new-tokens': { type: 'string', default: '4' }, tolerance: { type: 'string', default: '1e-4' },
  },
});
const config = JSON.parse(opt.config);
// Per-step losses must equal the CLI's within atol + rtol·|native| (SwiftShader vs lavapipe:
// different float summation orders and kernel variants).
const ATOL = Number(opt.tolerance);
const RTOL = Number(opt.tolerance);
const TRAIN_TIMEOUT = (opt.bench ? 60 : 6) * 60_000;
mkdirSync(opt.out, { recursive: true });


/** The files of a ZIP of stored (uncompressed) entries, as the page writes it: name → Buffer. */
function readStoredZip(buf) {
  const files = {};
  for (let at = 0; buf.readUInt32LE(at) === 0x04034b50;) {
    const method = buf.readUInt16LE(at + 8);
    const size = buf.readUInt32LE(at + 18);
    const nameLen = buf.readUInt16LE(at + 26);
    const extraLen = buf.readUInt16LE(at + 28);
    if (method !== 0) throw new Error(`zip entry at ${at} is compressed (method ${method})`);
    const start = at + 30 + nameLen + extraLen;
    files[buf.subarray(at + 30, at + 30 + nameLen).toString('utf8')] = buf.subarray(start, start + size);
    at = start + size;
  }
  return files;
}
// Uncaught exceptions in any page or worker: the run fails on any (checked at the end).
const pageErrors = [];

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
}

const profile = mkdtempSync(join(tmpdir(), 'afinador-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  ignoreDefaultArgs: ['--headless'],
  acceptDownloads: true,
  viewport: { width: 1100, height: 1400 },
  args: ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
});

// WebGPU up: the adapter is described and the Load button enabled (after a load or reload).
async function waitReady(page) {
  await page.waitForFunction(() => !document.getElementById('load-model').disabled
    || document.getElementById('messages').textContent, null, { timeout: 60_000 });
  const messages = await page.textContent('#messages');
  if (messages) console.log(`  page message: ${messages}`);
  const adapter = (await page.textContent('#gpu-info')).split('\n')[0];
  check(!messages, `WebGPU adapter opened (${adapter})`);
  // Named as the browser describes it (GPUAdapter.info), not "unnamed".
  check(!adapter.startsWith('unnamed') && !adapter.startsWith(' ·'), `adapter named: ${adapter}`);
}

async function openPage() {
  const page = await context.newPage();
  page.on('console', (m) => console.log(`  [page ${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => { pageErrors.push(e.message); console.log(`  [page error] ${e.message}`); });
  await page.goto(opt.url);
  await waitReady(page);
  await page.setInputFiles('#model-file', opt.model);
  await page.click('#load-model');
  await page.waitForFunction(() => /layers/.test(document.getElementById('model-info').textContent)
    || document.getElementById('messages').textContent, null, { timeout: 10 * 60_000 });
  check(!(await page.textContent('#messages')), 'the model loaded');
  return page;
}

async function fillConfig(page, values) {
  for (const [key, value] of Object.entries(values)) {
    const sel = `#cfg-${key}`;
    if (typeof value === 'boolean') await page.setChecked(sel, value);
    else if (await page.$eval(sel, (e) => e.tagName === 'SELECT')) await page.selectOption(sel, String(value));
    else await page.fill(sel, String(value));
  }
}

async function trainTest() {
  const page = await openPage();
  check(!(await page.isVisible('#resume-box')), 'a fresh profile has no run to resume');
  await page.setInputFiles('#data-file', opt.data);
  await fillConfig(page, config);
  const started = Date.now();
  await page.click('#start');
  // Pause after two steps (a checkpoint goes to IndexedDB), reload the page, resume: the run
  // must go on exactly, so the losses below still equal the CLI's uninterrupted run.
  await page.waitForFunction(() => window.afinador.steps.length >= 2 || document.getElementById('messages').textContent,
    null, { timeout: TRAIN_TIMEOUT, polling: 100 });
  await page.click('#pause');
  await page.waitForFunction(() => window.afinador.checkpointStep !== undefined, null, { timeout: 120_000, polling: 100 });
  const saved = await page.evaluate(() => window.afinador.checkpointStep);
  await page.reload();
  await waitReady(page);
  check(await page.isVisible('#resume-box'), 'after a reload the page offers to resume');
  check((await page.textContent('#resume-info')).includes(`step ${saved} of ${config.max_steps}`),
    `the saved run is at step ${saved}`);
  await page.click('#resume-run');
  await page.waitForFunction(() => window.afinador.summary || document.getElementById('messages').textContent,
    null, { timeout: TRAIN_TIMEOUT, polling: 500 });
  check(!(await page.textContent('#messages')), 'training ran without an error message');
  check(!(await page.isVisible('#resume-box')), 'the resume offer is gone once resumed');
  const { steps, evals, summary } = await page.evaluate(() => window.afinador);
  const seconds = (Date.now() - started) / 1000;
  console.log(`browser: ${steps.length} steps in ${seconds.toFixed(1)} s, ${summary.tokens_per_s.toFixed(1)} tok/s on ${summary.device}`);
  check(summary.stop_reason === 'completed' && steps.length === config.max_steps,
    `${config.max_steps} steps completed`);
  check(steps.at(-1).loss < steps[0].loss, `the loss fell (${steps[0].loss.toFixed(4)} → ${steps.at(-1).loss.toFixed(4)})`);

  // The same losses as the CLI on the same model, data and seed: every step's loss and
  // learning rate, every evaluation (per step, end of epoch, final).
  const native = readFileSync(opt.native, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const nativeSteps = native.filter((l) => l.loss !== undefined);
  const nativeEvals = native.filter((l) => l.eval_loss !== undefined);
  check(nativeSteps.length === steps.length, `the CLI ran as many steps (${nativeSteps.length})`);
  check(nativeEvals.length === evals.length && evals.length > 0, `as many evaluations as the CLI (${evals.length})`);
  let worst = 0;
  const compare = (what, b, n) => {
    const diff = Math.abs(b - n);
    worst = Math.max(worst, diff / (ATOL + RTOL * Math.abs(n)));
    console.log(`  ${what}: browser ${b.toFixed(6)} CLI ${n.toFixed(6)} |diff| ${diff.toExponential(2)}`);
    check(diff <= ATOL + RTOL * Math.abs(n), `${what} equals the CLI's within ${ATOL} + ${RTOL}·|x|`);
  };
  for (const [i, n] of nativeSteps.entries()) {
    compare(`step ${n.step} loss`, steps[i].loss, n.loss);
    check(Math.abs(steps[i].lr - n.lr) <= 1e-9 + 1e-6 * n.lr, `step ${n.step} learning rate equals the CLI's`);
  }
  for (const [i, n] of nativeEvals.entries()) {
    check(evals[i].step === n.step, `evaluation ${i + 1} at step ${n.step}`);
    compare(`step ${n.step} eval_loss`, evals[i].eval_loss, n.eval_loss);
  }
  const maxAbs = Math.max(...nativeSteps.map((n, i) => Math.abs(steps[i].loss - n.loss)));
  writeFileSync(join(opt.out, 'comparison.json'), JSON.stringify({ browser: steps, evals, native, maxAbsLossDiff: maxAbs,
    tolerance: { atol: ATOL, rtol: RTOL }, browserSeconds: seconds, summary }, null, 1));
  console.log(`largest |browser − CLI| step loss: ${maxAbs.toExponential(2)} (${(worst * 100).toFixed(1)}% of the tolerance)`);

  // The run downloads as one ZIP laid out as the CLI's run folder: adapter/ (PEFT files and
  // the GGUF LoRA), metrics.jsonl, config.json.
  const downloads = [];
  page.on('download', (d) => downloads.push(d));
  await page.click('#download-adapter');
  await page.waitForFunction(() => true, null, { timeout: 1000 }).catch(() => {});
  for (let i = 0; i < 100 && downloads.length < 1; i++) await page.waitForTimeout(100);
  check(downloads.length === 1 && downloads[0].suggestedFilename() === 'afinador-run.zip',
    'one afinador-run.zip downloaded');
  const zipPath = join(opt.out, 'afinador-run.zip');
  await downloads[0].saveAs(zipPath);
  const zipped = readStoredZip(readFileSync(zipPath));
  const files = {};
  for (const [name, bytes] of Object.entries(zipped)) files[name.replace(/^adapter\//, '')] = bytes;
  check(['adapter/adapter_config.json', 'adapter/adapter_model.safetensors', 'adapter/adapter.gguf',
    'metrics.jsonl', 'config.json'].every((n) => n in zipped), `the zip holds ${Object.keys(zipped).join(', ')}`);
  check(files['metrics.jsonl'].toString('utf8').trim().split('\n').length >= 1, 'metrics.jsonl in the zip');
  const cfg = JSON.parse(files['adapter_config.json'].toString('utf8'));
  for (const key of ['peft_type', 'r', 'lora_alpha', 'target_modules', 'task_type', 'base_model_name_or_path']) {
    check(key in cfg, `adapter_config.json has ${key}`);
  }
  check(cfg.peft_type === 'LORA' && cfg.r === config.lora_r, `adapter_config.json: LORA, r = ${config.lora_r}`);
  const st = files['adapter_model.safetensors'];
  const headerLen = Number(st.readBigUInt64LE(0));
  const header = JSON.parse(st.subarray(8, 8 + headerLen).toString('utf8'));
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const a = header['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'];
  check(a && a.dtype === 'F32' && a.shape[0] === config.lora_r, 'safetensors: layer 0 q_proj lora_A is F32 [r, C]');
  const end = Math.max(...names.map((n) => header[n].data_offsets[1]));
  check(st.length === 8 + headerLen + end, `safetensors: ${names.length} tensors, sizes consistent`);
  const gguf = files['adapter.gguf'];
  check(gguf && gguf.subarray(0, 4).toString('latin1') === 'GGUF', 'adapter.gguf is a GGUF file');
  check(gguf.includes(Buffer.from('adapter.lora.alpha')) && gguf.includes(Buffer.from('blk.0.attn_q.weight.lora_a')),
    'adapter.gguf: a GGUF LoRA with alpha and blk.0.attn_q lora_a');

  // Generation with and without the adapter.
  await page.fill('#max-new', '8');
  await page.click('#gen-base');
  await page.waitForSelector('#out-base[data-done]', { timeout: 120_000 });
  await page.click('#gen-adapter');
  await page.waitForSelector('#out-adapter[data-done]', { timeout: 120_000 });
  const base = await page.textContent('#out-base');
  const adapted = await page.textContent('#out-adapter');
  check(!(await page.textContent('#messages')), 'generation ran without an error message');
  check(base.length > 0 && adapted.length > 0, `generated text (base ${JSON.stringify(base)}, adapter ${JSON.stringify(adapted)})`);
  await page.screenshot({ path: join(opt.out, 'web.png'), fullPage: true });
  console.log(`screenshot: ${join(opt.out, 'web.png')}`);
  await page.close();
}

async function malformedTest() {
  // Lenient: the bad lines are skipped and listed with their line numbers. The same run checks
  // Pause (no step while paused), Resume, Stop (an interrupted summary) and the metrics files.
  let page = await openPage();
  await page.setInputFiles('#data-file', opt.malformed);
  await fillConfig(page, { ...config, max_steps: 20, val_ratio: 0, eval_every: 0 });
  await page.click('#start');
  const stepsNow = () => page.evaluate(() => window.afinador.steps.length);
  await page.waitForFunction(() => window.afinador.steps.length >= 1, null, { timeout: 120_000, polling: 100 });
  const info = await page.textContent('#data-info');
  console.log(info);
  check(/skipped line 3: /.test(info), 'the data panel names line 3 (invalid JSON)');
  check(/skipped line 10: /.test(info), 'the data panel names line 10 (wrong field type)');
  await page.click('#pause');
  await page.waitForTimeout(10_000); // a step already running finishes
  const paused = await stepsNow();
  await page.waitForTimeout(10_000);
  check((await stepsNow()) === paused, `no step while paused (${paused} steps)`);
  await page.click('#pause'); // Resume
  await page.waitForFunction((n) => window.afinador.steps.length > n, paused, { timeout: 120_000, polling: 100 });
  check(true, 'training resumed');
  await page.click('#stop');
  await page.waitForFunction(() => window.afinador.summary, null, { timeout: 120_000, polling: 250 });
  const { steps, summary } = await page.evaluate(() => window.afinador);
  check(summary.stop_reason === 'interrupted' && steps.length < 20, `Stop ends the run (${steps.length} steps, interrupted)`);
  const downloads = [];
  page.on('download', (d) => downloads.push(d));
  await page.click('#download-jsonl');
  await page.click('#download-csv');
  for (let i = 0; i < 100 && downloads.length < 2; i++) await page.waitForTimeout(100);
  check(downloads.length === 2, 'metrics downloaded as JSONL and CSV');
  for (const d of downloads) await d.saveAs(join(opt.out, `interrupted-${d.suggestedFilename()}`));
  const jsonl = readFileSync(join(opt.out, 'interrupted-metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  check(jsonl.length === steps.length && jsonl.every((l, i) => l.step === i + 1 && l.loss === steps[i].loss),
    'metrics.jsonl has one line per step with the step events\' losses');
  const csv = readFileSync(join(opt.out, 'interrupted-metrics.csv'), 'utf8').trim().split('\n');
  check(csv[0].startsWith('step,epoch,loss') && csv.length === steps.length + 1, 'metrics.csv: a header and one row per step');
  await page.close();
  // Strict: the first bad record stops the run with its line number. The data comes by URL
  // this time (a data: URL), through fetch's body stream.
  page = await openPage();
  const dataUrl = `data:application/x-ndjson;base64,${readFileSync(opt.malformed).toString('base64')}`;
  await page.fill('#data-url', dataUrl);
  await fillConfig(page, { ...config, max_steps: 1, strict: true });
  await page.click('#start');
  await page.waitForFunction(() => document.getElementById('messages').textContent, null, { timeout: 60_000 });
  const msg = await page.textContent('#messages');
  console.log(`  message: ${msg}`);
  check(/line 3/.test(msg), 'strict mode: the error message names line 3');
  await page.close();
}

async function bench() {
  const page = await openPage();
  await page.setInputFiles('#data-file', opt.data);
  await fillConfig(page, config);
  await page.click('#start');
  await page.waitForFunction(() => window.afinador.summary || document.getElementById('messages').textContent,
    null, { timeout: TRAIN_TIMEOUT, polling: 1000 });
  const messages = await page.textContent('#messages');
  if (messages) throw new Error(messages);
  const { steps, summary } = await page.evaluate(() => window.afinador);
  for (const s of steps) console.log(`step ${s.step}: loss ${s.loss.toFixed(4)}, ${s.tokens_per_s.toFixed(1)} tok/s`);
  console.log(`bench: ${JSON.stringify(summary)}`);
  // Then a few greedy tokens of the base model ("Generate (base)").
  await page.fill('#prompt', 'def fibonacci(n):');
  await page.setChecked('#chat', false);
  await page.fill('#max-new', opt['new-tokens']);
  const started = Date.now();
  await page.click('#gen-base');
  await page.waitForFunction(() => document.getElementById('out-base').dataset.done
    || document.getElementById('messages').textContent, null, { timeout: TRAIN_TIMEOUT, polling: 500 });
  const generation = {
    prompt: 'def fibonacci(n):', text: await page.textContent('#out-base'),
    new_tokens: Number(opt['new-tokens']), seconds: (Date.now() - started) / 1000,
  };
  console.log(`generate: ${JSON.stringify(generation)}`);
  writeFileSync(join(opt.out, 'bench.json'), JSON.stringify({ steps, summary, generation }, null, 1));
  await page.screenshot({ path: join(opt.out, 'bench.png'), fullPage: true });
}

// A model server on another origin, as a model host is (CORS: Access-Control-Allow-Origin),
// that counts requests per path and serves the test model, a copy with an architecture afinador
// does not run, an HTML page, a 404, and a body cut off after 60% of its Content-Length.
async function startModelServer(model) {
  const arch = model.indexOf('llama', model.indexOf('general.architecture'));
  const unsupported = Buffer.from(model);
  unsupported[arch + 4] = '#'.charCodeAt(0); // 'llam#'
  // A header claiming a token embedding whose rows are 2^31 values (2.0 GiB of Q8_0 each, packed): no
  // browser binds that much, and a row is never split. The rest of the file is the tiny model's;
  // the server announces the length the header implies and sends twice the file's length, so
  // the refusal must come from the header, before the tensors.
  const wide = Buffer.from(model);
  const name = Buffer.from('token_embd.weight');
  const at = wide.indexOf(name, wide.indexOf('general.architecture')) + name.length;
  check(wide.readUInt32LE(at) === 2, 'the test model\'s token_embd.weight is a matrix');
  wide.writeBigUInt64LE(2n ** 31n, at + 4);
  wide.writeBigUInt64LE(1n, at + 12);
  const requests = {};
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    requests[path] = (requests[path] || 0) + 1;
    const headers = (type, length) => ({ 'Access-Control-Allow-Origin': '*', 'Content-Type': type, 'Content-Length': length });
    const send = (status, body, type = 'application/octet-stream') => {
      res.writeHead(status, headers(type, body.length));
      res.end(body);
    };
    if (path === '/tiny.gguf') return send(200, model);
    if (path === '/unsupported.gguf') return send(200, unsupported);
    if (path === '/page.gguf') return send(200, Buffer.from('<!doctype html><title>a model page</title>'), 'text/html');
    if (path === '/wide.gguf') {
      // Past the header's end, so that the download's header parse (at each doubling) completes.
      res.writeHead(200, headers('application/octet-stream', 2 ** 32));
      return res.write(Buffer.concat([wide, Buffer.alloc(wide.length)]));
    }
    if (path === '/cut.gguf') {
      res.writeHead(200, headers('application/octet-stream', model.length));
      return res.write(model.subarray(0, Math.floor(model.length * 0.6)), () => res.destroy());
    }
    return send(404, Buffer.from('not found'), 'text/plain');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, requests, url: (path) => `http://127.0.0.1:${server.address().port}${path}` };
}

// Models by URL: streamed with progress events, checked (HTTP status, GGUF magic, the core's
// support check, truncation), cached in OPFS, loaded from the cache with no request after a
// reload, listed with their size and deleted.
async function modelCacheTest() {
  const model = readFileSync(opt.model);
  const sha256 = createHash('sha256').update(model).digest('hex');
  const host = await startModelServer(model);
  try {
    const page = await context.newPage();
    page.on('console', (m) => console.log(`  [page ${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => { pageErrors.push(e.message); console.log(`  [page error] ${e.message}`); });
    await page.goto(opt.url);
    await waitReady(page);
    const loadUrl = async (path) => {
      await page.fill('#model-url', host.url(path));
      await page.click('#load-model');
      await page.waitForFunction(() => /layers/.test(document.getElementById('model-info').textContent)
        || document.getElementById('messages').textContent, null, { timeout: 5 * 60_000, polling: 100 });
      return page.textContent('#messages');
    };
    for (const [path, expected, what] of [
      ['/missing.gguf', /failed: HTTP 404/, 'a failed download names the HTTP status'],
      ['/page.gguf', /not a GGUF model file: it starts with "<!do"/, 'an HTML page is refused as not GGUF'],
      ['/unsupported.gguf', /afinador cannot run this model: unsupported architecture 'llam#'/,
        'an unsupported architecture is refused by the core\'s check'],
      ['/wide.gguf', /a tensor is wider than this GPU can bind \(maxStorageBufferBindingSize: 1\.0 GiB\): 'token_embd\.weight' \(rows of 2147483648 values, 2\.0 GiB each, Q8_0\)\. Weights are split by rows across bindings, but never within a row/,
        'a model whose rows exceed the adapter\'s binding limit is refused from its header'],
      ['/cut.gguf', new RegExp(`cut short: \\d+ of ${model.length} bytes arrived.*nothing was cached`),
        'a truncated download is refused'],
    ]) {
      const msg = await loadUrl(path);
      console.log(`  ${path}: ${msg}`);
      check(expected.test(msg), what);
      check(!(await page.isVisible('#cache-box')), `${path} was not cached`);
    }
    check(host.requests['/unsupported.gguf'] === 1 && host.requests['/cut.gguf'] === 1
      && host.requests['/wide.gguf'] === 1, 'one request each');

    // The model by URL: progress events, the sha256, one cached entry.
    check(!(await loadUrl('/tiny.gguf')), 'the model loaded from its URL');
    const { downloads, cache } = await page.evaluate(() => window.afinador);
    const last = downloads.at(-1);
    check(downloads.length >= 2 && downloads.every((d, i) => i === 0 || d.received >= downloads[i - 1].received),
      `progress events (${downloads.length}), the bytes growing`);
    check(last.received === model.length && last.total === model.length && last.sha256 === sha256,
      `the last one: ${last.received} bytes of ${last.total}, sha256 ${last.sha256.slice(0, 12)}…`);
    const rate = last.received / last.seconds / 2 ** 20;
    console.log(`  download: ${model.length} bytes in ${last.seconds.toFixed(2)} s (${rate.toFixed(1)} MiB/s)`);
    check((await page.textContent('#download-status')).startsWith('downloaded'), 'the progress bar says it is done');
    check((await page.textContent('#model-info')).includes(`sha256 ${sha256}`), 'the page shows the sha256');
    check(cache.length === 1 && cache[0].url === host.url('/tiny.gguf') && cache[0].bytes === model.length,
      'the cache lists the model with its size');
    const mibs = `${(model.length / 2 ** 20).toFixed(1)} MiB`;
    check((await page.textContent('#cache-list')).includes(mibs), `the cache list shows the size (${mibs})`);
    check(host.requests['/tiny.gguf'] === 1, 'the server saw one request for the model');
    await page.screenshot({ path: join(opt.out, 'model-cache.png'), fullPage: true });

    // A reload (a new worker, a new module): the model comes from the cache, with no request.
    await page.reload();
    await waitReady(page);
    await page.waitForSelector('#cache-list tr');
    await page.click('#cache-list tr button.load');
    await page.waitForFunction(() => /layers/.test(document.getElementById('model-info').textContent)
      || document.getElementById('messages').textContent, null, { timeout: 5 * 60_000, polling: 100 });
    check(!(await page.textContent('#messages')), 'the cached model loaded after a reload');
    check((await page.textContent('#model-info')).includes('from this browser\'s cache'), 'the page says it came from the cache');
    check((await page.evaluate(() => window.afinador.downloads.length)) === 0, 'no download the second time');
    check(host.requests['/tiny.gguf'] === 1, 'the server still saw exactly one request for the model');
    // It runs: greedy tokens from the model read out of OPFS.
    await page.fill('#max-new', '4');
    await page.click('#gen-base');
    await page.waitForSelector('#out-base[data-done]', { timeout: 120_000 });
    check((await page.textContent('#out-base')).length > 0, 'the cached model generates');
    // The model in use is not deleted; after a reload it is, and the list is empty.
    await page.click('#cache-list tr button.delete');
    await page.waitForFunction(() => document.getElementById('messages').textContent, null, { timeout: 30_000 });
    check(/in use in this tab/.test(await page.textContent('#messages')), 'the model in use is not deleted');
    await page.reload();
    await waitReady(page);
    await page.waitForSelector('#cache-list tr');
    await page.click('#cache-list tr button.delete');
    await page.waitForFunction(() => window.afinador.cache && window.afinador.cache.length === 0, null, { timeout: 30_000 });
    check(!(await page.isVisible('#cache-box')), 'Delete empties the cache list');
    await page.close();
  } finally {
    host.server.closeAllConnections();
    host.server.close();
  }
}

// The one-click demo as a first visitor sees it: `?model=` points the demo at the test model on
// the model server (as demo.json's default URL points a visitor at Hugging Face). One click
// downloads the model (a second visit: from the cache, with no request), trains the run
// sized for this adapter (SwiftShader is a fallback adapter: a few short steps) on the ENEM data
// shipped in web/dist, and shows the base and adapted answers to a validation question side
// by side. Screenshots: the trainer mid-run and the two answers.
async function demoTest() {
  const model = readFileSync(opt.model);
  const host = await startModelServer(model);
  const question = JSON.parse(readFileSync('examples/enem/validation.jsonl', 'utf8').split('\n')[0]).messages;
  const consoleErrors = [];
  try {
    const page = await context.newPage();
    page.on('console', (m) => {
      console.log(`  [page ${m.type()}] ${m.text()}`);
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => { pageErrors.push(e.message); console.log(`  [page error] ${e.message}`); });
    const modelUrl = host.url('/tiny.gguf');
    for (const visit of ['first', 'second']) {
      await page.goto(`${opt.url}?model=${encodeURIComponent(modelUrl)}`);
      await waitReady(page);
      await page.waitForSelector('#demo-start:not([disabled])', { timeout: 30_000 });
      check((await page.textContent('#demo-source')).includes(modelUrl), `${visit} visit: the demo names the model of ?model=`);
      const started = Date.now();
      await page.click('#demo-start');
      if (visit === 'second') {
        // The model from the cache, with no request; then the run starts (it ran whole the first
        // time, so the page is closed here).
        await page.waitForFunction(() => /fine-tuning/.test(document.getElementById('demo-status').textContent)
          || document.getElementById('messages').textContent, null, { timeout: TRAIN_TIMEOUT, polling: 100 });
        check(!(await page.textContent('#messages')), 'second visit: the demo runs without an error message');
        check((await page.textContent('#model-info')).includes('from this browser\'s cache'),
          'second visit: the model came from the cache');
        check(host.requests['/tiny.gguf'] === 1 && (await page.evaluate(() => window.afinador.downloads.length)) === 0,
          'second visit: no download (the server saw one request for the model in all)');
        break;
      }
      await page.waitForFunction(() => window.afinador.steps.length >= 2 || window.afinador.summary
        || document.getElementById('messages').textContent, null, { timeout: TRAIN_TIMEOUT, polling: 100 });
      await page.locator('#train-section').screenshot({ path: join(opt.out, 'web-training.png') });
      await page.waitForFunction(() => window.afinador.demoDone || document.getElementById('messages').textContent,
        null, { timeout: TRAIN_TIMEOUT, polling: 250 });
      const seconds = (Date.now() - started) / 1000;
      check(!(await page.textContent('#messages')), `first visit: the demo ran without an error message (${seconds.toFixed(1)} s)`);
      check((await page.textContent('#model-info')).startsWith(`downloaded: ${modelUrl}`), 'first visit: the model came from its URL');
      const { summary, steps, adapter, answers } = await page.evaluate(() => window.afinador);
      const maxSteps = Number(await page.inputValue('#cfg-max_steps'));
      check(adapter.fallback && maxSteps <= 8 && Number(await page.inputValue('#cfg-seq_len')) <= 256,
        `a short run on this fallback adapter (${maxSteps} steps × ${await page.inputValue('#cfg-seq_len')} tokens)`);
      check(summary.stop_reason === 'completed' && steps.length === maxSteps, `the run completed its ${maxSteps} steps`);
      check((await page.textContent('#data-info')).includes('format: messages'), 'it trained on the shipped ENEM data (messages)');
      check(await page.inputValue('#prompt') === question[1].content && await page.inputValue('#system') === question[0].content
        && (await page.textContent('#reference')) === question[2].content, 'Try it holds the first validation question and its answer');
      const base = await page.textContent('#out-base');
      const adapted = await page.textContent('#out-adapter');
      check(answers.base.tokens > 0 && !answers.base.adapter && answers.adapter.tokens > 0 && answers.adapter.adapter
        && base.length > 0 && adapted.length > 0,
        `both answers are there (base ${JSON.stringify(base)}, adapted ${JSON.stringify(adapted)})`);
      await page.locator('#try-section').screenshot({ path: join(opt.out, 'web-demo.png') });
    }
    check(!consoleErrors.length, `no error in the console (${consoleErrors.join('; ')})`);
    await page.close();
  } finally {
    host.server.closeAllConnections();
    host.server.close();
  }
}

// The kernel benchmark page: the quick suite (`bench kernels --quick`) runs through the core
// on this adapter, every figure positive and finite; its JSON downloads (bench-browser.json,
// which scripts/test-web hands to `afinador bench compare` beside a native run).
async function benchPageTest() {
  const page = await context.newPage();
  page.on('console', (m) => console.log(`  [page ${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => { pageErrors.push(e.message); console.log(`  [page error] ${e.message}`); });
  await page.goto(new URL('index.html', opt.url).href);
  await page.click('a[href="bench.html"]');
  await page.waitForURL(/bench\.html$/);
  await page.goto(new URL('bench.html?run=quick', opt.url).href);
  const started = Date.now();
  await page.waitForFunction(() => window.afinadorBench?.report || document.getElementById('messages').textContent,
    null, { timeout: 10 * 60_000, polling: 250 });
  check(!(await page.textContent('#messages')), 'the quick suite ran without an error message');
  const { rows, skipped, report } = await page.evaluate(() => window.afinadorBench);
  const tableRows = await page.$$eval('#results tbody tr', (trs) => trs.length);
  console.log(`  bench: ${rows.length} kernels in ${((Date.now() - started) / 1000).toFixed(1)} s, ` +
    `timer ${report.timer}, skipped ${JSON.stringify(skipped)}`);
  const positive = (x) => typeof x === 'number' && Number.isFinite(x) && x > 0;
  check(rows.length > 20 && tableRows === rows.length && report.results.length === rows.length,
    `every kernel in the table and the report (${rows.length}, ${skipped.length} skipped)`);
  check(report.results.every((r) => positive(r.time_us) && (positive(r.gflops) || positive(r.gbps))),
    'every time and rate positive and finite');
  check(['gpu timestamps', 'wall clock'].includes(report.timer), `the report names its timer (${report.timer})`);
  check(typeof report.adapter.name === 'string' && report.adapter.backend, `the report names the adapter (${report.adapter.name})`);
  const downloads = [];
  page.on('download', (d) => downloads.push(d));
  await page.click('#download');
  for (let i = 0; i < 100 && downloads.length < 1; i++) await page.waitForTimeout(100);
  check(downloads.length === 1 && downloads[0].suggestedFilename() === 'afinador-bench.json', 'afinador-bench.json downloaded');
  await downloads[0].saveAs(join(opt.out, 'bench-browser.json'));
  const saved = JSON.parse(readFileSync(join(opt.out, 'bench-browser.json'), 'utf8'));
  check(saved.results.length === rows.length, 'the downloaded JSON holds every row');
  await page.screenshot({ path: join(opt.out, 'bench.png'), fullPage: true });
  await page.close();
}

// `afinador web` answers with the MIME types browsers insist on, and the page opens from it
// (the other tests use --url, a plain static server).
async function mimeTest() {
  const base = opt['afinador-web'] || opt.url;
  for (const [path, type] of [['pkg/afinador_web_bg.wasm', 'application/wasm'], ['worker.js', 'text/javascript'],
    ['', 'text/html']]) {
    const resp = await fetch(new URL(path, base));
    check(resp.ok && resp.headers.get('content-type').startsWith(type), `/${path} is served as ${type}`);
  }
  const page = await context.newPage();
  page.on('pageerror', (e) => { pageErrors.push(e.message); console.log(`  [page error] ${e.message}`); });
  await page.goto(base);
  await waitReady(page);
  await page.close();
}

try {
  if (opt.bench) {
    await bench();
  } else {
    // --only mime,cache,bench,train,malformed,demo runs some of them (while working on one).
    const tests = { mime: mimeTest, cache: modelCacheTest, bench: benchPageTest, train: trainTest,
      malformed: malformedTest, demo: demoTest };
    for (const [name, test] of Object.entries(tests)) {
      if (!opt.only || opt.only.split(',').includes(name)) await test();
    }
    check(!pageErrors.length, `no uncaught error in any page (${pageErrors.length})`);
    console.log('browser tests: all checks passed');
  }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
