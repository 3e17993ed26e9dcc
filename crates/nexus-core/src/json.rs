//! Conversion of document values to JSON, for display, the CLI and the JS side.

use automerge::ScalarValue;
use automerge::hydrate::Value;
use serde_json::{Map, Number, Value as Json};

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

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{Automerge, ObjType, ROOT, ReadDoc};

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
