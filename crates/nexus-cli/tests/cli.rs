//! The `nexus` binary, run as a person or a script would.

mod common;

use common::{fails, json, nexus, ok};
use nexus_core::{DeviceKey, InviteCode, VaultId};
use serde_json::Value;

#[test]
fn a_person_creates_a_vault_and_edits_a_document() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    assert!(fails(home, &["id"]).contains("nexus init"));
    let init = json(home, &["init"]);
    let device = init["device_id"].as_str().unwrap().to_string();
    assert!(device.starts_with("12D3KooW"));
    assert_eq!(ok(home, &["id"]), device);
    // `--json` works after the subcommand too.
    assert_eq!(json(home, &["init"])["created"], false);
    let vault = ok(home, &["vault", "create", "Groceries"]);
    vault.parse::<VaultId>().unwrap();
    let list = ok(home, &["vault", "list", "--json"]);
    assert!(list.contains("Groceries"));
    let doc = ok(home, &["doc", "create", "--vault", "Groceries"]);
    ok(home, &["doc", "put", "--vault", &vault, &doc, "milk", "2"]);
    ok(
        home,
        &[
            "doc",
            "put",
            "--vault",
            "Groceries",
            &doc,
            "note",
            r#"{"by":"me","tags":["x"]}"#,
        ],
    );
    let value = json(home, &["doc", "get", "--vault", "Groceries", &doc]);
    assert_eq!(
        value,
        serde_json::json!({"milk": 2, "note": {"by": "me", "tags": ["x"]}})
    );
    assert_eq!(
        json(home, &["doc", "get", "--vault", "Groceries", &doc, "milk"]),
        2
    );
    // From a file.
    let file = home.join("start.json");
    std::fs::write(&file, r#"{"title":"week 47","done":false}"#).unwrap();
    let doc2 = ok(
        home,
        &[
            "doc",
            "create",
            "--vault",
            "Groceries",
            "--json-file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(
        json(
            home,
            &["doc", "get", "--vault", "Groceries", &doc2, "title"]
        ),
        "week 47"
    );
    assert_eq!(
        json(home, &["doc", "list", "--vault", "Groceries"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Collaborative text: reads back as a string, stored as a text object.
    ok(
        home,
        &[
            "doc",
            "put",
            "--vault",
            "Groceries",
            &doc,
            "body",
            r#""buy soon""#,
            "--text",
        ],
    );
    assert_eq!(
        json(home, &["doc", "get", "--vault", "Groceries", &doc, "body"]),
        "buy soon"
    );
    {
        use nexus_core::automerge::{ObjType, ROOT, ReadDoc, Value};
        let store = nexus::SqliteStore::open(&home.join("nexus.db")).unwrap();
        let (key, _) = nexus::load_or_create_key(&home.join("device.key")).unwrap();
        let node = nexus_core::node::Node::load(
            &store,
            key,
            nexus_core::ActorId::random(),
            nexus_core::node::NodeConfig::new(),
        )
        .unwrap();
        let vault: VaultId = vault.parse().unwrap();
        let d = node
            .vault(&vault)
            .unwrap()
            .document(&doc.parse().unwrap())
            .unwrap();
        let body = d.automerge().get(ROOT, "body").unwrap().unwrap().0;
        assert_eq!(body, Value::Object(ObjType::Text));
    }
    assert!(
        fails(
            home,
            &[
                "doc",
                "put",
                "--vault",
                "Groceries",
                &doc,
                "n",
                "3",
                "--text"
            ]
        )
        .contains("--text takes a JSON string")
    );
    assert_eq!(json(home, &["check"])["ok"], true);
    // Clear errors.
    assert!(fails(home, &["doc", "get", "--vault", "Nope", &doc]).contains("no vault `Nope`"));
    assert!(
        fails(
            home,
            &["doc", "put", "--vault", "Groceries", &doc, "k", "not json"]
        )
        .contains("not JSON")
    );
    assert!(
        fails(
            home,
            &["devices", "approve", "--vault", "Groceries", "12D3KooWnope"]
        )
        .contains("device id")
    );
}

#[test]
fn an_admin_invites_approves_and_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    ok(home, &["init"]);
    let vault = ok(home, &["vault", "create", "Team"]);
    let code: InviteCode = ok(
        home,
        &[
            "invite",
            "create",
            "--vault",
            "Team",
            "--expires",
            "2h",
            "--role",
            "admin",
        ],
    )
    .parse()
    .unwrap();
    assert_eq!(code.vault.to_string(), vault);
    assert!(
        fails(
            home,
            &["invite", "create", "--vault", "Team", "--expires", "soon"]
        )
        .contains("not a duration")
    );
    let other = DeviceKey::from_secret_bytes(&[9; 32])
        .device_id()
        .to_string();
    ok(home, &["devices", "approve", "--vault", "Team", &other]);
    let devices = json(home, &["devices", "list", "--vault", "Team"]);
    assert!(
        devices
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["device_id"] == other.as_str() && d["status"] == "member")
    );
    ok(home, &["devices", "revoke", "--vault", "Team", &other]);
    let devices = json(home, &["devices", "list", "--vault", "Team"]);
    assert!(
        devices
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["device_id"] == other.as_str() && d["status"] == "revoked")
    );
}

#[test]
fn invites_are_listed_and_cancelled_and_last_at_most_thirty_days() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    ok(home, &["init"]);
    ok(home, &["vault", "create", "Team"]);
    let code: InviteCode = ok(home, &["invite", "create", "--vault", "Team"])
        .parse()
        .unwrap();
    let me = ok(home, &["id"]);
    assert_eq!(code.inviter.to_string(), me, "the code names its inviter");
    let listed = json(home, &["invite", "list", "--vault", "Team"]);
    let invite = &listed[0];
    assert_eq!(invite["invite_id"], code.invite.to_string().as_str());
    assert_eq!(invite["state"], "open");
    assert_eq!(invite["role"], "member");
    assert_eq!(invite["created_by"], me.as_str());
    let id = code.invite.to_string();
    ok(home, &["invite", "cancel", "--vault", "Team", &id]);
    let listed = json(home, &["invite", "list", "--vault", "Team"]);
    assert_eq!(listed[0]["state"], "cancelled");
    assert!(
        fails(home, &["invite", "cancel", "--vault", "Team", "not-an-id"])
            .contains("64 hex digits")
    );
    let unknown = nexus_core::Hash([5; 32]).to_string();
    assert!(fails(home, &["invite", "cancel", "--vault", "Team", &unknown]).contains("unknown"));
    let long = fails(
        home,
        &["invite", "create", "--vault", "Team", "--expires", "31d"],
    );
    assert!(long.contains("within 30 days"), "{long}");
}

#[test]
fn two_processes_writing_to_one_home_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_path_buf();
    ok(&home, &["init"]);
    ok(&home, &["vault", "create", "Shared"]);
    let doc = ok(&home, &["doc", "create", "--vault", "Shared"]);
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let home = home.clone();
            let doc = doc.clone();
            std::thread::spawn(move || {
                for i in 0..8 {
                    ok(
                        &home,
                        &[
                            "doc",
                            "put",
                            "--vault",
                            "Shared",
                            &doc,
                            &format!("w{w}k{i}"),
                            &i.to_string(),
                        ],
                    );
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let value = json(&home, &["doc", "get", "--vault", "Shared", &doc]);
    assert_eq!(value.as_object().unwrap().len(), 16, "{value}");
    assert_eq!(json(&home, &["check"])["ok"], true);
}

#[test]
fn check_reports_a_tampered_signature() {
    let (dir, doc) = home_with_document("V");
    let home = dir.path();
    ok(home, &["doc", "put", "--vault", "V", &doc, "k", "1"]);
    let db = rusqlite::Connection::open(home.join("nexus.db")).unwrap();
    let (key, mut value): (Vec<u8>, Vec<u8>) = db
        .query_row("SELECT key, value FROM changes", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let last = value.len() - 1;
    value[last] ^= 1; // the signature's last byte
    db.execute(
        "UPDATE changes SET value = ?1 WHERE key = ?2",
        rusqlite::params![value, key],
    )
    .unwrap();
    drop(db);
    let out = nexus(home, &["--json", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["problems"].as_array().unwrap().len(), 1);
}

/// `doc export` writes Automerge's own format: `automerge::Automerge::load` opens it with
/// the same value and the whole history.
#[test]
fn a_document_exports_as_automerge_bytes_that_automerge_loads() {
    use nexus_core::automerge::Automerge;
    let (dir, doc) = home_with_document("Notes");
    let home = dir.path();
    ok(home, &["doc", "put", "--vault", "Notes", &doc, "n", "1"]);
    ok(home, &["doc", "put", "--vault", "Notes", &doc, "n", "2"]);
    ok(
        home,
        &[
            "doc",
            "put",
            "--vault",
            "Notes",
            &doc,
            "body",
            r#""héllo 🌍""#,
            "--text",
        ],
    );
    let file = home.join("note.automerge");
    let export = |out: &str| -> Vec<String> {
        [
            "doc",
            "export",
            "--vault",
            "Notes",
            doc.as_str(),
            "--out",
            out,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let args = export(file.to_str().unwrap());
    let report = json(home, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(report["bytes"], bytes.len());
    let loaded = Automerge::load(&bytes).expect("Automerge loads the export");
    assert_eq!(loaded.get_changes(&[]).len(), 3, "the whole history");
    let value = nexus_core::json::to_json(&loaded.hydrate(None));
    let here = json(home, &["doc", "get", "--vault", "Notes", &doc]);
    assert_eq!(value, here);
    let args = export("/nonexistent/dir/x");
    let refused = fails(home, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        refused.contains("cannot write /nonexistent/dir/x"),
        "{refused}"
    );
}

/// A fresh home with a device, a vault named `vault` and one empty document in it.
fn home_with_document(vault: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    ok(home, &["init"]);
    ok(home, &["vault", "create", vault]);
    let doc = ok(home, &["doc", "create", "--vault", vault]);
    (dir, doc)
}
