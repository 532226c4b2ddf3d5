//! The audio a real network plays: `talk` synthesized by the configured TTS engine, `stream`
//! fetched (with the webhooks' SSRF rule and size limit) and decoded, both to 8 kHz, kept in a
//! cache shared by every leg of the instance. The simulated network needs none of it.

use crate::media::cache::{stream_key, AudioCache};
use crate::media::decode::{decode, Hint};
use crate::media::tts::http::{Fetch, FetchRequest, FetchResponse};
use crate::media::tts::{TextToSpeech, Voice};
use crate::media::Clip;
use crate::webhooks::{BodyLimit, Outbound, WebhookClient};
use std::sync::Arc;
use std::time::Duration;

pub struct AudioLoader {
    tts: Arc<dyn TextToSpeech>,
    cache: AudioCache,
    client: WebhookClient,
    max_clip: Duration,
}

impl AudioLoader {
    pub fn new(settings: &crate::config::Settings, client: WebhookClient) -> AudioLoader {
        let tts = crate::media::tts::from_settings(&settings.media, http_fetch(client.clone()));
        AudioLoader {
            tts,
            cache: AudioCache::new(settings.media.audio_cache_bytes),
            client,
            max_clip: Duration::from_secs(settings.media.max_clip_s),
        }
    }

    /// `text` in Vonage's `language` and `style`, as audio.
    pub async fn speech(&self, text: &str, language: &str, style: u32) -> Result<Clip, String> {
        let voice = Voice::new(Some(language), Some(style));
        self.cache.speak(self.tts.as_ref(), text, &voice).await.map_err(|e| e.to_string())
    }

    /// The audio file at `url`, fetched and decoded once for every leg that plays it.
    pub async fn stream(&self, url: &str) -> Result<Clip, String> {
        self.cache
            .get_or_load(&stream_key(url), || async {
                let response = self
                    .client
                    .send(Outbound {
                        url,
                        method: "GET",
                        payload: &serde_json::Value::Null,
                        timeout: Duration::from_millis(self.client.settings.answer_timeout_ms),
                        signer: None,
                        body_limit: self.client.media_limit(),
                    })
                    .await
                    .map_err(|(e, _)| e.to_string())?;
                if !(200..300).contains(&response.status) {
                    return Err(format!("{url} answered {}", response.status));
                }
                let extension = url.rsplit('/').next().and_then(|name| name.rsplit_once('.')).map(|(_, ext)| ext.to_ascii_lowercase());
                let max_duration = self.max_clip;
                // Decoding and resampling minutes of audio is CPU work: off the runtime's threads.
                tokio::task::spawn_blocking(move || {
                    let hint = Hint { mime_type: None, extension: extension.as_deref(), max_duration };
                    decode(response.body, &hint).map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())?
            })
            .await
    }
}

/// The HTTP TTS engine's POST, through the webhooks' client (its SSRF rule, timeouts, limits).
fn http_fetch(client: WebhookClient) -> Fetch {
    Arc::new(move |request: FetchRequest| {
        let client = client.clone();
        Box::pin(async move {
            let payload: serde_json::Value = serde_json::from_slice(&request.body).map_err(|e| e.to_string())?;
            let response = client
                .send(Outbound {
                    url: &request.url,
                    method: "POST",
                    payload: &payload,
                    timeout: request.timeout,
                    signer: None,
                    body_limit: BodyLimit::Keep(request.max_bytes),
                })
                .await
                .map_err(|(e, _)| e.to_string())?;
            Ok(FetchResponse { status: response.status, content_type: None, body: response.body })
        })
    })
}
