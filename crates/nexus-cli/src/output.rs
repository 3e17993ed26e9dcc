//! What a command prints: one value, shown as JSON (`--json`) or as text for people.

use serde_json::Value;

/// A command's result: the JSON form, and the lines a person reads.
pub(crate) struct Out {
    pub(crate) json: Value,
    pub(crate) human: String,
    /// Non-zero when the command ran but found something wrong (`nexus check`).
    pub(crate) exit_code: u8,
}

impl Out {
    pub(crate) fn new(json: Value, human: impl Into<String>) -> Self {
        Self {
            json,
            human: human.into(),
            exit_code: 0,
        }
    }
}

pub(crate) fn print(out: &Out, json: bool) {
    if json {
        println!("{}", out.json);
    } else if !out.human.is_empty() {
        println!("{}", out.human);
    }
}
