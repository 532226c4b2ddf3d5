//! Audio files (a `streamUrl`'s body, a TTS engine's output) to a playable 8 kHz [`Clip`].
//!
//! symphonia reads WAV (PCM of 8 to 32 bits, float, µ-law, A-law), MP3 and OGG/Vorbis; the
//! channels are averaged to mono and rubato's FFT resampler (with its anti-alias filter) brings
//! any rate to 8 kHz. This is CPU work of a few milliseconds per second of audio: on an async
//! path use [`decode_blocking`].

use crate::media::clip::{Clip, RATE_HZ};
use std::time::Duration;
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint as SymphoniaHint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;

/// Why a file cannot be played. The messages are written for the owner of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not an audio file: expected WAV, MP3 or OGG/Vorbis")]
    NotAudio,
    #[error("unsupported audio format: {0} (WAV with PCM, µ-law or A-law, MP3 and OGG/Vorbis are supported)")]
    Unsupported(String),
    #[error("malformed audio file: {0}")]
    Malformed(String),
    #[error("the audio file holds no samples")]
    Empty,
    #[error("the audio lasts longer than the {} s allowed", .max.as_secs())]
    TooLong { max: Duration },
}

/// What is known about the bytes besides themselves; both are optional (probing works without).
#[derive(Debug, Clone, Copy)]
pub struct Hint<'a> {
    /// The response's Content-Type, e.g. `audio/mpeg`.
    pub mime_type: Option<&'a str>,
    /// The file name's extension, e.g. `mp3`.
    pub extension: Option<&'a str>,
    /// Longest audio accepted: a small compressed file can hold hours of sound.
    pub max_duration: Duration,
}

impl Default for Hint<'_> {
    fn default() -> Self {
        Hint { mime_type: None, extension: None, max_duration: Duration::from_secs(600) }
    }
}

/// Decodes a whole file to 8 kHz mono.
pub fn decode(bytes: Vec<u8>, hint: &Hint<'_>) -> Result<Clip, DecodeError> {
    let (mono, rate) = decode_to_mono(bytes, hint)?;
    let samples = if rate == RATE_HZ { mono } else { resample(&mono, rate, RATE_HZ)? };
    if samples.is_empty() {
        return Err(DecodeError::Empty);
    }
    Ok(Clip::new(samples.iter().map(|&x| to_i16(x)).collect::<Vec<i16>>()))
}

/// [`decode`] on tokio's blocking pool, for async callers (a stream fetched for a call).
/// `content_type` is the response's Content-Type, if any.
pub async fn decode_blocking(
    bytes: Vec<u8>,
    content_type: Option<String>,
    max_duration: Duration,
) -> Result<Clip, DecodeError> {
    tokio::task::spawn_blocking(move || {
        decode(bytes, &Hint { mime_type: content_type.as_deref(), extension: None, max_duration })
    })
    .await
    .unwrap_or_else(|e| Err(DecodeError::Malformed(format!("the decoder stopped: {e}"))))
}

/// A float sample (-1.0..1.0) to 16-bit, rounded and clipped.
fn to_i16(x: f32) -> i16 {
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Every sample of the file's first audio track, channels averaged, with its sample rate.
fn decode_to_mono(bytes: Vec<u8>, hint: &Hint<'_>) -> Result<(Vec<f32>, u32), DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let source = MediaSourceStream::new(Box::new(std::io::Cursor::new(bytes)), MediaSourceStreamOptions::default());
    let mut probe_hint = SymphoniaHint::new();
    if let Some(mime) = hint.mime_type {
        // "audio/wav; codecs=1" → "audio/wav"
        probe_hint.mime_type(mime.split(';').next().unwrap_or(mime).trim());
    }
    if let Some(extension) = hint.extension {
        probe_hint.with_extension(extension);
    }
    let mut format = symphonia::default::get_probe()
        .probe(&probe_hint, source, FormatOptions::default(), MetadataOptions::default())
        .map_err(|e| match e {
            // No reader recognised the bytes (symphonia's probe says "core (probe): ..."); a
            // reader that did but cannot go on (a WAV of GSM) says what it cannot do.
            SymphoniaError::Unsupported(what) if what.starts_with("core (probe)") => DecodeError::NotAudio,
            SymphoniaError::IoError(_) => DecodeError::NotAudio,
            other => classify(other),
        })?;
    let track = format.default_track(TrackType::Audio).ok_or(DecodeError::NotAudio)?;
    let track_id = track.id;
    let params = track.codec_params.as_ref().and_then(|p| p.audio()).ok_or(DecodeError::NotAudio)?.clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(classify)?;
    let mut rate = params.sample_rate.unwrap_or(0);
    let mut mono = Vec::new();
    let mut interleaved = Vec::<f32>::new();
    let mut bad_packets = 0usize;
    let mut first_error = None;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A WAV written to a pipe (espeak-ng --stdout) claims ~2 GB of data and ends early.
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(classify(e)),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buffer = match decoder.decode(&packet) {
            Ok(buffer) => buffer,
            // One corrupt frame (a damaged MP3 frame) is skipped, as players do.
            Err(SymphoniaError::DecodeError(e)) => {
                bad_packets += 1;
                first_error.get_or_insert(e);
                continue;
            }
            Err(e) => return Err(classify(e)),
        };
        let spec = buffer.spec();
        if spec.rate() == 0 || (rate != 0 && spec.rate() != rate && !mono.is_empty()) {
            return Err(DecodeError::Unsupported("a sample rate that changes within the file".into()));
        }
        rate = spec.rate();
        let channels = spec.channels().count().max(1);
        buffer.copy_to_vec_interleaved(&mut interleaved);
        mono.extend(interleaved.chunks(channels).map(|frame| frame.iter().sum::<f32>() / channels as f32));
        if mono.len() as f64 > hint.max_duration.as_secs_f64() * f64::from(rate) {
            return Err(DecodeError::TooLong { max: hint.max_duration });
        }
    }
    if mono.is_empty() {
        return Err(match first_error {
            Some(e) if bad_packets > 0 => DecodeError::Malformed(e.to_string()),
            _ => DecodeError::Empty,
        });
    }
    Ok((mono, rate))
}

fn classify(e: SymphoniaError) -> DecodeError {
    match e {
        SymphoniaError::Unsupported(what) => DecodeError::Unsupported(what.to_string()),
        SymphoniaError::DecodeError(what) => DecodeError::Malformed(what.to_string()),
        SymphoniaError::LimitError(what) => DecodeError::Malformed(format!("limit reached: {what}")),
        other => DecodeError::Malformed(other.to_string()),
    }
}

/// A whole clip from `from` Hz to `to` Hz (rubato's FFT resampler; `process_all` trims the
/// filter's delay, so the output lasts as long as the input).
pub fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, DecodeError> {
    use rubato::audioadapter_buffers::direct::InterleavedSlice;
    use rubato::{Fft, FixedSync, Resampler};
    if input.is_empty() || from == to {
        return Ok(input.to_vec());
    }
    let unsupported = |e: &dyn std::fmt::Display| DecodeError::Unsupported(format!("sample rate {from} Hz ({e})"));
    let mut resampler =
        Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Both).map_err(|e| unsupported(&e))?;
    let adapter = InterleavedSlice::new(input, 1, input.len()).map_err(|e| unsupported(&e))?;
    let output = resampler.process_all(&adapter, input.len(), None).map_err(|e| unsupported(&e))?;
    Ok(output.take_data())
}
