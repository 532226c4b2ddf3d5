//! Audio analysis for tests that assert on what was heard: read a WAV, find where a tone is,
//! how long something was audible, and which DTMF digits were played in-band. Everything works
//! on 20 ms frames (`FRAME_MS`) of mono 16-bit samples at any rate.
//!
//! ```ignore
//! let (samples, rate) = audio::read_wav(&callee.recording_heard().await);
//! let spans = audio::tone_spans(&samples, rate, 1000.0, 0.5);  // [(start_ms, end_ms), …]
//! assert!(audio::longest_span_ms(&spans).abs_diff(3000) <= 100, "{spans:?}");
//! assert!(audio::non_silent_ms(&samples, rate, audio::SILENCE_RMS) > 1000);
//! ```
//!
//! A frame counts as a tone when at least `min_ratio` of its energy is at the frequency
//! (Goertzel; a clean tone gives 1.0, speech rarely 0.1) and it is louder than `SILENCE_RMS`
//! (so the dither of near-silence never counts). Frequencies need not fall on a DFT bin.
#![allow(dead_code)]

use std::path::Path;

/// Analysis frame: 20 ms, the RTP packet time.
pub const FRAME_MS: u32 = 20;
/// RMS (in sample units, full scale 32768) under which a frame is silence: about -50 dBFS.
/// G.711 silence decodes to |x| ≤ 8 (-72 dBFS); a sox tone at `vol 0.5` is 11585 (-9 dBFS);
/// espeak-ng speech is loud (-20 dBFS) in most of its frames.
pub const SILENCE_RMS: f64 = 100.0;

const DTMF_LOW: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const DTMF_HIGH: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const DTMF_KEYS: [[char; 4]; 4] = [['1', '2', '3', 'A'], ['4', '5', '6', 'B'], ['7', '8', '9', 'C'], ['*', '0', '#', 'D']];

/// A WAV file as mono 16-bit samples (channels averaged; 8/24/32-bit and float converted) and
/// its sample rate. A header that lies about the length (a WAV written to a pipe) is fine:
/// samples are read until the data ends.
pub fn read_wav(path: &Path) -> (Vec<i16>, u32) {
    let reader = hound::WavReader::open(path).unwrap_or_else(|e| panic!("cannot read WAV {}: {e}", path.display()));
    let spec = reader.spec();
    let channels = spec.channels.max(1) as usize;
    let interleaved: Vec<f64> = match spec.sample_format {
        hound::SampleFormat::Float => reader.into_samples::<f32>().map_while(Result::ok).map(|s| s as f64 * 32767.0).collect(),
        hound::SampleFormat::Int => {
            let shift = spec.bits_per_sample as i32 - 16;
            reader
                .into_samples::<i32>()
                .map_while(Result::ok)
                .map(|s| if shift >= 0 { (s >> shift) as f64 } else { (s << -shift) as f64 })
                .collect()
        }
    };
    let mono = interleaved
        .chunks(channels)
        .map(|frame| (frame.iter().sum::<f64>() / frame.len() as f64).round().clamp(-32768.0, 32767.0) as i16)
        .collect();
    (mono, spec.sample_rate)
}

/// Writes mono 16-bit samples as a WAV file.
pub fn write_wav(path: &Path, samples: &[i16], rate: u32) {
    let spec = hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut writer = hound::WavWriter::create(path, spec).unwrap_or_else(|e| panic!("cannot write WAV {}: {e}", path.display()));
    for &sample in samples {
        writer.write_sample(sample).expect("WAV sample");
    }
    writer.finalize().expect("WAV header");
}

/// `seconds` of a sine at `freq` Hz, half of full scale (-9 dBFS, like sox `vol 0.5`).
pub fn tone(freq: f64, seconds: f64, rate: u32) -> Vec<i16> {
    let count = (seconds * rate as f64).round() as usize;
    (0..count)
        .map(|i| (16384.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin()).round() as i16)
        .collect()
}

/// A mono 16-bit WAV of a sine at `freq` Hz lasting `seconds`.
pub fn write_tone_wav(path: &Path, freq: f64, seconds: f64, rate: u32) {
    write_wav(path, &tone(freq, seconds, rate), rate);
}

/// A mono 16-bit WAV of digital silence lasting `seconds`.
pub fn write_silence_wav(path: &Path, seconds: f64, rate: u32) {
    write_wav(path, &vec![0; (seconds * rate as f64).round() as usize], rate);
}

/// Samples per 20 ms frame at `rate`.
pub fn frame_len(rate: u32) -> usize {
    (rate * FRAME_MS / 1000).max(1) as usize
}

/// The share of a frame's energy at `freq` Hz, 0.0..=1.0 (Goertzel at the exact frequency, over
/// Parseval's total): a clean tone at `freq` gives about 1.0, silence 0.0.
pub fn goertzel_ratio(frame: &[i16], freq: f64, rate: u32) -> f64 {
    let n = frame.len() as f64;
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * freq / rate as f64).cos();
    let (mut s1, mut s2, mut energy) = (0.0f64, 0.0f64, 0.0f64);
    for &x in frame {
        let x = x as f64;
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
        energy += x * x;
    }
    if energy == 0.0 {
        return 0.0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    (2.0 * power / (n * energy)).min(1.0)
}

/// Root mean square of a frame, in sample units (full scale 32768).
pub fn rms(frame: &[i16]) -> f64 {
    if frame.is_empty() {
        return 0.0;
    }
    (frame.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>() / frame.len() as f64).sqrt()
}

/// RMS in dBFS (-inf for digital silence).
pub fn rms_dbfs(frame: &[i16]) -> f64 {
    20.0 * (rms(frame) / 32768.0).log10()
}

/// The whole 20 ms frames of `samples` (a last partial frame is left out).
pub fn frames(samples: &[i16], rate: u32) -> std::slice::ChunksExact<'_, i16> {
    samples.chunks_exact(frame_len(rate))
}

/// Where a tone at `freq` is present, as `(start_ms, end_ms)` spans (end exclusive) on the 20 ms
/// frame grid: frames louder than `SILENCE_RMS` with at least `min_ratio` of their energy at
/// `freq` (0.5 is a good choice). A single missing frame inside a tone (a lost packet concealed
/// by the receiver) does not split it.
pub fn tone_spans(samples: &[i16], rate: u32, freq: f64, min_ratio: f64) -> Vec<(u32, u32)> {
    let hits: Vec<bool> =
        frames(samples, rate).map(|f| rms(f) >= SILENCE_RMS && goertzel_ratio(f, freq, rate) >= min_ratio).collect();
    let mut spans: Vec<(u32, u32)> = Vec::new();
    for (i, _) in hits.iter().enumerate().filter(|(_, hit)| **hit) {
        let (start, end) = (i as u32 * FRAME_MS, (i as u32 + 1) * FRAME_MS);
        match spans.last_mut() {
            Some(last) if start <= last.1 + FRAME_MS => last.1 = end,
            _ => spans.push((start, end)),
        }
    }
    spans
}

/// The total length of the spans, in ms.
pub fn spans_ms(spans: &[(u32, u32)]) -> u32 {
    spans.iter().map(|(start, end)| end - start).sum()
}

/// The longest span, in ms (0 when there is none).
pub fn longest_span_ms(spans: &[(u32, u32)]) -> u32 {
    spans.iter().map(|(start, end)| end - start).max().unwrap_or(0)
}

/// How long the audio is above `rms_threshold` (e.g. `SILENCE_RMS`), in ms: the number of
/// 20 ms frames that are louder, times 20.
pub fn non_silent_ms(samples: &[i16], rate: u32, rms_threshold: f64) -> u32 {
    frames(samples, rate).filter(|f| rms(f) >= rms_threshold).count() as u32 * FRAME_MS
}

/// The length of the audio in ms.
pub fn duration_ms(samples: &[i16], rate: u32) -> u32 {
    (samples.len() as u64 * 1000 / rate.max(1) as u64) as u32
}

/// The DTMF digits played in-band (0-9, *, #, A-D), in order. Windows of 20 ms every 10 ms: a
/// window is a key when its strongest low-group and high-group frequencies each hold at least
/// 10% of its energy (up to about 9 dB of twist) and together at least 70%, each at least 4
/// times the next of its group. A key
/// held for 3 windows or more (about 40 ms, the ITU minimum) counts once; the same key again
/// counts again only after a window without it.
pub fn dtmf_digits(samples: &[i16], rate: u32) -> String {
    let window = frame_len(rate);
    let hop = (window / 2).max(1);
    let mut digits = String::new();
    let (mut current, mut run, mut counted) = (None::<char>, 0usize, false);
    let mut start = 0;
    while start + window <= samples.len() {
        let key = dtmf_key(&samples[start..start + window], rate);
        if key == current {
            run += 1;
        } else {
            current = key;
            run = 1;
            counted = false;
        }
        if let Some(key) = current {
            if run >= 3 && !counted {
                digits.push(key);
                counted = true;
            }
        }
        start += hop;
    }
    digits
}

/// The DTMF key a window holds, if any.
fn dtmf_key(window: &[i16], rate: u32) -> Option<char> {
    if rms(window) < SILENCE_RMS {
        return None;
    }
    let strongest = |group: &[f64; 4]| {
        let mut ratios: Vec<(usize, f64)> = group.iter().map(|&f| goertzel_ratio(window, f, rate)).enumerate().collect();
        ratios.sort_by(|a, b| b.1.total_cmp(&a.1));
        (ratios[0].0, ratios[0].1, ratios[1].1)
    };
    let (row, low, low_next) = strongest(&DTMF_LOW);
    let (column, high, high_next) = strongest(&DTMF_HIGH);
    let clear = low >= 0.1 && high >= 0.1 && low + high >= 0.7 && low >= 4.0 * low_next && high >= 4.0 * high_next;
    clear.then(|| DTMF_KEYS[row][column])
}
