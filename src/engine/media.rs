//! How long media lasts: TTS by word count, audio files by their real length.

use crate::webhooks::{Outbound, WebhookClient};
use std::time::Duration;

/// Speech at 150 words a minute, at least one second.
pub fn tts_duration(text: &str) -> Duration {
    let words = strip_tags(text).split_whitespace().count().max(1);
    Duration::from_secs_f64((words as f64 * 0.4).max(1.0))
}

fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for c in text.chars() {
        match c {
            '<' => inside = true,
            '>' => {
                inside = false;
                out.push(' ');
            }
            _ if !inside => out.push(c),
            _ => {}
        }
    }
    out
}

/// The length of a WAV file from its header (data size / byte rate).
pub fn wav_duration(bytes: &[u8]) -> Option<Duration> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let mut pos = 12;
    let mut byte_rate = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().ok()?) as usize;
        let body = pos + 8;
        if id == b"fmt " && body + 12 <= bytes.len() {
            byte_rate = Some(u32::from_le_bytes(bytes[body + 8..body + 12].try_into().ok()?));
        }
        if id == b"data" {
            let rate = byte_rate.filter(|r| *r > 0)?;
            let size = size.min(bytes.len() - body);
            return Some(Duration::from_secs_f64(size as f64 / f64::from(rate)));
        }
        pos = body + size + (size & 1);
    }
    None
}

/// Fetches an audio URL and measures it; files that are not WAV count at 128 kbit/s (MP3).
pub async fn audio_duration(client: &WebhookClient, url: &str) -> Result<Duration, String> {
    let response = client
        .send(Outbound {
            url,
            method: "GET",
            payload: &serde_json::Value::Null,
            timeout: Duration::from_millis(client.settings.answer_timeout_ms),
            signer: None,
            body_limit: client.media_limit(),
        })
        .await
        .map_err(|(e, _)| e.to_string())?;
    Ok(wav_duration(&response.body).unwrap_or_else(|| Duration::from_secs_f64(response.body.len() as f64 * 8.0 / 128_000.0)))
}

/// A WAV file (16 kHz, 16-bit mono) of silence lasting `duration`, as the simulated network records.
pub fn silent_wav(duration: Duration) -> Vec<u8> {
    const RATE: u32 = 16_000;
    let samples = (duration.as_secs_f64() * f64::from(RATE)) as u32;
    let data_len = samples * 2;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&(RATE * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    wav.resize(44 + data_len as usize, 0);
    wav
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_wav_measures_its_own_length() {
        let wav = silent_wav(Duration::from_millis(1500));
        assert_eq!(wav_duration(&wav), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn tts_lasts_by_words() {
        assert_eq!(tts_duration("one two three four five"), Duration::from_secs(2));
        assert_eq!(tts_duration("<speak>hi</speak>"), Duration::from_secs(1));
    }
}
