//! Documents: `doc create|list|put|get|export`, and `check`, which verifies every stored
//! change of every document.

use std::path::Path;

use nexus::views::DocumentSummary;
use nexus_core::automerge::transaction::Transactable;
use nexus_core::automerge::{ObjType, ROOT};
use nexus_core::json::put_json;
use nexus_core::{DocId, Problem, VaultId};
use serde_json::{Map, Value};

use super::Report;
use crate::args::DocCommand;
use crate::error::CliError;
use crate::home::Home;

/// One document of `doc list`: its summary and its content.
pub(crate) struct Listed {
    pub(crate) summary: DocumentSummary,
    pub(crate) content: Value,
}

/// What `check` found.
pub(crate) struct Checked {
    /// Changes verified.
    pub(crate) changes: usize,
    /// Vaults looked at.
    pub(crate) vaults: usize,
    pub(crate) problems: Vec<CheckProblem>,
}

/// One problem `check` found.
pub(crate) struct CheckProblem {
    pub(crate) vault: VaultId,
    pub(crate) doc: DocId,
    pub(crate) problem: Problem,
}

pub(super) fn doc(home: &mut Home, command: DocCommand, now: u64) -> Result<Report, CliError> {
    match command {
        DocCommand::Create { vault, json_file } => {
            let vault = home.vault_id(&vault)?;
            let initial = json_file.as_deref().map(read_object).transpose()?;
            let doc = DocId::random()?;
            let mut out = home.node.create_document(vault, doc, now)?;
            if let Some(map) = initial {
                out.extend(home.node.change(vault, doc, |tx| {
                    for (key, value) in &map {
                        put_json(tx, &ROOT, key.as_str(), value)?;
                    }
                    Ok(())
                })?);
            }
            home.commit(out)?;
            Ok(Report::DocCreated(doc))
        }
        DocCommand::List { vault } => {
            let listed = home.find_vault(&vault)?.documents().map(|d| Listed {
                summary: DocumentSummary::of(d),
                content: d.to_json(),
            });
            Ok(Report::Documents(listed.collect()))
        }
        DocCommand::Put {
            vault,
            doc,
            key,
            value,
            text,
        } => {
            let vault = home.vault_id(&vault)?;
            let value = parse_json(&value)?;
            if home.vault(&vault)?.document(&doc).is_none() {
                return Err(CliError::UnknownDocument { vault, doc });
            }
            let out = match (text, value.as_str()) {
                (false, _) => home
                    .node
                    .change(vault, doc, |tx| put_json(tx, &ROOT, key.as_str(), &value))?,
                (true, Some(string)) => home.node.change(vault, doc, |tx| {
                    let text = tx.put_object(ROOT, key.as_str(), ObjType::Text)?;
                    tx.splice_text(&text, 0, 0, string)
                })?,
                (true, None) => return Err(CliError::NotText(value)),
            };
            home.commit(out)?;
            Ok(Report::Put { doc, key, value })
        }
        DocCommand::Export { vault, doc, out } => {
            let vault = home.vault_id(&vault)?;
            let bytes = home
                .vault(&vault)?
                .document(&doc)
                .ok_or(CliError::UnknownDocument { vault, doc })?
                .export();
            std::fs::write(&out, &bytes).map_err(|e| CliError::Write {
                path: out.clone(),
                reason: e.to_string(),
            })?;
            Ok(Report::Exported {
                doc,
                path: out,
                bytes: bytes.len(),
            })
        }
        DocCommand::Get { vault, doc, key } => {
            let vault = home.vault_id(&vault)?;
            let document = home
                .vault(&vault)?
                .document(&doc)
                .ok_or(CliError::UnknownDocument { vault, doc })?;
            let mut value = document.to_json();
            if let Some(key) = key {
                value = value.get(&key).cloned().unwrap_or(Value::Null);
            }
            Ok(Report::Document(value))
        }
    }
}

/// Verifies every signature of every document.
pub(super) fn check(home: &Home) -> Checked {
    let mut checked = Checked {
        changes: 0,
        vaults: home.node.vaults().count(),
        problems: Vec::new(),
    };
    for vault in home.node.vaults() {
        for doc in vault.documents() {
            checked.changes += doc.change_count();
            checked
                .problems
                .extend(doc.verify().into_iter().map(|problem| CheckProblem {
                    vault: vault.id(),
                    doc: doc.id(),
                    problem,
                }));
        }
    }
    checked
}

fn parse_json(value: &str) -> Result<Value, CliError> {
    serde_json::from_str(value).map_err(|source| CliError::Json {
        value: value.to_owned(),
        source,
    })
}

/// The JSON object in the file at `path` (what `--json-file` starts a document from).
fn read_object(path: &Path) -> Result<Map<String, Value>, CliError> {
    let bad = |reason: String| CliError::JsonFile {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    match serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))? {
        Value::Object(map) => Ok(map),
        _ => Err(bad("a document starts from a JSON object ({...})".into())),
    }
}
