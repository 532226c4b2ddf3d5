//! The HTTP TTS engine: posts the text to `media.tts_http_url` and plays the audio it returns
//! (WAV of any rate and depth, MP3 or OGG/Vorbis), for users with better voices than espeak-ng.
//!
//! The request is `POST <url>` with `Content-Type: application/json` and the body
//! `{"text": "...", "language": "en-US", "style": 0, "voice": "en-us+f3", "ssml": false}`
//! (`voice` is the espeak-ng voice the default engine would use; `ssml` says whether the text
//! is SSML). Any 2xx answer's body is the audio; any other status is a failure.
//!
//! `media` has no HTTP client (DESIGN § Telephony): whoever builds the engine passes a
//! [`Fetch`] that performs the POST (the engine's reqwest client, with its address checks).

use super::{is_ssml, TextToSpeech, TtsError, TtsFuture, Voice};
use crate::media::decode;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// One POST for the HTTP engine to perform.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub url: String,
    /// `application/json`.
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// The whole exchange, connection to last byte.
    pub timeout: Duration,
    /// Refuse a body larger than this.
    pub max_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct FetchResponse {
    pub status: u16,
    /// The response's Content-Type, a hint for the decoder.
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Performs a [`FetchRequest`]; the error is a message for the log (connection refused, …).
pub type Fetch =
    Arc<dyn Fn(FetchRequest) -> Pin<Box<dyn Future<Output = Result<FetchResponse, String>> + Send>> + Send + Sync>;

/// A [`Fetch`] for builds with no HTTP client: every request fails, saying so.
pub fn no_fetch() -> Fetch {
    Arc::new(|request: FetchRequest| {
        Box::pin(async move { Err(format!("no HTTP client is set up to reach {}", request.url)) })
    })
}

pub struct HttpTts {
    url: String,
    timeout: Duration,
    max_duration: Duration,
    fetch: Fetch,
}

impl HttpTts {
    /// `url`: the endpoint; `timeout`: the longest one synthesis may take; `max_duration`:
    /// the longest speech accepted.
    pub fn new(url: String, timeout: Duration, max_duration: Duration, fetch: Fetch) -> HttpTts {
        HttpTts { url, timeout, max_duration, fetch }
    }

    /// The JSON body of the POST.
    pub fn request_body(text: &str, voice: &Voice) -> serde_json::Value {
        serde_json::json!({
            "text": text,
            "language": voice.language,
            "style": voice.style,
            "voice": voice.espeak_name(),
            "ssml": is_ssml(text),
        })
    }
}

impl TextToSpeech for HttpTts {
    fn synthesize<'a>(&'a self, text: &'a str, voice: &'a Voice) -> TtsFuture<'a> {
        Box::pin(async move {
            if text.trim().is_empty() {
                return Err(TtsError::EmptyText);
            }
            if self.url.is_empty() {
                return Err(TtsError::Unavailable("media.tts_http_url is not set".into()));
            }
            // 96 kB/s: `max_duration` of 48 kHz 16-bit mono WAV (MP3 takes far less).
            let max_bytes = 65_536 + (self.max_duration.as_secs_f64() * 96_000.0) as usize;
            let request = FetchRequest {
                url: self.url.clone(),
                content_type: "application/json",
                body: Self::request_body(text, voice).to_string().into_bytes(),
                timeout: self.timeout,
                max_bytes,
            };
            let response = tokio::time::timeout(self.timeout, (self.fetch)(request))
                .await
                .map_err(|_| TtsError::Timeout(self.timeout))?
                .map_err(TtsError::Failed)?;
            if !(200..300).contains(&response.status) {
                return Err(TtsError::Failed(format!("the TTS endpoint answered HTTP {}", response.status)));
            }
            if response.body.len() > max_bytes {
                return Err(TtsError::TooLarge(max_bytes));
            }
            Ok(decode::decode_blocking(response.body, response.content_type, self.max_duration).await?)
        })
    }

    fn name(&self) -> &'static str {
        "http"
    }
}
