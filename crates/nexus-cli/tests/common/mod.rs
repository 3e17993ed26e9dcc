//! Running the `nexus` binary from tests, as a person or a script would.

#![allow(dead_code)] // each test file uses its own subset

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// `nexus --home HOME ARGS…`, with `NEXUS_HOME` cleared.
pub fn nexus(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nexus"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("NEXUS_HOME")
        .output()
        .expect("run nexus")
}

/// Runs a command that must succeed; returns its trimmed stdout.
pub fn ok(home: &Path, args: &[&str]) -> String {
    let out = nexus(home, args);
    assert!(
        out.status.success(),
        "nexus {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs a command with `--json` that must succeed; returns its output parsed.
pub fn json(home: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(home, &all)).expect("JSON output")
}

/// Runs a command that must fail; returns its stderr.
pub fn fails(home: &Path, args: &[&str]) -> String {
    let out = nexus(home, args);
    assert!(!out.status.success(), "nexus {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}
