//! The kernel benchmark in the tab (`bench.html`): the core's suite ([`KernelBench`], the one
//! `afinador bench kernels` runs) one case per call, so the page draws each row as it comes, and
//! the same JSON at the end, which `afinador bench compare` reads beside a native run.

use afinador_core::bench::{KernelBench, Peaks, Pick};
use wasm_bindgen::prelude::*;

use crate::engine::Afinador;
use crate::{err, to_js};

/// `performance.now()` in seconds (windows and workers both have it); `Date.now()` otherwise.
fn clock() -> f64 {
    use js_sys::{Function, Reflect};
    let performance = Reflect::get(&js_sys::global(), &JsValue::from_str("performance")).ok();
    let now = performance.as_ref().and_then(|p| {
        let f: Function = Reflect::get(p, &JsValue::from_str("now"))
            .ok()?
            .dyn_into()
            .ok()?;
        f.call0(p).ok()?.as_f64()
    });
    now.unwrap_or_else(js_sys::Date::now) / 1000.0
}

#[wasm_bindgen]
impl Afinador {
    /// Start the kernel suite (`quick`: `bench kernels --quick`'s shapes and batches). Returns
    /// `{ cases: ["kernel shape", …], timestamps }`: `timestamps` is whether the device has
    /// `timestamp-query` (the browser may still round them; a batch that reads zero is then
    /// timed by the clock, and the report's `timer` says "wall clock").
    #[wasm_bindgen(js_name = benchKernelsStart)]
    pub fn bench_kernels_start(&mut self, quick: bool) -> Result<JsValue, JsError> {
        let peaks = Peaks::known(&self.gpu.adapter.name);
        let bench = KernelBench::new(quick, None, Pick::default(), peaks, clock);
        let info = serde_json::json!({
            "cases": bench.names(),
            "timestamps": self.gpu.has_timestamps(),
        });
        self.bench = Some(bench);
        to_js(&info)
    }

    /// Run the next case: `{ name, row }` (the row as `bench kernels --json` writes it),
    /// `{ name, skipped }` (why it could not run here), or `undefined` once all have run.
    #[wasm_bindgen(js_name = benchKernelsNext)]
    pub async fn bench_kernels_next(&mut self) -> Result<JsValue, JsError> {
        let bench = self
            .bench
            .as_mut()
            .ok_or_else(|| JsError::new("no benchmark started: call benchKernelsStart"))?;
        let Some(name) = bench.upcoming() else {
            return Ok(JsValue::UNDEFINED);
        };
        let out = match bench.next(&self.gpu).await.map_err(err)? {
            Some(row) => serde_json::json!({ "name": name, "row": row }),
            None => serde_json::json!({ "name": name, "skipped": bench.skipped().last() }),
        };
        to_js(&out)
    }

    /// The run so far as `afinador bench kernels --json` writes it: `adapter`, `timer`,
    /// `results`, `skipped`.
    #[wasm_bindgen(js_name = benchKernelsReport)]
    pub fn bench_kernels_report(&self) -> Result<JsValue, JsError> {
        let bench = self
            .bench
            .as_ref()
            .ok_or_else(|| JsError::new("no benchmark started: call benchKernelsStart"))?;
        let mut report = bench.report(&self.gpu);
        report["adapter"]["name"] = crate::engine::adapter_name(&self.gpu).into();
        to_js(&report)
    }
}
