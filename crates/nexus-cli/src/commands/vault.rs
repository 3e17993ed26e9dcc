//! Vaults and who belongs to them: `vault create|list|pending|accept|decline`,
//! `invite create|list|cancel`, `devices list|approve|revoke`.

use std::path::Path;

use nexus::views::{DeviceSummary, InviteSummary, VaultSummary};
use nexus_core::{InviteCode, random_bytes};

use super::{Report, daemon};
use crate::args::{DevicesCommand, InviteCommand, VaultCommand};
use crate::error::CliError;
use crate::home::Home;

pub(super) fn vault(dir: &Path, command: VaultCommand, now: u64) -> Result<Report, CliError> {
    let open = || Home::open(dir, false).map(|(home, _)| home);
    match command {
        VaultCommand::Create { name } => {
            let mut home = open()?;
            let (vault, out) = home.node.create_vault(&name, random_bytes()?, now)?;
            home.commit(out)?;
            Ok(Report::VaultCreated { vault, name })
        }
        VaultCommand::List => {
            let home = open()?;
            let me = home.key.device_id();
            let vaults = home.node.vaults().map(|v| VaultSummary::of(v, &me));
            Ok(Report::Vaults(vaults.collect()))
        }
        VaultCommand::Pending => Ok(Report::Offers(daemon::offers(dir)?)),
        VaultCommand::Accept { vault } => daemon::answer_offer(dir, &vault, true),
        VaultCommand::Decline { vault } => daemon::answer_offer(dir, &vault, false),
    }
}

pub(super) fn invite(
    home: &mut Home,
    dir: &Path,
    command: InviteCommand,
    now: u64,
) -> Result<Report, CliError> {
    let (vault, expires, role) = match command {
        InviteCommand::Create {
            vault,
            expires,
            role,
        } => (vault, expires, role),
        InviteCommand::List { vault } => {
            let vault = home.find_vault(&vault)?;
            return Ok(Report::Invites(InviteSummary::all_of(vault, now)));
        }
        InviteCommand::Cancel { vault, invite } => {
            let vault = home.vault_id(&vault)?;
            let out = home.node.cancel_invite(vault, invite, now)?;
            home.commit(out)?;
            return Ok(Report::InviteCancelled(invite));
        }
    };
    let vault = home.vault_id(&vault)?;
    let expires_at_ms = now.saturating_add(parse_duration_ms(&expires)?);
    let secret: [u8; 32] = random_bytes()?;
    let (invite, out) = home
        .node
        .create_invite(vault, &secret, role, expires_at_ms, now)?;
    home.commit(out)?;
    // A daemon that cannot be asked only costs the code its addresses.
    let listening = match daemon::daemon_status(dir) {
        Ok(Some(status)) => status.listening,
        _ => Vec::new(),
    };
    let mut addresses: Vec<String> = listening.iter().map(ToString::to_string).collect();
    // Addresses another machine can use first (relayed, then LAN), loopback last; a code
    // carries a bounded number.
    addresses.sort_by_key(|a| {
        (
            !a.contains("/p2p-circuit"),
            a.starts_with("/ip4/127.") || a.starts_with("/ip6/::1/"),
        )
    });
    addresses.truncate(nexus_core::invite_code::MAX_ADDRESSES);
    let code = InviteCode {
        vault,
        invite,
        secret,
        expires_at_ms,
        inviter: home.key.device_id(),
        addresses,
    };
    Ok(Report::Invite {
        code: Box::new(code),
        role,
    })
}

pub(super) fn devices(
    home: &mut Home,
    command: DevicesCommand,
    now: u64,
) -> Result<Report, CliError> {
    match command {
        DevicesCommand::List { vault } => {
            let vault = home.find_vault(&vault)?;
            let me = home.key.device_id();
            Ok(Report::Devices(DeviceSummary::all_of(vault, &me)))
        }
        DevicesCommand::Approve {
            vault,
            device,
            role,
        } => {
            let vault = home.vault_id(&vault)?;
            let out = home.node.add_device(vault, device, role, now)?;
            home.commit(out)?;
            Ok(Report::Approved { device, role })
        }
        DevicesCommand::Revoke { vault, device } => {
            let vault = home.vault_id(&vault)?;
            let out = home.node.revoke_device(vault, device, now)?;
            home.commit(out)?;
            Ok(Report::Revoked(device))
        }
    }
}

/// `30m`, `1h`, `7d`… in milliseconds.
fn parse_duration_ms(text: &str) -> Result<u64, CliError> {
    let bad = || CliError::Duration(text.to_owned());
    // The unit is the last character (which may be any character a person typed).
    let unit_at = text.char_indices().last().map_or(0, |(at, _)| at);
    let (number, unit) = text.split_at(unit_at);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(unit_ms).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_one_unit_and_refuse_the_rest_without_a_panic() {
        assert_eq!(parse_duration_ms("30m").unwrap(), 1_800_000);
        assert_eq!(parse_duration_ms("2d").unwrap(), 172_800_000);
        for bad in [
            "",
            "m",
            "10",
            "1w",
            "1ü",
            "ü",
            "-1h",
            "99999999999999999999d",
        ] {
            assert!(
                matches!(parse_duration_ms(bad), Err(CliError::Duration(_))),
                "{bad}"
            );
        }
    }
}
