//! The strict check of a JSON value against a schema of the API document
//! (`openapi/openapi.json`), shared by `tests/openapi.rs` and
//! `tests/openapi_history.rs`.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeSet;
use wispanel_core::timestamp::Timestamp;
use wispanel_license::api::OPENAPI_DOCUMENT;

pub fn doc() -> Value {
    serde_json::from_str(OPENAPI_DOCUMENT).expect("openapi/openapi.json is JSON")
}

pub fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let s = &doc["components"]["schemas"][name];
    assert!(s.is_object(), "no schema {name} in the document");
    s
}

/// A strict structural check of `v` against `s`: every object has exactly
/// the schema's properties, all of them required; types, nulls, enums,
/// consts and patterns hold. `Err` names the first place that differs.
pub fn conforms(doc: &Value, v: &Value, s: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/components/schemas/")
            .ok_or_else(|| format!("{at}: unexpected $ref {r}"))?;
        return conforms(doc, v, schema(doc, name), at);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = s.get(key).and_then(Value::as_array) {
            let errors: Vec<String> = alts
                .iter()
                .filter_map(|a| conforms(doc, v, a, at).err())
                .collect();
            let matched = alts.len() - errors.len();
            return match (key, matched) {
                (_, 0) => Err(format!("{at}: matches no branch of {key}: {errors:?}")),
                ("oneOf", n) if n > 1 => Err(format!("{at}: matches {n} branches of oneOf")),
                _ => Ok(()),
            };
        }
    }
    let types: Vec<&str> = match &s["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let allowed = types.is_empty()
        || types.contains(&kind)
        || (kind == "integer" && types.contains(&"number"));
    if !allowed {
        return Err(format!(
            "{at}: {kind} {v} where the document says {types:?}"
        ));
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        return Err(format!("{at}: {v} is not one of {e:?}"));
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        return Err(format!("{at}: {v} is not the const {c}"));
    }
    if let (Some(p), Value::String(text)) = (s.get("pattern").and_then(Value::as_str), v) {
        // The document's patterns are simple; the only ones are checked by hand.
        let ok = match p {
            "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$" => {
                text.len() == 20 && text.ends_with('Z') && Timestamp::parse_rfc3339(text).is_some()
            }
            "^[0-9a-f]{64}$" => {
                text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            }
            "^[0-9]+$" => !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()),
            other => return Err(format!("{at}: the test does not know the pattern {other}")),
        };
        if !ok {
            return Err(format!("{at}: {text:?} does not match {p}"));
        }
    }
    if let Value::Object(o) = v {
        let props = s["properties"].as_object();
        let declared: BTreeSet<&str> = props
            .iter()
            .flat_map(|p| p.keys())
            .map(String::as_str)
            .collect();
        let required: BTreeSet<&str> = s["required"]
            .as_array()
            .iter()
            .flat_map(|r| r.iter())
            .filter_map(Value::as_str)
            .collect();
        let present: BTreeSet<&str> = o.keys().map(String::as_str).collect();
        if present != declared || required != declared {
            return Err(format!(
                "{at}: the value has fields {present:?}, the document declares {declared:?} (required {required:?})"
            ));
        }
        for (k, fv) in o {
            conforms(doc, fv, &s["properties"][k], &format!("{at}.{k}"))?;
        }
    }
    if let (Value::Array(items), Some(is)) = (v, s.get("items")) {
        for (i, item) in items.iter().enumerate() {
            conforms(doc, item, is, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

pub fn assert_conforms(v: &Value, name: &str) {
    let d = doc();
    if let Err(e) = conforms(&d, v, schema(&d, name), name) {
        panic!("drift between the Rust type and the document's {name}: {e}\nvalue: {v:#}");
    }
}
