use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What a run of `ward` produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with the whole output when the exit code is not `code`.
    pub fn expect_code(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}):\n{}", self.stdout))
    }
}

/// The repository this test suite lives in.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the built `ward` binary in `dir` with `args`, feeding `stdin`.
pub fn ward_in(dir: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    ward_in_env(dir, args, stdin, &[])
}

/// Like [`ward_in`], with environment variables set (a store URL, an
/// operator name).
pub fn ward_in_env(dir: &Path, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .env_remove("WARD_REPO")
        .env("NO_COLOR", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ward starts");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("ward finishes");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn ward(args: &[&str]) -> Run {
    ward_in(&repo_root(), args, None)
}

/// A throwaway copy of the repository's runbooks and policies.
pub struct TempRepo {
    pub dir: tempfile::TempDir,
}

impl TempRepo {
    pub fn copy_of_repo() -> TempRepo {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["runbooks", "policies"] {
            copy_dir(&repo_root().join(sub), &dir.path().join(sub));
        }
        TempRepo { dir }
    }

    /// Also copies `fixtures/` (scenarios, demo seed).
    pub fn with_fixtures(self) -> TempRepo {
        copy_dir(&repo_root().join("fixtures"), &self.path().join("fixtures"));
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).expect("read")
    }

    pub fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path().join(rel), text).expect("write");
    }

    /// Replaces the only occurrence of `from` in `rel`.
    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        assert_eq!(
            text.matches(from).count(),
            1,
            "{from:?} must occur once in {rel}"
        );
        self.write(rel, &text.replacen(from, to, 1));
    }

    /// 1-based line and column of the first occurrence of `needle` in `rel`.
    pub fn position_of(&self, rel: &str, needle: &str) -> (usize, usize) {
        let text = self.read(rel);
        let off = text
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in {rel}"));
        let before = &text[..off];
        (
            before.matches('\n').count() + 1,
            off - before.rfind('\n').map_or(0, |i| i + 1) + 1,
        )
    }

    pub fn ward(&self, args: &[&str]) -> Run {
        ward_in(self.path(), args, None)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
