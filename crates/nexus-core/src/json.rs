//! Conversion of document values to JSON, for display, the CLI and the JS side.

use automerge::hydrate::Value;
use automerge::transaction::Transactable;
use automerge::{AutomergeError, ObjId, ObjType, Patch, PatchAction, Prop, ScalarValue};
use serde_json::{Map, Number, Value as Json};

/// Writes a JSON value at `prop` of `obj`: objects become maps, arrays lists, strings
/// strings, numbers integers when they are whole (floats otherwise), `null` null.
pub fn put_json(
    tx: &mut impl Transactable,
    obj: &ObjId,
    prop: impl Into<Prop>,
    value: &Json,
) -> Result<(), AutomergeError> {
    let prop = prop.into();
    match value {
        Json::Object(map) => {
            let child = match prop {
                Prop::Map(key) => tx.put_object(obj, key, ObjType::Map)?,
                Prop::Seq(index) => tx.insert_object(obj, index, ObjType::Map)?,
            };
            for (key, value) in map {
                put_json(tx, &child, key.as_str(), value)?;
            }
        }
        Json::Array(items) => {
            let child = match prop {
                Prop::Map(key) => tx.put_object(obj, key, ObjType::List)?,
                Prop::Seq(index) => tx.insert_object(obj, index, ObjType::List)?,
            };
            for (index, value) in items.iter().enumerate() {
                put_json(tx, &child, index, value)?;
            }
        }
        scalar => {
            let scalar = json_scalar(scalar);
            match prop {
                Prop::Map(key) => tx.put(obj, key, scalar)?,
                Prop::Seq(index) => tx.insert(obj, index, scalar)?,
            }
        }
    }
    Ok(())
}

fn json_scalar(value: &Json) -> ScalarValue {
    match value {
        Json::Bool(b) => ScalarValue::Boolean(*b),
        Json::String(s) => ScalarValue::Str(s.as_str().into()),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => ScalarValue::Int(i),
            (None, Some(u), _) => ScalarValue::Uint(u),
            (_, _, Some(f)) => ScalarValue::F64(f),
            _ => ScalarValue::Null,
        },
        _ => ScalarValue::Null,
    }
}

/// Converts a hydrated Automerge value to JSON: maps become objects, lists arrays, text a
/// string, counters and timestamps numbers, bytes an array of numbers.
pub fn to_json(value: &Value) -> Json {
    match value {
        Value::Map(map) => Json::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), to_json(&v.value)))
                .collect::<Map<String, Json>>(),
        ),
        Value::List(list) => Json::Array(list.iter().map(|v| to_json(&v.value)).collect()),
        Value::Text(text) => Json::String(text.to_string()),
        Value::Scalar(scalar) => scalar_to_json(scalar),
    }
}

fn scalar_to_json(scalar: &ScalarValue) -> Json {
    match scalar {
        ScalarValue::Str(s) => Json::String(s.to_string()),
        ScalarValue::Int(n) | ScalarValue::Timestamp(n) => Json::Number((*n).into()),
        ScalarValue::Uint(n) => Json::Number((*n).into()),
        ScalarValue::F64(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        ScalarValue::Counter(c) => Json::Number(i64::from(c).into()),
        ScalarValue::Boolean(b) => Json::Bool(*b),
        ScalarValue::Bytes(bytes) => Json::Array(bytes.iter().map(|b| Json::from(*b)).collect()),
        ScalarValue::Unknown { .. } | ScalarValue::Null => Json::Null,
    }
}

/// Converts Automerge patches to the JSON shape JavaScript users know from
/// `@automerge/automerge`: `{ action, path, ... }` with `path` an array of map keys and
/// list indexes from the root, and the actions
///
/// - `put` (`value`, `conflict` when concurrent writes left other values),
/// - `insert` (`values`, inserted at the index ending the path),
/// - `splice` (`value`, text inserted at the index ending the path),
/// - `del` (`length` when more than one list element went),
/// - `inc` (`value`, added to a counter),
/// - `conflict` (a key or index now holds concurrent values),
/// - `mark` (`marks`: `{ name, value, start, end }`).
///
/// A new map, list or text arrives as `{}`, `[]` or `""` followed by patches that fill it.
pub fn patches_to_json(patches: &[Patch]) -> Json {
    Json::Array(patches.iter().map(patch_to_json).collect())
}

fn patch_to_json(patch: &Patch) -> Json {
    let mut path: Vec<Json> = patch.path.iter().map(|(_, prop)| prop_json(prop)).collect();
    let mut object = Map::new();
    let action = match &patch.action {
        PatchAction::PutMap {
            key,
            value,
            conflict,
        } => {
            path.push(Json::String(key.clone()));
            object.insert("value".into(), value_json(&value.0));
            if *conflict {
                object.insert("conflict".into(), Json::Bool(true));
            }
            "put"
        }
        PatchAction::PutSeq {
            index,
            value,
            conflict,
        } => {
            path.push(Json::from(*index));
            object.insert("value".into(), value_json(&value.0));
            if *conflict {
                object.insert("conflict".into(), Json::Bool(true));
            }
            "put"
        }
        PatchAction::Insert { index, values } => {
            path.push(Json::from(*index));
            let values = values.iter().map(|(v, _, _)| value_json(v)).collect();
            object.insert("values".into(), Json::Array(values));
            "insert"
        }
        PatchAction::SpliceText { index, value, .. } => {
            path.push(Json::from(*index));
            object.insert("value".into(), Json::String(value.make_string()));
            "splice"
        }
        PatchAction::Increment { prop, value } => {
            path.push(prop_json(prop));
            object.insert("value".into(), Json::from(*value));
            "inc"
        }
        PatchAction::Conflict { prop } => {
            path.push(prop_json(prop));
            "conflict"
        }
        PatchAction::DeleteMap { key } => {
            path.push(Json::String(key.clone()));
            "del"
        }
        PatchAction::DeleteSeq { index, length } => {
            path.push(Json::from(*index));
            if *length > 1 {
                object.insert("length".into(), Json::from(*length));
            }
            "del"
        }
        PatchAction::Mark { marks } => {
            let marks = marks
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "name": m.name.as_str(), "value": scalar_to_json(&m.value),
                        "start": m.start, "end": m.end,
                    })
                })
                .collect();
            object.insert("marks".into(), Json::Array(marks));
            "mark"
        }
    };
    object.insert("action".into(), Json::String(action.into()));
    object.insert("path".into(), Json::Array(path));
    Json::Object(object)
}

fn prop_json(prop: &Prop) -> Json {
    match prop {
        Prop::Map(key) => Json::String(key.clone()),
        Prop::Seq(index) => Json::from(*index),
    }
}

fn value_json(value: &automerge::Value<'_>) -> Json {
    match value {
        automerge::Value::Object(ObjType::Map | ObjType::Table) => Json::Object(Map::new()),
        automerge::Value::Object(ObjType::List) => Json::Array(Vec::new()),
        automerge::Value::Object(ObjType::Text) => Json::String(String::new()),
        automerge::Value::Scalar(scalar) => scalar_to_json(scalar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{Automerge, ObjType, ROOT, ReadDoc};

    #[test]
    fn json_written_reads_back_the_same() {
        let value = serde_json::json!({
            "title": "x", "n": -3, "big": 18446744073709551615u64, "pi": 3.5,
            "tags": ["a", {"b": [true, null]}], "empty": {}
        });
        let mut doc = Automerge::new();
        doc.transact::<_, _, automerge::AutomergeError>(|tx| {
            for (k, v) in value.as_object().unwrap() {
                put_json(tx, &ROOT, k.as_str(), v)?;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(to_json(&doc.hydrate(None)), value);
    }

    #[test]
    fn documents_convert_to_the_json_a_person_expects() {
        let mut doc = Automerge::new();
        doc.transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.put(ROOT, "title", "groceries")?;
            tx.put(ROOT, "count", 3_i64)?;
            tx.put(ROOT, "done", false)?;
            let list = tx.put_object(ROOT, "items", ObjType::List)?;
            tx.insert(&list, 0, "milk")?;
            let text = tx.put_object(ROOT, "note", ObjType::Text)?;
            tx.splice_text(&text, 0, 0, "buy soon")?;
            Ok(())
        })
        .unwrap();
        assert_eq!(doc.length(ROOT), 5);
        assert_eq!(
            to_json(&doc.hydrate(None)),
            serde_json::json!({
                "title": "groceries", "count": 3, "done": false,
                "items": ["milk"], "note": "buy soon"
            })
        );
    }
}

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
///   element (an index equal to the list's length appends). `V` is JSON as for
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
