//! Audio files and text-to-speech to playable 8 kHz clips (src/media/{decode,tts,cache}.rs),
//! checked on the audio itself: lengths, a 1 kHz tone found by Goertzel after resampling, a
//! 5 kHz tone filtered out, real espeak-ng speech.

use outdial::media::cache::{stream_key, AudioCache};
use outdial::media::clip::Clip;
use outdial::media::decode::{decode, DecodeError, Hint};
use outdial::media::tts::{
    EspeakNg, Fetch, FetchRequest, FetchResponse, HttpTts, TextToSpeech, TtsError, TtsFuture, Voice, LANGUAGES,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/audio");

/// Fraction of a frame's energy at `freq` (a clean tone gives ~1.0).
fn goertzel_ratio(frame: &[i16], freq: f32) -> f32 {
    let n = frame.len() as f32;
    let k = (n * freq / 8000.0).round();
    let coeff = 2.0 * (2.0 * std::f32::consts::PI * k / n).cos();
    let (mut s1, mut s2, mut energy) = (0.0f32, 0.0f32, 0.0f32);
    for &x in frame {
        let x = x as f32;
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
        energy += x * x;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    if energy == 0.0 {
        0.0
    } else {
        2.0 * power / (n * energy)
    }
}

fn rms_dbfs(samples: &[i16]) -> f32 {
    let ms = samples.iter().map(|&x| (x as f32) * (x as f32)).sum::<f32>() / samples.len().max(1) as f32;
    20.0 * (ms.sqrt() / 32768.0).log10()
}

/// Share of 20 ms frames that are loud and the tone.
fn tone_fraction(clip: &Clip, freq: f32) -> f32 {
    let frames: Vec<&[i16]> = clip.samples().chunks_exact(160).collect();
    let hits = frames.iter().filter(|f| rms_dbfs(f) > -40.0 && goertzel_ratio(f, freq) > 0.5).count();
    hits as f32 / frames.len().max(1) as f32
}

/// Share of 20 ms frames above -40 dBFS.
fn loud_fraction(clip: &Clip) -> f32 {
    let frames: Vec<&[i16]> = clip.samples().chunks_exact(160).collect();
    frames.iter().filter(|f| rms_dbfs(f) > -40.0).count() as f32 / frames.len().max(1) as f32
}

/// A WAV file of a sine at -6 dBFS.
fn sine_wav(freq: f32, rate: u32, bits: u16, channels: u16, seconds: f32) -> Vec<u8> {
    let spec =
        hound::WavSpec { channels, sample_rate: rate, bits_per_sample: bits, sample_format: hound::SampleFormat::Int };
    let mut out = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut out, spec).unwrap();
    let full_scale = (1i64 << (bits - 1)) as f32;
    for i in 0..(rate as f32 * seconds) as usize {
        let x = (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin() * 0.5;
        for _ in 0..channels {
            let v = (x * full_scale) as i32;
            match bits {
                8 => writer.write_sample(v as i8).unwrap(),
                16 => writer.write_sample(v as i16).unwrap(),
                _ => writer.write_sample(v).unwrap(),
            }
        }
    }
    writer.finalize().unwrap();
    out.into_inner()
}

fn assert_length(clip: &Clip, seconds: f32, what: &str) {
    let got = clip.duration().as_secs_f32();
    assert!((got - seconds).abs() <= 0.020, "{what}: {got:.4} s, expected {seconds} s ±20 ms");
}

#[test]
fn wav_of_every_rate_depth_and_layout_decodes_to_an_8khz_tone_of_the_right_length() {
    let cases =
        [(8000, 16, 1), (8000, 8, 1), (22050, 16, 1), (44100, 24, 2), (48000, 16, 2), (44100, 8, 1), (11025, 16, 1)];
    for (rate, bits, channels) in cases {
        let what = format!("{rate} Hz {bits}-bit {channels} ch");
        let clip = decode(sine_wav(1000.0, rate, bits, channels, 1.5), &Hint::default()).expect(&what);
        assert_length(&clip, 1.5, &what);
        let tone = tone_fraction(&clip, 1000.0);
        assert!(tone > 0.97, "{what}: 1 kHz in {tone:.3} of the frames");
        let level = rms_dbfs(clip.samples());
        assert!((level + 9.0).abs() < 0.5, "{what}: a -6 dBFS peak sine is -9 dBFS RMS, got {level:.2}");
    }
}

#[test]
fn an_8khz_16bit_wav_is_played_sample_for_sample() {
    let wav = sine_wav(1000.0, 8000, 16, 1, 0.5);
    let clip = decode(wav.clone(), &Hint::default()).unwrap();
    let reader = hound::WavReader::new(std::io::Cursor::new(wav)).unwrap();
    let original: Vec<i16> = reader.into_samples::<i16>().map(Result::unwrap).collect();
    assert_eq!(clip.samples(), &original[..]);
}

#[test]
fn a_5khz_tone_above_the_telephone_band_is_filtered_out_not_aliased() {
    for rate in [22050, 44100, 48000] {
        let clip = decode(sine_wav(5000.0, rate, 16, 1, 1.0), &Hint::default()).unwrap();
        assert_length(&clip, 1.0, "5 kHz tone");
        // Skip the first and last 20 ms (filter edges); the rest must be near silence.
        let inner = &clip.samples()[160..clip.len() - 160];
        let level = rms_dbfs(inner);
        assert!(level < -50.0, "{rate} Hz: 5 kHz left at {level:.1} dBFS (-9 before resampling)");
        // Aliased, it would come back as a 3 kHz tone (8000 - 5000).
        assert!(tone_fraction(&clip, 3000.0) == 0.0);
    }
}

#[test]
fn mulaw_alaw_mp3_and_ogg_files_decode_to_the_tone() {
    for (file, seconds) in [
        ("tone1k_ulaw.wav", 0.5),
        ("tone1k_alaw.wav", 0.5),
        ("tone1k_22k.mp3", 1.0),
        ("tone1k_44k_stereo.mp3", 0.5),
        ("tone1k_16k.ogg", 1.0),
    ] {
        let bytes = std::fs::read(format!("{FIXTURES}/{file}")).unwrap();
        let clip = decode(bytes, &Hint::default()).unwrap_or_else(|e| panic!("{file}: {e}"));
        // The MP3s' LAME tags give the encoder delay and padding, which decoding removes.
        assert_length(&clip, seconds, file);
        let tone = tone_fraction(&clip, 1000.0);
        assert!(tone > 0.9, "{file}: 1 kHz in {tone:.3} of the frames");
    }
}

#[test]
fn hints_from_content_type_or_extension_do_not_change_the_result() {
    let bytes = std::fs::read(format!("{FIXTURES}/tone1k_22k.mp3")).unwrap();
    let plain = decode(bytes.clone(), &Hint::default()).unwrap();
    let hinted = decode(
        bytes,
        &Hint { mime_type: Some("audio/mpeg; charset=binary"), extension: Some("mp3"), ..Hint::default() },
    )
    .unwrap();
    assert_eq!(plain, hinted);
}

#[test]
fn a_wav_whose_header_overstates_its_length_plays_what_arrived() {
    // As espeak-ng --stdout writes it: RIFF and data sizes ~2 GB, then 0.75 s of samples.
    let mut wav = sine_wav(1000.0, 22050, 16, 1, 0.75);
    wav[4..8].copy_from_slice(&0x7fff_f024u32.to_le_bytes());
    wav[40..44].copy_from_slice(&0x7fff_f000u32.to_le_bytes());
    let clip = decode(wav, &Hint::default()).unwrap();
    assert_length(&clip, 0.75, "lying header");
    assert!(tone_fraction(&clip, 1000.0) > 0.97);
}

#[test]
fn files_that_are_not_playable_audio_say_why() {
    let html = b"<!doctype html><html><body>Not found</body></html>".repeat(20);
    let e = decode(html, &Hint { mime_type: Some("text/html"), ..Hint::default() }).unwrap_err();
    assert_eq!(e, DecodeError::NotAudio);
    assert_eq!(e.to_string(), "not an audio file: expected WAV, MP3 or OGG/Vorbis");

    assert_eq!(decode(Vec::new(), &Hint::default()).unwrap_err(), DecodeError::Empty);
    assert_eq!(decode(sine_wav(1000.0, 16000, 16, 1, 0.0), &Hint::default()).unwrap_err(), DecodeError::Empty);

    // A WAV of GSM 6.10 (format 0x31): a real WAV, but not a codec we decode.
    let mut gsm = sine_wav(1000.0, 8000, 16, 1, 0.5);
    gsm[20..22].copy_from_slice(&0x31u16.to_le_bytes());
    let e = decode(gsm, &Hint::default()).unwrap_err();
    assert!(matches!(e, DecodeError::Unsupported(_)), "{e:?}");
    assert!(e.to_string().starts_with("unsupported audio format: "), "{e}");

    let e =
        decode(sine_wav(1000.0, 8000, 16, 1, 3.0), &Hint { max_duration: Duration::from_secs(2), ..Hint::default() })
            .unwrap_err();
    assert_eq!(e, DecodeError::TooLong { max: Duration::from_secs(2) });
    assert_eq!(e.to_string(), "the audio lasts longer than the 2 s allowed");
}

fn espeak() -> EspeakNg {
    EspeakNg::new("espeak-ng", Duration::from_secs(10), Duration::from_secs(600))
}

#[tokio::test]
async fn espeak_ng_says_hello_world_as_speech_of_a_plausible_length() {
    let clip = espeak().synthesize("hello world", &Voice::new(Some("en-US"), None)).await.unwrap();
    let seconds = clip.duration().as_secs_f32();
    assert!((0.5..=3.0).contains(&seconds), "hello world lasted {seconds:.2} s");
    let loud = loud_fraction(&clip);
    assert!(loud > 0.4, "only {loud:.2} of the frames are above -40 dBFS");
    assert!(tone_fraction(&clip, 1000.0) < 0.1, "speech is not a tone");

    // Another style is another voice: same words, different audio.
    let styled = espeak().synthesize("hello world", &Voice::new(Some("en-US"), Some(1))).await.unwrap();
    assert_ne!(styled, clip);
}

#[tokio::test]
async fn espeak_ng_follows_ssml_breaks_and_does_not_read_tags_aloud() {
    let voice = Voice::default();
    let plain = espeak().synthesize("<speak>one two</speak>", &voice).await.unwrap();
    let pause = espeak().synthesize(r#"<speak>one <break time="1s"/> two</speak>"#, &voice).await.unwrap();
    let extra = pause.duration().as_secs_f32() - plain.duration().as_secs_f32();
    assert!((0.8..=1.3).contains(&extra), "a 1 s break added {extra:.2} s");
    // Read aloud, the tags would take seconds ("speak one break time equals ...").
    assert!(plain.duration() < Duration::from_millis(1500), "{:?}", plain.duration());
}

#[tokio::test]
async fn espeak_ng_failures_are_reported_not_hung() {
    let voice = Voice::default();
    let missing = EspeakNg::new("/nonexistent/espeak-ng", Duration::from_secs(5), Duration::from_secs(60));
    assert!(matches!(missing.synthesize("hi", &voice).await, Err(TtsError::Unavailable(_))));
    assert_eq!(espeak().synthesize("  ", &voice).await.unwrap_err(), TtsError::EmptyText);

    // A program that never answers is killed at the timeout.
    let dir = std::env::temp_dir().join(format!("outdial-tts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let slow = dir.join("slow-espeak");
    std::fs::write(&slow, "#!/bin/sh\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let engine = EspeakNg::new(&slow, Duration::from_millis(300), Duration::from_secs(60));
    let started = Instant::now();
    assert_eq!(engine.synthesize("hi", &voice).await.unwrap_err(), TtsError::Timeout(Duration::from_millis(300)));
    assert!(started.elapsed() < Duration::from_secs(2));

    // A program that fails says what it printed.
    let failing = dir.join("failing-espeak");
    std::fs::write(&failing, "#!/bin/sh\necho 'voice not found' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&failing, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let engine = EspeakNg::new(&failing, Duration::from_secs(5), Duration::from_secs(60));
    match engine.synthesize("hi", &voice).await {
        Err(TtsError::Failed(message)) => assert!(message.contains("voice not found"), "{message}"),
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_burst_of_different_texts_is_all_spoken() {
    // More texts than espeak-ng processes allowed at once: the rest queue, none fails.
    let engine = Arc::new(espeak());
    let tasks: Vec<_> = (0..24)
        .map(|n| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.synthesize(&format!("caller number {n}"), &Voice::default()).await })
        })
        .collect();
    for task in tasks {
        let clip = task.await.unwrap().unwrap();
        assert!(loud_fraction(&clip) > 0.3);
    }
}

/// Languages in Vonage's spec and SDKs, and the older NCCO schema's four (vonage-voice-api.md §talk).
const VONAGE_LANGUAGES: &str = "ar ca-ES cmn-CN cmn-TW cs-CZ cy-GB da-DK de-DE el-GR en-AU en-GB en-GB-WLS en-IN \
    en-US en-ZA es-ES es-MX es-US eu-ES fi-FI fil-PH fr-CA fr-FR he-IL hi-IN hu-HU id-ID is-IS it-IT ja-JP ko-KR \
    nb-NO nl-NL no-NO pl-PL pt-BR pt-PT ro-RO ru-RU sk-SK sv-SE th-TH tr-TR uk-UA vi-VN yue-CN bn-IN ml-IN ta-IN te-IN";

#[test]
fn every_vonage_language_has_an_installed_espeak_ng_voice() {
    let listed = std::process::Command::new("espeak-ng").arg("--voices").output().unwrap();
    let installed: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1).map(str::to_string))
        .collect();
    for language in VONAGE_LANGUAGES.split_whitespace() {
        assert!(LANGUAGES.iter().any(|(code, _)| *code == language), "{language} is not in the table");
        let voice = Voice::new(Some(language), None);
        assert_eq!(voice.note, None, "{language}");
        assert!(
            installed.contains(&voice.espeak_voice.to_string()),
            "{language}: no espeak-ng voice {}",
            voice.espeak_voice
        );
    }
}

#[tokio::test]
async fn every_style_variant_speaks() {
    for style in 0..6 {
        let clip = espeak().synthesize("yes", &Voice::new(Some("en-GB"), Some(style))).await.unwrap();
        assert!(loud_fraction(&clip) > 0.3, "style {style}");
    }
}

/// Counts the syntheses it passes on to espeak-ng.
struct Counted {
    inner: EspeakNg,
    calls: AtomicUsize,
}

impl TextToSpeech for Counted {
    fn synthesize<'a>(&'a self, text: &'a str, voice: &'a Voice) -> TtsFuture<'a> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.synthesize(text, voice)
    }
    fn name(&self) -> &'static str {
        "espeak-ng"
    }
}

#[tokio::test]
async fn concurrent_talks_of_the_same_text_synthesize_once() {
    let tts = Arc::new(Counted { inner: espeak(), calls: AtomicUsize::new(0) });
    let cache = Arc::new(AudioCache::new(64 << 20));
    let voice = Voice::default();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (tts, cache, voice) = (tts.clone(), cache.clone(), voice.clone());
            let text = if i % 2 == 0 { "press one for sales" } else { "press two for support" };
            tokio::spawn(async move { cache.speak(tts.as_ref(), text, &voice).await.unwrap() })
        })
        .collect();
    let mut clips = Vec::new();
    for task in tasks {
        clips.push(task.await.unwrap());
    }
    assert_eq!(tts.calls.load(Ordering::SeqCst), 2, "one synthesis per text");
    assert!(clips.iter().step_by(2).all(|c| std::ptr::eq(c.samples().as_ptr(), clips[0].samples().as_ptr())), "every waiter shares one clip");
    assert_ne!(clips[0], clips[1]);
    // Kept: later talks do not synthesize again; another voice does.
    cache.speak(tts.as_ref(), "press one for sales", &voice).await.unwrap();
    assert_eq!(tts.calls.load(Ordering::SeqCst), 2);
    cache.speak(tts.as_ref(), "press one for sales", &Voice::new(Some("en-GB"), None)).await.unwrap();
    assert_eq!(tts.calls.load(Ordering::SeqCst), 3);
    assert_eq!(cache.len(), 3);
}

#[tokio::test]
async fn a_failed_load_reaches_every_waiter_and_is_not_kept() {
    let cache = Arc::new(AudioCache::new(1 << 20));
    let loads = Arc::new(AtomicUsize::new(0));
    let failing = |loads: Arc<AtomicUsize>| async move {
        loads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        decode(b"not audio at all, just text".repeat(10), &Hint::default())
    };
    let key = stream_key("http://example.test/a.mp3");
    let (a, b) = tokio::join!(
        cache.get_or_load(&key, || failing(loads.clone())),
        cache.get_or_load(&key, || failing(loads.clone()))
    );
    assert_eq!((a.unwrap_err(), b.unwrap_err()), (DecodeError::NotAudio, DecodeError::NotAudio));
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    // The next request tries again.
    let _ = cache.get_or_load(&key, || failing(loads.clone())).await;
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    assert!(cache.is_empty());
}

#[tokio::test]
async fn a_waiter_takes_over_when_the_first_caller_gives_up() {
    let cache = Arc::new(AudioCache::new(1 << 20));
    let key = stream_key("http://example.test/tone.wav");
    let wav = sine_wav(1000.0, 8000, 16, 1, 0.2);
    let load = |delay_ms: u64| {
        let wav = wav.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            decode(wav, &Hint::default())
        }
    };
    // The first caller's load never finishes: it is dropped after 50 ms (a hung-up call).
    let first = tokio::time::timeout(Duration::from_millis(50), cache.get_or_load(&key, || load(60_000)));
    let second = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        cache.get_or_load(&key, || load(20)).await
    };
    let started = Instant::now();
    let (first, second) = tokio::join!(first, second);
    assert!(first.is_err(), "the first caller timed out");
    assert_eq!(second.unwrap().len(), 1600);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(cache.get(&key).is_some());
}

#[tokio::test]
async fn the_cache_keeps_at_most_its_budget_dropping_the_least_recently_used() {
    let clip_bytes = 16_000 * 2; // two seconds at 8 kHz
    let cache = AudioCache::new(3 * clip_bytes + 200);
    for n in 0..3 {
        cache.insert(&stream_key(&format!("u{n}")), Clip::new(vec![0; 16_000]));
    }
    assert!(cache.get(&stream_key("u0")).is_some()); // u1 is now the oldest
    cache.insert(&stream_key("u3"), Clip::new(vec![0; 16_000]));
    assert!(cache.get(&stream_key("u1")).is_none());
    for kept in ["u0", "u2", "u3"] {
        assert!(cache.get(&stream_key(kept)).is_some(), "{kept}");
    }
    assert!(cache.size_bytes() <= 3 * clip_bytes + 200);
}

/// The HTTP engine against a real HTTP server, with reqwest doing the POST as the engine wires it.
#[tokio::test]
async fn http_engine_posts_the_text_and_plays_the_audio_it_gets_back() {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let received = Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let seen = received.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        let fail = json["text"] == "fail";
                        seen.lock().unwrap().push(json);
                        let response = if fail {
                            hyper::Response::builder().status(503).body(Full::new(Bytes::from_static(b"busy")))
                        } else {
                            // A 16 kHz 16-bit WAV of 1.2 s of 1 kHz, as a TTS server might answer.
                            hyper::Response::builder()
                                .header("content-type", "audio/wav")
                                .body(Full::new(Bytes::from(sine_wav(1000.0, 16000, 16, 1, 1.2))))
                        };
                        Ok::<_, std::convert::Infallible>(response.unwrap())
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });

    // reqwest builds its TLS configuration from the process's default rustls provider.
    outdial::webhooks::tls::install_default_provider();
    let client = reqwest::Client::new();
    let fetch: Fetch = Arc::new(move |request: FetchRequest| {
        let client = client.clone();
        Box::pin(async move {
            let response = client
                .post(&request.url)
                .header("content-type", request.content_type)
                .body(request.body)
                .timeout(request.timeout)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
            let body = response.bytes().await.map_err(|e| e.to_string())?.to_vec();
            Ok(FetchResponse { status, content_type, body })
        })
    });
    let engine =
        HttpTts::new(format!("http://{address}/speak"), Duration::from_secs(5), Duration::from_secs(60), fetch);
    let voice = Voice::new(Some("de-DE"), Some(2));
    let clip = engine.synthesize("Guten Tag", &voice).await.unwrap();
    assert_length(&clip, 1.2, "HTTP TTS audio");
    assert!(tone_fraction(&clip, 1000.0) > 0.97);
    assert_eq!(
        received.lock().unwrap()[0],
        serde_json::json!({"text": "Guten Tag", "language": "de-DE", "style": 2, "voice": "de+m3", "ssml": false})
    );
    match engine.synthesize("fail", &voice).await {
        Err(TtsError::Failed(message)) => assert!(message.contains("503"), "{message}"),
        other => panic!("{other:?}"),
    }
    let unset =
        HttpTts::new(String::new(), Duration::from_secs(5), Duration::from_secs(60), outdial::media::tts::no_fetch());
    assert!(matches!(unset.synthesize("hi", &voice).await, Err(TtsError::Unavailable(_))));
}

#[test]
fn media_settings_load_with_their_defaults() {
    let settings = outdial::config::Settings::load(None).unwrap();
    assert_eq!(settings.media.tts_engine, outdial::config::TtsEngineKind::EspeakNg);
    assert_eq!(settings.media.audio_cache_bytes, 64 << 20);
    assert_eq!(settings.media.tts_timeout_ms, 10_000);
}
