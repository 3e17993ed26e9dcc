//! Runs the deterministic network simulator over a range of seeds.
//!
//! ```text
//! cargo run --release -p nexus-core --example simulate -- --seeds 0..1000 [--devices N] [--steps N] [--hostile N]
//! ```
//!
//! Prints one line per failing seed, with the command that replays it, then
//! `N passed, N failed`. Exits non-zero if any seed failed.

use std::process::ExitCode;

use nexus_core::sim::{Scenario, run_seed};

fn usage() -> ExitCode {
    eprintln!(
        "usage: simulate --seeds A..B [--devices N (2-8)] [--steps N] [--hostile N (fewer than --devices)] [--verbose]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut seeds = 0..100u64;
    let mut scenario = Scenario::new();
    let mut verbose = false;
    let mut args = std::env::args();
    args.next(); // the program name
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seeds" => {
                let Some(range) = args.next() else {
                    return usage();
                };
                let Some((a, b)) = range.split_once("..") else {
                    return usage();
                };
                let (Ok(a), Ok(b)) = (a.parse(), b.parse()) else {
                    return usage();
                };
                seeds = a..b;
            }
            "--devices" => {
                let Some(Ok(n)) = args.next().map(|s| s.parse::<usize>()) else {
                    return usage();
                };
                if !(2..=8).contains(&n) {
                    return usage();
                }
                scenario.devices = n;
            }
            "--steps" => {
                let Some(Ok(n)) = args.next().map(|s| s.parse()) else {
                    return usage();
                };
                scenario.steps = n;
            }
            "--hostile" => {
                let Some(Ok(n)) = args.next().map(|s| s.parse()) else {
                    return usage();
                };
                if n >= scenario.devices {
                    return usage();
                }
                scenario.hostile = n;
            }
            "--verbose" => verbose = true,
            _ => return usage(),
        }
    }
    let (mut passed, mut failed) = (0u64, 0u64);
    let started = std::time::Instant::now();
    for seed in seeds {
        if seed % 10_000 == 0 && passed + failed > 0 {
            // Progress for long soaks, on stderr so stdout stays one line per failure.
            eprintln!(
                "… seed {seed}: {passed} passed, {failed} failed, {:.0?} so far",
                started.elapsed()
            );
        }
        match run_seed(seed, scenario) {
            Ok(report) => {
                passed += 1;
                if verbose {
                    println!("seed {seed}: ok {report:?}");
                }
            }
            Err(reason) => {
                failed += 1;
                println!(
                    "seed {seed} FAILED: {reason}\n  replay: cargo run --release -p nexus-core --example simulate -- --seeds {seed}..{} --devices {} --steps {} --hostile {}",
                    seed + 1,
                    scenario.devices,
                    scenario.steps,
                    scenario.hostile
                );
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
