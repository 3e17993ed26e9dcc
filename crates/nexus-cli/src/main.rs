//! `nexus`: the desktop peer's command-line tool.
//!
//! Every command works on a home directory (`--home`, or `NEXUS_HOME`, or the platform
//! data directory) holding the device key (`device.key`, mode 0600) and the database
//! (`nexus.db`, SQLite in WAL mode, safe to share between processes). `--json` switches
//! to machine-readable output. Errors go to stderr with a non-zero exit.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod app;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = app::Cli::parse();
    let json = cli.json;
    match app::run(cli) {
        Ok(out) => {
            output::print(&out, json);
            ExitCode::from(out.exit_code)
        }
        Err(e) => {
            if json {
                eprintln!("{}", serde_json::json!({ "error": e.to_string() }));
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}
