//! The README's own examples, so it cannot drift from what Outdial does: every ```bash block,
//! in order, in one shell, against the real `outdial` binary and a running `outdial serve`
//! (started by the README's own line for it); the command-line synopsis against `--help`; the
//! rate deck example through `outdial rates import`.

use sqlx::PgPool;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const README: &str = include_str!("../README.md");

/// Commands that run until stopped: started in the background, then waited for.
const LONG_RUNNING: [&str; 2] = ["outdial serve", "python3 scripts/demo-receiver.py"];
/// Commands not run, and why: `scripts/run.sh` serves on 8080, which a test cannot own, and
/// builds a release binary; `scripts/test.sh` runs this test.
const NOT_RUN: [&str; 2] = ["bash scripts/run.sh", "bash scripts/test.sh"];

/// The fenced blocks of `info` (e.g. "bash"; "" for unlabelled ones), in order.
fn blocks(info: &str) -> Vec<String> {
    let mut found = Vec::new();
    // Inside a block: whether it is one of `info`, and its text so far.
    let mut open: Option<(bool, String)> = None;
    for line in README.lines() {
        match (open.take(), line.strip_prefix("```")) {
            (None, Some(tag)) => open = Some((tag.trim() == info, String::new())),
            (Some((wanted, text)), Some(_)) => {
                if wanted {
                    found.push(text);
                }
            }
            (Some((wanted, mut text)), None) => {
                text.push_str(line);
                text.push('\n');
                open = Some((wanted, text));
            }
            (None, None) => {}
        }
    }
    found
}

/// The command of a line: without leading `NAME=value` assignments.
fn command_of(line: &str) -> &str {
    let mut rest = line.trim_start();
    while let Some((word, after)) = rest.split_once(' ') {
        if word.contains('=') && !word.starts_with('-') && !word.contains('"') && !word.contains('\'') {
            rest = after.trim_start();
        } else {
            break;
        }
    }
    rest
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn database_url(pool: &PgPool) -> String {
    let mut url = url::Url::parse(&std::env::var("DATABASE_URL").expect("DATABASE_URL")).unwrap();
    url.set_path(pool.connect_options().get_database().unwrap());
    url.to_string()
}

/// The shell script the ```bash blocks make: each line as written, except that long-running
/// commands go to the background (their log in `NAME.log`) and are waited for, and the
/// commands of NOT_RUN are left out. Returns it with the commands seen, each once.
fn script(server_port: u16, receiver_port: u16) -> (String, BTreeSet<String>) {
    let mut out = String::from(
        "set -euo pipefail\n\
         # The server stops first (SIGTERM: it drains its legs, their events still reach the\n\
         # receiver), then the rest.\n\
         trap 'if [ -n \"${server_pid:-}\" ]; then kill $server_pid 2>/dev/null; wait $server_pid 2>/dev/null; fi; kill $(jobs -p) 2>/dev/null || true' EXIT\n\
         # An HTTP error fails the example, as it would the reader.\n\
         curl() { command curl --fail-with-body --silent --show-error \"$@\"; }\n\
         set -x\n",
    );
    let mut seen = BTreeSet::new();
    for (i, block) in blocks("bash").iter().enumerate() {
        out.push_str(&format!("\n# ---- README bash block {i}\n"));
        let block = block.replace("127.0.0.1:8080", &format!("127.0.0.1:{server_port}")).replace("127.0.0.1:8000", &format!("127.0.0.1:{receiver_port}"));
        for line in block.lines() {
            let command = command_of(line);
            if let Some(skipped) = NOT_RUN.iter().find(|c| command.starts_with(**c)) {
                seen.insert(skipped.to_string());
                out.push_str(&format!(": not run: {skipped}\n"));
            } else if let Some((name, long)) = LONG_RUNNING.iter().enumerate().find(|(_, c)| command.starts_with(**c)) {
                seen.insert(long.to_string());
                let without_comment = line.split(" #").next().unwrap().trim_end();
                out.push_str(&format!("{without_comment} > long-running-{name}.log 2>&1 &\n"));
                if long.starts_with("outdial serve") {
                    out.push_str("server_pid=$!\n");
                }
                let ready = if long.starts_with("outdial serve") {
                    format!("command curl -sf http://127.0.0.1:{server_port}/health")
                } else {
                    format!("command curl -sf http://127.0.0.1:{receiver_port}/ready")
                };
                out.push_str(&format!(
                    "for _ in $(seq 1 300); do {ready} >/dev/null 2>&1 && break; sleep 0.1; done; {ready} >/dev/null\n"
                ));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    (out, seen)
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("outdial-readme-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    // The examples run from the repository's directory: its scripts are where they say.
    std::os::unix::fs::symlink(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts"), dir.join("scripts")).unwrap();
    dir
}

#[sqlx::test]
async fn the_readme_bash_examples_run_as_written(pool: PgPool) {
    let (server_port, receiver_port) = (free_port(), free_port());
    let (script, seen) = script(server_port, receiver_port);
    for command in LONG_RUNNING.iter().chain(NOT_RUN.iter()) {
        assert!(seen.contains(*command), "the README no longer shows `{command}`: update LONG_RUNNING / NOT_RUN");
    }
    let dir = scratch_dir();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_outdial")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let database_url = database_url(&pool);
    let run = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(&dir)
            .env("PATH", path)
            .env("DATABASE_URL", database_url)
            .env("OUTDIAL__HTTP__PORT", server_port.to_string())
            .env("OUTDIAL_DEMO_EVENT_URL", format!("http://127.0.0.1:{receiver_port}/events"))
            .env("RUST_LOG", "info,sqlx=warn")
            .env_remove("OUTDIAL_CONFIG")
            .output()
            .map(|output| (output, dir))
    })
    .await
    .unwrap()
    .expect("bash runs");
    let (output, dir) = run;
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let ansi = regex::Regex::new("\x1b\\[[0-9;]*m").unwrap();
    let server_log = ansi.replace_all(&std::fs::read_to_string(dir.join("long-running-0.log")).unwrap_or_default(), "").into_owned();
    let events = std::fs::read_to_string(dir.join("long-running-1.log")).unwrap_or_default();
    let tail = |s: &str| s.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(
        output.status.success(),
        "a README example failed.\n--- trace (last lines)\n{}\n--- stdout\n{}\n--- server log\n{}",
        tail(&stderr),
        tail(&stdout),
        tail(&server_log)
    );

    // What the step-by-step section says happens does.
    assert!(stdout.contains("\"status\":\"busy\""), "GET /v1/calls?status=busy listed the busy call: {stdout}");
    let statuses: Vec<&str> = events.lines().filter_map(|l| l.split("\"status\":\"").nth(1)).filter_map(|s| s.split('"').next()).collect();
    for status in ["started", "ringing", "answered", "busy", "completed"] {
        assert!(statuses.contains(&status), "the demo receiver printed no {status} event:\n{events}");
    }
    assert!(server_log.contains(&format!("port={server_port}")), "the startup log names the port plainly:\n{}", tail(&server_log));
    assert!(!server_log.contains("webhook refused") && !server_log.contains("webhook delivery failed"), "{}", tail(&server_log));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each `outdial …` line of the command-line synopsis: every option it shows exists, and it
/// shows as optional (in `[…]`) exactly the options `--help` does not require.
#[test]
fn the_command_line_synopsis_matches_the_help() {
    let synopsis = blocks("").into_iter().find(|b| b.starts_with("outdial serve")).expect("the README's command-line synopsis");
    // Continuation lines (indented) belong to the command above them.
    let mut commands: Vec<String> = Vec::new();
    for line in synopsis.lines() {
        let line = line.split(" #").next().unwrap();
        if line.starts_with("outdial ") {
            commands.push(line.to_string());
        } else if let Some(last) = commands.last_mut() {
            last.push(' ');
            last.push_str(line.trim());
        }
    }
    assert!(commands.len() >= 10, "{commands:?}");
    let flag = regex::Regex::new(r"--[a-z][a-z0-9-]*").unwrap();
    for command in &commands {
        let words: Vec<&str> = command.split_whitespace().skip(1).take_while(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !w.starts_with('-')).collect();
        let output = Command::new(env!("CARGO_BIN_EXE_outdial")).args(&words).arg("--help").output().unwrap();
        assert!(output.status.success(), "outdial {} --help", words.join(" "));
        let help = String::from_utf8_lossy(&output.stdout).to_string();
        let usage = help.lines().find(|l| l.starts_with("Usage:")).unwrap().to_string();
        let required: BTreeSet<&str> = flag.find_iter(&usage).map(|m| m.as_str()).collect();
        // Options inside [...] in the README are optional there.
        let mut optional = BTreeSet::new();
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in command.char_indices() {
            match c {
                '[' => {
                    if depth == 0 {
                        start = i;
                    }
                    depth += 1;
                }
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        optional.extend(flag.find_iter(&command[start..i]).map(|m| m.as_str()));
                    }
                }
                _ => {}
            }
        }
        for shown in flag.find_iter(command).map(|m| m.as_str()) {
            assert!(help.contains(shown), "the README shows `{shown}` for `outdial {}`, which has no such option:\n{help}", words.join(" "));
            assert_eq!(
                optional.contains(shown),
                !required.contains(shown),
                "`{shown}` of `outdial {}`: the README shows it as {}, --help as {} ({usage})",
                words.join(" "),
                if optional.contains(shown) { "optional" } else { "required" },
                if required.contains(shown) { "required" } else { "optional" }
            );
        }
        for needed in &required {
            assert!(command.contains(needed), "`outdial {}` requires {needed}; the README's synopsis leaves it out", words.join(" "));
        }
    }
}

/// The rate deck the Billing section shows is one `outdial rates import` takes.
#[sqlx::test]
async fn the_readme_rate_deck_imports(pool: PgPool) {
    let deck = blocks("").into_iter().find(|b| b.starts_with("prefix,")).expect("the README's rate deck example");
    let dir = scratch_dir();
    std::fs::write(dir.join("deck.csv"), &deck).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_outdial"))
        .args(["rates", "import", "deck.csv"])
        .current_dir(&dir)
        .env("DATABASE_URL", database_url(&pool))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let imported: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(imported["imported"], deck.lines().count() - 1);
    let _ = std::fs::remove_dir_all(&dir);
}
