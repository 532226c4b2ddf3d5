//! Recordings of a leg's audio: 20 ms frame pairs in, a file out. Files are Vonage's: 16-bit
//! 16 kHz WAV, or MP3 at 16 kHz 32 kbit/s CBR (encoded by the `lame` program, run as a
//! subprocess: LAME is LGPL, and a process of its own keeps encoding off the runtime).
//!
//! Mono holds both directions mixed (what the leg said and what it heard, as a listener on the
//! line would); split holds what the leg said in channel 1 and what it heard in channel 2, and
//! any further channel (`channels` > 2, for conversation members) silent.

use super::decode::resample;
use super::tap::FramePair;
use super::{FRAME_DURATION, SAMPLE_RATE};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The sample rate of recording files (Vonage's).
pub const FILE_SAMPLE_RATE: u32 = 16_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Mono,
    /// `channels` ≥ 2: said, heard, then silent channels.
    Split { channels: u16 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Wav,
    Mp3,
}

impl FileFormat {
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Wav => "wav",
            FileFormat::Mp3 => "mp3",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            FileFormat::Wav => "audio/wav",
            FileFormat::Mp3 => "audio/mpeg",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordingError {
    #[error("the MP3 encoder could not run ({0})")]
    Encoder(String),
    #[error("the recording could not be resampled ({0})")]
    Resample(String),
}

/// A recording's file.
#[derive(Debug)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub format: FileFormat,
    /// Why it is WAV when MP3 was asked for.
    pub fallback: Option<RecordingError>,
}

/// Collects a leg's audio at 8 kHz; `encode` writes the file.
pub struct Recorder {
    layout: Layout,
    said: Vec<i16>,
    heard: Vec<i16>,
}

impl Recorder {
    pub fn new(layout: Layout) -> Recorder {
        Recorder { layout, said: Vec::new(), heard: Vec::new() }
    }

    pub fn push(&mut self, pair: &FramePair) {
        match self.layout {
            Layout::Mono => self.said.extend(pair.received.iter().zip(&pair.sent).map(|(&a, &b)| a.saturating_add(b))),
            Layout::Split { .. } => {
                self.said.extend_from_slice(&pair.received);
                self.heard.extend_from_slice(&pair.sent);
            }
        }
    }

    pub fn duration(&self) -> Duration {
        FRAME_DURATION * (self.said.len() / super::FRAME_SAMPLES) as u32
    }

    /// The file: WAV (`channels` channels) or MP3 (mono or stereo: MP3 holds no more; a split
    /// recording of more channels is written as WAV, as Vonage's default for them is). When
    /// the MP3 encoder fails the audio is kept as WAV and `Encoded::fallback` says why.
    pub async fn encode(self, format: FileFormat, lame: &str) -> Result<Encoded, RecordingError> {
        // Never closed, so acquiring only waits.
        let _turn = encoders().acquire().await.map_err(|e| RecordingError::Encoder(e.to_string()))?;
        let channels = self.channel_count();
        let format = if channels > 2 { FileFormat::Wav } else { format };
        let lanes = tokio::task::spawn_blocking(move || self.upsampled())
            .await
            .map_err(|e| RecordingError::Resample(e.to_string()))??;
        let fallback = match format {
            FileFormat::Mp3 => match mp3(&lanes, lame).await {
                Ok(bytes) => return Ok(Encoded { bytes, format, fallback: None }),
                Err(e) => Some(e),
            },
            FileFormat::Wav => None,
        };
        let bytes = tokio::task::spawn_blocking(move || wav(&lanes, channels))
            .await
            .map_err(|e| RecordingError::Resample(e.to_string()))?;
        Ok(Encoded { bytes, format: FileFormat::Wav, fallback })
    }

    fn channel_count(&self) -> u16 {
        match self.layout {
            Layout::Mono => 1,
            Layout::Split { channels } => channels.max(2),
        }
    }

    /// Each recorded lane at the file's rate (the silent channels are added when written).
    fn upsampled(self) -> Result<Vec<Vec<i16>>, RecordingError> {
        let lanes = match self.layout {
            Layout::Mono => vec![self.said],
            Layout::Split { .. } => vec![self.said, self.heard],
        };
        lanes
            .into_iter()
            .map(|lane| {
                let input: Vec<f32> = lane.iter().map(|&s| f32::from(s) / 32768.0).collect();
                let output = resample(&input, SAMPLE_RATE, FILE_SAMPLE_RATE).map_err(|e| RecordingError::Resample(e.to_string()))?;
                Ok(output.iter().map(|&x| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16).collect())
            })
            .collect()
    }
}

/// Recordings encoded at once, one per core: when many calls end together (a campaign, a
/// drain) their encoding queues instead of taking the CPU from the calls still sending audio.
fn encoders() -> &'static tokio::sync::Semaphore {
    static ENCODERS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    ENCODERS.get_or_init(|| tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get())))
}

/// Interleaved 16-bit samples of `channels` channels: the lanes, then silence.
fn interleave(lanes: &[Vec<i16>], channels: u16) -> impl Iterator<Item = i16> + '_ {
    let len = lanes.iter().map(Vec::len).max().unwrap_or(0);
    (0..len).flat_map(move |i| (0..channels as usize).map(move |c| lanes.get(c).and_then(|l| l.get(i)).copied().unwrap_or(0)))
}

fn wav(lanes: &[Vec<i16>], channels: u16) -> Vec<u8> {
    let spec = hound::WavSpec { channels, sample_rate: FILE_SAMPLE_RATE, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let samples = lanes.first().map_or(0, Vec::len) * channels as usize;
    let mut file = std::io::Cursor::new(Vec::with_capacity(44 + samples * 2));
    // Writing to memory fails only on a length hound cannot frame (4 GiB; recordings are far shorter).
    let mut writer = hound::WavWriter::new(&mut file, spec).expect("a WAV header in memory");
    let mut out = writer.get_i16_writer(samples as u32);
    for sample in interleave(lanes, channels) {
        out.write_sample(sample);
    }
    out.flush().expect("WAV samples in memory");
    writer.finalize().expect("a WAV file in memory");
    file.into_inner()
}

/// Raw 16 kHz PCM through `lame` (mono, or joint stereo for two lanes), 32 kbit/s CBR.
async fn mp3(lanes: &[Vec<i16>], lame: &str) -> Result<Vec<u8>, RecordingError> {
    let channels = lanes.len().clamp(1, 2) as u16;
    let pcm: Vec<u8> = interleave(lanes, channels).flat_map(i16::to_le_bytes).collect();
    let mode = if channels == 1 { "m" } else { "j" };
    let mut child = tokio::process::Command::new(lame)
        .args(["--quiet", "-r", "-s", "16", "--bitwidth", "16", "--signed", "--little-endian", "-m", mode])
        .args(["--cbr", "-b", "32", "--resample", "16", "-", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RecordingError::Encoder(format!("{lame}: {e}")))?;
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take()) else {
        return Err(RecordingError::Encoder("lame's pipes could not be opened".into()));
    };
    // Written while the output is read: lame's output pipe fills long before its input ends.
    let write = async move {
        let written = stdin.write_all(&pcm).await;
        drop(stdin);
        written
    };
    let mut mp3 = Vec::new();
    let mut errors = Vec::new();
    let (written, read, _) = tokio::join!(write, stdout.read_to_end(&mut mp3), stderr.read_to_end(&mut errors));
    let status = child.wait().await.map_err(|e| RecordingError::Encoder(e.to_string()))?;
    if !status.success() || written.is_err() || read.is_err() || mp3.is_empty() {
        let why = String::from_utf8_lossy(&errors).trim().to_string();
        return Err(RecordingError::Encoder(format!("lame exited with {status}: {why}")));
    }
    Ok(mp3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Clip, FRAME_SAMPLES};

    fn pairs(received: &Clip, sent_level: i16) -> Vec<FramePair> {
        received
            .samples()
            .chunks_exact(FRAME_SAMPLES)
            .map(|chunk| {
                let mut pair = FramePair { received: [0; FRAME_SAMPLES], sent: [sent_level; FRAME_SAMPLES] };
                pair.received.copy_from_slice(chunk);
                pair
            })
            .collect()
    }

    fn tone_ratio(samples: &[i16], rate: u32, hz: f64) -> f64 {
        // Goertzel power at `hz` over the total power: near 0.5 for a pure tone.
        let w = 2.0 * std::f64::consts::PI * hz / f64::from(rate);
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        let mut total = 0.0;
        for &x in samples {
            let x = f64::from(x);
            let s0 = x + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s0;
            total += x * x;
        }
        let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
        power / (total * samples.len() as f64 / 2.0).max(1.0)
    }

    #[tokio::test]
    async fn a_split_recording_keeps_each_direction_in_its_channel_at_16_khz() {
        let tone = Clip::tone(1000.0, Duration::from_secs(1), 0.5);
        let mut recorder = Recorder::new(Layout::Split { channels: 3 });
        for pair in pairs(&tone, 0) {
            recorder.push(&pair);
        }
        assert_eq!(recorder.duration(), Duration::from_secs(1));
        let file = recorder.encode(FileFormat::Mp3, "lame").await.unwrap();
        assert_eq!((file.format, file.fallback), (FileFormat::Wav, None), "three channels do not fit an MP3");
        let reader = hound::WavReader::new(std::io::Cursor::new(file.bytes)).unwrap();
        assert_eq!((reader.spec().channels, reader.spec().sample_rate), (3, 16_000));
        let samples: Vec<i16> = reader.into_samples::<i16>().map(Result::unwrap).collect();
        let said: Vec<i16> = samples.iter().step_by(3).copied().collect();
        let heard: Vec<i16> = samples.iter().skip(1).step_by(3).copied().collect();
        assert_eq!(said.len(), 16_000);
        assert!(tone_ratio(&said[2000..14000], 16_000, 1000.0) > 0.4, "the tone is in channel 1");
        assert!(heard.iter().all(|&s| s == 0), "nothing was sent");
    }

    #[tokio::test]
    async fn an_mp3_recording_decodes_to_the_recorded_audio() {
        let tone = Clip::tone(440.0, Duration::from_secs(2), 0.5);
        let mut recorder = Recorder::new(Layout::Mono);
        for pair in pairs(&tone, 0) {
            recorder.push(&pair);
        }
        let file = recorder.encode(FileFormat::Mp3, "lame").await.unwrap();
        assert_eq!(file.format, FileFormat::Mp3);
        // 32 kbit/s for two seconds, give or take a frame.
        assert!((7_000..10_000).contains(&file.bytes.len()), "{} bytes", file.bytes.len());
        let decoded = crate::media::decode::decode(file.bytes, &Default::default()).unwrap();
        let middle = &decoded.samples()[4000..12000];
        assert!(tone_ratio(middle, 8000, 440.0) > 0.4);
    }

    #[tokio::test]
    async fn without_the_mp3_encoder_the_audio_is_kept_as_wav() {
        let mut recorder = Recorder::new(Layout::Mono);
        recorder.push(&FramePair { received: [1000; FRAME_SAMPLES], sent: [0; FRAME_SAMPLES] });
        let file = recorder.encode(FileFormat::Mp3, "/nonexistent/lame").await.unwrap();
        assert_eq!(file.format, FileFormat::Wav);
        assert!(matches!(file.fallback, Some(RecordingError::Encoder(_))));
        assert_eq!(file.bytes.len(), 44 + 320 * 2, "20 ms at 16 kHz");
    }
}
