//! The `outdial` command line as a newcomer uses it: the real binary over the test's database.

mod common;

use common::*;
use serde_json::Value;
use sqlx::PgPool;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn database_url(pool: &PgPool) -> String {
    let mut url = url::Url::parse(&std::env::var("DATABASE_URL").expect("DATABASE_URL")).unwrap();
    url.set_path(pool.connect_options().get_database().unwrap());
    url.to_string()
}

/// A fresh directory to run the CLI in (key files land there).
fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("outdial-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn outdial(pool: Option<&PgPool>, cwd: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outdial"));
    command.args(args).current_dir(cwd).env("RUST_LOG", "warn").env_remove("OUTDIAL_DEMO_EVENT_URL");
    if let Some(pool) = pool {
        command.env("DATABASE_URL", database_url(pool));
    }
    command.output().expect("outdial runs")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "exit {:?}; stderr: {}", output.status, String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// `export NAME='value'` lines as (name, value).
fn exports(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|l| {
            let (name, value) = l.strip_prefix("export ").and_then(|l| l.split_once('=')).unwrap_or_else(|| panic!("not an export line: {l}"));
            (name.to_string(), value.trim_matches('\'').to_string())
        })
        .collect()
}

#[sqlx::test]
async fn jwt_refuses_a_ttl_the_server_would_refuse(pool: PgPool) {
    let app = spawn_app(pool).await;
    let dir = scratch_dir();
    std::fs::write(dir.join("app.key"), PRIVATE_KEY).unwrap();
    let app_id = app.app_id.to_string();
    let mint = |ttl: &str| outdial(None, &dir, &["jwt", "--application-id", &app_id, "--private-key", "app.key", "--ttl", ttl]);

    let refused = mint("90000");
    assert!(!refused.status.success(), "a 25 h token is not minted");
    assert!(refused.stdout.is_empty());
    let reason = String::from_utf8_lossy(&refused.stderr);
    assert!(reason.contains("--ttl 90000") && reason.contains("86400"), "says why: {reason}");
    assert!(!mint("0").status.success());

    // The longest the server takes is minted, and the server takes it.
    let token = stdout(&mint("86400"));
    let response = app.client.get(app.url("/v1/calls")).bearer_auth(token.trim()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[sqlx::test]
async fn demo_creates_its_account_once_per_database_whatever_the_key_file(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let dir = scratch_dir();
    let first = stdout(&outdial(Some(&pool), &dir, &["demo"]));
    assert!(first.contains("created now"), "{first}");
    let first_key = dir.join(".outdial/demo-private.key");
    assert!(first_key.exists());
    assert!(first.contains("OUTDIAL__WEBHOOKS__ALLOW_PRIVATE_ADDRESSES=true outdial serve"), "says how to let its loopback events out: {first}");
    assert!(first.contains("http://127.0.0.1:8000/events") && first.contains("scripts/demo-receiver.py"), "{first}");

    // Another --key-file: the same demo, and where its key is.
    let second = stdout(&outdial(Some(&pool), &dir, &["demo", "--key-file", "other/key.pem"]));
    assert!(second.contains("already set up in this database"), "{second}");
    assert!(second.contains(first_key.to_str().unwrap()), "names the first run's key file: {second}");
    assert!(!dir.join("other/key.pem").exists(), "no second key written");
    let demos: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts WHERE name = 'demo'").fetch_one(&pool).await.unwrap();
    assert_eq!(demos, 1, "one demo account");
    let apps: i64 = sqlx::query_scalar("SELECT count(*) FROM applications a JOIN accounts c ON c.id = a.account_id WHERE c.name = 'demo'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(apps, 1, "one demo application");

    // --env: shell variables whose credentials work against the server.
    let vars = exports(&stdout(&outdial(Some(&pool), &dir, &["demo", "--env"])));
    let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["API_KEY", "API_SECRET", "APPLICATION_ID", "PRIVATE_KEY", "JWT"]);
    let var = |name: &str| vars.iter().find(|(n, _)| n == name).unwrap().1.clone();
    let calls = app.client.get(app.url("/v1/calls")).bearer_auth(var("JWT")).send().await.unwrap();
    assert_eq!(calls.status(), 200);
    let balance = app.client.get(app.url("/account/get-balance")).basic_auth(var("API_KEY"), Some(var("API_SECRET"))).send().await.unwrap();
    assert_eq!(balance.status(), 200);

    // The first run's files gone: no second account, and the error says what exists and what to do.
    std::fs::remove_file(&first_key).unwrap();
    let refused = outdial(Some(&pool), &dir, &["demo"]);
    assert!(!refused.status.success());
    let reason = String::from_utf8_lossy(&refused.stderr);
    assert!(reason.contains(&var("API_KEY")) && reason.contains("outdial app create"), "{reason}");
    let demos: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts WHERE name = 'demo'").fetch_one(&pool).await.unwrap();
    assert_eq!(demos, 1);
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[sqlx::test]
async fn app_create_requires_a_key_and_prints_absolute_links(pool: PgPool) {
    let dir = scratch_dir();
    let account: Value = serde_json::from_str(&stdout(&outdial(Some(&pool), &dir, &["account", "create", "--name", "n"]))).unwrap();
    let api_key = account["api_key"].as_str().unwrap();

    let keyless = outdial(Some(&pool), &dir, &["app", "create", "--api-key", api_key, "--name", "a"]);
    assert_eq!(keyless.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&keyless.stderr).contains("--public-key-file"));

    let app: Value = serde_json::from_str(&stdout(&outdial(Some(&pool), &dir, &["app", "create", "--api-key", api_key, "--name", "a", "--private-key-out", "a.key"]))).unwrap();
    let href = app["_links"]["self"]["href"].as_str().unwrap();
    assert_eq!(href, format!("http://127.0.0.1:8080/v2/applications/{}", app["id"].as_str().unwrap()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_shows_what_a_newcomer_must_type() {
    let dir = scratch_dir();
    let help = stdout(&outdial(None, &dir, &["rates", "import", "--help"]));
    assert!(help.contains("\nprefix,country,network,price_per_minute,initial_increment_s,subsequent_increment_s,connection_fee,effective_from,inbound_price_per_minute\n"), "{help}");
    let help = stdout(&outdial(None, &dir, &["app", "create", "--help"]));
    assert!(help.contains("<--public-key-file <PUBLIC_KEY_FILE>|--private-key-out <PRIVATE_KEY_OUT>>"), "the key is required: {help}");
    assert!(help.contains("inbound") && help.contains("`ncco` or `answer_url`"), "{help}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[sqlx::test]
async fn trunk_commands_manage_platform_and_account_trunks(pool: PgPool) {
    let dir = scratch_dir();
    let run = |args: &[&str], key: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_outdial"));
        command.args(args).current_dir(&dir).env("RUST_LOG", "warn").env("DATABASE_URL", database_url(&pool)).env_remove("OUTDIAL_TRUNK_PASSWORD");
        match key {
            Some(k) => command.env("OUTDIAL__SIP__CREDENTIALS_KEY", k),
            None => command.env_remove("OUTDIAL__SIP__CREDENTIALS_KEY"),
        };
        command.output().expect("outdial runs")
    };
    let key = "ab".repeat(32);
    let created: Value = serde_json::from_str(&stdout(&run(
        &["trunk", "create", "--name", "carrier", "--host", "sip.carrier.example", "--transport", "tcp", "--username", "op", "--password", "s3cr3t-pw",
          "--prefix", "44", "--prefix", "+1", "--priority", "5", "--cps", "20"],
        Some(&key),
    )))
    .unwrap();
    assert_eq!((created["owner"].as_str(), created["has_password"].as_bool(), created["port"].as_i64()), (Some("platform"), Some(true), Some(5060)));
    assert_eq!(created["prefixes"], serde_json::json!(["44", "1"]));
    assert!(!created.to_string().contains("s3cr3t"));

    // Without the key a password is refused, saying what to set; bad flags are each named.
    let refused = run(&["trunk", "create", "--name", "x", "--host", "h.example", "--username", "u", "--password", "p"], None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("set sip.credentials_key (OUTDIAL__SIP__CREDENTIALS_KEY) to store trunk passwords"));
    let bad = run(&["trunk", "create", "--name", "x", "--host", "h.example:5060", "--port", "0", "--prefix", "4a", "--cps", "-1"], None);
    assert!(!bad.status.success());
    let reasons = String::from_utf8_lossy(&bad.stderr);
    for flag in ["--host:", "--port:", "--prefix [0]:", "--cps:"] {
        assert!(reasons.contains(flag), "{flag} in {reasons}");
    }
    let duplicate = run(&["trunk", "create", "--name", "carrier", "--host", "h.example"], None);
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));

    // An account's own trunk, under the same name.
    let account: Value = serde_json::from_str(&stdout(&run(&["account", "create", "--name", "n"], None))).unwrap();
    let api_key = account["api_key"].as_str().unwrap();
    let own: Value = serde_json::from_str(&stdout(&run(&["trunk", "create", "--name", "carrier", "--host", "pbx.example", "--api-key", api_key], None))).unwrap();
    assert_eq!(own["owner"], "account");

    let updated: Value = serde_json::from_str(&stdout(&run(&["trunk", "update", "carrier", "--enabled", "false", "--port", "5070", "--clear-password"], None))).unwrap();
    assert_eq!((updated["enabled"].as_bool(), updated["port"].as_i64(), updated["has_password"].as_bool()), (Some(false), Some(5070), Some(false)));
    let platform: Value = serde_json::from_str(&stdout(&run(&["trunk", "list"], None))).unwrap();
    assert_eq!(platform.as_array().unwrap().len(), 1);
    assert_eq!(platform[0]["host"], "sip.carrier.example");
    let mine: Value = serde_json::from_str(&stdout(&run(&["trunk", "list", "--api-key", api_key], None))).unwrap();
    assert_eq!(mine[0]["host"], "pbx.example");

    stdout(&run(&["trunk", "delete", own["id"].as_str().unwrap(), "--api-key", api_key], None));
    stdout(&run(&["trunk", "delete", "carrier"], None));
    assert!(!run(&["trunk", "delete", "carrier"], None).status.success());
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM trunks").fetch_one(&pool).await.unwrap();
    assert_eq!(left, 0);
    let _ = std::fs::remove_dir_all(&dir);
}
