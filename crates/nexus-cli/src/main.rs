//! `nexus`: the desktop peer's command-line tool.
//!
//! Every command works on a home directory (`--home`, or `NEXUS_HOME`, or the platform
//! data directory) holding the device key (`device.key`, mode 0600) and the database
//! (`nexus.db`, SQLite in WAL mode, safe to share between processes). `--json` switches
//! to machine-readable output. Errors go to stderr with a non-zero exit.
//!
//! [`args`] is the command line's shape, [`commands`] carries a command out and reports
//! what came of it, [`render`] prints the report.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod args;
mod commands;
mod error;
mod home;
mod render;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let json = cli.json;
    let dir = cli.home.unwrap_or_else(home::default_home);
    let note = move |note: commands::ServeNote| render::print_serve_note(&note, json);
    let printed = commands::run(cli.command, &dir, note).and_then(|report| {
        let exit_code = report.exit_code();
        render::print(report, json)?;
        Ok(exit_code)
    });
    match printed {
        Ok(exit_code) => ExitCode::from(exit_code),
        Err(e) => {
            render::print_error(&e, json);
            ExitCode::FAILURE
        }
    }
}
