//! `outdial demo`: a demo account and application, created once per database (the table
//! `demo_setup` remembers them and where their private key was written), and what a newcomer
//! needs to place a first call and watch its events.

use crate::applications::{self, keys, ApplicationSpec};
use crate::auth::mint_application_jwt;
use crate::config::Settings;
use crate::{accounts, db};
use anyhow::Context;
use serde_json::json;
use sqlx::PgPool;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Where the demo application's events go unless told otherwise: `scripts/demo-receiver.py`
/// listens there by default.
pub const DEFAULT_EVENT_URL: &str = "http://127.0.0.1:8000/events";
const ACCOUNT_NAME: &str = "demo";

pub struct Options {
    pub key_file: PathBuf,
    pub event_url: String,
    /// Print only shell `export` lines.
    pub env: bool,
}

/// The demo's credentials, as kept next to its private key (`<key>.json`).
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    api_key: String,
    api_secret: String,
    signature_secret: String,
    application_id: Uuid,
    private_key_file: PathBuf,
}

struct Demo {
    saved: Saved,
    created_now: bool,
    event_url: Option<String>,
    /// The --key-file asked for, when the demo was set up elsewhere before.
    not_used: Option<PathBuf>,
}

pub async fn run(pool: &PgPool, settings: &Settings, options: &Options) -> anyhow::Result<()> {
    db::migrate(pool).await?;
    let asked = std::path::absolute(&options.key_file).with_context(|| format!("{} is not a usable path", options.key_file.display()))?;
    let demo = match setup_of(pool).await? {
        Some((account_id, application_id, key_file)) => reuse(pool, account_id, application_id, Path::new(&key_file), &asked).await?,
        None => match accounts::repo::first_named(pool, ACCOUNT_NAME).await? {
            // Set up by a version that did not record it: adopt it if its files are the ones asked for.
            Some(account) => adopt(pool, &account, &asked).await?,
            None => create(pool, settings, &asked, &options.event_url).await?,
        },
    };
    if options.env {
        print_env(&demo)
    } else {
        print_guide(settings, &demo)
    }
}

async fn setup_of(pool: &PgPool) -> Result<Option<(i64, Uuid, String)>, sqlx::Error> {
    sqlx::query_as("SELECT account_id, application_id, key_file FROM demo_setup").fetch_optional(pool).await
}

fn read_saved(key_file: &Path) -> Option<Saved> {
    let saved: Saved = serde_json::from_str(&std::fs::read_to_string(key_file.with_extension("json")).ok()?).ok()?;
    key_file.exists().then_some(saved)
}

async fn event_url_of(pool: &PgPool, application_id: Uuid) -> Result<Option<String>, sqlx::Error> {
    let url: Option<Option<String>> =
        sqlx::query_scalar("SELECT event_url FROM applications WHERE id = $1").bind(application_id).fetch_optional(pool).await?;
    Ok(url.flatten())
}

async fn reuse(pool: &PgPool, account_id: i64, application_id: Uuid, key_file: &Path, asked: &Path) -> anyhow::Result<Demo> {
    let (api_key,): (String,) = sqlx::query_as("SELECT api_key FROM accounts WHERE id = $1").bind(account_id).fetch_one(pool).await?;
    let saved = read_saved(key_file).filter(|s| s.api_key == api_key && s.application_id == application_id);
    let Some(saved) = saved else {
        anyhow::bail!(
            "the demo account and application were already created in this database (api_key {api_key}, application {application_id}), \
             once per database; their private key and secrets were written to {} and {}, which are gone or changed. \
             Give the account a new application with `outdial app create --api-key {api_key} --name demo --private-key-out FILE`",
            key_file.display(),
            key_file.with_extension("json").display()
        )
    };
    let not_used = (asked != key_file).then(|| asked.to_path_buf());
    Ok(Demo { event_url: event_url_of(pool, application_id).await?, saved, created_now: false, not_used })
}

async fn adopt(pool: &PgPool, account: &accounts::Account, asked: &Path) -> anyhow::Result<Demo> {
    let Some(saved) = read_saved(asked).filter(|s| s.api_key == account.api_key) else {
        anyhow::bail!(
            "a demo account already exists in this database (api_key {}), made by an earlier `outdial demo`, once per database; \
             its private key is where that run wrote it (by default .outdial/demo-private.key, secrets beside it in .json): \
             run `outdial demo --key-file THAT_FILE`",
            account.api_key
        )
    };
    record(pool, account.id, saved.application_id, asked).await?;
    Ok(Demo { event_url: event_url_of(pool, saved.application_id).await?, saved, created_now: false, not_used: None })
}

async fn record(pool: &PgPool, account_id: i64, application_id: Uuid, key_file: &Path) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO demo_setup (account_id, application_id, key_file) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
        .bind(account_id)
        .bind(application_id)
        .bind(key_file.to_string_lossy().as_ref())
        .execute(pool)
        .await?;
    Ok(())
}

async fn create(pool: &PgPool, settings: &Settings, key_file: &Path, event_url: &str) -> anyhow::Result<Demo> {
    anyhow::ensure!(crate::validation::is_http_url(event_url), "--event-url {event_url} is not an http(s) URL");
    let account = accounts::repo::create(pool, ACCOUNT_NAME, settings.limits.default_calls_per_second).await?;
    let pair = keys::generate();
    crate::cli::write_private_key(key_file, &pair.private_pem)?;
    let spec = ApplicationSpec {
        name: "demo".into(),
        event: Some((event_url.to_string(), "POST".to_string())),
        public_key_pem: Some(pair.public_pem.clone()),
        ..Default::default()
    };
    let app = applications::repo::insert(pool, account.account_id, &spec, &pair.public_pem).await?;
    let saved = Saved {
        api_key: account.api_key,
        api_secret: account.api_secret,
        signature_secret: account.signature_secret,
        application_id: app.id,
        private_key_file: key_file.to_path_buf(),
    };
    std::fs::write(key_file.with_extension("json"), serde_json::to_string_pretty(&saved)?)?;
    record(pool, account.account_id, app.id, key_file).await?;
    Ok(Demo { saved, created_now: true, event_url: Some(event_url.to_string()), not_used: None })
}

fn jwt(demo: &Demo) -> anyhow::Result<String> {
    let pem = std::fs::read_to_string(&demo.saved.private_key_file)?;
    Ok(mint_application_jwt(demo.saved.application_id, &pem, 3600)?)
}

/// `eval "$(outdial demo --env)"` sets what the README's examples use.
fn print_env(demo: &Demo) -> anyhow::Result<()> {
    let s = &demo.saved;
    println!("export API_KEY='{}'", s.api_key);
    println!("export API_SECRET='{}'", s.api_secret);
    println!("export APPLICATION_ID='{}'", s.application_id);
    println!("export PRIVATE_KEY='{}'", s.private_key_file.display());
    println!("export JWT='{}'", jwt(demo)?);
    Ok(())
}

/// Whether webhooks to `url` need `webhooks.allow_private_addresses`: a loopback or private
/// address, `localhost`, or a bare name (a container's, say).
fn needs_private_addresses(url: &str) -> bool {
    match url::Url::parse(url).ok().and_then(|u| u.host().map(|h| h.to_owned())) {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost" || name.ends_with(".internal") || !name.contains('.'),
        None => false,
    }
}

fn print_guide(settings: &Settings, demo: &Demo) -> anyhow::Result<()> {
    let s = &demo.saved;
    let jwt = jwt(demo)?;
    let base = crate::startup::public_base_url(settings, settings.http.port);
    let json = s.private_key_file.with_extension("json");
    println!("Demo account and application ({}):", if demo.created_now { "created now" } else { "already set up in this database" });
    println!("  api_key          {}", s.api_key);
    println!("  api_secret       {}", s.api_secret);
    println!("  application_id   {}", s.application_id);
    println!("  private key      {}", s.private_key_file.display());
    println!("  (kept in {})", json.display());
    if let Some(asked) = &demo.not_used {
        println!("  The demo is set up once per database: it was not created again at {}.", asked.display());
    }
    println!();
    println!("The same as shell variables (API_KEY, API_SECRET, APPLICATION_ID, PRIVATE_KEY, JWT):");
    println!("  eval \"$(outdial demo --env)\"");
    println!();
    match &demo.event_url {
        Some(url) => {
            println!("Calls' events are POSTed to {url}; to watch them, run a receiver there:");
            println!("  python3 scripts/demo-receiver.py        # listens at that address, prints each event");
            println!("  (with docker compose the demo-receiver service does: docker compose logs -f demo-receiver)");
            if needs_private_addresses(url) && settings.webhooks.allow_private_addresses {
                println!("That address is on this machine or a private network; webhooks.allow_private_addresses is true");
                println!("in this configuration, so `outdial serve` run with it delivers there.");
            } else if needs_private_addresses(url) {
                println!("That address is on this machine or a private network, and Outdial refuses webhooks to those");
                println!("unless webhooks.allow_private_addresses is true (a refused delivery is logged at warn). Start");
                println!("the server with it allowed (scripts/run.sh and docker-compose.yml do):");
                println!("  OUTDIAL__WEBHOOKS__ALLOW_PRIVATE_ADDRESSES=true outdial serve");
            }
        }
        None => println!("The demo application has no event_url: give calls their own \"event_url\" to receive events."),
    }
    println!();
    println!("Place a call (the JWT below is valid for one hour; mint another with `outdial jwt`):");
    println!(
        "  curl -s -X POST {base}/v1/calls -H 'Authorization: Bearer {jwt}' -H 'Content-Type: application/json' \\\n    -d '{}'",
        json!({"to": [{"type": "phone", "number": "447700900000"}], "from": {"type": "phone", "number": "447700900001"},
               "ncco": [{"action": "talk", "text": "Hello from Outdial"}]})
    );
    println!("Every event and delivery attempt of a call:");
    println!("  curl -s {base}/v1/calls/<uuid>/events -H 'Authorization: Bearer {jwt}'");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::needs_private_addresses;

    #[test]
    fn addresses_on_this_machine_or_a_private_network_need_the_allowance() {
        for url in ["http://127.0.0.1:8000/events", "http://localhost:8000/e", "http://demo-receiver:8000/events", "http://10.1.2.3/e", "http://host.docker.internal:8000/e"] {
            assert!(needs_private_addresses(url), "{url}");
        }
        for url in ["https://example.com/events", "http://8.8.8.8/e"] {
            assert!(!needs_private_addresses(url), "{url}");
        }
    }
}
