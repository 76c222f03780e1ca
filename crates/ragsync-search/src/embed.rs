//! Embedders: text to vectors. A collection names its embedding model (`embedding.model`);
//! vectors are comparable only between equal model ids, so the id names the weights, not
//! just the architecture.
//!
//! [`BuiltIn`] is the model every node has without a download: `pocket-encoder` bundles
//! MiniLM-L3 (384 dimensions, unit-length vectors, inputs cut at 128 WordPiece tokens). It
//! encodes one text at a time, so a batch is split across threads, one per core by default.
//! [`OpenAiCompatible`] calls any server with OpenAI's `/v1/embeddings`.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use ragsync_core::settings::Embedding;
use ragsync_core::{Collection, CoreError};

/// Why texts could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The input breaks the model's bounds (empty text, too long, too many).
    #[error("embedding input: {0}")]
    Input(String),
    /// The model failed.
    #[error("embedding failed: {0}")]
    Model(String),
}

/// A text embedding model.
pub trait Embedder: Send + Sync {
    /// The model and its exact weights (vectors of different ids are never compared).
    fn model_id(&self) -> &str;
    /// Coordinates per vector.
    fn dimension(&self) -> usize;
    /// One unit-length vector per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// The model id of [`BuiltIn`] as collections name it.
pub const BUILT_IN_MODEL: &str = "pocket-encoder/minilm-l3-q4-g32-v1";

/// Most texts, and most bytes, per call of the bundled encoder (its own bounds).
const ENCODER_MAX_TEXTS: usize = 4096;
const ENCODER_MAX_BYTES: usize = 4 << 20;
const ENCODER_MAX_TEXT_BYTES: usize = 64 << 10;

/// The bundled model; see the module docs.
#[derive(Clone)]
pub struct BuiltIn {
    encoder: pocket_encoder::Encoder,
    threads: usize,
}

impl BuiltIn {
    /// Loads the bundled weights (once per process) and uses one thread per core.
    pub fn new() -> Result<Self, EmbedError> {
        let threads = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Self::with_threads(threads)
    }

    /// The bundled model on `threads` threads (at least one).
    pub fn with_threads(threads: usize) -> Result<Self, EmbedError> {
        let encoder = pocket_encoder::Encoder::new().map_err(model_error)?;
        Ok(Self {
            encoder,
            threads: threads.max(1),
        })
    }

    /// Embeds one thread's share, in calls the encoder accepts. A text longer than the
    /// encoder takes is cut at a character boundary first: the model reads only its first
    /// 128 tokens anyway.
    fn embed_serial(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        let mut batch: Vec<&str> = Vec::new();
        let mut bytes = 0;
        for t in texts {
            let t = cut(t, ENCODER_MAX_TEXT_BYTES);
            if t.trim().is_empty() {
                return Err(EmbedError::Input("a text to embed is empty".into()));
            }
            if batch.len() == ENCODER_MAX_TEXTS || bytes + t.len() > ENCODER_MAX_BYTES {
                out.extend(self.encoder.embed(&batch).map_err(model_error)?);
                batch.clear();
                bytes = 0;
            }
            batch.push(t);
            bytes += t.len();
        }
        if !batch.is_empty() {
            out.extend(self.encoder.embed(&batch).map_err(model_error)?);
        }
        Ok(out)
    }
}

impl Embedder for BuiltIn {
    fn model_id(&self) -> &str {
        BUILT_IN_MODEL
    }

    fn dimension(&self) -> usize {
        384
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let per = texts.len().div_ceil(self.threads).max(1);
        if self.threads == 1 || texts.len() <= 1 {
            return self.embed_serial(texts);
        }
        std::thread::scope(|s| {
            let parts: Vec<_> = texts
                .chunks(per)
                .map(|part| s.spawn(move || self.embed_serial(part)))
                .collect();
            let mut out = Vec::with_capacity(texts.len());
            for p in parts {
                out.extend(
                    p.join()
                        .map_err(|_| EmbedError::Model("an encoding thread panicked".into()))??,
                );
            }
            Ok(out)
        })
    }
}

fn model_error(e: pocket_encoder::Error) -> EmbedError {
    match e {
        pocket_encoder::Error::Input(m) => EmbedError::Input(m.into()),
        pocket_encoder::Error::Inference(m) => EmbedError::Model(m),
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Any server that speaks OpenAI's `POST /v1/embeddings` (OpenAI, vLLM, Ollama, llama.cpp,
/// text-embeddings-inference, ...). Its vectors are normalised here to unit length, whatever
/// the server returns; a wrong count or dimension is an error, never a silent mismatch.
pub struct OpenAiCompatible {
    http: reqwest::blocking::Client,
    endpoint: String,
    model: String,
    model_id: String,
    api_key: Option<String>,
    dimension: usize,
}

/// Texts per request to an embeddings endpoint.
const REMOTE_BATCH: usize = 256;

impl OpenAiCompatible {
    /// `base` is the server's URL (`http://127.0.0.1:8080` or `.../v1`); `model` the model
    /// name it serves, `dimension` the size its vectors must have.
    pub fn new(
        base: &str,
        model: &str,
        api_key: Option<String>,
        dimension: usize,
    ) -> Result<Self, EmbedError> {
        let base = base.trim_end_matches('/');
        let endpoint = if base.ends_with("/embeddings") {
            base.to_string()
        } else if base.ends_with("/v1") {
            format!("{base}/embeddings")
        } else {
            format!("{base}/v1/embeddings")
        };
        if dimension == 0 {
            return Err(EmbedError::Input(
                "an embedding dimension must be positive".into(),
            ));
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|e| EmbedError::Model(e.to_string()))?;
        Ok(Self {
            http,
            endpoint,
            model_id: format!("openai-compatible/{model}"),
            model: model.to_string(),
            api_key,
            dimension,
        })
    }

    fn request(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        #[derive(serde::Deserialize)]
        struct Item {
            index: usize,
            embedding: Vec<f32>,
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            data: Vec<Item>,
        }
        let body =
            serde_json::json!({"model": self.model, "input": texts, "encoding_format": "float"});
        let mut req = self.http.post(&self.endpoint).json(&body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let failed = |e: String| EmbedError::Model(format!("{}: {e}", self.endpoint));
        let resp = req.send().map_err(|e| failed(e.to_string()))?;
        let status = resp.status();
        let bytes = resp.bytes().map_err(|e| failed(e.to_string()))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
            return Err(failed(format!("{status}: {text}")));
        }
        let answer: Answer = serde_json::from_slice(&bytes)
            .map_err(|e| failed(format!("not an embeddings answer: {e}")))?;
        let mut out: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for item in answer.data {
            if item.embedding.len() != self.dimension {
                return Err(failed(format!(
                    "a vector of {} dimensions where {} were expected",
                    item.embedding.len(),
                    self.dimension
                )));
            }
            let slot = out
                .get_mut(item.index)
                .ok_or_else(|| failed(format!("answer index {} out of range", item.index)))?;
            *slot = Some(unit(&item.embedding).ok_or_else(|| failed("a zero vector".into()))?);
        }
        out.into_iter()
            .map(|v| {
                v.ok_or_else(|| failed(format!("{} texts sent, fewer vectors back", texts.len())))
            })
            .collect()
    }
}

impl Embedder for OpenAiCompatible {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.iter().any(|t| t.trim().is_empty()) {
            return Err(EmbedError::Input("a text to embed is empty".into()));
        }
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(REMOTE_BATCH) {
            out.extend(self.request(batch)?);
        }
        Ok(out)
    }
}

/// The id a collection's vectors are stored and sent under, `None` when it has no embedding
/// model: its model id, or for an `external` one `external/<collection>` (the clients' model
/// is not named, so two collections' vectors are never taken for one another).
pub fn model_key(c: &Collection) -> Option<String> {
    match c.settings.embedding.model.as_str() {
        "none" => None,
        EXTERNAL_MODEL => Some(format!("{EXTERNAL_MODEL}/{}", c.name)),
        m => Some(m.to_string()),
    }
}

/// The dimension of the built-in model's vectors.
pub const BUILT_IN_DIMENSION: u32 = 384;

/// Settles a collection's embedding model as a client gives it: `builtin` (or the built-in
/// model's id) becomes that id with its dimension (384; another is refused), `external` and
/// `openai-compatible/<name>` need their dimension, `none` needs none; any other id is
/// refused, since no node could compute it. Records from peers are not checked here: a node
/// keeps the vectors of a model it does not run as they come.
pub fn settle_model(e: &mut Embedding) -> Result<(), CoreError> {
    let bad = |m: String| Err(CoreError::InvalidSettings(m));
    if e.model == "builtin" || e.model == BUILT_IN_MODEL {
        if e.dimension != 0 && e.dimension != BUILT_IN_DIMENSION {
            return bad(format!(
                "embedding.dimension of the built-in model is {BUILT_IN_DIMENSION}"
            ));
        }
        e.model = BUILT_IN_MODEL.into();
        e.dimension = BUILT_IN_DIMENSION;
        return Ok(());
    }
    let known = e.model == "none"
        || e.model == EXTERNAL_MODEL
        || e.model
            .strip_prefix(OPENAI_PREFIX)
            .is_some_and(|n| !n.is_empty());
    if !known {
        return bad(format!(
            "embedding.model {:?} is unknown: none, builtin, external (vectors sent by \
             clients) or openai-compatible/<name>",
            e.model
        ));
    }
    if e.model != "none" && e.dimension == 0 {
        return bad(format!(
            "embedding.model {} needs embedding.dimension",
            e.model
        ));
    }
    Ok(())
}

/// Prefix of the model ids served by an OpenAI-compatible endpoint: `openai-compatible/<name>`.
pub const OPENAI_PREFIX: &str = "openai-compatible/";
/// The model id of a collection whose vectors its clients send.
pub const EXTERNAL_MODEL: &str = "external";

/// The embedding models a node can run, by model id: the built-in one (loaded on first use)
/// and, when the node is configured with an endpoint, `openai-compatible/<name>` models.
/// Configured per node: the endpoint and its key are the node's, not the collection's.
#[derive(Default)]
pub struct Embedders {
    built_in: std::sync::OnceLock<Result<Arc<BuiltIn>, String>>,
    openai: Option<OpenAiEndpoint>,
    remote: Mutex<HashMap<(String, usize), Arc<OpenAiCompatible>>>,
}

/// Where a node's OpenAI-compatible embedding server is.
#[derive(Clone, Debug)]
pub struct OpenAiEndpoint {
    pub base_url: String,
    pub api_key: Option<String>,
}

impl Embedders {
    pub fn new(openai: Option<OpenAiEndpoint>) -> Self {
        Self {
            openai,
            ..Self::default()
        }
    }

    /// Whether this node computes vectors of `model` (else they come from clients or peers).
    pub fn computes(&self, model: &str) -> bool {
        model == BUILT_IN_MODEL || (model.starts_with(OPENAI_PREFIX) && self.openai.is_some())
    }

    /// The embedder of `model` with vectors of `dimension`, when this node runs it.
    pub fn get(
        &self,
        model: &str,
        dimension: usize,
    ) -> Result<Option<Arc<dyn Embedder>>, EmbedError> {
        if model == BUILT_IN_MODEL {
            let b = self
                .built_in
                .get_or_init(|| BuiltIn::new().map(Arc::new).map_err(|e| e.to_string()))
                .clone()
                .map_err(EmbedError::Model)?;
            return Ok(Some(b));
        }
        let (Some(name), Some(ep)) = (model.strip_prefix(OPENAI_PREFIX), &self.openai) else {
            return Ok(None);
        };
        let mut remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        let key = (name.to_string(), dimension);
        if let Some(e) = remote.get(&key) {
            return Ok(Some(e.clone()));
        }
        let e = Arc::new(OpenAiCompatible::new(
            &ep.base_url,
            name,
            ep.api_key.clone(),
            dimension,
        )?);
        remote.insert(key, e.clone());
        Ok(Some(e))
    }
}

/// `v` scaled to unit length; `None` for a zero or non-finite vector.
pub fn unit(v: &[f32]) -> Option<Vec<f32>> {
    let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return None;
    }
    Some(v.iter().map(|x| (f64::from(*x) / norm) as f32).collect())
}

/// The cosine similarity of two unit-length vectors.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_model_embeds_meaning_on_both_threads_alike() {
        let one = BuiltIn::with_threads(1).unwrap();
        let two = BuiltIn::with_threads(2).unwrap();
        let texts = [
            "How do I send a document to a colleague?",
            "Transfer a file to a coworker",
            "The cat sleeps on the warm windowsill",
        ];
        let v = one.embed(&texts).unwrap();
        assert_eq!(v.len(), 3);
        assert!(v.iter().all(|x| x.len() == one.dimension()));
        for x in &v {
            let norm: f32 = dot(x, x);
            assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        }
        // Paraphrases are closer than unrelated text.
        assert!(dot(&v[0], &v[1]) > dot(&v[0], &v[2]) + 0.2);
        // Splitting across threads keeps order and values.
        let w = two.embed(&texts).unwrap();
        for (a, b) in v.iter().zip(&w) {
            assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6));
        }
        assert!(matches!(one.embed(&["  "]), Err(EmbedError::Input(_))));
        assert!(one.embed(&[]).unwrap().is_empty());
        // Longer than the encoder takes: cut, not refused.
        let long = "word ".repeat(20_000);
        assert_eq!(one.embed(&[long.as_str()]).unwrap().len(), 1);
    }
}
