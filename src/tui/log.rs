//! Logging for the TUI: `tracing` into a file, never to the screen (a line
//! written to the terminal under a full-screen UI corrupts it).

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Why the file log could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("WARD_LOG=`{value}` is not a filter like `info` or `ward=debug,warn`: {message}")]
    Filter { value: String, message: String },
    #[error("a logger is already installed: {0}")]
    Installed(String),
}

/// Sends `tracing` events to `path` (appended, created with its directory),
/// without colours. The level comes from `WARD_LOG` (e.g. `debug`,
/// `ward=debug,warn`), default `ward=info` and warnings from libraries.
pub fn init_file_log(path: &Path) -> Result<(), LogError> {
    let open_err = |source| LogError::Open {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(open_err)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(open_err)?;
    let filter = match std::env::var("WARD_LOG") {
        Ok(v) if !v.trim().is_empty() => v.parse::<Targets>().map_err(|e| LogError::Filter {
            value: v.clone(),
            message: e.to_string(),
        })?,
        _ => Targets::new()
            .with_target("ward", Level::INFO)
            .with_default(Level::WARN),
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(Mutex::new(file))
                .with_ansi(false),
        )
        .with(filter)
        .try_init()
        .map_err(|e| LogError::Installed(e.to_string()))
}
