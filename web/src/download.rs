//! A model arriving by URL, checked as its bytes stream in (`web/www/models.js` does the fetch
//! and writes the chunks to the Origin Private File System): the GGUF magic in the first four
//! bytes, the core's support check ([`Support`], the one `afinador inspect` prints) as soon as the
//! header is whole — so an unsupported model stops its download there, before the tensors come
//! and before anything is uploaded —, the sha256 of every byte, and at the end the length against
//! the server's `Content-Length`.

use afinador_core::formats::{Gguf, GgufError};
use afinador_core::model::{DeviceLimits, Support};
use afinador_core::tokenizer::Tokenizer;
use sha2::{Digest, Sha256};
use wasm_bindgen::prelude::*;

/// The first header parse is tried at this many bytes, then at each doubling (Gemma's
/// 262144-token vocabulary makes a header of ~10 MB).
const FIRST_HEAD_BYTES: usize = 1 << 20;
/// A header larger than this is refused rather than buffered.
const MAX_HEAD_BYTES: usize = 256 << 20;

/// The running checks of one model download.
#[wasm_bindgen]
pub struct ModelDownload {
    /// The server's `Content-Length`, when it sent one.
    expected: Option<u64>,
    received: u64,
    /// The file's first bytes, kept until the header parses.
    head: Vec<u8>,
    next_parse: usize,
    header_checked: bool,
    sha: Sha256,
    /// The device's limits the header is also checked against ([`Support::fit`]), once given.
    limits: Option<DeviceLimits>,
}

#[wasm_bindgen]
impl ModelDownload {
    /// A download of `expected_bytes` (the `Content-Length`), or of an unknown length.
    #[wasm_bindgen(constructor)]
    pub fn new(expected_bytes: Option<f64>) -> ModelDownload {
        ModelDownload {
            expected: expected_bytes.map(|n| n as u64),
            received: 0,
            head: Vec::new(),
            next_parse: FIRST_HEAD_BYTES,
            header_checked: false,
            sha: Sha256::new(),
            limits: None,
        }
    }

    /// Also refuse the model, as soon as its header has arrived, when a tensor cannot fit this
    /// device's limits (`adapterInfo()`'s `max_storage_buffer_binding_size` and
    /// `max_buffer_size`): one row of a matrix, or a vector, larger than one binding.
    #[wasm_bindgen(js_name = limitTo)]
    pub fn limit_to(&mut self, max_storage_buffer_binding_size: f64, max_buffer_size: f64) {
        self.limits = Some(DeviceLimits {
            max_storage_buffer_binding_size: max_storage_buffer_binding_size as u64,
            max_buffer_size: max_buffer_size as u64,
        });
    }

    /// Take the next chunk. Fails when the file is not GGUF, when its header is malformed, or
    /// when afinador cannot run the model (every problem named). Returns true once the header
    /// has been checked.
    pub fn push(&mut self, chunk: &[u8]) -> Result<bool, JsError> {
        self.take(chunk).map_err(|e| JsError::new(&e))
    }

    /// Bytes received so far.
    pub fn received(&self) -> f64 {
        self.received as f64
    }

    /// The end of the body: fails when fewer bytes came than `Content-Length` promised (a
    /// truncated download) or when the file ended inside its header; otherwise the sha256 of the
    /// file, in hex.
    pub fn finish(&mut self) -> Result<String, JsError> {
        self.end().map_err(|e| JsError::new(&e))
    }
}

impl ModelDownload {
    fn take(&mut self, chunk: &[u8]) -> Result<bool, String> {
        self.sha.update(chunk);
        self.received += chunk.len() as u64;
        if !self.header_checked {
            self.head.extend_from_slice(chunk);
            self.check_head(false)?;
        }
        Ok(self.header_checked)
    }

    fn end(&mut self) -> Result<String, String> {
        if let Some(expected) = self.expected.filter(|&n| self.received < n) {
            return Err(format!(
                "the download was cut short: {} of {expected} bytes (Content-Length) arrived; \
                 nothing was cached, try again",
                self.received
            ));
        }
        if !self.header_checked {
            self.check_head(true)?;
        }
        Ok(hex(&self.sha.clone().finalize()))
    }

    /// Check what has arrived of the head: the magic at once, the header at each doubling (and
    /// at the end of the body, `complete`).
    fn check_head(&mut self, complete: bool) -> Result<(), String> {
        if self.head.len() >= 4 || complete {
            not_gguf(&self.head).map_or(Ok(()), Err)?;
        }
        if !complete && self.head.len() < self.next_parse {
            return Ok(());
        }
        // Tensor bounds are checked against the announced length; without one, the file's own
        // length is checked when the model is read from the cache (`loadModelFile`).
        let file_len = match complete {
            true => self.received,
            false => self.expected.unwrap_or(u64::MAX),
        };
        match Gguf::parse_header(&self.head, file_len) {
            Ok(gguf) => {
                let mut support = Support::of(&gguf);
                support.tokenizer(Tokenizer::from_gguf(&gguf));
                if let Some(limits) = &self.limits {
                    support.fit(&gguf, limits);
                }
                if !support.is_supported() {
                    return Err(support.message(4));
                }
                self.header_checked = true;
                self.head = Vec::new();
                Ok(())
            }
            Err(GgufError::Truncated { .. }) if !complete => {
                if self.head.len() > MAX_HEAD_BYTES {
                    return Err(format!(
                        "the GGUF header is larger than {} MiB: afinador does not read it",
                        MAX_HEAD_BYTES >> 20
                    ));
                }
                self.next_parse = 2 * self.head.len();
                Ok(())
            }
            Err(e) => Err(format!("not a valid GGUF file: {e}")),
        }
    }
}

/// The message for a file that does not start with the GGUF magic, or `None` when it does.
pub(crate) fn not_gguf(head: &[u8]) -> Option<String> {
    let start = &head[..head.len().min(4)];
    if start == b"GGUF" {
        return None;
    }
    let mut text = format!(
        "this is not a GGUF model file: it starts with \"{}\" instead of \"GGUF\"",
        start.escape_ascii()
    );
    if start.first() == Some(&b'<') {
        text += " (a web page: for a Hugging Face model use its …/resolve/main/….gguf link, \
                 not …/blob/main/…)";
    }
    Some(text)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use afinador_core::model::tiny::{TinySpec, make_tiny_gguf};

    /// Push `bytes` in chunks of `n`; the first error.
    fn push_all(d: &mut ModelDownload, bytes: &[u8], n: usize) -> Result<(), String> {
        bytes.chunks(n).try_for_each(|c| d.take(c).map(|_| ()))
    }

    #[test]
    fn sha256_is_the_standard_digest_over_any_chunking() {
        let mut d = ModelDownload::new(None);
        d.sha.update(b"a");
        d.sha.update(b"bc");
        // FIPS 180-2's "abc".
        assert_eq!(
            hex(&d.sha.finalize()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_web_page_is_refused_at_its_first_bytes() {
        let mut d = ModelDownload::new(Some(1e6));
        let m = d.take(b"<!doctype html><html>").unwrap_err();
        assert!(m.contains("\"<!do\"") && m.contains("resolve"), "{m}");
        assert!(not_gguf(b"GGUF\x03\0\0\0").is_none());
    }

    #[test]
    fn a_short_body_is_refused_and_the_header_checked_by_the_core() {
        let bytes = make_tiny_gguf(&TinySpec::default(), None).unwrap();
        // Content-Length promised more than came.
        let mut d = ModelDownload::new(Some(bytes.len() as f64 + 100.0));
        let pushed = push_all(&mut d, &bytes, 4099);
        let m = pushed.and_then(|()| d.end()).unwrap_err();
        assert!(
            m.contains("cut short") && m.contains(&format!("{} of ", bytes.len())),
            "{m}"
        );
        // The whole body: the core's support check runs on the header. This tiny file has no
        // vocabulary, which the core names.
        let mut d = ModelDownload::new(Some(bytes.len() as f64));
        let m = push_all(&mut d, &bytes, 4099)
            .and_then(|()| d.end())
            .unwrap_err();
        assert!(
            m.starts_with("afinador cannot run this model: tokenizer: "),
            "{m}"
        );
    }

    #[test]
    fn a_tensor_wider_than_the_devices_binding_is_refused_at_the_header() {
        let bytes = make_tiny_gguf(&TinySpec::default(), None).unwrap();
        let mut d = ModelDownload::new(Some(bytes.len() as f64));
        d.limit_to(64.0, 1e9);
        let m = push_all(&mut d, &bytes, 4099)
            .and_then(|()| d.end())
            .unwrap_err();
        assert!(
            m.contains("wider than this GPU can bind (maxStorageBufferBindingSize: 64 bytes): '")
                && m.contains("Weights are split by rows"),
            "{m}"
        );
    }
}
