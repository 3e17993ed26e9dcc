//! Conversion of document values to JSON, for display, the CLI and the JS side, and the
//! JavaScript side's lists of edits ([`edits`]).

mod edits;

pub use edits::{EditError, apply_edits};

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
