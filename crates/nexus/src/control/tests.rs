//! The control socket's messages against the exact lines earlier daemons and commands
//! wrote: a change to the wire form fails here before it strands an older `nexus`.

use nexus_core::{ActorId, DeviceKey, Hash, MemoryStore, NodeConfig};

use super::*;

fn device(seed: u8) -> DeviceId {
    DeviceKey::from_secret_bytes(&[seed; 32]).device_id()
}

fn vault() -> VaultId {
    VaultId(Hash([5; 32]))
}

/// Asserts that `request` is written as exactly `line`, and `line` reads back as it.
fn request_wire(request: Request, line: &str) {
    assert_eq!(request.to_json().unwrap(), line);
    assert_eq!(Request::from_json(line).unwrap(), request);
}

/// Asserts that `reply` is written as exactly `line`, and `line` reads back as it.
fn reply_wire(reply: Reply, line: &str) {
    assert_eq!(reply.to_json().unwrap(), line);
    assert_eq!(Reply::from_json(line).unwrap(), reply);
}

#[test]
fn requests_are_the_lines_commands_always_sent() {
    request_wire(Request::Status, r#"{"op":"status"}"#);
    let address: Multiaddr = format!("/ip4/192.168.1.7/tcp/4001/p2p/{}", device(2))
        .parse()
        .unwrap();
    request_wire(
        Request::Dial {
            address: address.clone(),
        },
        &format!(r#"{{"address":"{address}","op":"dial"}}"#),
    );
    let code = InviteCode {
        vault: vault(),
        invite: Hash([6; 32]),
        secret: [7; 32],
        expires_at_ms: 1_700_000_000_000,
        inviter: nexus_core::DeviceKey::from_secret_bytes(&[8; 32]).device_id(),
        addresses: vec![address.to_string()],
    };
    request_wire(
        Request::Join { code: code.clone() },
        &format!(r#"{{"code":"{code}","op":"join"}}"#),
    );
    let vault = vault();
    request_wire(
        Request::Accept { vault },
        &format!(r#"{{"op":"accept","vault":"{vault}"}}"#),
    );
    request_wire(
        Request::Decline { vault },
        &format!(r#"{{"op":"decline","vault":"{vault}"}}"#),
    );
}

#[test]
fn replies_are_the_lines_daemons_always_answered() {
    reply_wire(Reply::Dialed, r#"{"ok":true}"#);
    reply_wire(
        Reply::joined(vault(), false),
        &format!(r#"{{"ok":true,"vault_id":"{}"}}"#, vault()),
    );
    reply_wire(
        Reply::Joined(Joined {
            vault_id: vault(),
            already_member: true,
        }),
        &format!(
            r#"{{"already_member":true,"ok":true,"vault_id":"{}"}}"#,
            vault()
        ),
    );
    reply_wire(
        Reply::Failed("unknown request".into()),
        r#"{"error":"unknown request","ok":false}"#,
    );
}

/// A running daemon's status with one vault, one session and one peer.
fn daemon_status() -> Status {
    Status {
        running: true,
        device_id: device(1),
        home: Some("/home/ada/.local/share/nexus".into()),
        listening: vec![
            format!("/ip4/127.0.0.1/tcp/4001/p2p/{}", device(1))
                .parse()
                .unwrap(),
        ],
        connected: vec![device(2)],
        vaults: vec![VaultStatus {
            vault_id: vault(),
            name: "Family \"home\"".into(),
            member: Some(true),
            documents: 3,
            members: 2,
            sessions: vec![SessionStatus {
                device_id: device(2),
                syncing: true,
            }],
            last_sync_ms: Some(1_700_000_000_123),
        }],
        peers: vec![PeerStatus {
            device_id: device(2),
            relay: Some(false),
            connected: true,
            addresses: vec!["/ip4/127.0.0.1/tcp/4002".into()],
            last_seen_ms: 1_700_000_000_100,
            failures: 0,
        }],
        offers: Vec::new(),
    }
}

#[test]
fn a_running_daemons_status_is_the_line_it_always_answered() {
    let (me, peer, vault) = (device(1), device(2), vault());
    let line = format!(
        concat!(
            r#"{{"connected":["{peer}"],"device_id":"{me}","home":"/home/ada/.local/share/nexus","#,
            r#""listening":["/ip4/127.0.0.1/tcp/4001/p2p/{me}"],"ok":true,"#,
            r#""peers":[{{"addresses":["/ip4/127.0.0.1/tcp/4002"],"connected":true,"device_id":"{peer}","failures":0,"last_seen_ms":1700000000100,"relay":false}}],"#,
            r#""running":true,"#,
            r#""vaults":[{{"documents":3,"last_sync_ms":1700000000123,"member":true,"members":2,"name":"Family \"home\"","#,
            r#""sessions":[{{"device_id":"{peer}","syncing":true}}],"vault_id":"{vault}"}}]}}"#
        ),
        me = me,
        peer = peer,
        vault = vault
    );
    reply_wire(Reply::Status(Box::new(daemon_status())), &line);
}

#[test]
fn the_stored_status_leaves_out_what_only_a_daemon_knows() {
    let key = DeviceKey::from_secret_bytes(&[1; 32]);
    let store = MemoryStore::new();
    let mut node = Node::load(&store, key, ActorId::random(), NodeConfig::new()).unwrap();
    let (vault, _) = node.create_vault("Notes", [3; 16], 10).unwrap();
    let mut peer = PeerRecord::new(device(2));
    peer.add_address("/ip4/10.0.0.2/tcp/4001");
    peer.last_seen_ms = 500;
    peer.failures = 2;
    peer.last_synced.insert(vault, (400, [0; 16]));
    let mut older = PeerRecord::new(device(3));
    older.last_synced.insert(vault, (300, [0; 16]));

    let status = Status::stored(&node, &[peer, older]);
    let (me, two, three) = (device(1), device(2), device(3));
    let line = format!(
        concat!(
            r#"{{"connected":[],"device_id":"{me}","listening":[],"#,
            r#""peers":[{{"addresses":["/ip4/10.0.0.2/tcp/4001"],"connected":false,"device_id":"{two}","failures":2,"last_seen_ms":500}},"#,
            r#"{{"addresses":[],"connected":false,"device_id":"{three}","failures":0,"last_seen_ms":0}}],"#,
            r#""running":false,"#,
            r#""vaults":[{{"documents":0,"last_sync_ms":400,"members":1,"name":"Notes","sessions":[],"vault_id":"{vault}"}}]}}"#
        ),
        me = me,
        two = two,
        three = three,
        vault = vault
    );
    assert_eq!(sorted_json(&status).unwrap(), line);
    assert_eq!(serde_json::from_str::<Status>(&line).unwrap(), status);
}

#[test]
fn a_vault_never_synced_shows_null() {
    let mut status = daemon_status();
    status.vaults[0].last_sync_ms = None;
    let line = Reply::Status(Box::new(status.clone())).to_json().unwrap();
    assert!(line.contains(r#""last_sync_ms":null"#), "{line}");
    assert_eq!(
        Reply::from_json(&line).unwrap(),
        Reply::Status(Box::new(status))
    );
}

#[test]
fn lines_that_are_no_request_are_told_apart() {
    assert!(matches!(
        Request::from_json("status please"),
        Err(RequestError::NotJson(_))
    ));
    for line in [
        r#"{"op":"reboot"}"#,
        r#"{"op":"dial"}"#,
        r#"{"op":"join","code":7}"#,
        r#"{"address":"/ip4/1.2.3.4/tcp/1"}"#,
    ] {
        assert!(
            matches!(Request::from_json(line), Err(RequestError::Unknown(_))),
            "{line}"
        );
    }
    let error = Request::from_json(r#"{"op":"dial","address":"not an address"}"#).unwrap_err();
    assert!(error.to_string().contains("not an address"), "{error}");
    let error = Request::from_json(r#"{"op":"join","code":"nexus1nope"}"#).unwrap_err();
    assert!(
        error.to_string().starts_with("unknown request: "),
        "{error}"
    );
}

#[test]
fn a_refusal_without_a_reason_is_still_a_refusal() {
    assert!(matches!(
        Reply::from_json(r#"{"ok":false}"#),
        Ok(Reply::Failed(_))
    ));
    assert!(Reply::from_json("[]").is_err());
    assert!(Reply::from_json(r#"{"running":true}"#).is_err(), "no `ok`");
}
