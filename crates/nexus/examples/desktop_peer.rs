//! A desktop peer in a few lines: a device whose key and SQLite database live in a home
//! directory, listening on loopback TCP and WebSocket (what browsers dial), syncing
//! whatever vaults it holds. On first run it creates a vault "Notes" with one document
//! and prints an invite code that a browser (or `nexus join`) redeems.
//!
//! Run with `cargo run -p nexus --example desktop_peer -- HOME [SECONDS]`; it stops on
//! Ctrl-C, or after SECONDS if given.

// A native example; on wasm32 there is nothing to run.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
use native::main;

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::error::Error;
    use std::path::PathBuf;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use nexus::{EngineEvent, NativeConfig, NativeEngine, SqliteStore, load_or_create_key};
    use nexus_core::automerge::transaction::Transactable;
    use nexus_core::invite_code::InviteCode;
    use nexus_core::node::{Node, NodeConfig};
    use nexus_core::{ActorId, DocId, Role, Storage, random_bytes};
    use tokio::sync::mpsc;

    fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    #[tokio::main]
    pub async fn main() -> Result<(), Box<dyn Error>> {
        let mut args = std::env::args().skip(1);
        let home = PathBuf::from(args.next().ok_or("usage: desktop_peer HOME [SECONDS]")?);
        let seconds: Option<u64> = args.next().map(|s| s.parse()).transpose()?;
        std::fs::create_dir_all(&home)?;
        let (key, created) = load_or_create_key(&home.join("device.key"))?;
        println!(
            "Device {} ({})",
            key.device_id(),
            if created { "new" } else { "from the home" }
        );

        // Before the peer starts, the database is ours: make the vault on the first run.
        let mut store = SqliteStore::open(&home.join("nexus.db"))?;
        let mut node = Node::load(&store, key.clone(), ActorId::random(), NodeConfig::new())?;
        let existing = node.vaults().next().map(|v| v.id());
        let vault = match existing {
            Some(vault) => vault,
            None => {
                let (vault, out) = node.create_vault("Notes", random_bytes()?, now_ms())?;
                store.commit(out.batch)?;
                let doc = DocId::random()?;
                store.commit(node.create_document(vault, doc, now_ms())?.batch)?;
                let out = node.change(vault, doc, |tx| {
                    tx.put(nexus_core::automerge::ROOT, "title", "Welcome")?;
                    Ok(())
                })?;
                store.commit(out.batch)?;
                println!("Created vault Notes ({vault}) with document {doc}");
                vault
            }
        };

        let config = NativeConfig {
            listen: vec![
                "/ip4/127.0.0.1/tcp/0".parse()?,
                "/ip4/127.0.0.1/tcp/0/ws".parse()?,
            ],
            mdns: false,
            ..NativeConfig::default()
        };
        let (tx, mut events) = mpsc::unbounded_channel();
        drop(node);
        let peer = NativeEngine::start(&home, key.clone(), config, Some(tx)).await?;
        let shutdown = async move {
            match seconds {
                Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                None => nexus::shutdown_signal().await,
            }
        };
        let running = tokio::spawn(peer.run(shutdown));

        let mut addresses = Vec::new();
        while let Some(event) = events.recv().await {
            match event {
                EngineEvent::Listening(address) => {
                    println!("Listening on {address}");
                    addresses.push(address.to_string());
                    if addresses.len() == 2 {
                        // An invite for a browser: it carries the WebSocket address to dial.
                        // Written as another process (`nexus invite create`) would: the
                        // running peer sees the commit and serves the invite.
                        let mut node =
                            Node::load(&store, key.clone(), ActorId::random(), NodeConfig::new())?;
                        let secret: [u8; 32] = random_bytes()?;
                        let expires_at_ms = now_ms() + 3_600_000;
                        let (invite, out) = node.create_invite(
                            vault,
                            &secret,
                            Role::Member,
                            expires_at_ms,
                            now_ms(),
                        )?;
                        store.commit(out.batch)?;
                        let code = InviteCode {
                            vault,
                            invite,
                            secret,
                            expires_at_ms,
                            inviter: node.device_id(),
                            addresses: addresses.clone(),
                        };
                        println!("Invite code (an hour): {code}");
                    }
                }
                EngineEvent::Connected(device) => println!("Connected to {device}"),
                EngineEvent::Disconnected(device) => println!("Disconnected from {device}"),
                EngineEvent::DocChanged { vault, doc, .. } => {
                    println!("Document {doc} of {vault} changed")
                }
                EngineEvent::VaultJoined(vault) => println!("Joined vault {vault}"),
                EngineEvent::MembershipChanged(vault) => println!("Members of {vault} changed"),
                _ => {}
            }
        }
        running.await??;
        println!("Stopped; everything received is in {}", home.display());
        Ok(())
    }
}
