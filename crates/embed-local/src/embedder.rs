//! [`LocalEmbedder`]: the [`Embedder`] that runs the local model on a dedicated inference
//! thread, so no async worker ever blocks on a forward pass. It does not fetch the model.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use astrocyte_core::{EmbedPurpose, Embedder};
use async_trait::async_trait;
use candle_transformers::models::bert::Config;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::candle_bert::CandleBert;
use crate::error::{LocalEmbedError, Result};
use crate::model_files::{
    self, CONFIG_FILE, ONNX_MODEL_FILE, ONNX_RUNTIME_FILE, SAFETENSORS_FILE, TOKENIZER_FILE,
};
use crate::onnx_bert::OnnxBert;
use crate::pooling::{cls_pool_normalized, mean_pool_normalized};
use crate::profile::{Pooling, Profile, PROFILE_FILE};
use crate::tokenize::{TextTokenizer, TokenBatch};

/// Name recorded in stores for vectors of this model.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";

/// all-MiniLM-L6-v2 was trained on 256-token sequences (its `sentence_bert_config.json`);
/// sentence-transformers truncates there, so we do too by default.
const DEFAULT_MAX_TOKENS: usize = 256;

/// Which inference engine runs the model; both produce the same embedding space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LocalBackend {
    /// ONNX Runtime on the int8-weight ONNX export (`model-int8.onnx`), loaded from a
    /// `libonnxruntime.so` at run time. The default: it meets the latency targets.
    #[default]
    Onnx,
    /// candle on the original f32 weights (`model.safetensors`); pure Rust, slower.
    Candle,
}

/// Tuning of [`LocalEmbedder::load`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEmbedderOptions {
    /// The inference engine.
    pub backend: LocalBackend,
    /// Threads per forward pass for the ONNX backend; 0 means one per available core.
    /// candle sizes its own pool from `RAYON_NUM_THREADS` (default: one per core).
    pub threads: usize,
    /// Threads of the ONNX query lane: a second session on its own thread that embeds recall
    /// queries, so a query never waits behind a retain's batches and, on one thread, leaves
    /// the other cores to the keyword search running beside it. 0 sends queries down the
    /// main lane. Ignored by candle.
    pub query_threads: usize,
    /// Texts per forward pass; larger batches amortise per-pass overhead but pad more.
    pub max_batch: usize,
    /// Tokens kept per text, `[CLS]` and `[SEP]` included; longer texts are truncated.
    /// At most the model's `max_position_embeddings`.
    pub max_tokens: usize,
    /// The ONNX Runtime library; `None` means `libonnxruntime.so` in the model directory.
    /// Only the first library loaded in a process is used.
    pub onnxruntime_library: Option<PathBuf>,
}

impl Default for LocalEmbedderOptions {
    fn default() -> Self {
        LocalEmbedderOptions {
            backend: LocalBackend::default(),
            threads: 0,
            query_threads: 1,
            max_batch: 32,
            max_tokens: DEFAULT_MAX_TOKENS,
            onnxruntime_library: None,
        }
    }
}

/// all-MiniLM-L6-v2 (mean pooled, L2-normalised, 384 dimensions) run in-process.
///
/// Invariant: each lane's inference thread alone owns its copy of the model. Small jobs that
/// queue while it is busy share its next pass, and they go before the remaining batches of
/// large jobs.
pub struct LocalEmbedder {
    jobs: mpsc::Sender<Job>,
    /// The query lane, when it has its own session; it takes query jobs of one batch at most.
    query_jobs: Option<mpsc::Sender<Job>>,
    max_batch: usize,
    dimension: usize,
    model: String,
    query_prefix: String,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LocalEmbedder")
            .field("model", &self.model)
            .field("dimension", &self.dimension)
            .finish()
    }
}

impl LocalEmbedder {
    /// Loads the model from `model_dir` (as laid down by `scripts/fetch-model.sh`) and starts
    /// its inference thread.
    ///
    /// A missing file yields [`astrocyte_core::Error::Provider`] whose message holds the exact
    /// command that fetches the model.
    pub fn load(
        model_dir: &Path,
        options: LocalEmbedderOptions,
    ) -> Result<Self, astrocyte_core::Error> {
        let span = tracing::info_span!(
            "local_embedder_load",
            model_dir = %model_dir.display(),
            backend = ?options.backend
        );
        let _entered = span.enter();
        let started = Instant::now();
        check_files(model_dir, &options)?;
        let profile = Profile::load(model_dir)?;
        let engine = InferenceEngine::load(model_dir, &profile, &options)?;
        let dimension = engine.hidden_size;
        let query_jobs = match options.backend {
            LocalBackend::Onnx if options.query_threads > 0 => {
                let lane = LocalEmbedderOptions {
                    threads: options.query_threads,
                    ..options.clone()
                };
                let engine = InferenceEngine::load(model_dir, &profile, &lane)?;
                Some(start_lane("astrocyte-embed-query", engine)?)
            }
            _ => None,
        };
        let jobs = start_lane("astrocyte-embed", engine)?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            dimension,
            "local embedding model loaded"
        );
        Ok(LocalEmbedder {
            jobs,
            query_jobs,
            max_batch: options.max_batch,
            dimension,
            model: profile.name,
            query_prefix: profile.query_prefix,
        })
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    /// Embeds `texts` on the inference thread; queries get the model's query prefix, if any.
    async fn embed(
        &self,
        texts: &[String],
        purpose: EmbedPurpose,
    ) -> astrocyte_core::Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let texts: Vec<String> = match purpose {
            EmbedPurpose::Query if !self.query_prefix.is_empty() => texts
                .iter()
                .map(|text| format!("{}{text}", self.query_prefix))
                .collect(),
            _ => texts.to_vec(),
        };
        let span = tracing::debug_span!("local_embed", texts = texts.len());
        let lane = match (&self.query_jobs, purpose) {
            (Some(query_jobs), EmbedPurpose::Query) if texts.len() <= self.max_batch => query_jobs,
            _ => &self.jobs,
        };
        let (reply, answer) = oneshot::channel();
        let job = Job { texts, reply };
        lane.send(job).map_err(|_| LocalEmbedError::WorkerStopped)?;
        let vectors = answer
            .instrument(span)
            .await
            .map_err(|_| LocalEmbedError::WorkerStopped)??;
        Ok(vectors)
    }
}

/// Starts `engine` on a thread of its own; its jobs arrive on the returned sender.
fn start_lane(name: &str, engine: InferenceEngine) -> Result<mpsc::Sender<Job>> {
    let (jobs, job_receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || engine.serve(job_receiver))
        .map_err(|error| {
            LocalEmbedError::Inference(format!("cannot start inference thread: {error}"))
        })?;
    Ok(jobs)
}

/// One caller's texts and where to send their vectors.
struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>>>,
}

/// The loaded encoder of either backend.
enum Encoder {
    // Boxed: the candle model is several times larger than the ONNX session handle.
    Candle(Box<CandleBert>),
    Onnx(OnnxBert),
}

impl Encoder {
    fn load(model_dir: &Path, options: &LocalEmbedderOptions) -> Result<Self> {
        match options.backend {
            LocalBackend::Candle => {
                let config_bytes = model_files::read(model_dir, CONFIG_FILE)?;
                let config: Config = serde_json::from_slice(&config_bytes)
                    .map_err(|error| model_files::invalid(model_dir, CONFIG_FILE, error))?;
                Ok(Encoder::Candle(Box::new(CandleBert::load(
                    model_dir, &config,
                )?)))
            }
            LocalBackend::Onnx => {
                let threads = match options.threads {
                    0 => std::thread::available_parallelism().map_or(1, |count| count.get()),
                    threads => threads,
                };
                let library = onnxruntime_library(model_dir, options);
                Ok(Encoder::Onnx(OnnxBert::load(
                    &model_dir.join(ONNX_MODEL_FILE),
                    &library,
                    threads,
                )?))
            }
        }
    }

    fn hidden_states(&mut self, batch: &TokenBatch) -> Result<Vec<f32>> {
        match self {
            Encoder::Candle(encoder) => encoder.hidden_states(batch),
            Encoder::Onnx(encoder) => encoder.hidden_states(batch),
        }
    }
}

/// Fails with the fetch command unless every file the backend needs is there.
fn check_files(model_dir: &Path, options: &LocalEmbedderOptions) -> Result<()> {
    // The shape comes from model.json when there is one; candle always needs config.json.
    let shape = if model_dir.join(PROFILE_FILE).is_file() {
        PROFILE_FILE
    } else {
        CONFIG_FILE
    };
    match options.backend {
        LocalBackend::Candle => model_files::check_present(
            model_dir,
            &[CONFIG_FILE, TOKENIZER_FILE, SAFETENSORS_FILE],
            &[],
        )?,
        LocalBackend::Onnx => match &options.onnxruntime_library {
            Some(library) => model_files::check_present(
                model_dir,
                &[shape, TOKENIZER_FILE, ONNX_MODEL_FILE],
                &[library],
            )?,
            None => model_files::check_present(
                model_dir,
                &[shape, TOKENIZER_FILE, ONNX_MODEL_FILE, ONNX_RUNTIME_FILE],
                &[],
            )?,
        },
    }
    Ok(())
}

/// The library to load, made absolute: ort resolves relative paths against the executable's
/// directory first, which is not what a user means.
fn onnxruntime_library(model_dir: &Path, options: &LocalEmbedderOptions) -> PathBuf {
    let library = options
        .onnxruntime_library
        .clone()
        .unwrap_or_else(|| model_dir.join(ONNX_RUNTIME_FILE));
    std::path::absolute(&library).unwrap_or(library)
}

/// Tokenizer plus encoder, owned by the inference thread.
struct InferenceEngine {
    tokenizer: TextTokenizer,
    encoder: Encoder,
    hidden_size: usize,
    pooling: Pooling,
    max_batch: usize,
}

impl InferenceEngine {
    fn load(model_dir: &Path, profile: &Profile, options: &LocalEmbedderOptions) -> Result<Self> {
        if options.max_batch == 0 {
            return Err(LocalEmbedError::InvalidOption(
                "max_batch must be at least 1".to_owned(),
            ));
        }
        if options.max_tokens < 2 || options.max_tokens > profile.max_position_embeddings {
            return Err(LocalEmbedError::InvalidOption(format!(
                "max_tokens must be between 2 and {} (the model's position limit), got {}",
                profile.max_position_embeddings, options.max_tokens
            )));
        }
        let tokenizer = TextTokenizer::load(model_dir, options.max_tokens)?;
        let encoder = Encoder::load(model_dir, options)?;
        Ok(InferenceEngine {
            tokenizer,
            encoder,
            hidden_size: profile.hidden_size,
            pooling: profile.pooling,
            max_batch: options.max_batch,
        })
    }

    /// Runs jobs until every sender is gone and no work is left.
    ///
    /// Jobs of at most `max_batch` texts (recall queries, small retains) are merged into one
    /// pass; larger jobs advance one batch at a time, and small jobs that arrive meanwhile go
    /// first, so a bulk retain never holds a recall query for more than one batch.
    fn serve(mut self, jobs: mpsc::Receiver<Job>) {
        let mut small_jobs: VecDeque<Job> = VecDeque::new();
        let mut large_jobs: VecDeque<LargeJob> = VecDeque::new();
        let mut open = true;
        loop {
            while open {
                match jobs.try_recv() {
                    Ok(job) => self.accept(job, &mut small_jobs, &mut large_jobs),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => open = false,
                }
            }
            if !small_jobs.is_empty() {
                let mut merged = Vec::new();
                let mut merged_texts = 0;
                while let Some(job) = small_jobs.pop_front() {
                    if !merged.is_empty() && merged_texts + job.texts.len() > self.max_batch {
                        small_jobs.push_front(job);
                        break;
                    }
                    merged_texts += job.texts.len();
                    merged.push(job);
                }
                self.run_small(merged);
            } else if let Some(large_job) = large_jobs.front_mut() {
                if self.advance(large_job) {
                    if let Some(finished) = large_jobs.pop_front() {
                        finished.answer();
                    }
                }
            } else if open {
                match jobs.recv() {
                    Ok(job) => self.accept(job, &mut small_jobs, &mut large_jobs),
                    Err(_) => return,
                }
            } else {
                return;
            }
        }
    }

    /// Queues `job` as small, or tokenizes it into a [`LargeJob`].
    fn accept(
        &self,
        job: Job,
        small_jobs: &mut VecDeque<Job>,
        large_jobs: &mut VecDeque<LargeJob>,
    ) {
        if job.texts.len() <= self.max_batch {
            small_jobs.push_back(job);
            return;
        }
        match self.tokenizer.encode(&job.texts) {
            Ok(sequences) => {
                // Sorting by length keeps texts of similar size together, so batches pad little.
                let mut order: Vec<usize> = (0..sequences.len()).collect();
                order.sort_by_key(|&index| sequences[index].len());
                large_jobs.push_back(LargeJob {
                    reply: job.reply,
                    vectors: vec![Vec::new(); sequences.len()],
                    sequences,
                    order,
                    done: 0,
                    failure: None,
                });
            }
            // The caller may have given up waiting; nothing to do then.
            Err(error) => drop(job.reply.send(Err(error))),
        }
    }

    /// Embeds the texts of several small jobs in one pass and answers each job.
    fn run_small(&mut self, jobs: Vec<Job>) {
        let started = Instant::now();
        let mut waiting = Vec::with_capacity(jobs.len());
        let mut sequences = Vec::new();
        for job in jobs {
            match self.tokenizer.encode(&job.texts) {
                Ok(job_sequences) => {
                    waiting.push((job.reply, sequences.len()));
                    sequences.extend(job_sequences);
                }
                Err(error) => drop(job.reply.send(Err(error))),
            }
        }
        let mut order: Vec<usize> = (0..sequences.len()).collect();
        order.sort_by_key(|&index| sequences[index].len());
        let outcome = self.embed_pass(&sequences, &order).map(|sorted_vectors| {
            let mut vectors = vec![Vec::new(); sequences.len()];
            for (&index, vector) in order.iter().zip(sorted_vectors) {
                vectors[index] = vector;
            }
            vectors
        });
        tracing::debug!(
            texts = sequences.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "local embedding pass"
        );
        match outcome {
            Ok(mut vectors) => {
                // Answer in reverse so each job's vectors split off the tail without copying.
                for (reply, first_index) in waiting.into_iter().rev() {
                    let job_vectors = vectors.split_off(first_index);
                    drop(reply.send(Ok(job_vectors)));
                }
            }
            Err(error) => {
                for (reply, _) in waiting {
                    drop(reply.send(Err(error.clone())));
                }
            }
        }
    }

    /// Embeds the next batch of `large_job`; returns whether it is finished (or failed).
    fn advance(&mut self, large_job: &mut LargeJob) -> bool {
        let end = (large_job.done + self.max_batch).min(large_job.order.len());
        let chunk = &large_job.order[large_job.done..end];
        match self.embed_pass(&large_job.sequences, chunk) {
            Ok(vectors) => {
                for (&index, vector) in chunk.iter().zip(vectors) {
                    large_job.vectors[index] = vector;
                }
                large_job.done = end;
                end == large_job.order.len()
            }
            Err(error) => {
                large_job.failure = Some(error);
                true
            }
        }
    }

    /// Runs one forward pass over `sequences[i]` for each `i` in `members`, returning their
    /// vectors in `members` order. A panic inside the backend becomes an error, so one bad
    /// batch cannot take the inference thread down.
    fn embed_pass(&mut self, sequences: &[Vec<u32>], members: &[usize]) -> Result<Vec<Vec<f32>>> {
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<&[u32]> = members
            .iter()
            .map(|&index| sequences[index].as_slice())
            .collect();
        let batch = TokenBatch::pad(&rows);
        let encoder = &mut self.encoder;
        let hidden = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            encoder.hidden_states(&batch)
        }))
        .unwrap_or_else(|_| Err(LocalEmbedError::Inference("inference panicked".to_owned())))?;
        let expected = batch.rows * batch.seq_len * self.hidden_size;
        if hidden.len() != expected {
            // A model whose width disagrees with config.json would otherwise pool garbage.
            return Err(LocalEmbedError::Inference(format!(
                "model returned {} hidden values for a {}x{} batch, expected {expected}",
                hidden.len(),
                batch.rows,
                batch.seq_len
            )));
        }
        Ok(match self.pooling {
            Pooling::Mean => mean_pool_normalized(&hidden, &batch, self.hidden_size),
            Pooling::Cls => cls_pool_normalized(&hidden, &batch, self.hidden_size),
        })
    }
}

/// A job larger than one batch, embedded batch by batch in length order.
struct LargeJob {
    reply: oneshot::Sender<Result<Vec<Vec<f32>>>>,
    sequences: Vec<Vec<u32>>,
    /// Indices into `sequences`, shortest first.
    order: Vec<usize>,
    /// How many entries of `order` are embedded.
    done: usize,
    /// Vectors by original index; filled as batches complete.
    vectors: Vec<Vec<f32>>,
    failure: Option<LocalEmbedError>,
}

impl LargeJob {
    /// Sends the vectors, or the failure, to the caller.
    fn answer(self) {
        let outcome = match self.failure {
            Some(error) => Err(error),
            None => Ok(self.vectors),
        };
        // The caller may have given up waiting; nothing to do then.
        drop(self.reply.send(outcome));
    }
}
