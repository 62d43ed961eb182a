//! Where the session logs are: the `*.jsonl` files of a sessions
//! directory. One listing for every front end (`ward audit`, the TUI's
//! lists), so they agree on which files are sessions and in what order.
//!
//! This module only lists; it never reads, writes or removes a log.

use std::path::{Path, PathBuf};

/// The session logs in `dir`, oldest first. A log's name starts with its
/// session id, which starts with the UTC time the session began, so the
/// name order is the start order. A directory that does not exist (no
/// session yet) or cannot be read lists nothing.
pub fn session_logs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_logs_are_the_jsonl_files_oldest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "20261118T201500Z-1a2b3c.jsonl",
            "20261117T220000Z-9f8e7d.jsonl",
            "20261118T201500Z-1a2b3c.jsonl.torn",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), "").expect("write");
        }
        std::fs::create_dir(dir.path().join("inbox")).expect("mkdir");
        assert_eq!(
            session_logs(dir.path()),
            vec![
                dir.path().join("20261117T220000Z-9f8e7d.jsonl"),
                dir.path().join("20261118T201500Z-1a2b3c.jsonl"),
            ]
        );
        assert_eq!(
            session_logs(&dir.path().join("missing")),
            Vec::<PathBuf>::new()
        );
    }
}
