//! Two devices syncing in one process, through the real runtime: each `NativeEngine` has
//! its own SQLite database and talks libp2p (TCP, Noise, Yamux) over loopback.
//!
//! A creates a vault with a document and approves B by its DeviceId; B knows nothing
//! but A's address. B receives the vault and the document, A edits again, and B's copy
//! follows.
//!
//! Run with `cargo run -p nexus --example two_peers`.

// A native example; on wasm32 there is nothing to run.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
use native::main;

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::error::Error;
    use std::path::Path;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use nexus::{EngineEvent, NativeConfig, NativeEngine, SqliteStore};
    use nexus_core::automerge::transaction::Transactable;
    use nexus_core::node::{Node, NodeConfig};
    use nexus_core::{ActorId, DeviceKey, DocId, Role, Storage, random_bytes};
    use tokio::sync::mpsc;

    fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// What a peer reports, up to `deadline`: the first event `wanted` accepts.
    async fn wait_for<T>(
        events: &mut mpsc::UnboundedReceiver<EngineEvent>,
        what: &str,
        mut wanted: impl FnMut(&EngineEvent) -> Option<T>,
    ) -> Result<T, Box<dyn Error>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(event)) => {
                    if let Some(found) = wanted(&event) {
                        return Ok(found);
                    }
                }
                Ok(None) => return Err(format!("the peer stopped before {what}").into()),
                Err(_) => return Err(format!("no {what} within 30 s").into()),
            }
        }
    }

    fn config(
        listen: &str,
        dial: Vec<nexus::libp2p::Multiaddr>,
    ) -> Result<NativeConfig, Box<dyn Error>> {
        Ok(NativeConfig {
            listen: vec![listen.parse()?],
            dial,
            mdns: false,
            control_socket: false,
            ..NativeConfig::default()
        })
    }

    /// A's database, written before its peer starts: a vault, B approved, one document.
    fn prepare_a(
        home: &Path,
        a: &DeviceKey,
        b: &DeviceKey,
        doc: DocId,
    ) -> Result<(), Box<dyn Error>> {
        let mut store = SqliteStore::open(&home.join("nexus.db"))?;
        let mut node = Node::load(&store, a.clone(), ActorId::random(), NodeConfig::new())?;
        let (vault, out) = node.create_vault("Groceries", random_bytes()?, now_ms())?;
        store.commit(out.batch)?;
        store.commit(
            node.add_device(vault, b.device_id(), Role::Member, now_ms())?
                .batch,
        )?;
        store.commit(node.create_document(vault, doc, now_ms())?.batch)?;
        let out = node.change(vault, doc, |tx| {
            tx.put(nexus_core::automerge::ROOT, "milk", 1_i64)?;
            Ok(())
        })?;
        store.commit(out.batch)?;
        println!("A created vault {vault} with document {doc} and approved B");
        Ok(())
    }

    #[tokio::main]
    pub async fn main() -> Result<(), Box<dyn Error>> {
        let dir = tempfile::tempdir()?;
        let (home_a, home_b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&home_a)?;
        std::fs::create_dir_all(&home_b)?;
        let (a, b) = (DeviceKey::generate()?, DeviceKey::generate()?);
        println!("A is {}\nB is {}", a.device_id(), b.device_id());
        let doc = DocId::random()?;
        prepare_a(&home_a, &a, &b, doc)?;

        let (tx, mut events_a) = mpsc::unbounded_channel();
        let peer_a = NativeEngine::start(
            &home_a,
            a,
            config("/ip4/127.0.0.1/tcp/0", Vec::new())?,
            Some(tx),
        )
        .await?;
        let handle_a = peer_a.handle();
        tokio::spawn(peer_a.run(std::future::pending()));
        let address = wait_for(&mut events_a, "listen address", |e| match e {
            EngineEvent::Listening(address) => Some(address.clone()),
            _ => None,
        })
        .await?;
        println!("A listens on {address}");

        let (tx, mut events_b) = mpsc::unbounded_channel();
        let peer_b = NativeEngine::start(
            &home_b,
            b.clone(),
            config("/ip4/127.0.0.1/tcp/0", vec![address])?,
            Some(tx),
        )
        .await?;
        tokio::spawn(peer_b.run(std::future::pending()));
        let vault = wait_for(&mut events_b, "vault", |e| match e {
            EngineEvent::VaultJoined(vault) => Some(*vault),
            _ => None,
        })
        .await?;
        println!("B received vault {vault} from A");
        wait_for(&mut events_b, "document", |e| match e {
            EngineEvent::DocChanged { doc: d, .. } if *d == doc => Some(()),
            _ => None,
        })
        .await?;
        println!("B has the document");

        // A edits while both run: committed to A's database, then sent to B at once.
        handle_a
            .change(vault, doc, |tx| {
                tx.put(nexus_core::automerge::ROOT, "eggs", 12_i64)?;
                Ok(())
            })
            .await?;
        let heads = wait_for(&mut events_b, "A's edit", |e| match e {
            EngineEvent::DocChanged { doc: d, heads, .. } if *d == doc => Some(heads.clone()),
            _ => None,
        })
        .await?;
        let heads: Vec<String> = heads.iter().map(ToString::to_string).collect();
        println!("B got A's edit; the document's heads are now {heads:?}");

        // B's database holds what it received: read it back as JSON.
        let store = SqliteStore::open(&home_b.join("nexus.db"))?;
        let node = Node::load(&store, b, ActorId::random(), NodeConfig::new())?;
        let content = node
            .vault(&vault)
            .and_then(|v| v.document(&doc))
            .map(|d| d.to_json())
            .ok_or("the document is not in B's database")?;
        println!("B's copy: {content}");
        if content != serde_json::json!({ "milk": 1, "eggs": 12 }) {
            return Err(format!("B's copy is {content}").into());
        }
        Ok(())
    }
}
