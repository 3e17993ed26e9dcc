//! Lists of edits, the way the JavaScript side describes a change, applied in one
//! transaction.

use super::*;

/// Why a list of edits could not be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// The edit list is not shaped as documented on [`apply_edits`].
    #[error("edit {index}: {reason}")]
    Malformed {
        /// Which edit (from 0).
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The path does not lead to an object of the right kind.
    #[error("edit {index}: path {path}: {reason}")]
    Path {
        /// Which edit.
        index: usize,
        /// The path as given.
        path: String,
        /// What was found instead.
        reason: String,
    },
    /// Automerge refused the operation.
    #[error("edit {index}: {source}")]
    Automerge {
        /// Which edit.
        index: usize,
        /// Automerge's error.
        source: Box<AutomergeError>,
    },
}

/// Applies a list of edits, all in one transaction (the caller's). This is how the
/// JavaScript side describes a change: its proxy records what the callback did and sends
/// the list. Each edit is an object with `op` and `path` (an array of map keys and list
/// indexes from the document root; the last element names the place edited):
///
/// - `{"op": "put", "path": [..., key], "value": V}`: sets a map key, or replaces a list
///   element (an index equal to the list's length appends). A string put where
///   collaborative text is edits that text (it stays text). `V` is JSON as for
///   [`put_json`]; with `"kind": "text"` a string becomes collaborative text, with
///   `"kind": "counter"` a number becomes a counter.
/// - `{"op": "insert", "path": [..., index], "value": V}`: inserts into a list.
/// - `{"op": "delete", "path": [..., key or index]}`: removes a key or list element.
/// - `{"op": "splice", "path": [...text], "index": I, "delete": D, "insert": "S"}`:
///   edits collaborative text in place.
/// - `{"op": "increment", "path": [..., key or index], "by": N}`: adds to a counter.
pub fn apply_edits(tx: &mut impl Transactable, edits: &Json) -> Result<(), EditError> {
    let Json::Array(edits) = edits else {
        return Err(EditError::Malformed {
            index: 0,
            reason: "the edits must be an array".into(),
        });
    };
    for (index, edit) in edits.iter().enumerate() {
        apply_edit(tx, index, edit)?;
    }
    Ok(())
}

fn apply_edit(tx: &mut impl Transactable, index: usize, edit: &Json) -> Result<(), EditError> {
    let malformed = |reason: &str| EditError::Malformed {
        index,
        reason: reason.to_owned(),
    };
    let op = edit
        .get("op")
        .and_then(Json::as_str)
        .ok_or_else(|| malformed("no \"op\" string"))?;
    let path = edit
        .get("path")
        .and_then(Json::as_array)
        .ok_or_else(|| malformed("no \"path\" array"))?;
    let am = |source| EditError::Automerge {
        index,
        source: Box::new(source),
    };
    if op == "splice" {
        let text = resolve(tx, index, path, path.len())?;
        let at = edit
            .get("index")
            .and_then(Json::as_u64)
            .ok_or_else(|| malformed("splice needs an \"index\""))?;
        let delete = edit.get("delete").and_then(Json::as_i64).unwrap_or(0);
        let insert = edit.get("insert").and_then(Json::as_str).unwrap_or("");
        if tx.object_type(&text).map_err(am)? != ObjType::Text {
            return Err(EditError::Path {
                index,
                path: Json::Array(path.clone()).to_string(),
                reason: "splice works on text".into(),
            });
        }
        return tx
            .splice_text(&text, at as usize, delete as isize, insert)
            .map_err(am);
    }
    let Some(last) = path.last() else {
        return Err(malformed("the path is empty"));
    };
    let parent = resolve(tx, index, path, path.len() - 1)?;
    let prop: Prop = match last {
        Json::String(key) => Prop::Map(key.clone()),
        Json::Number(n) => Prop::Seq(
            n.as_u64()
                .ok_or_else(|| malformed("a list index must be a whole number"))?
                as usize,
        ),
        _ => return Err(malformed("path elements are strings or whole numbers")),
    };
    let is_list = matches!(
        tx.object_type(&parent).map_err(am)?,
        ObjType::List | ObjType::Text
    );
    let value = || edit.get("value").ok_or_else(|| malformed("no \"value\""));
    match (op, &prop) {
        ("put", Prop::Seq(i)) if is_list && *i >= tx.length(&parent) => {
            insert_value(tx, &parent, *i, value()?, edit).map_err(am)
        }
        ("put", _)
            if let (None, Some(string), Some(text)) = (
                edit.get("kind"),
                edit.get("value").and_then(Json::as_str),
                existing_text(tx, &parent, &prop),
            ) =>
        {
            // A string written over collaborative text edits the text (the smallest
            // splices that make it), so it stays text and merges with concurrent edits.
            tx.update_text(&text, string).map_err(am)
        }
        ("put", _) => {
            if is_list {
                tx.delete(&parent, prop.clone()).map_err(am)?;
                let Prop::Seq(i) = prop else {
                    return Err(malformed("a list takes an index"));
                };
                insert_value(tx, &parent, i, value()?, edit).map_err(am)
            } else {
                put_value(tx, &parent, prop, value()?, edit).map_err(am)
            }
        }
        ("insert", Prop::Seq(i)) if is_list => {
            insert_value(tx, &parent, *i, value()?, edit).map_err(am)
        }
        ("insert", _) => Err(malformed("insert needs a list index")),
        ("delete", _) => tx.delete(&parent, prop).map_err(am),
        ("increment", _) => {
            let by = edit
                .get("by")
                .and_then(Json::as_i64)
                .ok_or_else(|| malformed("increment needs a whole number \"by\""))?;
            tx.increment(&parent, prop, by).map_err(am)
        }
        (other, _) => Err(malformed(&format!("unknown op \"{other}\""))),
    }
}

/// The object that the first `depth` elements of `path` lead to.
fn resolve(
    tx: &impl Transactable,
    index: usize,
    path: &[Json],
    depth: usize,
) -> Result<ObjId, EditError> {
    let mut obj = ObjId::Root;
    for (i, element) in path.iter().take(depth).enumerate() {
        let prop: Prop = match element {
            Json::String(key) => Prop::Map(key.clone()),
            Json::Number(n) => match n.as_u64() {
                Some(n) => Prop::Seq(n as usize),
                None => {
                    return Err(EditError::Malformed {
                        index,
                        reason: "a list index must be a whole number".into(),
                    });
                }
            },
            _ => {
                return Err(EditError::Malformed {
                    index,
                    reason: "path elements are strings or whole numbers".into(),
                });
            }
        };
        let found = tx.get(&obj, prop).map_err(|source| EditError::Automerge {
            index,
            source: Box::new(source),
        })?;
        match found {
            Some((automerge::Value::Object(_), id)) => obj = id,
            _ => {
                return Err(EditError::Path {
                    index,
                    path: Json::Array(path[..=i].to_vec()).to_string(),
                    reason: "no map, list or text there".into(),
                });
            }
        }
    }
    Ok(obj)
}

/// The collaborative text at `prop` of `obj`, if that is what it holds.
fn existing_text(tx: &impl Transactable, obj: &ObjId, prop: &Prop) -> Option<ObjId> {
    match tx.get(obj, prop.clone()).ok()?? {
        (automerge::Value::Object(ObjType::Text), id) => Some(id),
        _ => None,
    }
}

fn put_value(
    tx: &mut impl Transactable,
    obj: &ObjId,
    prop: Prop,
    value: &Json,
    edit: &Json,
) -> Result<(), AutomergeError> {
    match (edit.get("kind").and_then(Json::as_str), value) {
        (Some("text"), Json::String(text)) => {
            let id = tx.put_object(obj, prop, ObjType::Text)?;
            tx.splice_text(&id, 0, 0, text)
        }
        (Some("counter"), Json::Number(n)) => {
            tx.put(obj, prop, ScalarValue::counter(n.as_i64().unwrap_or(0)))
        }
        _ => put_json(tx, obj, prop, value),
    }
}

fn insert_value(
    tx: &mut impl Transactable,
    list: &ObjId,
    index: usize,
    value: &Json,
    edit: &Json,
) -> Result<(), AutomergeError> {
    match (edit.get("kind").and_then(Json::as_str), value) {
        (Some("text"), Json::String(text)) => {
            let id = tx.insert_object(list, index, ObjType::Text)?;
            tx.splice_text(&id, 0, 0, text)
        }
        (Some("counter"), Json::Number(n)) => {
            tx.insert(list, index, ScalarValue::counter(n.as_i64().unwrap_or(0)))
        }
        _ => put_json(tx, list, index, value),
    }
}

#[cfg(test)]
mod edit_tests {
    use super::*;
    use automerge::{AutoCommit, Automerge, ROOT, ReadDoc};
    use serde_json::json;

    fn doc_json(doc: &mut AutoCommit) -> Json {
        to_json(&doc.document().hydrate(None))
    }

    #[test]
    fn edits_put_insert_delete_splice_and_increment() {
        let mut doc = AutoCommit::new();
        apply_edits(
            &mut doc,
            &json!([
                {"op": "put", "path": ["title"], "value": "Groceries"},
                {"op": "put", "path": ["items"], "value": ["milk", "eggs"]},
                {"op": "insert", "path": ["items", 1], "value": "bread"},
                {"op": "put", "path": ["items", 3], "value": "tea"},
                {"op": "delete", "path": ["items", 0]},
                {"op": "put", "path": ["note"], "value": "hello", "kind": "text"},
                {"op": "splice", "path": ["note"], "index": 5, "delete": 0, "insert": " world"},
                {"op": "put", "path": ["done"], "value": 0, "kind": "counter"},
                {"op": "increment", "path": ["done"], "by": 2},
            ]),
        )
        .unwrap();
        assert_eq!(
            doc_json(&mut doc),
            json!({"title": "Groceries", "items": ["bread", "eggs", "tea"], "note": "hello world", "done": 2})
        );
        assert_eq!(
            doc.object_type(&doc.get(ObjId::Root, "note").unwrap().unwrap().1)
                .unwrap(),
            ObjType::Text
        );
    }

    #[test]
    fn a_string_put_over_text_edits_the_text_and_merges_with_a_concurrent_splice() {
        let mut doc = AutoCommit::new();
        apply_edits(
            &mut doc,
            &json!([
                {"op": "put", "path": ["note"], "value": "hello world", "kind": "text"},
                {"op": "put", "path": ["list"], "value": []},
                {"op": "insert", "path": ["list", 0], "value": "item", "kind": "text"},
            ]),
        )
        .unwrap();
        let mut other = doc.fork();
        // One side assigns the whole string (what `d.note = "…"` records), the other
        // splices concurrently: both survive, and it is still text.
        apply_edits(
            &mut doc,
            &json!([
                {"op": "put", "path": ["note"], "value": "hello there world"},
                {"op": "put", "path": ["list", 0], "value": "items"},
            ]),
        )
        .unwrap();
        apply_edits(
            &mut other,
            &json!([{"op": "splice", "path": ["note"], "index": 11, "delete": 0, "insert": "!"}]),
        )
        .unwrap();
        doc.merge(&mut other).unwrap();
        assert_eq!(
            doc_json(&mut doc),
            json!({"note": "hello there world!", "list": ["items"]})
        );
        let note = doc.get(ObjId::Root, "note").unwrap().unwrap().1;
        assert_eq!(doc.object_type(&note).unwrap(), ObjType::Text);
        // A non-string still replaces it.
        apply_edits(
            &mut doc,
            &json!([{"op": "put", "path": ["note"], "value": 3}]),
        )
        .unwrap();
        assert_eq!(doc_json(&mut doc)["note"], 3);
    }

    #[test]
    fn bad_edits_are_refused_with_the_edit_named() {
        let mut doc = AutoCommit::new();
        let cases = [
            (json!({"op": "put"}), "must be an array"),
            (json!([{"path": ["a"], "value": 1}]), "edit 0: no \"op\""),
            (json!([{"op": "put", "path": []}]), "the path is empty"),
            (
                json!([{"op": "put", "path": ["a"], "value": 1}, {"op": "put", "path": ["a", "b"], "value": 1}]),
                "edit 1: path [\"a\"]",
            ),
            (json!([{"op": "fly", "path": ["a"]}]), "unknown op \"fly\""),
            (
                json!([{"op": "splice", "path": [], "index": 0}]),
                "splice works on text",
            ),
        ];
        for (edits, expected) in cases {
            let error = apply_edits(&mut doc, &edits).unwrap_err().to_string();
            assert!(error.contains(expected), "{error} should say {expected}");
        }
    }

    /// Applies patches in the JSON shape to a JSON value, as a JavaScript user would.
    fn apply_patches(state: &mut serde_json::Value, patches: &serde_json::Value) {
        for patch in patches.as_array().unwrap() {
            let path = patch["path"].as_array().unwrap();
            let (last, parents) = path.split_last().unwrap();
            let mut target = &mut *state;
            for p in parents {
                target = match p {
                    serde_json::Value::String(k) => target.get_mut(k.as_str()).unwrap(),
                    n => target.get_mut(n.as_u64().unwrap() as usize).unwrap(),
                };
            }
            let action = patch["action"].as_str().unwrap();
            match (target, last) {
                (serde_json::Value::Object(map), serde_json::Value::String(key)) => match action {
                    "put" => {
                        map.insert(key.clone(), patch["value"].clone());
                    }
                    "del" => {
                        map.remove(key);
                    }
                    "inc" => {
                        let n = map[key].as_i64().unwrap() + patch["value"].as_i64().unwrap();
                        map.insert(key.clone(), n.into());
                    }
                    other => panic!("{other} on a map"),
                },
                (serde_json::Value::Array(list), index) => {
                    let i = index.as_u64().unwrap() as usize;
                    match action {
                        "put" => list[i] = patch["value"].clone(),
                        "insert" => {
                            for (k, v) in patch["values"].as_array().unwrap().iter().enumerate() {
                                list.insert(i + k, v.clone());
                            }
                        }
                        "del" => {
                            let n = patch.get("length").map_or(1, |l| l.as_u64().unwrap());
                            list.drain(i..i + n as usize);
                        }
                        other => panic!("{other} on a list"),
                    }
                }
                (serde_json::Value::String(text), index) => {
                    let i = index.as_u64().unwrap() as usize;
                    let mut chars: Vec<char> = text.chars().collect();
                    match action {
                        "splice" => {
                            let insert: Vec<char> =
                                patch["value"].as_str().unwrap().chars().collect();
                            chars.splice(i..i, insert);
                        }
                        "del" => {
                            let n = patch.get("length").map_or(1, |l| l.as_u64().unwrap());
                            chars.drain(i..i + n as usize);
                        }
                        other => panic!("{other} on text"),
                    }
                    *text = chars.into_iter().collect();
                }
                (target, last) => panic!("{action} at {last} of {target}"),
            }
        }
    }

    #[test]
    fn patches_replayed_on_the_old_value_give_the_new_one() {
        let mut doc = Automerge::new();
        doc.transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.put(ROOT, "title", "groceries")?;
            tx.put(ROOT, "gone", 1_i64)?;
            tx.put(ROOT, "count", ScalarValue::counter(5))?;
            let list = tx.put_object(ROOT, "items", ObjType::List)?;
            tx.insert(&list, 0, "milk")?;
            tx.insert(&list, 1, "eggs")?;
            tx.insert(&list, 2, "rice")?;
            let text = tx.put_object(ROOT, "note", ObjType::Text)?;
            tx.splice_text(&text, 0, 0, "buy soon")?;
            Ok(())
        })
        .unwrap();
        let before_heads = doc.get_heads();
        let mut state = to_json(&doc.hydrate(None));
        let edits = serde_json::json!([
            {"op": "put", "path": ["title"], "value": "market"},
            {"op": "delete", "path": ["gone"]},
            {"op": "increment", "path": ["count"], "by": -2},
            {"op": "delete", "path": ["items", 0]},
            {"op": "delete", "path": ["items", 0]},
            {"op": "insert", "path": ["items", 1], "value": {"name": "tea", "tags": ["hot"]}},
            {"op": "splice", "path": ["note"], "index": 4, "delete": 4, "insert": "later"},
            {"op": "put", "path": ["meta"], "value": {"by": "ana"}},
        ]);
        doc.transact::<_, _, EditError>(|tx| apply_edits(tx, &edits))
            .unwrap();
        let patches = patches_to_json(&doc.diff(&before_heads, &doc.get_heads()));
        let actions: Vec<&str> = patches
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["action"].as_str().unwrap())
            .collect();
        for expected in ["put", "del", "inc", "insert", "splice"] {
            assert!(
                actions.contains(&expected),
                "{expected} missing in {patches}"
            );
        }
        apply_patches(&mut state, &patches);
        assert_eq!(state, to_json(&doc.hydrate(None)));

        // From nothing, the patches build the whole document.
        let mut state = serde_json::json!({});
        apply_patches(
            &mut state,
            &patches_to_json(&doc.diff(&[], &doc.get_heads())),
        );
        assert_eq!(state, to_json(&doc.hydrate(None)));
    }
}
