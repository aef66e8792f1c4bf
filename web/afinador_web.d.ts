/* tslint:disable */
/* eslint-disable */

/**
 * An adapter's files, as the CLI's `adapter/` holds them: the PEFT pair and the GGUF LoRA.
 */
export class AdapterFiles {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * `adapter_config.json`.
     */
    readonly configJson: string;
    /**
     * `adapter.gguf`: the GGUF LoRA for llama.cpp's `--lora` and Ollama's `ADAPTER`.
     */
    readonly gguf: Uint8Array;
    /**
     * `adapter_model.safetensors`.
     */
    readonly safetensors: Uint8Array;
}

/**
 * afinador on one WebGPU device: a model, a training run, generation.
 */
export class Afinador {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * The adapter: name, vendor, backend, features, limits, and `fallback` (a software
     * adapter the browser fell back to).
     */
    adapterInfo(): any;
    /**
     * Start a pass over the data: `"scan"` for the first one (counting), then `"train"`.
     */
    beginPass(): string;
    /**
     * Run the next case: `{ name, row }` (the row as `bench kernels --json` writes it),
     * `{ name, skipped }` (why it could not run here), or `undefined` once all have run.
     */
    benchKernelsNext(): Promise<any>;
    /**
     * The run so far as `afinador bench kernels --json` writes it: `adapter`, `timer`,
     * `results`, `skipped`.
     */
    benchKernelsReport(): any;
    /**
     * Start the kernel suite (`quick`: `bench kernels --quick`'s shapes and batches). Returns
     * `{ cases: ["kernel shape", …], timestamps }`: `timestamps` is whether the device has
     * `timestamp-query` (the browser may still round them; a batch that reads zero is then
     * timed by the clock, and the report's `timer` says "wall clock").
     */
    benchKernelsStart(quick: boolean): any;
    /**
     * Set the training configuration: an object with `afinador train`'s keys in snake_case
     * (`lora_r`, `lr`, `batch_size`, `seq_len`, `max_steps`, `val_ratio`, …); missing keys keep
     * the CLI's defaults. Returns the resolved configuration. Starts a new run.
     */
    configure(config: any): any;
    /**
     * Open the browser's WebGPU adapter (with every optional feature afinador can use).
     * Fails with a message naming what to enable when WebGPU is missing.
     */
    static create(): Promise<Afinador>;
    /**
     * Counters of the pass in progress (records, bad records with line numbers, tokens) and
     * the record format detected.
     */
    dataStats(): any;
    /**
     * After a training pass: the end-of-epoch evaluation (when `eval_every` is 0) and the next
     * epoch. Returns `{ continue, eval }` (`eval`: the metrics line, or null).
     */
    endEpoch(): Promise<any>;
    /**
     * End the pass (the last records come out). After the first pass, sets the run up and
     * returns `{ plan, data, validation_sequences, format }`; after a training pass, `{ data }`.
     */
    endPass(): any;
    /**
     * The adapter as PEFT files (`best`: the one with the best evaluation loss, when there
     * was an evaluation; else the current one).
     */
    exportAdapter(best: boolean): Promise<AdapterFiles>;
    /**
     * The run as one ZIP file, laid out as `afinador train` writes its output directory:
     * `adapter/` (PEFT files and `adapter.gguf`; the best adapter when `best` and there is
     * one), `metrics.jsonl`, `config.json` and, once the run is over, `training_summary.json`.
     */
    exportZip(best: boolean): Promise<Uint8Array>;
    /**
     * End the run (`interrupted`: the user stopped it): the final evaluation when it completed,
     * then a summary like the CLI's `training_summary.json`.
     */
    finish(interrupted: boolean): Promise<any>;
    /**
     * [`generate`](Self::generate) after a conversation, `[{ role, content }, …]` (a system
     * message, then the user's, as a chat data set's records hold them), in the model's chat
     * template with the assistant's turn opened.
     */
    generateMessages(messages: any, max_new_tokens: number, with_adapter: boolean, temperature: number, seed: bigint): Promise<any>;
    /**
     * Generate after `prompt` (greedy when `temperature` is 0). With `with_adapter`, the LoRA
     * adapter trained so far is merged into a second copy of the model for this call. With
     * `chat`, the prompt is wrapped as a user message in the model's chat template.
     * Returns `{ text, tokens, tokens_per_s, adapter }`.
     */
    generate(prompt: string, max_new_tokens: number, with_adapter: boolean, chat: boolean, temperature: number, seed: bigint): Promise<any>;
    /**
     * [`loadModel`](Self::load_model) from a `File` (or `Blob`), read one tensor at a time in
     * this worker: the file is never in memory whole.
     */
    loadModelFile(file: any): any;
    /**
     * Parse a GGUF file's bytes, build its tokenizer and upload its weights; returns the
     * model's description (architecture, shape, parameters, tokenizer, GPU bytes). Once per
     * instance.
     */
    loadModel(bytes: Uint8Array | number[]): any;
    /**
     * Every metrics line so far as CSV (one column per key, empty where a line lacks it).
     */
    metricsCsv(): string;
    /**
     * Every metrics line so far, as `metrics.jsonl` (the CLI's format).
     */
    metricsJsonl(): string;
    /**
     * The loaded model's description.
     */
    modelInfo(): any;
    /**
     * Feed the next chunk of the data (any size, split anywhere).
     */
    pushChunk(chunk: Uint8Array | number[]): void;
    /**
     * Continue a run from a checkpoint: call after the first pass's `endPass` and before any
     * step, having configured the checkpoint's own configuration
     * (`configure(JSON.parse(stateJson).config)`) and streaming the same data. `metrics_jsonl`
     * holds the metrics lines written before the checkpoint. Returns the step it resumes at.
     */
    resumeFrom(tensors: Uint8Array | number[], state_json: string, metrics_jsonl: string): number;
    /**
     * The run's checkpoint, read back from the GPU (between steps).
     */
    saveCheckpoint(): Promise<Checkpoint>;
    /**
     * Take one optimizer step when the pass has a batch ready (evaluating when `eval_every`
     * says so). Returns the step's metrics line plus `total_steps` (and `skipped` for a step
     * skipped on a non-finite gradient), or `undefined` when the pass needs more data or the
     * run is over.
     */
    step(): Promise<any>;
    /**
     * Why the run stops (`"completed"`, `"early stopping"`, `"non-finite gradients"`), or
     * `undefined` while it goes on.
     */
    stopReason(): string | undefined;
}

/**
 * A run's checkpoint: the CLI's `optimizer.safetensors` (LoRA parameters and AdamW moments)
 * and `trainer_state.json` (step, epoch, position in the epoch, best loss, configuration).
 */
export class Checkpoint {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * `trainer_state.json`.
     */
    readonly stateJson: string;
    /**
     * `optimizer.safetensors`.
     */
    readonly tensors: Uint8Array;
}

/**
 * The running checks of one model download.
 */
export class ModelDownload {
    free(): void;
    [Symbol.dispose](): void;
    /**
     * The end of the body: fails when fewer bytes came than `Content-Length` promised (a
     * truncated download) or when the file ended inside its header; otherwise the sha256 of the
     * file, in hex.
     */
    finish(): string;
    /**
     * Also refuse the model, as soon as its header has arrived, when a tensor cannot fit this
     * device's limits (`adapterInfo()`'s `max_storage_buffer_binding_size` and
     * `max_buffer_size`): one row of a matrix, or a vector, larger than one binding.
     */
    limitTo(max_storage_buffer_binding_size: number, max_buffer_size: number): void;
    /**
     * A download of `expected_bytes` (the `Content-Length`), or of an unknown length.
     */
    constructor(expected_bytes?: number | null);
    /**
     * Take the next chunk. Fails when the file is not GGUF, when its header is malformed, or
     * when afinador cannot run the model (every problem named). Returns true once the header
     * has been checked.
     */
    push(chunk: Uint8Array | number[]): boolean;
    /**
     * Bytes received so far.
     */
    received(): number;
}

/**
 * The CLI's training defaults (`afinador train`), as an object with the config's snake_case keys.
 */
export function defaultConfig(): any;

/**
 * Parse a GGUF file's bytes and describe it as JSON (architecture, tensor count, metadata keys).
 */
export function inspectGguf(bytes: Uint8Array | number[]): string;

/**
 * The afinador version this module was built from.
 */
export function version(): string;

export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

export interface InitOutput {
    readonly memory: WebAssembly.Memory;
    readonly __wbg_adapterfiles_free: (a: number, b: number) => void;
    readonly __wbg_afinador_free: (a: number, b: number) => void;
    readonly __wbg_checkpoint_free: (a: number, b: number) => void;
    readonly __wbg_modeldownload_free: (a: number, b: number) => void;
    readonly adapterfiles_configJson: (a: number) => [number, number];
    readonly adapterfiles_gguf: (a: number) => [number, number];
    readonly adapterfiles_safetensors: (a: number) => [number, number];
    readonly afinador_adapterInfo: (a: number) => [number, number, number];
    readonly afinador_beginPass: (a: number) => [number, number, number, number];
    readonly afinador_benchKernelsNext: (a: number) => any;
    readonly afinador_benchKernelsReport: (a: number) => [number, number, number];
    readonly afinador_benchKernelsStart: (a: number, b: number) => [number, number, number];
    readonly afinador_configure: (a: number, b: any) => [number, number, number];
    readonly afinador_create: () => any;
    readonly afinador_dataStats: (a: number) => [number, number, number];
    readonly afinador_endEpoch: (a: number) => any;
    readonly afinador_endPass: (a: number) => [number, number, number];
    readonly afinador_exportAdapter: (a: number, b: number) => any;
    readonly afinador_exportZip: (a: number, b: number) => any;
    readonly afinador_finish: (a: number, b: number) => any;
    readonly afinador_generate: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: bigint) => any;
    readonly afinador_generateMessages: (a: number, b: any, c: number, d: number, e: number, f: bigint) => any;
    readonly afinador_loadModel: (a: number, b: number, c: number) => [number, number, number];
    readonly afinador_loadModelFile: (a: number, b: any) => [number, number, number];
    readonly afinador_metricsCsv: (a: number) => [number, number];
    readonly afinador_metricsJsonl: (a: number) => [number, number];
    readonly afinador_modelInfo: (a: number) => [number, number, number];
    readonly afinador_pushChunk: (a: number, b: number, c: number) => [number, number];
    readonly afinador_resumeFrom: (a: number, b: number, c: number, d: number, e: number, f: number, g: number) => [number, number, number];
    readonly afinador_saveCheckpoint: (a: number) => any;
    readonly afinador_step: (a: number) => any;
    readonly afinador_stopReason: (a: number) => [number, number];
    readonly checkpoint_stateJson: (a: number) => [number, number];
    readonly checkpoint_tensors: (a: number) => [number, number];
    readonly defaultConfig: () => [number, number, number];
    readonly inspectGguf: (a: number, b: number) => [number, number, number, number];
    readonly modeldownload_finish: (a: number) => [number, number, number, number];
    readonly modeldownload_limitTo: (a: number, b: number, c: number) => void;
    readonly modeldownload_new: (a: number, b: number) => number;
    readonly modeldownload_push: (a: number, b: number, c: number) => [number, number, number];
    readonly modeldownload_received: (a: number) => number;
    readonly version: () => [number, number];
    readonly wasm_bindgen__convert__closures_____invoke__h18ce28caf726df32: (a: number, b: number, c: any) => [number, number];
    readonly wasm_bindgen__convert__closures_____invoke__h18ce28caf726df32_41: (a: number, b: number, c: any) => [number, number];
    readonly wasm_bindgen__convert__closures_____invoke__h18ce28caf726df32_42: (a: number, b: number, c: any) => [number, number];
    readonly wasm_bindgen__convert__closures_____invoke__h63b598d0c5b6b0f2: (a: number, b: number, c: any, d: any) => void;
    readonly wasm_bindgen__convert__closures_____invoke__hebe8512b4d3e9e42: (a: number, b: number, c: any) => [number, number];
    readonly __wbindgen_malloc: (a: number, b: number) => number;
    readonly __wbindgen_realloc: (a: number, b: number, c: number, d: number) => number;
    readonly __wbindgen_free: (a: number, b: number, c: number) => void;
    readonly __wbindgen_exn_store: (a: number) => void;
    readonly __externref_table_alloc: () => number;
    readonly __wbindgen_externrefs: WebAssembly.Table;
    readonly __wbindgen_destroy_closure: (a: number, b: number) => void;
    readonly __externref_table_dealloc: (a: number) => void;
    readonly __wbindgen_start: () => void;
}

export type SyncInitInput = BufferSource | WebAssembly.Module;

/**
 * Instantiates the given `module`, which can either be bytes or
 * a precompiled `WebAssembly.Module`.
 *
 * @param {{ module: SyncInitInput }} module - Passing `SyncInitInput` directly is deprecated.
 *
 * @returns {InitOutput}
 */
export function initSync(module: { module: SyncInitInput } | SyncInitInput): InitOutput;

/**
 * If `module_or_path` is {RequestInfo} or {URL}, makes a request and
 * for everything else, calls `WebAssembly.instantiate` directly.
 *
 * @param {{ module_or_path: InitInput | Promise<InitInput> }} module_or_path - Passing `InitInput` directly is deprecated.
 *
 * @returns {Promise<InitOutput>}
 */
export default function __wbg_init (module_or_path?: { module_or_path: InitInput | Promise<InitInput> } | InitInput | Promise<InitInput>): Promise<InitOutput>;
