//! How long media lasts, and the audio itself when the carrier plays it: TTS by word count
//! (or its synthesized length), audio files by their real length.

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

/// The length of a WAV file (PCM or float samples: what hound reads), from its header. A header
/// that promises more than arrived (a live stream's) counts the samples that arrived.
pub fn wav_duration(bytes: &[u8]) -> Option<Duration> {
    let mut file = std::io::Cursor::new(bytes);
    let reader = hound::WavReader::new(&mut file).ok()?;
    let spec = reader.spec();
    let declared = u64::from(reader.duration());
    // The reader stops at the start of the samples.
    let arrived_bytes = bytes.len() as u64 - reader.into_inner().position();
    let frame_bytes = u64::from(spec.channels) * u64::from(spec.bits_per_sample.div_ceil(8));
    if frame_bytes == 0 || spec.sample_rate == 0 {
        return None;
    }
    let frames = declared.min(arrived_bytes / frame_bytes);
    Some(Duration::from_secs_f64(frames as f64 / f64::from(spec.sample_rate)))
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

/// What a `talk` plays: its length, and its audio when the leg has real audio (`leg.media`).
pub async fn speech(leg: &super::leg::Leg, text: &str, language: &str, style: u32) -> Result<(Duration, Option<crate::media::Clip>), String> {
    match &leg.media {
        Some(_) => leg.ctx.audio.speech(text, language, style).await.map(|clip| (clip.duration(), Some(clip))),
        None => Ok((tts_duration(text), None)),
    }
}

/// What a `stream` plays: its length, and its audio when the leg has real audio.
pub async fn stream(leg: &super::leg::Leg, url: &str) -> Result<(Duration, Option<crate::media::Clip>), String> {
    match &leg.media {
        Some(_) => leg.ctx.audio.stream(url).await.map(|clip| (clip.duration(), Some(clip))),
        None => audio_duration(&leg.ctx.client, url).await.map(|d| (d, None)),
    }
}

/// A WAV file (16 kHz, 16-bit mono) of silence lasting `duration`, as the simulated network records.
pub fn silent_wav(duration: Duration) -> Vec<u8> {
    const RATE: u32 = 16_000;
    let spec = hound::WavSpec { channels: 1, sample_rate: RATE, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let samples = (duration.as_secs_f64() * f64::from(RATE)) as u32;
    let mut wav = std::io::Cursor::new(Vec::with_capacity(44 + samples as usize * 2));
    // Writing to memory fails only on a sample count hound cannot frame (none here).
    let mut writer = hound::WavWriter::new(&mut wav, spec).expect("a WAV header in memory");
    let mut silence = writer.get_i16_writer(samples);
    for _ in 0..samples {
        silence.write_sample(0i16);
    }
    silence.flush().expect("WAV samples in memory");
    writer.finalize().expect("a WAV file in memory");
    wav.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_wav_measures_its_own_length() {
        let wav = silent_wav(Duration::from_millis(1500));
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(wav.len(), 44 + 1500 * 32);
        assert_eq!(wav_duration(&wav), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn a_wav_cut_short_counts_what_arrived() {
        let wav = silent_wav(Duration::from_secs(2));
        assert_eq!(wav_duration(&wav[..44 + 16_000]), Some(Duration::from_millis(500)));
    }

    #[test]
    fn what_is_not_a_wav_has_no_wav_length() {
        assert_eq!(wav_duration(b"ID3\x04 an mp3"), None);
        assert_eq!(wav_duration(b""), None);
    }

    #[test]
    fn tts_lasts_by_words() {
        assert_eq!(tts_duration("one two three four five"), Duration::from_secs(2));
        assert_eq!(tts_duration("<speak>hi</speak>"), Duration::from_secs(1));
    }
}
