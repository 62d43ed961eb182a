//! TEMPORARY stand-in for the audit module (hash chain append); the real one
//! replaces this file.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub v: u32,
    pub seq: u64,
    pub ts: String,
    pub kind: String,
    pub data: serde_json::Value,
    pub prev: String,
    pub hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub struct AuditWriter {
    path: PathBuf,
    file: std::fs::File,
    last: Option<Event>,
}

impl AuditWriter {
    pub fn create(path: &Path) -> Result<AuditWriter, AuditError> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)?;
        Ok(AuditWriter {
            path: path.to_path_buf(),
            file,
            last: None,
        })
    }

    pub fn append(&mut self, kind: &str, data: serde_json::Value) -> Result<Event, AuditError> {
        let seq = self.last.as_ref().map_or(0, |e| e.seq + 1);
        let prev = self
            .last
            .as_ref()
            .map_or(GENESIS.to_string(), |e| e.hash.clone());
        let mut e = Event {
            v: 1,
            seq,
            ts: chrono::Utc::now().to_rfc3339(),
            kind: kind.into(),
            data,
            prev,
            hash: String::new(),
        };
        let body = serde_json::to_string(&e).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(e.prev.as_bytes());
        h.update(body.as_bytes());
        e.hash = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        writeln!(
            self.file,
            "{}",
            serde_json::to_string(&e).unwrap_or_default()
        )?;
        self.file.sync_data()?;
        self.last = Some(e.clone());
        Ok(e)
    }

    pub fn last(&self) -> Option<&Event> {
        self.last.as_ref()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

pub fn operator() -> String {
    std::env::var("WARD_OPERATOR")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into())
}

pub fn provenance(_repo: &Path, _files: &[PathBuf]) -> serde_json::Value {
    serde_json::json!({"git": false})
}
