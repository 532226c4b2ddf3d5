//! The `outdial` command line: serve, migrate, and the admin commands a developer needs.

use crate::applications::{self, keys, ApplicationSpec};
use crate::auth::mint_application_jwt;
use crate::config::Settings;
use crate::{accounts, billing, db, startup, telemetry};
use clap::{Args, Parser, Subcommand};
use rust_decimal::Decimal;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use uuid::Uuid;

#[derive(Parser)]
#[command(name = "outdial", version, about = "Self-hosted, Vonage-compatible outbound voice platform")]
struct Cli {
    /// A TOML file layered over the built-in defaults (see config/default.toml).
    #[arg(long, global = true, env = "OUTDIAL_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (applies migrations first unless database.migrate_on_start = false).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage accounts.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Manage applications.
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Manage the rate deck (global: one price list for every account).
    Rates {
        #[command(subcommand)]
        command: RatesCommand,
    },
    /// Manage SIP trunks: the platform's (without --api-key) or one account's own.
    Trunk {
        #[command(subcommand)]
        command: TrunkCommand,
    },
    /// Manage the numbers the operator holds on its trunks: an account's, or (without
    /// --api-key) available for any account to buy.
    Number {
        #[command(subcommand)]
        command: NumberCommand,
    },
    /// Call history housekeeping.
    History {
        #[command(subcommand)]
        command: HistoryCommand,
    },
    /// Print an application JWT (RS256), like `vonage jwt` of the Vonage CLI.
    Jwt {
        #[arg(long)]
        application_id: Uuid,
        /// The application's private key (PEM).
        #[arg(long)]
        private_key: PathBuf,
        /// Lifetime in seconds, at most auth.jwt_max_ttl_s (86400, as Vonage): the server refuses longer-lived tokens.
        #[arg(long, default_value_t = 900)]
        ttl: i64,
    },
    /// Create the demo account and application, once per database (later runs print them
    /// again); print their credentials, how to receive their events, and a curl line.
    Demo {
        /// Where the demo application's private key is written (its secrets beside it, in .json).
        #[arg(long, default_value = ".outdial/demo-private.key")]
        key_file: PathBuf,
        /// The demo application's event_url (scripts/demo-receiver.py listens at the same
        /// address, read from the same variable).
        #[arg(long, env = "OUTDIAL_DEMO_EVENT_URL", default_value = crate::demo::DEFAULT_EVENT_URL)]
        event_url: String,
        /// Print only shell `export` lines (API_KEY, API_SECRET, APPLICATION_ID, PRIVATE_KEY,
        /// JWT), for `eval "$(outdial demo --env)"`.
        #[arg(long)]
        env: bool,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account; prints JSON with api_key and api_secret (shown only this once).
    Create {
        #[arg(long)]
        name: String,
        /// Call creations allowed per second (default: limits.default_calls_per_second).
        #[arg(long)]
        calls_per_second: Option<i32>,
        /// Above that rate: reject with 429 (Vonage's behaviour) or queue and dial at the rate.
        #[arg(long, value_parser = ["reject", "queue"], default_value = "reject")]
        over_rate: String,
    },
    /// Change an account's call rate, what happens above it, its credit limit or its right to
    /// import rates through the API; prints the account.
    Update {
        #[arg(long)]
        api_key: String,
        #[arg(long)]
        calls_per_second: Option<i32>,
        #[arg(long, value_parser = ["reject", "queue"])]
        over_rate: Option<String>,
        /// How far below zero calls may take the balance (EUR); 0 makes the account prepaid.
        #[arg(long)]
        credit_limit: Option<Decimal>,
        /// May replace the global rate deck with POST /v1/rates.
        #[arg(long)]
        rates_admin: Option<bool>,
    },
    /// Replace an account's api_secret and/or signature secret (both when neither flag is given);
    /// prints the new ones (shown only this once). The old ones stop working on every instance.
    RotateSecrets {
        #[arg(long)]
        api_key: String,
        #[arg(long)]
        api_secret: bool,
        #[arg(long)]
        signature_secret: bool,
    },
    /// Add money to an account's balance (a ledger entry); prints the new balance. A negative
    /// amount with --kind adjustment corrects a mistake.
    Credit {
        #[arg(long)]
        api_key: String,
        /// EUR, e.g. 25 or 12.50.
        #[arg(long, allow_hyphen_values = true)]
        amount: Decimal,
        #[arg(long, value_parser = ["credit", "adjustment"], default_value = "credit")]
        kind: String,
        /// Why, kept on the ledger entry.
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Subcommand)]
enum HistoryCommand {
    /// Seal every finished hour into the report rollup now (the server does it every minute).
    Seal,
    /// Move legs created before a time out of the database, in small batches (live traffic is not
    /// held up): optionally each account's CDR of them to a CSV file first. Only sealed hours are
    /// archived; reports over them keep answering from the rollup, the call list stops showing them.
    Archive {
        /// ISO-8601 date or date-time; rounded down to the hour.
        #[arg(long)]
        before: String,
        /// Write calls-account<ID>-before-<TIME>.csv here for every account first.
        #[arg(long)]
        export_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RatesCommand {
    /// Import a CSV deck. A bad file is refused whole, with every bad row listed; otherwise all
    /// its rows are stored in one transaction. Its header is exactly:
    ///
    /// prefix,country,network,price_per_minute,initial_increment_s,subsequent_increment_s,connection_fee,effective_from,inbound_price_per_minute
    ///
    /// inbound_price_per_minute prices calls to your numbers under the prefix (empty: free); a file
    /// without that last column still imports, and merging it keeps the inbound prices stored.
    #[command(verbatim_doc_comment)]
    Import {
        file: PathBuf,
        /// The file becomes the whole deck (default: its rows are added, replacing rows with the
        /// same prefix and effective_from).
        #[arg(long)]
        replace: bool,
    },
    /// Print the whole deck as CSV (the format import reads).
    Export,
}

#[derive(Subcommand)]
enum TrunkCommand {
    /// Create a trunk; prints it as JSON (never its password: `has_password`).
    Create(TrunkCreate),
    /// Print the platform's trunks, or with --api-key the account's own, as JSON.
    List {
        /// The owning account's api_key (default: platform trunks).
        #[arg(long)]
        api_key: Option<String>,
    },
    /// Change a trunk's fields (those given); prints it as JSON.
    Update(TrunkUpdate),
    /// Delete a trunk.
    Delete {
        /// The trunk's name or id.
        name_or_id: String,
        /// The owning account's api_key (default: a platform trunk).
        #[arg(long)]
        api_key: Option<String>,
    },
}

/// The fields create and update share.
#[derive(Args)]
struct TrunkFields {
    /// The trunk's SIP port.
    #[arg(long, allow_hyphen_values = true)]
    port: Option<i64>,
    #[arg(long, value_parser = ["udp", "tcp"])]
    transport: Option<String>,
    /// Digest username for the trunk's 401/407 challenges.
    #[arg(long)]
    username: Option<String>,
    /// Digest password (needs --username); stored sealed with sip.credentials_key. Prefer the
    /// environment variable: a command line is visible to other users of the machine.
    #[arg(long, env = "OUTDIAL_TRUNK_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Host part of the From URI (default: the trunk's host).
    #[arg(long)]
    from_domain: Option<String>,
    /// A number prefix the trunk serves, digits (repeat for several; none: every number).
    /// The longest matching prefix wins.
    #[arg(long = "prefix")]
    prefixes: Vec<String>,
    /// Lower is tried first (default 10); ties go by name.
    #[arg(long, allow_hyphen_values = true)]
    priority: Option<i64>,
    /// Calls per second the trunk takes (default: no limit).
    #[arg(long, allow_hyphen_values = true)]
    cps: Option<i64>,
    /// Concurrent calls the trunk takes (default: no limit).
    #[arg(long, allow_hyphen_values = true)]
    max_channels: Option<i64>,
    /// The owning account's api_key (default: a platform trunk, for every account).
    #[arg(long)]
    api_key: Option<String>,
}

#[derive(Args)]
struct TrunkCreate {
    #[arg(long)]
    name: String,
    /// Host name or IP address of the trunk (no port: see --port).
    #[arg(long)]
    host: String,
    #[command(flatten)]
    fields: TrunkFields,
    /// Create it disabled (routing skips it).
    #[arg(long)]
    disabled: bool,
}

#[derive(Args)]
struct TrunkUpdate {
    /// The trunk's name or id.
    name_or_id: String,
    /// A new name.
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    host: Option<String>,
    #[command(flatten)]
    fields: TrunkFields,
    #[arg(long)]
    enabled: Option<bool>,
    /// Remove the digest password.
    #[arg(long, conflicts_with = "password")]
    clear_password: bool,
    /// Serve every number (remove all prefixes).
    #[arg(long, conflicts_with = "prefixes")]
    clear_prefixes: bool,
}

#[derive(Subcommand)]
enum NumberCommand {
    /// Add a number held on a trunk; prints it as JSON. Without --api-key it is available: an
    /// account may buy it (POST /number/buy).
    Add(NumberAdd),
    /// Print every number, or with --api-key the account's, as JSON.
    List {
        /// The owning account's api_key (default: every number, owned or available).
        #[arg(long)]
        api_key: Option<String>,
    },
    /// Remove a number altogether: the operator no longer holds it (its account loses it).
    Remove {
        #[arg(long)]
        msisdn: String,
    },
}

#[derive(Args)]
struct NumberAdd {
    /// E.164, with or without the +.
    #[arg(long)]
    msisdn: String,
    /// The trunk its calls arrive on, by name or id: with --api-key the account's own trunk of
    /// that name if there is one, else a platform trunk.
    /// Without it no trunk holds the number: the sandbox rings it (POST /v1/sandbox/inbound),
    /// so inbound flows can be built on the simulated network with no carrier.
    #[arg(long)]
    trunk: Option<String>,
    /// The owning account's api_key (default: no owner: available to buy).
    #[arg(long)]
    api_key: Option<String>,
    /// ISO 3166 alpha-2 (default: the country of the longest rate deck prefix the number starts with).
    #[arg(long)]
    country: Option<String>,
    /// Vonage's number type.
    #[arg(long = "type", value_parser = crate::numbers::TYPES, default_value = "landline")]
    kind: String,
    /// Link it to this application of the account: calls to the number run it.
    #[arg(long, requires = "api_key")]
    app_id: Option<Uuid>,
}

#[derive(Subcommand)]
enum AppCommand {
    /// Create an application; prints JSON with its id.
    Create(AppCreate),
}

/// The key is required: give the application's public key, or have a pair generated.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("key").required(true).args(["public_key_file", "private_key_out"])))]
struct AppCreate {
    /// The owning account's api_key.
    #[arg(long)]
    api_key: String,
    #[arg(long)]
    name: String,
    /// The application's answer_url (voice.webhooks.answer_url): fetched for inbound calls to
    /// its numbers. Outbound calls (POST /v1/calls) give their own `ncco` or `answer_url`, as at Vonage.
    #[arg(long)]
    answer_url: Option<String>,
    /// Where the events of this application's calls go, unless a call gives its own event_url.
    #[arg(long)]
    event_url: Option<String>,
    /// Use this public key (PEM) instead of generating a pair.
    #[arg(long)]
    public_key_file: Option<PathBuf>,
    /// Generate a key pair and write the private key here (PKCS#8 PEM).
    #[arg(long)]
    private_key_out: Option<PathBuf>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("outdial: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.log);
    // Before any TLS: this build's one rustls provider, aws-lc-rs, as the process default.
    crate::webhooks::tls::install_default_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outdial: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    if let Command::Jwt { application_id, private_key, ttl } = command {
        let max = settings.auth.jwt_max_ttl_s;
        anyhow::ensure!(ttl > 0, "--ttl must be at least 1 second");
        anyhow::ensure!(
            ttl <= max,
            "--ttl {ttl} is longer than the server accepts: auth.jwt_max_ttl_s is {max} s (Vonage's limit is 24 h), so every request with that token would get 401"
        );
        let pem = std::fs::read_to_string(&private_key)?;
        println!("{}", mint_application_jwt(application_id, &pem, ttl)?);
        return Ok(());
    }
    let pool = db::connect(&settings.database).await.map_err(|e| {
        anyhow::anyhow!("cannot reach PostgreSQL at database.url / DATABASE_URL: {e}")
    })?;
    match command {
        Command::Serve => {
            if settings.database.migrate_on_start {
                db::migrate(&pool).await?;
            }
            let instance = startup::Instance::start(settings.clone(), pool).await?;
            match instance.port {
                Some(port) => tracing::info!(host = %settings.http.host, port, roles = ?settings.engine.roles, "outdial running"),
                None => tracing::info!(roles = ?settings.engine.roles, "outdial running (no api role: no HTTP port)"),
            }
            shutdown_signal().await;
            tracing::info!("shutting down: draining live legs");
            instance.stop().await;
        }
        Command::Migrate => {
            db::migrate(&pool).await?;
            println!("{}", json!({"migrated": true}));
        }
        Command::Account { command: AccountCommand::Create { name, calls_per_second, over_rate } } => {
            let cps = calls_per_second.unwrap_or(settings.limits.default_calls_per_second);
            anyhow::ensure!(cps > 0, "--calls-per-second must be at least 1");
            let created = accounts::repo::create_with(&pool, &name, cps, &over_rate).await?;
            println!("{}", serde_json::to_string_pretty(&created)?);
        }
        Command::Account { command: AccountCommand::Update { api_key, calls_per_second, over_rate, credit_limit, rates_admin } } => {
            anyhow::ensure!(calls_per_second.is_none_or(|c| c > 0), "--calls-per-second must be at least 1");
            anyhow::ensure!(credit_limit.is_none_or(|c| !c.is_sign_negative()), "--credit-limit must not be negative");
            let changes = accounts::repo::AccountChanges { calls_per_second, over_rate: over_rate.as_deref(), credit_limit, rates_admin };
            let account = accounts::repo::update_limits(&pool, &api_key, &changes)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no account has api_key {api_key}"))?;
            let shown = json!({"account_id": account.id, "name": account.name, "api_key": account.api_key,
                               "calls_per_second": account.calls_per_second, "over_rate": account.over_rate,
                               "balance": account.balance.normalize().to_string(), "credit_limit": account.credit_limit.normalize().to_string(),
                               "rates_admin": account.rates_admin});
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        Command::Account { command: AccountCommand::RotateSecrets { api_key, api_secret, signature_secret } } => {
            let both = !api_secret && !signature_secret;
            let secrets = accounts::repo::replace_secrets(&pool, &api_key, api_secret || both, signature_secret || both)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no account has api_key {api_key}"))?;
            println!("{}", serde_json::to_string_pretty(&secrets)?);
        }
        Command::Account { command: AccountCommand::Credit { api_key, amount, kind, note } } => {
            anyhow::ensure!(kind == "adjustment" || amount > Decimal::ZERO, "--amount must be positive (use --kind adjustment to take money off)");
            anyhow::ensure!(amount.scale() <= 8, "--amount has more than 8 decimal places");
            let account = accounts::repo::find_by_api_key(&pool, &api_key)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no account has api_key {api_key}"))?;
            let balance = billing::ledger::add_entry(&pool, account.id, amount, &kind, note.as_deref()).await?;
            let shown = json!({"account_id": account.id, "api_key": account.api_key, "kind": kind, "amount": amount.normalize().to_string(),
                               "balance": balance.normalize().to_string(), "currency": billing::CURRENCY});
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        Command::Rates { command: RatesCommand::Import { file, replace } } => {
            let bytes = std::fs::read(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let rates = match billing::deck::parse(&bytes) {
                Ok(rates) => rates,
                Err(rows) => {
                    for row in &rows {
                        eprintln!("{}:{}: {}{}", file.display(), row.line, row.column.as_deref().map(|c| format!("{c}: ")).unwrap_or_default(), row.reason);
                    }
                    anyhow::bail!("{} problem(s) in {}; nothing was imported", rows.len(), file.display());
                }
            };
            let mode = if replace { billing::deck::ImportMode::Replace } else { billing::deck::ImportMode::Merge };
            let imported = billing::deck::import(&pool, &rates, mode).await?;
            println!("{}", json!({"imported": imported, "mode": if replace { "replace" } else { "merge" }}));
        }
        Command::Rates { command: RatesCommand::Export } => {
            print!("{}", billing::deck::to_csv(&billing::deck::all(&pool).await?));
        }
        Command::App { command: AppCommand::Create(args) } => {
            let account = accounts::repo::find_by_api_key(&pool, &args.api_key)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no account has api_key {}", args.api_key))?;
            let app = create_app(&pool, &settings, account.id, &args).await?;
            println!("{}", serde_json::to_string_pretty(&app)?);
        }
        Command::Trunk { command } => trunk_command(&pool, &settings, command).await?,
        Command::Number { command } => number_command(&pool, command).await?,
        Command::History { command: HistoryCommand::Seal } => {
            let sealed = crate::history::rollup::seal(&pool, std::time::Duration::from_secs(settings.history.seal_grace_s)).await?;
            println!("{}", json!({ "sealed_until": sealed.map(crate::calls::format_time) }));
        }
        Command::History { command: HistoryCommand::Archive { before, export_dir } } => {
            let before = crate::calls::parse_time(&before).ok_or_else(|| anyhow::anyhow!("--before {before} is not an ISO-8601 date or date-time"))?;
            let grace = std::time::Duration::from_secs(settings.history.seal_grace_s);
            let archived = crate::history::archive::archive(&pool, before, grace, export_dir.as_deref()).await?;
            println!("{}", serde_json::to_string_pretty(&archived)?);
        }
        Command::Demo { key_file, event_url, env } => crate::demo::run(&pool, &settings, &crate::demo::Options { key_file, event_url, env }).await?,
        Command::Jwt { .. } => unreachable!("handled above"),
    }
    Ok(())
}

impl TrunkFields {
    fn input(self) -> crate::trunks::TrunkInput {
        use crate::trunks::Change;
        let set = |v: Option<String>| v.map_or(Change::Keep, Change::Set);
        crate::trunks::TrunkInput {
            port: self.port,
            transport: self.transport,
            username: set(self.username),
            password: set(self.password),
            from_domain: set(self.from_domain),
            prefixes: (!self.prefixes.is_empty()).then_some(self.prefixes),
            priority: self.priority,
            cps: self.cps.map_or(Change::Keep, Change::Set),
            max_channels: self.max_channels.map_or(Change::Keep, Change::Set),
            ..Default::default()
        }
    }
}

/// The account an --api-key names (None: the platform).
async fn trunk_owner(pool: &sqlx::PgPool, api_key: Option<&str>) -> anyhow::Result<Option<i64>> {
    match api_key {
        None => Ok(None),
        Some(key) => Ok(Some(accounts::repo::find_by_api_key(pool, key).await?.ok_or_else(|| anyhow::anyhow!("no account has api_key {key}"))?.id)),
    }
}

/// Each bad field on its own line, as the API's invalid_parameters.
fn trunk_problems(params: Vec<crate::validation::InvalidParam>) -> anyhow::Error {
    for p in &params {
        let flag = match p.name.as_str() {
            "prefixes" => "--prefix".to_string(),
            n if n.starts_with("prefixes[") => format!("--prefix {}", &n["prefixes".len()..]),
            n => format!("--{}", n.replace('_', "-")),
        };
        eprintln!("{flag}: {}", p.reason);
    }
    anyhow::anyhow!("{} problem(s); nothing was changed", params.len())
}

fn trunk_repo_error(e: crate::trunks::repo::RepoError) -> anyhow::Error {
    use crate::trunks::repo::RepoError;
    match e {
        RepoError::DuplicateName(name) => anyhow::anyhow!("a trunk named {name} already exists for this owner; choose another --name"),
        RepoError::NoKey => anyhow::anyhow!("cannot store a trunk password: {}", crate::trunks::NO_KEY),
        RepoError::HoldsNumbers => anyhow::anyhow!("the trunk holds numbers (outdial number list); remove them first (outdial number remove --msisdn N)"),
        RepoError::Database(db) => db.into(),
    }
}

async fn trunk_command(pool: &sqlx::PgPool, settings: &Settings, command: TrunkCommand) -> anyhow::Result<()> {
    use crate::trunks::{self, Change};
    let key = settings.sip.credentials_key.as_ref();
    let print = |value: serde_json::Value| -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(&value)?);
        Ok(())
    };
    match command {
        TrunkCommand::Create(args) => {
            let owner = trunk_owner(pool, args.fields.api_key.as_deref()).await?;
            let input = trunks::TrunkInput { name: Some(args.name), host: Some(args.host), enabled: Some(!args.disabled), ..args.fields.input() };
            let spec = input.into_spec(None).map_err(trunk_problems)?;
            let trunk = trunks::repo::insert(pool, key, owner, &spec).await.map_err(trunk_repo_error)?;
            print(trunk.to_json())
        }
        TrunkCommand::List { api_key } => {
            let owner = trunk_owner(pool, api_key.as_deref()).await?;
            let list = trunks::repo::list(pool, owner, owner.is_none()).await?;
            print(serde_json::Value::Array(list.iter().map(trunks::Trunk::to_json).collect()))
        }
        TrunkCommand::Update(args) => {
            let owner = trunk_owner(pool, args.fields.api_key.as_deref()).await?;
            let current = trunks::repo::find_owned(pool, owner, &args.name_or_id).await?.ok_or_else(|| no_trunk(&args.name_or_id, owner))?;
            let mut input = trunks::TrunkInput { name: args.name, host: args.host, enabled: args.enabled, ..args.fields.input() };
            if args.clear_password {
                input.password = Change::Clear;
            }
            if args.clear_prefixes {
                input.prefixes = Some(Vec::new());
            }
            let spec = input.into_spec(Some(&current)).map_err(trunk_problems)?;
            let trunk = trunks::repo::update(pool, key, &current, &spec).await.map_err(trunk_repo_error)?.ok_or_else(|| no_trunk(&args.name_or_id, owner))?;
            print(trunk.to_json())
        }
        TrunkCommand::Delete { name_or_id, api_key } => {
            let owner = trunk_owner(pool, api_key.as_deref()).await?;
            let trunk = trunks::repo::find_owned(pool, owner, &name_or_id).await?.ok_or_else(|| no_trunk(&name_or_id, owner))?;
            anyhow::ensure!(trunks::repo::delete(pool, trunk.id).await.map_err(trunk_repo_error)?, "{}", no_trunk(&name_or_id, owner));
            print(json!({"deleted": trunk.id, "name": trunk.name, "owner": trunk.owner()}))
        }
    }
}

fn no_trunk(name_or_id: &str, owner: Option<i64>) -> anyhow::Error {
    match owner {
        None => anyhow::anyhow!("no platform trunk is named {name_or_id} or has that id (an account's trunk needs --api-key)"),
        Some(_) => anyhow::anyhow!("that account has no trunk named {name_or_id} or with that id"),
    }
}

async fn number_command(pool: &sqlx::PgPool, command: NumberCommand) -> anyhow::Result<()> {
    use crate::numbers::{self, repo};
    let print = |value: serde_json::Value| -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(&value)?);
        Ok(())
    };
    let msisdn_of = |raw: &str| numbers::normalize_msisdn(raw).ok_or_else(|| anyhow::anyhow!("--msisdn {raw} {}", numbers::MSISDN_RULE));
    match command {
        NumberCommand::Add(args) => {
            let msisdn = msisdn_of(&args.msisdn)?;
            let owner = trunk_owner(pool, args.api_key.as_deref()).await?;
            let trunk_id = match &args.trunk {
                None => None,
                Some(name) => {
                    let mut trunk = None;
                    if owner.is_some() {
                        trunk = crate::trunks::repo::find_owned(pool, owner, name).await?;
                    }
                    if trunk.is_none() {
                        trunk = crate::trunks::repo::find_owned(pool, None, name).await?;
                    }
                    let trunk = trunk.ok_or_else(|| match owner {
                        None => anyhow::anyhow!("no platform trunk is named {name} or has that id (see outdial trunk list; an account's own trunk needs --api-key)"),
                        Some(_) => anyhow::anyhow!("neither that account nor the platform has a trunk named {name} or with that id (see outdial trunk list)"),
                    })?;
                    Some(trunk.id)
                }
            };
            let country = match &args.country {
                Some(raw) => numbers::normalize_country(raw).ok_or_else(|| anyhow::anyhow!("--country {raw} {}", numbers::COUNTRY_RULE))?,
                None => repo::country_from_deck(pool, &msisdn).await?.ok_or_else(|| {
                    anyhow::anyhow!("the rate deck names no country for a prefix of {msisdn}; give --country (e.g. --country GB)")
                })?,
            };
            if let (Some(app), Some(account)) = (args.app_id, owner) {
                anyhow::ensure!(
                    applications::repo::find_for_account(pool, account, app).await?.is_some(),
                    "that account has no application {app}"
                );
            }
            let new = numbers::NewNumber { msisdn, country, trunk_id, account_id: owner, application_id: args.app_id, kind: args.kind };
            let added = repo::insert(pool, &new).await.map_err(|e| match e {
                repo::RepoError::Exists(n) => anyhow::anyhow!("the number {n} already exists (outdial number list shows it; remove it first to add it again)"),
                repo::RepoError::Database(db) => db.into(),
            })?;
            let listed = repo::find_listed(pool, &added.msisdn).await?.ok_or_else(|| anyhow::anyhow!("the number {} was removed meanwhile", added.msisdn))?;
            print(listed.to_json())
        }
        NumberCommand::List { api_key } => {
            let owner = trunk_owner(pool, api_key.as_deref()).await?;
            let list = repo::list(pool, owner).await?;
            print(serde_json::Value::Array(list.iter().map(numbers::Listed::to_json).collect()))
        }
        NumberCommand::Remove { msisdn } => {
            let msisdn = msisdn_of(&msisdn)?;
            anyhow::ensure!(repo::delete(pool, &msisdn).await?, "there is no number {msisdn} (outdial number list shows them)");
            print(json!({ "removed": msisdn }))
        }
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn webhook(url: &Option<String>, method: &str) -> anyhow::Result<Option<(String, String)>> {
    match url {
        Some(u) if crate::validation::is_http_url(u) => Ok(Some((u.clone(), method.to_string()))),
        Some(u) => anyhow::bail!("{u} is not an http(s) URL"),
        None => Ok(None),
    }
}

async fn create_app(pool: &sqlx::PgPool, settings: &Settings, account_id: i64, args: &AppCreate) -> anyhow::Result<serde_json::Value> {
    let mut spec = ApplicationSpec {
        name: args.name.clone(),
        answer: webhook(&args.answer_url, "GET")?,
        event: webhook(&args.event_url, "POST")?,
        ..Default::default()
    };
    let public_pem = match (&args.public_key_file, &args.private_key_out) {
        (Some(file), _) => {
            let pem = std::fs::read_to_string(file)?;
            anyhow::ensure!(keys::is_valid_public_key(&pem), "{} is not an RSA public key in PEM form", file.display());
            pem
        }
        (None, Some(out)) => {
            let pair = keys::generate();
            write_private_key(out, &pair.private_pem)?;
            pair.public_pem
        }
        (None, None) => anyhow::bail!("give --public-key-file, or --private-key-out to generate a key pair"),
    };
    spec.public_key_pem = Some(public_pem.clone());
    let app = applications::repo::insert(pool, account_id, &spec, &public_pem).await?;
    // Absolute, as the API prints it: where the server this configuration describes serves it.
    let mut out = app.to_json(&startup::public_base_url(settings, settings.http.port), None);
    if let Some(path) = &args.private_key_out {
        out["private_key_file"] = json!(path);
    }
    Ok(out)
}

pub(crate) fn write_private_key(path: &Path, pem: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, pem)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
