//! The speech recognizer on a real speech server: espeak-ng says a phrase at 8 kHz (as `talk`
//! would), `VoskRecognizer` streams it in 20 ms frames to PocketSphinx behind the Vosk protocol
//! (tests/speech/vosk_server.py), and the words come back. And what a caller gets when the
//! server is down, silent, dies mid-stream or talks nonsense: a `SpeechError`, soon.

mod common;

use common::vosk::VoskServer;
use futures_util::{SinkExt, StreamExt};
use outdial::media::tts::{EspeakNg, TextToSpeech, Voice};
use outdial::media::{Frame, FRAME_DURATION, FRAME_SAMPLES, SAMPLE_RATE};
use outdial::speech::{RecognitionOptions, SpeechError, SpeechEvent, SpeechRecognizer, Transcript, VoskRecognizer};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// Generous: PocketSphinx shares two cores with the rest of the suite.
const SERVER_TIMEOUT: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(60);

/// What an IVR would expect: the phrases the speaker may say (`speech.context`).
fn context() -> Vec<String> {
    ["yes please", "no thanks", "one two three", "three two one", "hello world", "good morning", "operator"]
        .map(String::from)
        .to_vec()
}

fn options(context: Vec<String>) -> RecognitionOptions {
    RecognitionOptions { language: "en-US".into(), context }
}

/// `text` as espeak-ng says it in en-US at 8 kHz, with the silence around it that a caller's
/// line has (0.3 s before, 0.6 s after), in 20 ms frames.
async fn spoken(text: &str) -> Vec<Frame> {
    let clip = EspeakNg::new("espeak-ng", Duration::from_secs(30), Duration::from_secs(60))
        .synthesize(text, &Voice::new(Some("en-US"), None))
        .await
        .expect("espeak-ng (scripts/test.sh installs it)");
    let ms = |ms: u32| (SAMPLE_RATE * ms / 1000) as usize;
    let mut samples = vec![0i16; ms(300)];
    samples.extend_from_slice(clip.samples());
    samples.extend(std::iter::repeat_n(0i16, ms(600)));
    samples.resize(samples.len().div_ceil(FRAME_SAMPLES) * FRAME_SAMPLES, 0);
    samples.chunks(FRAME_SAMPLES).map(|chunk| chunk.try_into().unwrap()).collect()
}

fn texts(transcripts: &[Transcript]) -> Vec<&str> {
    transcripts.iter().map(|t| t.text.as_str()).collect()
}

#[tokio::test]
async fn a_phrase_said_in_real_time_comes_back_as_its_words_with_partials_on_the_way() {
    if !VoskServer::available() {
        return;
    }
    let server = VoskServer::start();
    let recognizer: Arc<dyn SpeechRecognizer> = Arc::new(VoskRecognizer::new(server.url(), SERVER_TIMEOUT));
    let frames = spoken("yes please").await;
    let mut recognition = recognizer.start(options(context())).await.unwrap();

    // At the pace a call delivers it: one frame per 20 ms tick.
    let mut ticks = tokio::time::interval(FRAME_DURATION);
    for frame in &frames {
        ticks.tick().await;
        recognition.audio.try_send(*frame).expect("the recognizer keeps up with real time");
    }
    // The server has been answering all along: what it heard so far.
    let partial = tokio::time::timeout(WAIT, recognition.events.recv()).await.expect("a partial result").unwrap();
    let SpeechEvent::Partial(partial) = partial else { panic!("{partial:?}") };
    // Early guesses may differ from the final words; empty ones are not reported.
    assert!(!partial.is_empty());

    let asked = Instant::now();
    let transcripts = tokio::time::timeout(WAIT, recognition.finish()).await.unwrap().unwrap();
    eprintln!("final result {transcripts:?} {} ms after the end of speech", asked.elapsed().as_millis());
    assert_eq!(texts(&transcripts), ["yes please"], "{}", server.log());
    assert!(transcripts[0].confidence > 0.0 && transcripts[0].confidence <= 1.0, "{transcripts:?}");
}

#[tokio::test]
async fn concurrent_recognitions_each_hear_their_own_phrase_in_order() {
    if !VoskServer::available() {
        return;
    }
    let server = VoskServer::start();
    let recognizer: Arc<dyn SpeechRecognizer> = Arc::new(VoskRecognizer::new(server.url(), SERVER_TIMEOUT));
    // "three two one" is in the context too: the order of the words is heard, not guessed.
    let phrases = ["one two three", "hello world", "operator"];
    let mut calls = Vec::new();
    for phrase in phrases {
        let recognizer = recognizer.clone();
        calls.push(tokio::spawn(async move {
            let frames = spoken(phrase).await;
            let recognition = recognizer.start(options(context())).await.unwrap();
            // Faster than real time: as fast as the channel takes frames.
            for frame in frames {
                recognition.audio.send(frame).await.unwrap();
            }
            tokio::time::timeout(WAIT, recognition.finish()).await.unwrap()
        }));
    }
    for (phrase, call) in phrases.iter().zip(calls) {
        let transcripts = call.await.unwrap().unwrap();
        assert_eq!(texts(&transcripts), [*phrase], "{}", server.log());
    }
}

#[tokio::test]
async fn a_server_that_is_down_is_an_error_at_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let recognizer = VoskRecognizer::new(format!("ws://127.0.0.1:{port}"), SERVER_TIMEOUT);
    let started = Instant::now();
    let error = recognizer.start(options(vec![])).await.err().expect("nothing listens there");
    assert!(matches!(&error, SpeechError::Unavailable(m) if m.contains("refused")), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // The message is what Vonage's speech.error carries.
    assert!(error.to_string().starts_with("the speech server cannot be reached: "), "{error}");
}

#[tokio::test]
async fn a_server_that_accepts_but_never_answers_times_out() {
    // The kernel completes the TCP handshake; nobody answers the WebSocket one.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let limit = Duration::from_millis(500);
    let recognizer = VoskRecognizer::new(format!("ws://{}", listener.local_addr().unwrap()), limit);
    let started = Instant::now();
    let error = recognizer.start(options(vec![])).await.err().expect("no handshake");
    assert_eq!(error, SpeechError::Timeout(limit));
    assert!(started.elapsed() >= limit && started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_server_that_dies_mid_stream_is_an_error_not_a_hang() {
    if !VoskServer::available() {
        return;
    }
    let mut server = VoskServer::start();
    let recognizer = VoskRecognizer::new(server.url(), SERVER_TIMEOUT);
    let frames = spoken("one two three").await;
    let mut recognition = recognizer.start(options(context())).await.unwrap();
    let (first, rest) = frames.split_at(frames.len() / 2);
    for frame in first {
        recognition.audio.send(*frame).await.unwrap();
    }
    // Mid-stream for sure: the server has started hearing words.
    let event = tokio::time::timeout(WAIT, recognition.events.recv()).await.expect("a partial result").unwrap();
    assert!(matches!(event, SpeechEvent::Partial(_)), "{event:?}");
    server.kill();
    for frame in rest {
        // Taken, or refused once the recognition has failed: never a panic or a block.
        if recognition.audio.try_send(*frame).is_err() {
            break;
        }
    }
    let started = Instant::now();
    let result = tokio::time::timeout(WAIT, recognition.finish()).await.unwrap();
    assert_eq!(result, Err(SpeechError::Closed));
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

/// A WebSocket server that takes the config, then answers the first audio with `reply`.
async fn misbehaving_server(reply: Message) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
        while let Some(Ok(message)) = socket.next().await {
            if message.is_binary() {
                let _ = socket.send(reply).await;
                break;
            }
        }
        // Held open: the client must not wait for more.
        std::future::pending::<()>().await;
    });
    url
}

#[tokio::test]
async fn nonsense_from_the_server_is_a_protocol_error() {
    for (reply, expected) in [
        (Message::text("not json at all"), "not JSON"),
        (Message::text(r#"{"status": "ok"}"#), "neither"),
        (Message::binary(vec![1u8, 2, 3]), "binary"),
    ] {
        let url = misbehaving_server(reply).await;
        let recognition = VoskRecognizer::new(url, SERVER_TIMEOUT).start(options(vec![])).await.unwrap();
        for _ in 0..10 {
            recognition.audio.send([0i16; FRAME_SAMPLES]).await.unwrap();
        }
        let result = tokio::time::timeout(WAIT, recognition.finish()).await.unwrap();
        assert!(matches!(&result, Err(SpeechError::Protocol(m)) if m.contains(expected)), "{result:?}");
    }
}

#[tokio::test]
async fn a_server_that_stops_answering_mid_stream_times_out() {
    // Takes the audio and never answers it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
        while let Some(Ok(_)) = socket.next().await {}
    });
    let limit = Duration::from_millis(500);
    let recognition = VoskRecognizer::new(url, limit).start(options(vec![])).await.unwrap();
    for _ in 0..10 {
        recognition.audio.send([0i16; FRAME_SAMPLES]).await.unwrap();
    }
    let started = Instant::now();
    let result = tokio::time::timeout(WAIT, recognition.finish()).await.unwrap();
    assert_eq!(result, Err(SpeechError::Timeout(limit)));
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

#[test]
fn no_speech_url_means_no_recognizer() {
    let mut settings = outdial::config::Settings::load(None).unwrap();
    assert_eq!(settings.media.speech_url, "");
    assert_eq!(settings.media.speech_timeout_ms, 5000);
    assert!(settings.media.speech_phrase_list);
    assert_eq!(settings.media.speech_max_alternatives, 0);
    assert!(outdial::speech::from_settings(&settings.media).is_none());
    settings.media.speech_url = "ws://127.0.0.1:2700".into();
    assert_eq!(outdial::speech::from_settings(&settings.media).unwrap().name(), "vosk");
}
