//! The home screen's runbook list, cached in `.ward/cache/runbook-list.json`
//! and keyed by each file's path, size and modification time, so a start
//! parses only the runbooks that changed since the last one.
//!
//! The cache is only what the list shows: starting a runbook loads and
//! validates its file in full, so a stale or edited cache can at worst
//! mislabel a row, never change what runs. A file modified within the last
//! two seconds is not trusted to the cache (an edit in the same mtime tick
//! would keep size and mtime), and a cache that does not parse, or was
//! written by another version of ward, is ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::RunbookInfo;

/// Changes whenever what is cached (or how) changes.
const FORMAT: &str = concat!("ward ", env!("CARGO_PKG_VERSION"), " list 2");
/// Files modified more recently than this are re-read every time.
const SETTLE: Duration = Duration::from_secs(2);

#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: String,
    entries: BTreeMap<PathBuf, Entry>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Entry {
    size: u64,
    mtime_ns: u128,
    /// `None`: the file did not parse (counted as a problem).
    info: Option<RunbookInfo>,
}

/// Size and modification time, or `None` when the file cannot be stat'ed.
fn stamp(path: &Path) -> Option<(u64, u128, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta.modified().ok()?;
    let ns = modified.duration_since(UNIX_EPOCH).ok()?.as_nanos();
    Some((meta.len(), ns, modified))
}

/// The list of `files` (each parsed by `parse`, `None` for a file that does
/// not parse), reusing `cache` where a file is unchanged and rewriting it
/// when anything changed. Parsing is done by `parse_all`, in one call for
/// every file that needs it.
pub(super) fn load(
    cache: &Path,
    files: &[PathBuf],
    parse_all: impl FnOnce(&[PathBuf]) -> Vec<Option<RunbookInfo>>,
) -> Vec<Option<RunbookInfo>> {
    let old: BTreeMap<PathBuf, Entry> = std::fs::read(cache)
        .ok()
        .and_then(|b| serde_json::from_slice::<CacheFile>(&b).ok())
        .filter(|c| c.format == FORMAT)
        .map(|c| c.entries)
        .unwrap_or_default();
    let now = SystemTime::now();
    let mut out: Vec<Option<Option<RunbookInfo>>> = Vec::with_capacity(files.len());
    let mut stamps = Vec::with_capacity(files.len());
    let mut stale = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let st = stamp(f);
        let settled = st.is_some_and(|(_, _, m)| now.duration_since(m).is_ok_and(|d| d >= SETTLE));
        let hit = match (st, old.get(f)) {
            (Some((size, ns, _)), Some(e)) if settled && e.size == size && e.mtime_ns == ns => {
                Some(e.info.clone())
            }
            _ => None,
        };
        if hit.is_none() {
            stale.push(i);
        }
        out.push(hit);
        stamps.push(st.filter(|_| settled));
    }
    let changed = !stale.is_empty() || old.len() != files.len();
    if !stale.is_empty() {
        let todo: Vec<PathBuf> = stale.iter().map(|&i| files[i].clone()).collect();
        for (i, info) in stale.iter().zip(parse_all(&todo)) {
            out[*i] = Some(info);
        }
    }
    let out: Vec<Option<RunbookInfo>> = out.into_iter().map(Option::flatten).collect();
    if changed {
        let entries = files
            .iter()
            .zip(&stamps)
            .zip(&out)
            .filter_map(|((f, st), info)| {
                let (size, mtime_ns, _) = (*st)?;
                Some((
                    f.clone(),
                    Entry {
                        size,
                        mtime_ns,
                        info: info.clone(),
                    },
                ))
            })
            .collect();
        save(
            cache,
            &CacheFile {
                format: FORMAT.into(),
                entries,
            },
        );
    }
    out
}

/// Writes the cache next to itself and renames it into place; a failure
/// (read-only checkout, full disk) only costs the next start its speed.
fn save(cache: &Path, file: &CacheFile) {
    let Some(dir) = cache.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let Ok(bytes) = serde_json::to_vec(file) else {
        return;
    };
    let tmp = dir.join(format!(".runbook-list.{}.tmp", std::process::id()));
    if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, cache).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn info(id: &str) -> RunbookInfo {
        RunbookInfo {
            id: id.into(),
            title: format!("title of {id}"),
            version: 1,
            triggers: Vec::new(),
            engines: vec!["postgres".into()],
            description: None,
            steps: Vec::new(),
        }
    }

    /// Backdates a file past the settle time, as files are on a real start.
    fn age(path: &Path) {
        let old = SystemTime::now() - Duration::from_secs(60);
        let f = std::fs::File::options()
            .write(true)
            .open(path)
            .expect("open");
        f.set_modified(old).expect("set mtime");
    }

    #[test]
    fn unchanged_files_come_from_the_cache_and_changed_or_new_ones_are_parsed_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = dir.path().join(".ward/cache/runbook-list.json");
        let files: Vec<PathBuf> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                let p = dir.path().join(format!("{n}.yaml"));
                std::fs::write(&p, format!("id: {n}\n")).expect("write");
                age(&p);
                p
            })
            .collect();
        let parsed = RefCell::new(Vec::new());
        let parse = |todo: &[PathBuf]| {
            parsed.borrow_mut().extend(todo.iter().cloned());
            todo.iter()
                .map(|p| {
                    let stem = p.file_stem()?.to_str()?;
                    let len = std::fs::read(p).ok()?.len();
                    (stem != "c").then(|| info(&format!("{stem}-v{len}")))
                })
                .collect()
        };
        let first = load(&cache, &files, parse);
        assert_eq!(parsed.borrow().len(), 3);
        assert_eq!(first[0].as_ref().map(|i| i.id.as_str()), Some("a-v6"));
        assert!(first[2].is_none(), "c does not parse");

        parsed.borrow_mut().clear();
        let second = load(&cache, &files, parse);
        assert!(parsed.borrow().is_empty(), "{:?}", parsed.borrow());
        assert_eq!(second, first, "a failed parse is remembered too");

        // An edit that changes the size is seen; so is a fresh edit that
        // keeps it (it is too recent to trust the cache).
        std::fs::write(&files[0], "id: a\n# edited\n").expect("write");
        age(&files[0]);
        std::fs::write(&files[1], "id: B\n").expect("write");
        parsed.borrow_mut().clear();
        let third = load(&cache, &files, parse);
        assert_eq!(*parsed.borrow(), vec![files[0].clone(), files[1].clone()]);
        assert_eq!(third[0].as_ref().map(|i| i.id.as_str()), Some("a-v15"));

        // A removed file leaves the list; a garbled cache is ignored.
        std::fs::write(&cache, b"{not json").expect("garble");
        parsed.borrow_mut().clear();
        let fourth = load(&cache, &files[..2], parse);
        assert_eq!(fourth.len(), 2);
        assert_eq!(parsed.borrow().len(), 2);
    }
}
