//! The SQLite store keeps the core's storage contract: atomic, durable batches, clear
//! errors for full, damaged or too-new databases, and every acknowledged write survives a
//! `kill -9`.

#![cfg(not(target_arch = "wasm32"))]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use nexus::{KeyFileError, SqliteError, SqliteStore, load_or_create_key};
use nexus_core::automerge::ROOT;
use nexus_core::automerge::transaction::Transactable;
use nexus_core::sim::Rng;
use nexus_core::{ActorId, Batch, DeviceKey, DocId, MemoryStore, Storage, Table, Vault, VaultId};

const DOC: DocId = DocId([4; 16]);

#[test]
fn behaves_like_the_in_memory_store_for_random_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = SqliteStore::open(&dir.path().join("db")).unwrap();
    let mut memory = MemoryStore::new();
    let mut rng = Rng::new(11);
    for _ in 0..200 {
        let mut batch = Batch::new();
        for _ in 0..rng.below(8) {
            let table = Table::ALL[rng.below(6) as usize];
            // Few distinct keys, with shared prefixes and 0xff bytes, so puts overwrite,
            // deletes hit, and prefix bounds are exercised.
            let key = vec![rng.below(3) as u8 * 0x7f, 0xff, rng.below(4) as u8];
            if rng.chance(0.3) {
                batch.delete(table, key);
            } else {
                batch.put(table, key, rng.bytes::<8>().to_vec());
            }
        }
        sqlite.commit(batch.clone()).unwrap();
        memory.commit(batch).unwrap();
    }
    for table in Table::ALL {
        for prefix in [vec![], vec![0x7f], vec![0xfe, 0xff], vec![0x7f, 0xff, 2]] {
            assert_eq!(
                sqlite.scan(table, &prefix).unwrap(),
                memory.scan(table, &prefix).unwrap()
            );
        }
        assert_eq!(
            sqlite.get(table, &[0, 0xff, 1]).unwrap(),
            memory.get(table, &[0, 0xff, 1]).unwrap()
        );
    }
}

fn vault_with_changes(store: &mut SqliteStore, n: i64) -> (Vault, DeviceKey) {
    let key = DeviceKey::from_secret_bytes(&[3; 32]);
    let (mut vault, batch) = Vault::create(&key, "Desk", [0; 16], 0, ActorId::random()).unwrap();
    store.commit(batch).unwrap();
    store
        .commit(vault.create_document(&key, DOC, 0).unwrap())
        .unwrap();
    for i in 0..n {
        let local = vault
            .change(&key, DOC, |tx| tx.put(ROOT, format!("k{i}"), i).map(|_| ()))
            .unwrap()
            .unwrap();
        store.commit(local.batch).unwrap();
    }
    (vault, key)
}

#[test]
fn a_vault_reopens_with_everything_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nexus.db");
    let mut store = SqliteStore::open(&path).unwrap();
    let (vault, _) = vault_with_changes(&mut store, 25);
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), nexus::SCHEMA_VERSION);
    assert_eq!(Vault::list(&store).unwrap(), vec![vault.id()]);
    let again = Vault::load(&store, vault.id(), ActorId::random()).unwrap();
    let doc = again.document(&DOC).unwrap();
    assert_eq!(doc.heads(), vault.document(&DOC).unwrap().heads());
    assert_eq!(doc.to_json()["k24"], 24);
    assert!(doc.verify().is_empty());
}

#[test]
fn a_full_disk_refuses_the_whole_batch_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("db")).unwrap();
    let (vault, _) = vault_with_changes(&mut store, 3);
    let before = store.scan(Table::Changes, &[]).unwrap();
    store.limit_pages(store.page_count().unwrap() + 2).unwrap();
    let mut batch = Batch::new();
    batch.put(Table::Changes, b"small".to_vec(), vec![1; 10]);
    batch.put(Table::Changes, b"huge".to_vec(), vec![7; 1 << 20]);
    let err = store.commit(batch).unwrap_err();
    assert!(matches!(err, SqliteError::Full { .. }), "{err}");
    assert!(
        err.to_string().contains("nothing of the write was stored"),
        "{err}"
    );
    assert_eq!(store.scan(Table::Changes, &[]).unwrap(), before);
    assert!(Vault::load(&store, vault.id(), ActorId::random()).is_ok());
}

#[test]
fn damaged_and_too_new_databases_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x42; 8192]).unwrap();
    let err = SqliteStore::open(&garbage).unwrap_err();
    assert!(matches!(err, SqliteError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("not a Nexus database"), "{err}");

    let newer = dir.path().join("newer.db");
    drop(SqliteStore::open(&newer).unwrap());
    let conn = rusqlite_connection(&newer);
    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(conn);
    let err = SqliteStore::open(&newer).unwrap_err();
    assert!(
        matches!(err, SqliteError::TooNew { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade Nexus"));
}

fn rusqlite_connection(path: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

#[test]
fn the_device_key_file_is_private_and_stable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("home").join("device.key");
    let (key, created) = load_or_create_key(&path).unwrap();
    assert!(created);
    let (again, created) = load_or_create_key(&path).unwrap();
    assert!(!created);
    assert_eq!(again.device_id(), key.device_id());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_key(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::TooOpen { .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::write(&path, "something else\n").unwrap();
    let err = load_or_create_key(&path).unwrap_err();
    assert!(matches!(err, KeyFileError::Malformed { .. }), "{err}");
}

#[test]
fn a_key_file_with_a_multibyte_line_of_64_bytes_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.key");
    let (_, _) = load_or_create_key(&path).unwrap();
    let header = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    // 64 bytes, but 'é' is two of them: slicing by byte pairs would split it.
    let line = format!("{}é{}", "a".repeat(31), "b".repeat(31));
    assert_eq!(line.len(), 64);
    std::fs::write(&path, format!("{header}\n{line}\n")).unwrap();
    let err = load_or_create_key(&path).unwrap_err();
    assert!(matches!(err, KeyFileError::Malformed { .. }), "{err}");
}

#[cfg(unix)]
#[test]
fn a_link_planted_at_the_temporary_key_path_is_not_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("home").join("device.key");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // Someone who can write the home plants a link where the key is written first.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep me").unwrap();
    std::os::unix::fs::symlink(&victim, path.with_extension("tmp")).unwrap();
    let (key, created) = load_or_create_key(&path).unwrap();
    assert!(created);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    let (again, _) = load_or_create_key(&path).unwrap();
    assert_eq!(again.device_id(), key.device_id());
    assert!(!path.with_extension("tmp").exists());
}

/// Child side of the kill test: writes changes forever, printing each acknowledged one.
fn write_until_killed(path: &str) {
    let mut store = SqliteStore::open(std::path::Path::new(path)).unwrap();
    let (mut vault, key) = vault_with_changes(&mut store, 0);
    println!("vault {}", vault.id());
    for i in 0.. {
        let local = vault
            .change(&key, DOC, |tx| {
                tx.put(ROOT, format!("k{i}"), i as i64).map(|_| ())
            })
            .unwrap()
            .unwrap();
        store.commit(local.batch).unwrap();
        println!("ack k{i}");
    }
}

#[test]
fn every_acknowledged_write_survives_kill_dash_nine() {
    if let Ok(path) = std::env::var("NEXUS_KILL_TEST_DB") {
        write_until_killed(&path);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nexus.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "every_acknowledged_write_survives_kill_dash_nine",
            "--nocapture",
        ])
        .env("NEXUS_KILL_TEST_DB", &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut vault = None;
    let mut acked = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("vault ") {
            vault = Some(id.parse::<VaultId>().unwrap());
        } else if let Some(key) = line.strip_prefix("ack ") {
            acked.push(key.to_string());
            if acked.len() == 200 {
                child.kill().unwrap(); // SIGKILL: no destructors, no flush
                break;
            }
        }
    }
    child.wait().unwrap();
    let store = SqliteStore::open(&path).unwrap();
    let vault = Vault::load(&store, vault.unwrap(), ActorId::random()).unwrap();
    let doc = vault.document(&DOC).unwrap();
    let value = doc.to_json();
    for key in &acked {
        assert!(value.get(key).is_some(), "acknowledged {key} lost");
    }
    assert!(doc.verify().is_empty());
    assert!(doc.change_count() >= acked.len());
}
