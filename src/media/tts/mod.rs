//! Text-to-speech behind a trait: `talk` text (plain or SSML) to a playable [`Clip`].
//!
//! Engines: [`EspeakNg`] (the default; the Debian `espeak-ng` program run as a subprocess, as it
//! is GPL) and [`HttpTts`] (posts the text to a configured endpoint and plays the audio it
//! returns). Choose with `media.tts_engine`; build with [`from_settings`].

pub mod espeak;
pub mod http;
pub mod voice;

pub use espeak::EspeakNg;
pub use http::{no_fetch, Fetch, FetchRequest, FetchResponse, HttpTts};
pub use voice::{Voice, LANGUAGES};

use crate::config::{MediaSettings, TtsEngineKind};
use crate::media::clip::Clip;
use crate::media::decode::DecodeError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// What `synthesize` returns: boxed, so engines can live behind `Arc<dyn TextToSpeech>`.
pub type TtsFuture<'a> = Pin<Box<dyn Future<Output = Result<Clip, TtsError>> + Send + 'a>>;

pub trait TextToSpeech: Send + Sync {
    /// Speaks `text` (SSML when it starts with `<speak`) in `voice`, as 8 kHz audio.
    fn synthesize<'a>(&'a self, text: &'a str, voice: &'a Voice) -> TtsFuture<'a>;

    /// The engine's name, for logs and cache keys ("espeak-ng", "http").
    fn name(&self) -> &'static str;
}

/// Why no speech came out. Clone: one synthesis answers every call waiting for it (the cache).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TtsError {
    #[error("nothing to say: the text is empty")]
    EmptyText,
    #[error("the TTS engine cannot be started: {0}")]
    Unavailable(String),
    #[error("the TTS engine did not finish within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("the TTS engine failed: {0}")]
    Failed(String),
    #[error("the TTS engine's audio is larger than the {0} bytes allowed")]
    TooLarge(usize),
    #[error("the TTS engine's audio cannot be played: {0}")]
    Audio(#[from] DecodeError),
}

/// Whether `text` is SSML (Vonage: text wrapped in `<speak>`).
pub fn is_ssml(text: &str) -> bool {
    text.trim_start().starts_with("<speak")
}

/// The engine `media.tts_engine` names. `fetch` performs the HTTP engine's POST (media has no
/// HTTP client); the espeak-ng engine does not use it.
pub fn from_settings(settings: &MediaSettings, fetch: Fetch) -> Arc<dyn TextToSpeech> {
    let timeout = Duration::from_millis(settings.tts_timeout_ms);
    let max_duration = Duration::from_secs(settings.max_clip_s);
    match settings.tts_engine {
        TtsEngineKind::EspeakNg => Arc::new(EspeakNg::new(settings.espeak_path.clone(), timeout, max_duration)),
        TtsEngineKind::Http => Arc::new(HttpTts::new(settings.tts_http_url.clone(), timeout, max_duration, fetch)),
    }
}
