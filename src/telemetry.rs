//! Logging set-up. Secrets are never logged: request bodies and Authorization headers stay out.

use crate::config::LogSettings;
use tracing_subscriber::EnvFilter;

pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests start many apps in one process) is harmless, so its error is ignored.
    let _ = if settings.format == "json" { builder.json().try_init() } else { builder.try_init() };
}
