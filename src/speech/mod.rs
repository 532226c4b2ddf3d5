//! Speech recognition for NCCO `input` with `type: ["speech"]`: the caller's audio goes in,
//! transcripts come out, best first, for Vonage's `speech.results: [{text, confidence}]`.
//!
//! A recognizer sits behind [`SpeechRecognizer`] so the engine knows no protocol. The one
//! implementation, [`VoskRecognizer`], streams to a speech server over WebSocket with the Vosk
//! server protocol (`media.speech_url`); without one, [`from_settings`] gives `None` and the
//! engine says so in `speech.error`.
//!
//! ```ignore
//! let mut recognition = recognizer.start(RecognitionOptions { language: "en-US".into(), context: vec![] }).await?;
//! while let Some(frame) = tap.recv().await {          // 20 ms of the caller, 8 kHz
//!     if recognition.audio.try_send(frame).is_err() { break; }   // full: server too slow; closed: it failed
//!     if caller_went_quiet { break; }                  // the engine decides when speech ended
//! }
//! let transcripts = recognition.finish().await?;       // best first; empty when nothing was said
//! ```
//!
//! Knows audio and its own protocol only: no SQL, no webhooks, no SIP.

pub mod vosk;

pub use vosk::VoskRecognizer;

use crate::config::MediaSettings;
use crate::media::Frame;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Frames the audio channel holds before `try_send` refuses (10 s): the recognizer's task
/// drains it as fast as the server takes audio, so only a stalled server fills it.
pub const AUDIO_CAPACITY: usize = 500;
/// Partial results kept for a reader that is behind; older ones are not worth keeping.
const EVENT_CAPACITY: usize = 64;

/// What `start` returns: boxed, so recognizers can live behind `Arc<dyn SpeechRecognizer>`.
pub type StartFuture<'a> = Pin<Box<dyn Future<Output = Result<Recognition, SpeechError>> + Send + 'a>>;

pub trait SpeechRecognizer: Send + Sync {
    /// Opens one recognition (one `input`): connected and configured when it returns, so a
    /// server that is down is known before any audio is collected.
    fn start(&self, options: RecognitionOptions) -> StartFuture<'_>;

    /// The recognizer's name, for logs ("vosk").
    fn name(&self) -> &'static str;
}

/// What the NCCO's `speech` object asks of one recognition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecognitionOptions {
    /// Vonage's `speech.language` (BCP 47, e.g. "en-US").
    pub language: String,
    /// Vonage's `speech.context`: words or phrases the caller is expected to say.
    pub context: Vec<String>,
}

/// One reading of what was said: Vonage's `speech.results[]` item.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub text: String,
    /// 0.0 to 1.0.
    pub confidence: f32,
}

/// What a recognizer reports while audio is still coming.
#[derive(Debug, Clone, PartialEq)]
pub enum SpeechEvent {
    /// What the current utterance sounds like so far (it may still change). Sent when it
    /// changes, and dropped when the reader is behind.
    Partial(String),
    /// The recognizer heard an utterance end (its own endpointing) and settled its words; they
    /// are part of the final result too.
    Utterance(Vec<Transcript>),
}

/// Why there is no transcript. The message is fit for Vonage's `speech.error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpeechError {
    #[error("speech recognition is misconfigured: {0}")]
    Config(String),
    #[error("the speech server cannot be reached: {0}")]
    Unavailable(String),
    #[error("the speech server did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("the speech server closed the connection before its final result")]
    Closed,
    #[error("the speech server's answer is not understood: {0}")]
    Protocol(String),
}

/// One recognition in progress: audio in, events and a final result out. Dropping it without
/// `finish` abandons the recognition (the connection is closed, nothing is awaited).
pub struct Recognition {
    /// The caller's audio, 20 ms frames of 8 kHz mono in order. Use `try_send` from the media
    /// path (never wait on a recognizer there); it fails once the recognition has failed.
    pub audio: mpsc::Sender<Frame>,
    /// Partial results and utterances, for a reader that wants them; ignoring it is fine.
    pub events: mpsc::Receiver<SpeechEvent>,
    finish: oneshot::Sender<()>,
    result: oneshot::Receiver<Result<Vec<Transcript>, SpeechError>>,
}

impl Recognition {
    /// The speech has ended: the audio already sent is recognized to the end and the final
    /// transcripts come back, best first (empty when nothing was understood). Bounded by the
    /// recognizer's timeout.
    pub async fn finish(self) -> Result<Vec<Transcript>, SpeechError> {
        // An error here means the task already ended: its result is waiting.
        let _ = self.finish.send(());
        self.result.await.unwrap_or(Err(SpeechError::Closed))
    }
}

/// The task side of a [`Recognition`]: what a recognizer's session reads and reports to.
pub(crate) struct Session {
    pub audio: mpsc::Receiver<Frame>,
    pub events: mpsc::Sender<SpeechEvent>,
    pub finish: oneshot::Receiver<()>,
    pub result: oneshot::Sender<Result<Vec<Transcript>, SpeechError>>,
}

/// A connected pair: the caller's [`Recognition`] and the recognizer task's [`Session`].
pub(crate) fn channel() -> (Recognition, Session) {
    let (audio_tx, audio_rx) = mpsc::channel(AUDIO_CAPACITY);
    let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
    let (finish_tx, finish_rx) = oneshot::channel();
    let (result_tx, result_rx) = oneshot::channel();
    (
        Recognition { audio: audio_tx, events: events_rx, finish: finish_tx, result: result_rx },
        Session { audio: audio_rx, events: events_tx, finish: finish_rx, result: result_tx },
    )
}

/// The recognizer `media.speech_url` names, or `None` when it is empty (no speech recognition:
/// `input` reports that in `speech.error`).
pub fn from_settings(settings: &MediaSettings) -> Option<Arc<dyn SpeechRecognizer>> {
    let url = settings.speech_url.trim();
    if url.is_empty() {
        return None;
    }
    let recognizer = VoskRecognizer::new(url, Duration::from_millis(settings.speech_timeout_ms))
        .phrase_list(settings.speech_phrase_list)
        .max_alternatives(settings.speech_max_alternatives);
    // A wrong URL fails every recognition with its reason; say it once at start-up as well.
    if let Err(e) = recognizer.url_for("en-US") {
        tracing::error!(error = %e, "media.speech_url is unusable");
    }
    Some(Arc::new(recognizer))
}
