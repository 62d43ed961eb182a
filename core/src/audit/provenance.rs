//! Who ran a session and from what: the operator and the git state of the
//! runbooks and policies, recorded in `session_started`.
//!
//! Provenance must never fail a session: an incident does not wait for git.
//! Any error becomes `{"git": false, "error": "..."}`.

use std::path::{Component, Path, PathBuf};

use git2::{ObjectType, Oid, Repository, Status, StatusOptions};
use serde_json::{Value, json};

/// The git provenance of `files` (relative paths are taken from
/// `repo_start`): HEAD, whether anything under `runbooks/` or `policies/` is
/// modified, new or untracked, and each file's blob id and dirty flag. The
/// blob id hashes the bytes on disk, which is what ward read; it equals
/// `git hash-object` unless a clean filter or eol conversion applies.
pub fn provenance(repo_start: &Path, files: &[PathBuf]) -> Value {
    let repo = match Repository::discover(repo_start) {
        Ok(repo) => repo,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return json!({"git": false}),
        Err(e) => return json!({"git": false, "error": e.message()}),
    };
    match describe(&repo, repo_start, files) {
        Ok(v) => v,
        Err(e) => json!({"git": false, "error": e.to_string()}),
    }
}

/// Why the repository could not be described; recorded as `error` (the
/// wording is git's own message, without libgit2's class and code).
#[derive(Debug, thiserror::Error)]
enum GitError {
    #[error("bare repository: no working tree")]
    Bare,
    #[error("{0}")]
    Workdir(#[source] std::io::Error),
    #[error("{}", .0.message())]
    Git(#[from] git2::Error),
}

fn describe(repo: &Repository, repo_start: &Path, files: &[PathBuf]) -> Result<Value, GitError> {
    let workdir = repo.workdir().ok_or(GitError::Bare)?;
    let root = workdir.canonicalize().map_err(GitError::Workdir)?;
    let head = match repo.head() {
        Ok(h) => Value::String(h.peel_to_commit()?.id().to_string()),
        // A repository without commits yet.
        Err(e) if e.code() == git2::ErrorCode::UnbornBranch => Value::Null,
        Err(e) => return Err(e.into()),
    };
    let mut opts = StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false);
    let statuses = repo.statuses(Some(&mut opts))?;
    let dirty_under = |dir: &[u8]| {
        statuses
            .iter()
            .any(|s| s.path_bytes().starts_with(dir) && s.status() != Status::CURRENT)
    };
    let runbooks_dirty = dirty_under(b"runbooks/");
    let policies_dirty = dirty_under(b"policies/");
    let files: Vec<Value> = files
        .iter()
        .map(|f| describe_file(repo, &root, &repo_start.join(f)))
        .collect();
    Ok(json!({
        "git": true,
        "head": head,
        "runbooks_dirty": runbooks_dirty,
        "policies_dirty": policies_dirty,
        "files": files,
    }))
}

/// One file's entry. A file outside the working tree, untracked, ignored or
/// unreadable counts as dirty: nobody reviewed it through this repository.
fn describe_file(repo: &Repository, root: &Path, file: &Path) -> Value {
    let shown = file.display().to_string();
    let full = match file.canonicalize() {
        Ok(p) => p,
        Err(e) => {
            return json!({"path": shown, "blob": null, "dirty": true, "error": e.to_string()});
        }
    };
    let blob = match Oid::hash_file(ObjectType::Blob, &full) {
        Ok(id) => Value::String(id.to_string()),
        Err(e) => {
            return json!({"path": shown, "blob": null, "dirty": true, "error": e.message()});
        }
    };
    let Ok(rel) = full.strip_prefix(root) else {
        return json!({"path": shown, "blob": blob, "dirty": true, "error": "outside the repository"});
    };
    let rel_shown = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/");
    let dirty = !repo.status_file(rel).is_ok_and(|s| s == Status::CURRENT);
    json!({"path": rel_shown, "blob": blob, "dirty": dirty})
}

/// Who is operating: `WARD_OPERATOR` if set and non-empty, else the OS user
/// (`USER`, `LOGNAME`, then `id -un`), else `"unknown"`.
pub fn operator() -> String {
    operator_from(
        |k| std::env::var(k).ok(),
        || {
            std::process::Command::new("id")
                .arg("-un")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
        },
    )
}

pub(crate) fn operator_from(
    env: impl Fn(&str) -> Option<String>,
    id_un: impl FnOnce() -> Option<String>,
) -> String {
    let clean = |s: Option<String>| s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    clean(env("WARD_OPERATOR"))
        .or_else(|| clean(env("USER")))
        .or_else(|| clean(env("LOGNAME")))
        .or_else(|| clean(id_un()))
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn init_repo(dir: &Path) -> Oid {
        let repo = Repository::init(dir).unwrap();
        std::fs::create_dir_all(dir.join("runbooks")).unwrap();
        std::fs::create_dir_all(dir.join("policies")).unwrap();
        std::fs::write(dir.join("runbooks/a.yaml"), "name: a\nsteps: []\n").unwrap();
        std::fs::write(dir.join("policies/p.yaml"), "rules: []\n").unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("runbooks/a.yaml")).unwrap();
        index.add_path(Path::new("policies/p.yaml")).unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("ward test", "ward@example.invalid").unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "init", &tree, &[])
            .unwrap()
    }

    fn git_hash_object(dir: &Path, file: &str) -> String {
        let out = Command::new("git")
            .args(["hash-object", file])
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    #[test]
    fn clean_repo_records_head_and_git_blob_ids() {
        let dir = tempfile::tempdir().unwrap();
        let head = init_repo(dir.path());
        let got = provenance(dir.path(), &[PathBuf::from("runbooks/a.yaml")]);
        let expected = json!({
            "git": true,
            "head": head.to_string(),
            "runbooks_dirty": false,
            "policies_dirty": false,
            "files": [{
                "path": "runbooks/a.yaml",
                "blob": git_hash_object(dir.path(), "runbooks/a.yaml"),
                "dirty": false,
            }],
        });
        assert_eq!(got, expected);
    }

    #[test]
    fn modified_runbook_and_untracked_policy_are_dirty() {
        let dir = tempfile::tempdir().unwrap();
        let head = init_repo(dir.path());
        std::fs::write(dir.path().join("runbooks/a.yaml"), "name: a\nsteps: [x]\n").unwrap();
        std::fs::write(dir.path().join("policies/new.yaml"), "rules: []\n").unwrap();
        // An absolute path works too and is recorded relative to the root.
        let got = provenance(
            &dir.path().join("runbooks"),
            &[dir.path().join("runbooks/a.yaml")],
        );
        let expected = json!({
            "git": true,
            "head": head.to_string(),
            "runbooks_dirty": true,
            "policies_dirty": true,
            "files": [{
                "path": "runbooks/a.yaml",
                "blob": git_hash_object(dir.path(), "runbooks/a.yaml"),
                "dirty": true,
            }],
        });
        assert_eq!(got, expected);
    }

    #[test]
    fn outside_a_repository_git_is_false() {
        let dir = tempfile::tempdir().unwrap();
        if Repository::discover(dir.path()).is_ok() {
            // The temp dir itself sits inside a repository on this machine;
            // nothing to test here.
            return;
        }
        assert_eq!(provenance(dir.path(), &[]), json!({"git": false}));
    }

    #[test]
    fn operator_prefers_ward_operator_then_user_then_id() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let no_id = || None;
        assert_eq!(
            operator_from(env(&[("WARD_OPERATOR", "alice"), ("USER", "bob")]), no_id),
            "alice"
        );
        assert_eq!(
            operator_from(env(&[("WARD_OPERATOR", " "), ("USER", "bob")]), no_id),
            "bob"
        );
        assert_eq!(operator_from(env(&[("LOGNAME", "carol")]), no_id), "carol");
        assert_eq!(operator_from(env(&[]), || Some("dave\n".into())), "dave");
        assert_eq!(operator_from(env(&[]), no_id), "unknown");
    }
}
