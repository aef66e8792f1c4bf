// The model cache: a model given by URL is downloaded once, streamed into the Origin Private
// File System (OPFS: navigator.storage.getDirectory(), origin-private, not the user's files),
// and afterwards read from there slice by slice like a picked File (loadModelFile), with no
// request. Used by the worker only (createSyncAccessHandle exists in dedicated workers).
//
// Layout: models/index.json lists the complete downloads ({ url, file, bytes, sha256, savedAt });
// models/<file> holds each one. An entry is written only after the whole body arrived and passed
// every check, so a file without an entry (a tab closed mid-download) is a leftover, removed the
// next time the list is read. Two tabs downloading at once may race on index.json; the loser's
// entry is lost and the model downloads again next time, nothing worse.
//
// Where the browser has no OPFS sync access handles, the download goes to a Blob in memory
// (never into the wasm module's memory) and is not cached.
import { ModelDownload } from './pkg/afinador_web.js';

const DIR = 'models';
const INDEX = 'index.json';
// Progress events at most this often (and always for the first and the last chunk).
const PROGRESS_MS = 200;

const hasOpfs = () => typeof navigator.storage?.getDirectory === 'function'
  && typeof self.FileSystemFileHandle?.prototype.createSyncAccessHandle === 'function';

async function folder() {
  const root = await navigator.storage.getDirectory();
  return root.getDirectoryHandle(DIR, { create: true });
}

async function readIndex(dir) {
  try {
    const file = await (await dir.getFileHandle(INDEX)).getFile();
    return JSON.parse(await file.text());
  } catch (e) {
    if (e.name === 'NotFoundError') return [];
    throw e;
  }
}

async function writeIndex(dir, entries) {
  const w = await (await dir.getFileHandle(INDEX, { create: true })).createWritable();
  await w.write(JSON.stringify(entries));
  await w.close();
}

// A file name for `url`: the start of its sha256 (URLs hold characters file names may not).
async function fileName(url) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(url)));
  return `${Array.from(digest.slice(0, 12), (b) => b.toString(16).padStart(2, '0')).join('')}.gguf`;
}

/** The cached models ({ url, bytes, sha256, savedAt }), newest first, and what the browser
 * lets this origin store ({ usage, quota }, or null). Leftover files are removed. */
export async function listCached() {
  if (!hasOpfs()) return { models: [], storage: null, cacheable: false };
  const dir = await folder();
  const entries = await readIndex(dir);
  const known = new Set(entries.map((e) => e.file));
  for await (const name of dir.keys()) {
    if (name !== INDEX && !known.has(name)) await dir.removeEntry(name).catch(() => {});
  }
  const estimate = await navigator.storage.estimate?.().catch(() => null);
  return { models: entries.toSorted((a, b) => b.savedAt - a.savedAt), cacheable: true,
    storage: estimate ? { usage: estimate.usage, quota: estimate.quota } : null };
}

/** The cached copy of `url` as { file, entry }, or null. */
export async function openCached(url) {
  if (!hasOpfs()) return null;
  const dir = await folder();
  const entry = (await readIndex(dir)).find((e) => e.url === url);
  if (!entry) return null;
  try {
    const file = await (await dir.getFileHandle(entry.file)).getFile();
    if (file.size === entry.bytes) return { file, entry };
  } catch (e) {
    if (e.name !== 'NotFoundError') throw e;
  }
  await removeCached(url); // the browser evicted it, or it was damaged: download again
  return null;
}

/** Forget `url`'s cached copy. */
export async function removeCached(url) {
  const dir = await folder();
  const entries = await readIndex(dir);
  const entry = entries.find((e) => e.url === url);
  if (!entry) return false;
  await writeIndex(dir, entries.filter((e) => e !== entry));
  await dir.removeEntry(entry.file).catch((e) => { if (e.name !== 'NotFoundError') throw e; });
  return true;
}

/** Download `url`, checking it as it comes (ModelDownload: GGUF magic, the core's support check
 * on the header — with `limits` (adapterInfo()), also every tensor against the adapter's
 * binding limits —, sha256, length); `progress({ received, total, seconds })` as it goes. Returns
 * { file, entry, cached }: the model as a File (from OPFS, or a Blob in memory when the browser
 * cannot cache). Nothing is kept when a check fails. */
export async function download(url, progress, limits) {
  let resp;
  try {
    resp = await fetch(url);
  } catch (e) {
    throw new Error(`could not download ${url} (${e.message}): the server cannot be reached, or it ` +
      'does not let other sites read the file (CORS: it must send Access-Control-Allow-Origin)');
  }
  if (!resp.ok) throw new Error(`downloading ${url} failed: HTTP ${resp.status}${resp.statusText ? ` ${resp.statusText}` : ''}`);
  // Content-Length counts the bytes on the wire: compared only when the body is not encoded
  // (a compressed body is longer once decoded; its decoder catches a truncation itself).
  const encoding = resp.headers.get('content-encoding');
  const length = resp.headers.get('content-length');
  const total = length !== null && (!encoding || encoding === 'identity') ? Number(length) : null;
  const check = new ModelDownload(total ?? undefined);
  if (limits) check.limitTo(limits.max_storage_buffer_binding_size, limits.max_buffer_size);
  const sink = hasOpfs() ? await OpfsSink.open(url) : new MemorySink();
  const reader = resp.body.getReader();
  const started = performance.now();
  let received = 0;
  let reported = 0;
  let done = false;
  try {
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        throw new Error(`the download was cut short: ${received}${total !== null ? ` of ${total}` : ''} bytes ` +
          `arrived (${e.message}); nothing was cached, try again`);
      }
      if (chunk.done) break;
      check.push(chunk.value);
      sink.write(chunk.value, received);
      received += chunk.value.length;
      const now = performance.now();
      if (received === chunk.value.length || now - reported >= PROGRESS_MS) {
        progress({ received, total, seconds: (now - started) / 1000 });
        reported = now;
      }
    }
    const sha256 = check.finish();
    progress({ received, total, seconds: (performance.now() - started) / 1000, sha256 });
    const entry = { url, bytes: received, sha256, savedAt: Date.now() };
    const file = await sink.commit(entry);
    done = true;
    return { file, entry, cached: sink.caches };
  } finally {
    check.free();
    if (!done) {
      await reader.cancel().catch(() => {});
      await sink.discard();
    }
  }
}

// The download written into OPFS with a sync access handle (written in place, never in memory
// whole); committed to the index only once complete.
class OpfsSink {
  static async open(url) {
    const dir = await folder();
    const name = await fileName(url);
    const handle = await dir.getFileHandle(name, { create: true });
    let access;
    try {
      access = await handle.createSyncAccessHandle();
    } catch (e) {
      throw new Error(`${url} is being downloaded or read in another tab (${e.message}); close it and try again`);
    }
    access.truncate(0);
    return Object.assign(new OpfsSink(), { dir, name, handle, access, caches: true });
  }

  write(bytes, at) {
    try {
      this.access.write(bytes, { at });
    } catch (e) {
      if (e.name === 'QuotaExceededError') {
        throw new Error('this browser\'s storage for the page is full: delete cached models and try again');
      }
      throw e;
    }
  }

  async commit(entry) {
    this.access.flush();
    this.access.close();
    this.access = null;
    const entries = (await readIndex(this.dir)).filter((e) => e.url !== entry.url);
    Object.assign(entry, { file: this.name });
    await writeIndex(this.dir, [...entries, entry]);
    return this.handle.getFile();
  }

  async discard() {
    this.access?.close();
    await this.dir.removeEntry(this.name).catch(() => {});
  }
}

// No OPFS: the chunks kept as a Blob (the browser may keep it out of the JS heap).
class MemorySink {
  constructor() { this.parts = []; this.caches = false; }
  write(bytes) { this.parts.push(bytes); }
  async commit() { return new Blob(this.parts); }
  async discard() { this.parts = []; }
}
