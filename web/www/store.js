// The last unfinished run, kept in IndexedDB so a reloaded page can resume it: its checkpoint
// (the CLI's optimizer.safetensors + trainer_state.json), metrics so far, and the model and data
// sources (File objects are stored as such; URLs as strings).
const DB = 'afinador';
const STORE = 'runs';
const KEY = 'last';

function open() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function tx(mode, fn) {
  const db = await open();
  try {
    return await new Promise((resolve, reject) => {
      const t = db.transaction(STORE, mode);
      const req = fn(t.objectStore(STORE));
      t.oncomplete = () => resolve(req && req.result);
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error || new Error('IndexedDB transaction aborted'));
    });
  } finally {
    db.close();
  }
}

export const saveRun = (run) => tx('readwrite', (s) => s.put(run, KEY));
export const loadRun = () => tx('readonly', (s) => s.get(KEY));
export const clearRun = () => tx('readwrite', (s) => s.delete(KEY));
