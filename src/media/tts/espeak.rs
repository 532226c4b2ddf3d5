//! The default TTS engine: espeak-ng (Debian package `espeak-ng`), run as a subprocess.
//!
//! `espeak-ng -v <voice>[+variant] [-m] --stdout` with the text on stdin (no argv limits, and
//! text starting with `-` stays text); `-m` (SSML) only when the text starts with `<speak`,
//! because without it the tags are read aloud, and with it plain text loses its `<`/`>`.
//! The WAV it writes (22,050 Hz mono) is decoded and resampled like any stream.

use super::{is_ssml, TextToSpeech, TtsError, TtsFuture, Voice};
use crate::media::decode;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes of stderr kept for an error message.
const STDERR_BYTES: usize = 2048;

pub struct EspeakNg {
    program: PathBuf,
    timeout: Duration,
    max_duration: Duration,
    max_output_bytes: usize,
    /// espeak-ng processes running at once: a burst of new texts queues instead of forking
    /// hundreds of processes (each takes ~10 ms of CPU).
    running: tokio::sync::Semaphore,
}

impl EspeakNg {
    /// `program`: the espeak-ng executable (a name looked up in PATH, or a path). `timeout`:
    /// the longest one synthesis may take. `max_duration`: the longest speech accepted.
    pub fn new(program: impl Into<PathBuf>, timeout: Duration, max_duration: Duration) -> EspeakNg {
        // espeak-ng writes 16-bit mono at 22,050 Hz; allow any rate up to 48 kHz for other builds.
        let max_output_bytes = 44 + (max_duration.as_secs_f64() * 48_000.0 * 2.0) as usize;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let running = tokio::sync::Semaphore::new(2 * cores);
        EspeakNg { program: program.into(), timeout, max_duration, max_output_bytes, running }
    }

    /// The WAV espeak-ng writes for `text`.
    async fn run(&self, text: &str, voice: &Voice) -> Result<Vec<u8>, TtsError> {
        // Never closed, so acquiring only waits.
        let _running = self.running.acquire().await.map_err(|e| TtsError::Unavailable(e.to_string()))?;
        let mut command = tokio::process::Command::new(&self.program);
        command.arg("-v").arg(voice.espeak_name());
        if is_ssml(text) {
            command.arg("-m");
        }
        command.arg("--stdout").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child =
            command.spawn().map_err(|e| TtsError::Unavailable(format!("{}: {e}", self.program.display())))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(TtsError::Unavailable("espeak-ng's pipes could not be opened".into()));
        };
        let write = async move {
            // espeak-ng reads all of stdin before it speaks; a write error shows as its exit status.
            let _ = stdin.write_all(text.as_bytes()).await;
            drop(stdin);
            Ok(())
        };
        let limit = self.max_output_bytes;
        let read_out = async move {
            let mut wav = Vec::new();
            stdout
                .take(limit as u64 + 1)
                .read_to_end(&mut wav)
                .await
                .map_err(|e| TtsError::Failed(format!("reading espeak-ng's output: {e}")))?;
            // Too much: give up at once (the child is killed when dropped).
            if wav.len() > limit {
                Err(TtsError::TooLarge(limit))
            } else {
                Ok(wav)
            }
        };
        let read_err = async move {
            // Drained whole (a full pipe would stall espeak-ng), the start kept for the message.
            let mut message = Vec::new();
            let mut chunk = [0u8; 1024];
            let mut stderr = stderr;
            while let Ok(n @ 1..) = stderr.read(&mut chunk).await {
                let room = STDERR_BYTES.saturating_sub(message.len());
                message.extend_from_slice(&chunk[..n.min(room)]);
            }
            Ok(String::from_utf8_lossy(&message).trim().to_string())
        };
        let ((), wav, message) = tokio::try_join!(write, read_out, read_err)?;
        let status = child.wait().await.map_err(|e| TtsError::Failed(format!("waiting for espeak-ng: {e}")))?;
        if !status.success() {
            return Err(TtsError::Failed(format!("espeak-ng {status}: {message}")));
        }
        Ok(wav)
    }
}

impl TextToSpeech for EspeakNg {
    fn synthesize<'a>(&'a self, text: &'a str, voice: &'a Voice) -> TtsFuture<'a> {
        Box::pin(async move {
            if text.trim().is_empty() {
                return Err(TtsError::EmptyText);
            }
            let wav = tokio::time::timeout(self.timeout, self.run(text, voice))
                .await
                .map_err(|_| TtsError::Timeout(self.timeout))??;
            Ok(decode::decode_blocking(wav, Some("audio/wav".into()), self.max_duration).await?)
        })
    }

    fn name(&self) -> &'static str {
        "espeak-ng"
    }
}
