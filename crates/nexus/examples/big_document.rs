//! Makes a home for `nexus --home` whose vault "Bench" holds one document of many signed
//! changes, with a given device approved: what the browser tests sync from.
//!
//! ```text
//! cargo run -p nexus --example big_document -- HOME CHANGES DEVICE_ID
//! ```
//!
//! Prints the vault id and the document id, separated by a space.

// A native example; on wasm32 there is nothing to run.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
use native::main;

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::path::PathBuf;
    use std::process::ExitCode;

    use nexus_core::{DeviceId, DocId};

    pub fn main() -> ExitCode {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let [home, changes, device] = args.as_slice() else {
            eprintln!("usage: big_document HOME CHANGES DEVICE_ID");
            return ExitCode::from(2);
        };
        let home = PathBuf::from(home);
        let (Ok(changes), Ok(device)) = (changes.parse::<usize>(), device.parse::<DeviceId>())
        else {
            eprintln!("big_document: CHANGES must be a number and DEVICE_ID a device id");
            return ExitCode::from(2);
        };
        let result = std::fs::create_dir_all(&home)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                nexus::load_or_create_key(&home.join("device.key")).map_err(|e| e.to_string())
            })
            .and_then(|(owner, _)| {
                let doc = DocId::random().map_err(|e| e.to_string())?;
                nexus::fixtures::home_with_changes(&home, &owner, device, doc, changes)
                    .map(|(vault, _)| (vault, doc))
                    .map_err(|e| e.to_string())
            });
        match result {
            Ok((vault, doc)) => {
                println!("{vault} {doc}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("big_document: {e}");
                ExitCode::FAILURE
            }
        }
    }
}
