//! A recognizer that streams the caller's audio to a speech server speaking the Vosk server
//! protocol (alphacep/vosk-server `websocket/asr_server.py`, and servers compatible with it):
//!
//! 1. connect to `media.speech_url` (`ws://host:2700`; `{language}` in it becomes the NCCO's
//!    language, lowercased, for one server per language);
//! 2. one text message `{"config": {"sample_rate": 8000, "words": true, "max_alternatives": N,
//!    "phrase_list": [...]}}` (the server answers nothing to it);
//! 3. binary messages of 16-bit little-endian mono PCM (100 ms each here); the server answers
//!    each with one JSON text message: `{"partial": "..."}`, or `{"text": "...", "result":
//!    [{"word", "conf", "start", "end"}]}` when it heard an utterance end (with
//!    `max_alternatives` > 0: `{"alternatives": [{"text", "confidence"}]}` instead);
//! 4. the exact text `{"eof" : 1}`; its answer is the final result, in the same shapes.
//!
//! `phrase_list` is the NCCO's `speech.context` (plus `[unk]`, so speech outside the list is
//! not forced onto its words). Vosk builds a small language model from it when the model
//! allows runtime graphs (small models do; big ones ignore it with a warning): recognition is
//! then limited to those words, which is why `media.speech_phrase_list` can turn it off.
//!
//! Confidence: with words, the mean of the words' `conf`; with alternatives, Vosk's
//! `confidence` is a log-likelihood, turned into shares of 1 across the alternatives (a
//! softmax; values that already are probabilities are kept); a result without either is 1.0.
//! `[unk]` words are left out of texts.
//!
//! Plain `ws://` only: the WebSocket crate is built without TLS. Enabling one of
//! tokio-tungstenite's `rustls-tls-*` features makes `wss://` work through the same connect.

use super::{
    channel, RecognitionOptions, Session, SpeechError, SpeechEvent, SpeechRecognizer, StartFuture, Transcript,
};
use crate::media::{Frame, FRAME_SAMPLES, SAMPLE_RATE};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Frames per binary message: 100 ms, a tenth of the answers (and of the server's decoding
/// calls) of one message per packet, and far below what a person notices.
const CHUNK_FRAMES: usize = 5;
/// The end-of-stream message, byte for byte: servers compare it as a string.
const EOF: &str = r#"{"eof" : 1}"#;
/// Largest answer accepted; real ones are a few hundred bytes.
const MAX_REPLY_BYTES: usize = 1 << 20;
/// How long the closing handshake may take once the result is in.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, Clone)]
pub struct VoskRecognizer {
    url: String,
    timeout: Duration,
    phrase_list: bool,
    max_alternatives: u32,
}

impl VoskRecognizer {
    /// `url`: the server (`ws://host:port`, `{language}` allowed); `timeout`: the longest wait
    /// to connect and for any answer the server owes (the final result included).
    pub fn new(url: impl Into<String>, timeout: Duration) -> VoskRecognizer {
        VoskRecognizer { url: url.into(), timeout, phrase_list: true, max_alternatives: 0 }
    }

    /// Whether `speech.context` goes to the server as its `phrase_list` (on by default).
    pub fn phrase_list(mut self, on: bool) -> VoskRecognizer {
        self.phrase_list = on;
        self
    }

    /// Ask for this many alternatives (n-best); 0 asks for one result with word confidences.
    pub fn max_alternatives(mut self, n: u32) -> VoskRecognizer {
        self.max_alternatives = n;
        self
    }

    /// The server's URL for `language`, checked.
    pub(super) fn url_for(&self, language: &str) -> Result<String, SpeechError> {
        let language: String = language
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
            .to_ascii_lowercase();
        let url = self.url.replace("{language}", &language);
        let parsed =
            url::Url::parse(&url).map_err(|e| SpeechError::Config(format!("media.speech_url {url:?}: {e}")))?;
        match parsed.scheme() {
            "ws" => Ok(url),
            "wss" => Err(SpeechError::Config(format!(
                "media.speech_url {url:?}: wss:// needs TLS, which this build leaves out; use ws:// (e.g. to a TLS proxy beside the server)"
            ))),
            other => Err(SpeechError::Config(format!("media.speech_url {url:?}: the scheme must be ws://, not {other}://"))),
        }
    }

    /// The first message of a recognition.
    fn config_message(&self, options: &RecognitionOptions) -> String {
        let mut config = Map::new();
        config.insert("sample_rate".into(), json!(SAMPLE_RATE));
        config.insert("words".into(), json!(true));
        config.insert("max_alternatives".into(), json!(self.max_alternatives));
        let phrases: Vec<String> = options
            .context
            .iter()
            .map(|phrase| phrase.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase())
            .filter(|phrase| !phrase.is_empty())
            .collect();
        if self.phrase_list && !phrases.is_empty() {
            let mut list = phrases;
            list.push("[unk]".into());
            config.insert("phrase_list".into(), json!(list));
        }
        json!({ "config": config }).to_string()
    }

    async fn open(&self, options: RecognitionOptions) -> Result<super::Recognition, SpeechError> {
        let url = self.url_for(&options.language)?;
        let ws_config =
            WebSocketConfig::default().max_message_size(Some(MAX_REPLY_BYTES)).max_frame_size(Some(MAX_REPLY_BYTES));
        // Nagle off: audio goes out as it comes, not when a segment fills.
        let (mut socket, _) =
            timeout(self.timeout, tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_config), true))
                .await
                .map_err(|_| SpeechError::Timeout(self.timeout))?
                .map_err(|e| SpeechError::Unavailable(format!("{url}: {}", describe(&e))))?;
        send(&mut socket, Message::text(self.config_message(&options)), self.timeout).await?;
        let (recognition, session) = channel();
        tokio::spawn(run(socket, session, self.timeout));
        Ok(recognition)
    }
}

impl SpeechRecognizer for VoskRecognizer {
    fn start(&self, options: RecognitionOptions) -> StartFuture<'_> {
        Box::pin(self.open(options))
    }

    fn name(&self) -> &'static str {
        "vosk"
    }
}

/// One recognition's task: streams audio, reads answers, delivers the final result.
async fn run(mut socket: Socket, mut session: Session, limit: Duration) {
    let outcome = drive(&mut socket, &mut session, limit).await;
    if let Some(result) = outcome {
        if let Err(e) = &result {
            tracing::debug!(error = %e, "speech recognition failed");
        }
        let _ = session.result.send(result);
    }
    let _ = timeout(CLOSE_WAIT, socket.close(None)).await;
}

/// The recognition's result, or `None` when the caller abandoned it.
async fn drive(
    socket: &mut Socket,
    session: &mut Session,
    limit: Duration,
) -> Option<Result<Vec<Transcript>, SpeechError>> {
    let mut state = Exchange::default();
    let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK_FRAMES * FRAME_SAMPLES * 2);
    let mut audio_open = true;
    let mut finishing = false;
    // Reset by every answer: a server that falls silent while it owes answers is timed out.
    let mut last_progress = Instant::now();
    loop {
        let owed = state.sent > state.answered;
        tokio::select! {
            finish = &mut session.finish, if !finishing => {
                if finish.is_err() {
                    return None;
                }
                finishing = true;
                // Frames already queued are part of the speech.
                while let Ok(frame) = session.audio.try_recv() {
                    push_frame(&mut chunk, &frame);
                }
                if let Err(e) = flush(socket, &mut chunk, &mut state, limit).await {
                    return Some(Err(e));
                }
                if let Err(e) = send(socket, Message::text(EOF), limit).await {
                    return Some(Err(e));
                }
                state.sent += 1;
                state.eof_at = Some(state.sent);
                last_progress = Instant::now();
            }
            frame = session.audio.recv(), if audio_open && !finishing => match frame {
                Some(frame) => {
                    push_frame(&mut chunk, &frame);
                    if chunk.len() >= CHUNK_FRAMES * FRAME_SAMPLES * 2 {
                        if !owed {
                            last_progress = Instant::now();
                        }
                        if let Err(e) = flush(socket, &mut chunk, &mut state, limit).await {
                            return Some(Err(e));
                        }
                    }
                }
                // Every sender is gone: no more audio, but the result is still wanted.
                None => audio_open = false,
            },
            message = socket.next() => {
                last_progress = Instant::now();
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Binary(data))) => {
                        return Some(Err(SpeechError::Protocol(format!("a binary message ({} bytes) where JSON was expected", data.len()))))
                    }
                    Some(Ok(Message::Close(_))) | None => return Some(Err(SpeechError::Closed)),
                    Some(Err(e)) => return Some(Err(read_error(e))),
                };
                match state.answer(&text, &session.events) {
                    Ok(Some(transcripts)) => return Some(Ok(transcripts)),
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                }
            }
            _ = tokio::time::sleep_until(last_progress + limit), if owed => {
                return Some(Err(SpeechError::Timeout(limit)));
            }
        }
    }
}

/// What has been said so far in one recognition.
#[derive(Default)]
struct Exchange {
    /// Messages that the server answers (audio, then eof).
    sent: u64,
    answered: u64,
    /// The count of `sent` at which eof went: its answer is the final result.
    eof_at: Option<u64>,
    /// Utterances the server settled before eof, in order.
    utterances: Vec<Vec<Transcript>>,
    last_partial: String,
}

impl Exchange {
    /// Takes one answer; returns the final transcripts once the answer to eof is in.
    fn answer(
        &mut self,
        text: &str,
        events: &tokio::sync::mpsc::Sender<SpeechEvent>,
    ) -> Result<Option<Vec<Transcript>>, SpeechError> {
        self.answered += 1;
        match parse_answer(text)? {
            Answer::Partial(partial) => {
                if self.eof_at == Some(self.answered) {
                    return Err(SpeechError::Protocol("a partial result answered eof".into()));
                }
                if partial != self.last_partial {
                    if !partial.is_empty() {
                        let _ = events.try_send(SpeechEvent::Partial(partial.clone()));
                    }
                    self.last_partial = partial;
                }
                Ok(None)
            }
            Answer::Result(transcripts) => {
                if self.eof_at == Some(self.answered) {
                    return Ok(Some(combine(&self.utterances, transcripts)));
                }
                self.last_partial.clear();
                if !transcripts.is_empty() {
                    let _ = events.try_send(SpeechEvent::Utterance(transcripts.clone()));
                    self.utterances.push(transcripts);
                }
                Ok(None)
            }
        }
    }
}

/// One JSON answer of the server.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Partial(String),
    /// A settled utterance (or the final result): its readings, best first; empty for silence.
    Result(Vec<Transcript>),
}

/// Reads one text message of the server.
fn parse_answer(text: &str) -> Result<Answer, SpeechError> {
    let value: Value =
        serde_json::from_str(text).map_err(|_| SpeechError::Protocol(format!("not JSON: {}", excerpt(text))))?;
    let Some(object) = value.as_object() else {
        return Err(SpeechError::Protocol(format!("not a JSON object: {}", excerpt(text))));
    };
    if let Some(partial) = object.get("partial") {
        let partial = partial
            .as_str()
            .ok_or_else(|| SpeechError::Protocol(format!("\"partial\" is not a string: {}", excerpt(text))))?;
        return Ok(Answer::Partial(clean(partial)));
    }
    if let Some(alternatives) = object.get("alternatives") {
        return alternatives_of(alternatives)
            .map(Answer::Result)
            .ok_or_else(|| SpeechError::Protocol(format!("malformed \"alternatives\": {}", excerpt(text))));
    }
    if let Some(said) = object.get("text") {
        let said = said
            .as_str()
            .ok_or_else(|| SpeechError::Protocol(format!("\"text\" is not a string: {}", excerpt(text))))?;
        let said = clean(said);
        if said.is_empty() {
            return Ok(Answer::Result(Vec::new()));
        }
        let confidence =
            object.get("result").and_then(Value::as_array).and_then(|words| words_confidence(words)).unwrap_or(1.0);
        return Ok(Answer::Result(vec![Transcript { text: said, confidence }]));
    }
    Err(SpeechError::Protocol(format!("neither \"partial\", \"text\" nor \"alternatives\": {}", excerpt(text))))
}

/// The mean `conf` of the words that are words (not `[unk]`).
fn words_confidence(words: &[Value]) -> Option<f32> {
    let confs: Vec<f64> = words
        .iter()
        .filter(|w| w.get("word").and_then(Value::as_str).is_none_or(|word| !is_unknown(word)))
        .filter_map(|w| w.get("conf").and_then(Value::as_f64))
        .collect();
    if confs.is_empty() {
        return None;
    }
    Some((confs.iter().sum::<f64>() / confs.len() as f64).clamp(0.0, 1.0) as f32)
}

/// `[{"text", "confidence"}]`, best first, as transcripts with confidences in 0..1.
fn alternatives_of(value: &Value) -> Option<Vec<Transcript>> {
    let mut readings = Vec::new();
    for alternative in value.as_array()? {
        let text = alternative.get("text")?.as_str()?;
        let score = alternative.get("confidence").and_then(Value::as_f64).unwrap_or(0.0);
        readings.push((clean(text), score));
    }
    let scores: Vec<f64> = readings.iter().map(|(_, score)| *score).collect();
    let shares = shares_of(&scores);
    let mut transcripts: Vec<Transcript> = Vec::new();
    for ((text, _), share) in readings.into_iter().zip(shares) {
        // Without [unk] two readings may read alike: the first (better) one stands.
        if text.is_empty() || transcripts.iter().any(|t| t.text == text) {
            continue;
        }
        transcripts.push(Transcript { text, confidence: share as f32 });
    }
    transcripts.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    Some(transcripts)
}

/// Scores as shares of 1: kept when they already are probabilities, else a softmax of
/// log-likelihoods (Vosk's n-best `confidence`, e.g. 225.3 against 219.8).
fn shares_of(scores: &[f64]) -> Vec<f64> {
    let probabilities = scores.iter().all(|s| (0.0..=1.0).contains(s)) && scores.iter().sum::<f64>() <= 1.0 + 1e-6;
    if probabilities || scores.is_empty() {
        return scores.to_vec();
    }
    let best = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scores.iter().map(|s| (s - best).exp()).collect();
    let total: f64 = weights.iter().sum();
    weights.iter().map(|w| w / total).collect()
}

/// The final result: utterances settled before eof, then the last one. Each reading of the
/// last is prefixed with the earlier utterances' best readings; its confidence is the lowest.
fn combine(utterances: &[Vec<Transcript>], last: Vec<Transcript>) -> Vec<Transcript> {
    let earlier: Vec<&Transcript> = utterances.iter().filter_map(|readings| readings.first()).collect();
    if earlier.is_empty() {
        return last;
    }
    let prefix = earlier.iter().map(|t| t.text.as_str()).collect::<Vec<_>>().join(" ");
    let prefix_confidence = earlier.iter().map(|t| t.confidence).fold(1.0, f32::min);
    if last.is_empty() {
        return vec![Transcript { text: prefix, confidence: prefix_confidence }];
    }
    last.into_iter()
        .map(|t| Transcript { text: format!("{prefix} {}", t.text), confidence: t.confidence.min(prefix_confidence) })
        .collect()
}

fn is_unknown(word: &str) -> bool {
    word == "[unk]" || word == "<unk>"
}

/// Words separated by single spaces, without `[unk]`.
fn clean(text: &str) -> String {
    text.split_whitespace().filter(|w| !is_unknown(w)).collect::<Vec<_>>().join(" ")
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 120;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

fn push_frame(chunk: &mut Vec<u8>, frame: &Frame) {
    for sample in frame {
        chunk.extend_from_slice(&sample.to_le_bytes());
    }
}

/// Sends the audio gathered so far as one binary message (nothing when there is none).
async fn flush(
    socket: &mut Socket,
    chunk: &mut Vec<u8>,
    state: &mut Exchange,
    limit: Duration,
) -> Result<(), SpeechError> {
    if chunk.is_empty() {
        return Ok(());
    }
    send(socket, Message::binary(std::mem::take(chunk)), limit).await?;
    state.sent += 1;
    Ok(())
}

async fn send(socket: &mut Socket, message: Message, limit: Duration) -> Result<(), SpeechError> {
    match timeout(limit, socket.send(message)).await {
        Err(_) => Err(SpeechError::Timeout(limit)),
        Ok(Err(e)) => Err(read_error(e)),
        Ok(Ok(())) => Ok(()),
    }
}

fn read_error(e: tungstenite::Error) -> SpeechError {
    use tungstenite::Error as E;
    match e {
        E::ConnectionClosed | E::AlreadyClosed | E::Io(_) => SpeechError::Closed,
        other => SpeechError::Protocol(describe(&other)),
    }
}

/// A connection error in words a log reader (and `speech.error`) can act on.
fn describe(e: &tungstenite::Error) -> String {
    use tungstenite::Error as E;
    match e {
        E::Io(io) => io.to_string(),
        E::Http(response) => format!("answered HTTP {} instead of a WebSocket upgrade", response.status()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_words_result_has_the_mean_confidence_of_its_known_words() {
        let answer = parse_answer(
            r#"{"result": [{"conf": 1.0, "word": "one"}, {"conf": 0.5, "word": "two"}, {"conf": 0.1, "word": "[unk]"}], "text": "one two [unk]"}"#,
        )
        .unwrap();
        assert_eq!(answer, Answer::Result(vec![Transcript { text: "one two".into(), confidence: 0.75 }]));
        assert_eq!(parse_answer(r#"{"text": ""}"#).unwrap(), Answer::Result(vec![]));
        assert_eq!(parse_answer(r#"{"text": "[unk]"}"#).unwrap(), Answer::Result(vec![]));
        assert_eq!(parse_answer(r#"{"partial": "one  [unk] two"}"#).unwrap(), Answer::Partial("one two".into()));
    }

    #[test]
    fn vosk_log_likelihoods_become_shares_best_first() {
        // What Vosk sends with max_alternatives: negated costs, best first.
        let answer = parse_answer(
            r#"{"alternatives": [{"text": "one two", "confidence": 230.0}, {"text": "one to", "confidence": 229.0}, {"text": "", "confidence": 220.0}]}"#,
        )
        .unwrap();
        let Answer::Result(readings) = answer else { panic!("{answer:?}") };
        assert_eq!(readings.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(), ["one two", "one to"]);
        let e1 = (-1.0f64).exp();
        let e10 = (-10.0f64).exp();
        assert!((readings[0].confidence as f64 - 1.0 / (1.0 + e1 + e10)).abs() < 1e-6, "{readings:?}");
        assert!((readings[1].confidence as f64 - e1 / (1.0 + e1 + e10)).abs() < 1e-6, "{readings:?}");
        // Probabilities (as the Vosk API documents them) stay as they are.
        let Answer::Result(readings) = parse_answer(
            r#"{"alternatives": [{"text": "yes", "confidence": 0.97}, {"text": "yeah", "confidence": 0.03}]}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            readings,
            [Transcript { text: "yes".into(), confidence: 0.97 }, Transcript { text: "yeah".into(), confidence: 0.03 }]
        );
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        for text in
            ["hello", "[1, 2]", r#"{"foo": 1}"#, r#"{"partial": 3}"#, r#"{"alternatives": 3}"#, r#"{"text": null}"#]
        {
            assert!(matches!(parse_answer(text), Err(SpeechError::Protocol(_))), "{text}");
        }
    }

    #[test]
    fn utterances_before_eof_lead_the_final_result() {
        let t = |text: &str, confidence| Transcript { text: text.into(), confidence };
        let earlier = vec![vec![t("yes", 0.9), t("yeah", 0.1)], vec![t("please", 0.8)]];
        assert_eq!(
            combine(&earlier, vec![t("now", 0.95), t("no", 0.05)]),
            [t("yes please now", 0.8), t("yes please no", 0.05)]
        );
        assert_eq!(combine(&earlier, vec![]), [t("yes please", 0.8)]);
        assert_eq!(combine(&[], vec![t("now", 0.95)]), [t("now", 0.95)]);
    }

    #[test]
    fn the_config_carries_the_context_as_a_phrase_list() {
        let recognizer = VoskRecognizer::new("ws://127.0.0.1:2700", Duration::from_secs(1));
        let options = RecognitionOptions {
            language: "en-US".into(),
            context: vec!["  Yes   please ".into(), "".into(), "no".into()],
        };
        let config: Value = serde_json::from_str(&recognizer.config_message(&options)).unwrap();
        assert_eq!(
            config,
            json!({"config": {"sample_rate": 8000, "words": true, "max_alternatives": 0, "phrase_list": ["yes please", "no", "[unk]"]}})
        );
        let config: Value =
            serde_json::from_str(&recognizer.clone().phrase_list(false).max_alternatives(3).config_message(&options))
                .unwrap();
        assert_eq!(config, json!({"config": {"sample_rate": 8000, "words": true, "max_alternatives": 3}}));
        let none = RecognitionOptions { language: "en-US".into(), context: vec![] };
        assert!(!recognizer.config_message(&none).contains("phrase_list"));
    }

    #[test]
    fn the_url_takes_the_language_and_must_be_plain_websocket() {
        let recognizer = VoskRecognizer::new("ws://vosk-{language}:2700/", Duration::from_secs(1));
        assert_eq!(recognizer.url_for("en-US").unwrap(), "ws://vosk-en-us:2700/");
        assert!(
            matches!(VoskRecognizer::new("wss://x", Duration::ZERO).url_for("en-US"), Err(SpeechError::Config(m)) if m.contains("TLS"))
        );
        assert!(matches!(
            VoskRecognizer::new("http://x", Duration::ZERO).url_for("en-US"),
            Err(SpeechError::Config(_))
        ));
        assert!(matches!(
            VoskRecognizer::new("not a url", Duration::ZERO).url_for("en-US"),
            Err(SpeechError::Config(_))
        ));
    }
}
