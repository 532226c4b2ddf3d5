//! Outbound requests to customers' URLs: private addresses refused on every hop and however
//! they are written or resolved, unless configuration allows them; bodies read under a cap.

mod common;

use common::receiver::Receiver;
use common::*;
use outdial::config::WebhookSettings;
use outdial::webhooks::{BodyLimit, Outbound, WebhookClient, WebhookError};
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn webhook_settings(allow_private: bool, allowed: &[&str]) -> WebhookSettings {
    let mut settings = test_settings(&Options::default()).webhooks;
    settings.allow_private_addresses = allow_private;
    settings.allowed_networks = allowed.iter().map(|n| n.parse().unwrap()).collect();
    settings
}

async fn get(client: &WebhookClient, url: &str, body_limit: BodyLimit) -> Result<Vec<u8>, WebhookError> {
    let out = Outbound { url, method: "GET", payload: &json!({}), timeout: Duration::from_secs(2), signer: None, body_limit };
    client.send(out).await.map(|r| r.body).map_err(|(e, _)| e)
}

fn refused_as_private(result: Result<Vec<u8>, WebhookError>, what: &str) {
    match result {
        Err(WebhookError::PrivateAddress(_)) => {}
        other => panic!("{what}: expected a refusal as private, got {other:?}"),
    }
}

/// A name other than `localhost` that this machine's /etc/hosts maps to a loopback address
/// (Debian puts the host name there), else `localhost` itself: either way the refusal must
/// come from resolving it, not from the name.
fn loopback_name() -> String {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    hosts
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let ip: std::net::IpAddr = fields.next()?.parse().ok()?;
            ip.is_loopback().then(|| fields.find(|name| *name != "localhost" && !name.starts_with("ip6-")).map(str::to_string))?
        })
        .next()
        .unwrap_or_else(|| "localhost".into())
}

#[tokio::test]
async fn private_addresses_are_refused_however_written() {
    let client = WebhookClient::new(&webhook_settings(false, &[]));
    let receiver = Receiver::start().await;
    let port = receiver.base.rsplit(':').next().unwrap().to_string();
    for url in [
        receiver.url("/x"),
        format!("http://localhost:{port}/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/x"),
        format!("http://[::127.0.0.1]:{port}/x"),
        format!("http://[64:ff9b::7f00:1]:{port}/x"),
        format!("http://[2002:7f00:1::]:{port}/x"),
        "http://10.1.2.3/x".into(),
        "http://[::1]:80/x".into(),
        "http://169.254.169.254/latest/meta-data".into(),
        "http://198.18.0.1/x".into(),
        "http://240.0.0.1/x".into(),
        "http://224.0.0.1/x".into(),
    ] {
        refused_as_private(get(&client, &url, BodyLimit::Keep(1024)).await, &url);
    }
    assert!(receiver.requests("/x").is_empty());
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused() {
    let client = WebhookClient::new(&webhook_settings(false, &[]));
    let receiver = Receiver::start().await;
    let port = receiver.base.rsplit(':').next().unwrap().to_string();
    let name = loopback_name();
    let url = format!("http://{name}:{port}/x");
    refused_as_private(get(&client, &url, BodyLimit::Keep(1024)).await, &url);
    assert!(receiver.requests("/x").is_empty(), "{name} reached the receiver");
    // The same name is reached when configuration allows loopback.
    let allowed = WebhookClient::new(&webhook_settings(false, &["127.0.0.0/8", "::1/128"]));
    get(&allowed, &url, BodyLimit::Keep(1024)).await.expect("allowed by webhooks.allowed_networks");
    assert_eq!(receiver.requests("/x").len(), 1);
}

#[tokio::test]
async fn a_redirect_to_a_private_address_is_refused() {
    // The customer's receiver is allowed (an internal network a user trusts); where it
    // redirects to is not.
    let client = WebhookClient::new(&webhook_settings(false, &["127.0.0.1/32"]));
    let customer = Receiver::start().await;
    let inside = Receiver::start_on("127.0.0.2").await;
    customer.respond("/ok", 200, "[]");
    customer.redirect("/to-inside", &inside.url("/secret"));
    customer.redirect("/to-metadata", "http://169.254.169.254/latest/meta-data/iam");
    customer.redirect("/to-mapped", &inside.url("/secret").replace("127.0.0.2", "[::ffff:127.0.0.2]"));
    customer.redirect("/to-file", "file:///etc/passwd");

    assert_eq!(get(&client, &customer.url("/ok"), BodyLimit::Keep(1024)).await.unwrap(), b"[]");
    for path in ["/to-inside", "/to-metadata", "/to-mapped"] {
        refused_as_private(get(&client, &customer.url(path), BodyLimit::Keep(1024)).await, path);
        assert_eq!(customer.requests(path).len(), 1, "the first hop was requested");
    }
    let to_file = get(&client, &customer.url("/to-file"), BodyLimit::Keep(1024)).await;
    assert!(matches!(to_file, Err(WebhookError::BadUrl(_) | WebhookError::Status(302))), "{to_file:?}");
    assert!(inside.requests("/secret").is_empty(), "a redirect reached a refused address");
}

#[tokio::test]
async fn redirects_are_followed_where_configuration_allows() {
    let customer = Receiver::start().await;
    let inside = Receiver::start_on("127.0.0.2").await;
    inside.respond("/secret", 200, "inside");
    customer.redirect("/to-inside", &inside.url("/secret"));
    for client in [
        WebhookClient::new(&webhook_settings(true, &[])),
        WebhookClient::new(&webhook_settings(false, &["127.0.0.1/32", "127.0.0.2/32"])),
    ] {
        assert_eq!(get(&client, &customer.url("/to-inside"), BodyLimit::Keep(1024)).await.unwrap(), b"inside");
    }
    assert_eq!(inside.requests("/secret").len(), 2);
    // A loop ends after three redirects.
    customer.redirect("/loop", &customer.url("/loop"));
    let looped = get(&WebhookClient::new(&webhook_settings(true, &[])), &customer.url("/loop"), BodyLimit::Keep(1024)).await;
    assert!(matches!(looped, Err(WebhookError::TooManyRedirects)), "{looped:?}");
    assert_eq!(customer.requests("/loop").len(), 4);
}

/// A server that answers every request with `total` bytes in chunks, without Content-Length,
/// so only the reader's own count can stop it.
async fn chunked_server(total: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: audio/wav\r\ntransfer-encoding: chunked\r\n\r\n").await;
                let chunk = vec![b'a'; 64 * 1024];
                let mut sent = 0;
                while sent < total {
                    let head = format!("{:x}\r\n", chunk.len());
                    if socket.write_all(head.as_bytes()).await.is_err() || socket.write_all(&chunk).await.is_err() || socket.write_all(b"\r\n").await.is_err() {
                        return;
                    }
                    sent += chunk.len();
                }
                let _ = socket.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    format!("http://{address}/big")
}

#[tokio::test]
async fn bodies_larger_than_the_cap_are_refused() {
    let client = WebhookClient::new(&webhook_settings(true, &[]));
    let receiver = Receiver::start().await;
    receiver.respond_bytes("/big", 200, &vec![b' '; 300_000]);
    // Declared too long: refused before reading.
    assert!(matches!(get(&client, &receiver.url("/big"), BodyLimit::Keep(100_000)).await, Err(WebhookError::TooLarge(100_000))));
    assert_eq!(get(&client, &receiver.url("/big"), BodyLimit::Keep(300_000)).await.unwrap().len(), 300_000);
    // A reply nobody reads is not an error, however long.
    assert!(get(&client, &receiver.url("/big"), BodyLimit::Discard(100_000)).await.unwrap().is_empty());
    // Streamed without a length (1 GB offered): stopped at the cap.
    let endless = chunked_server(1 << 30).await;
    let started = std::time::Instant::now();
    assert!(matches!(get(&client, &endless, BodyLimit::Keep(1_000_000)).await, Err(WebhookError::TooLarge(1_000_000))));
    assert!(started.elapsed() < Duration::from_secs(2), "read past the cap: {:?}", started.elapsed());
}

#[sqlx::test]
async fn an_audio_file_over_the_cap_is_skipped_with_an_error_event(pool: PgPool) {
    let options = Options {
        roles: vec!["api", "workers", "webhooks"],
        settings: |s| s.webhooks.max_media_bytes = 50_000,
        ..Options::default()
    };
    let app = spawn_app_with(pool, options).await;
    let receiver = Receiver::start().await;
    receiver.respond_bytes("/small.wav", 200, &wav(1)); // 32 kB
    receiver.respond_bytes("/large.wav", 200, &wav(4)); // 128 kB
    let ncco = json!([
        {"action": "stream", "streamUrl": [receiver.url("/large.wav")]},
        {"action": "stream", "streamUrl": [receiver.url("/small.wav")]}
    ]);
    let body = json!({
        "to": [{"type": "phone", "number": "447700900000"}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": ncco,
        "event_url": [receiver.url("/events")],
    });
    let uuid = app.place(&body).await;
    receiver.wait_status("/events", &uuid, "completed").await;
    let error = receiver.requests("/events").into_iter().find(|r| r.body["uuid"] == uuid.as_str() && r.body.get("reason").is_some()).expect("an error event");
    let reason = error.body["reason"].as_str().unwrap();
    assert!(reason.contains("/large.wav") && reason.contains("larger than the 50000 bytes"), "{reason}");
    // The next action still ran: the small file played.
    assert_eq!(receiver.requests("/small.wav").len(), 1);
    app.stop().await;
}

/// https:// receivers are verified: one whose certificate a private CA signed is reached (by IP
/// address and by name) when `webhooks.ca_file` trusts that CA, and refused otherwise, with the
/// reason in the error.
#[tokio::test]
async fn https_receivers_are_verified_against_the_trusted_roots() {
    let ca = common::tls::TestCa::new();
    let receiver = ca.receiver().await;
    receiver.respond("/x", 200, "{\"ok\":true}");
    let mut trusting = webhook_settings(true, &[]);
    trusting.ca_file = outdial::webhooks::tls::ExtraRoots::load(&ca.ca_path()).unwrap();
    let client = WebhookClient::new(&trusting);
    assert!(receiver.base.starts_with("https://127.0.0.1:"));
    assert_eq!(get(&client, &receiver.url("/x"), BodyLimit::Keep(1024)).await.unwrap(), b"{\"ok\":true}");
    let by_name = receiver.url("/x").replace("127.0.0.1", "localhost");
    assert_eq!(get(&client, &by_name, BodyLimit::Keep(1024)).await.unwrap(), b"{\"ok\":true}");
    assert_eq!(receiver.requests("/x").len(), 2);

    let untrusting = WebhookClient::new(&webhook_settings(true, &[]));
    match get(&untrusting, &receiver.url("/x"), BodyLimit::Keep(1024)).await {
        Err(WebhookError::Connect(why)) => assert!(why.contains("UnknownIssuer"), "{why}"),
        other => panic!("expected a refused certificate, got {other:?}"),
    }
    assert_eq!(receiver.requests("/x").len(), 2, "nothing reached the receiver without trust");
}

/// A call whose answer_url and event_url are https:// at a receiver behind a private CA that
/// `webhooks.ca_file` trusts: the NCCO is fetched and every event arrives, over TLS.
#[sqlx::test]
async fn https_answer_and_event_urls_are_reached_over_tls(pool: PgPool) {
    let ca = common::tls::TestCa::new();
    let customer = ca.receiver().await;
    customer.respond("/answer", 200, &json!([{"action": "talk", "text": "Hello over TLS"}]).to_string());
    let mut settings = test_settings(&Options { roles: vec!["api", "workers", "webhooks"], ..Options::default() });
    settings.webhooks.ca_file = outdial::webhooks::tls::ExtraRoots::load(&ca.ca_path()).unwrap();
    let app = spawn_app_with_settings(pool, settings, 1000).await;
    let call = json!({
        "to": [{"type": "phone", "number": "447700900000"}],
        "from": {"type": "phone", "number": "447700900001"},
        "answer_url": [customer.url("/answer")],
        "event_url": [customer.url("/events")],
    });
    let uuid = app.place(&call).await;
    let statuses = customer.wait_status("/events", &uuid, "completed").await;
    assert_eq!(statuses, ["started", "ringing", "answered", "completed"]);
    let answers = customer.requests("/answer");
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].query.get("uuid"), Some(&uuid));
    wait_log(&app, &uuid, "heard talk \"Hello over TLS\"").await;
    app.stop().await;
}
