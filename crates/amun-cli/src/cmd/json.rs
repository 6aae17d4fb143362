//! `--json` output. JSON has no NaN or infinity, and serde_json writes
//! either as `null` without a word; a number that is not defined (an
//! accuracy over no samples, an AUC without both members and non-members)
//! is still written as `null`, so that every reader parses the output, but
//! it is named: in the output's `undefined` list (its JSON pointer and
//! value) and on stderr.
use ciborium::Value;
use serde::Serialize;

/// A JSON object of `key: value` fields, typed (unlike `serde_json::json!`,
/// whose values are already JSON, an undefined number among them already
/// `null`), so that [`undefined`] finds what it holds.
macro_rules! object {
    ($($key:ident: $value:expr),* $(,)?) => {{
        // One type parameter per field, named as the field (in a module,
        // so that the lint allowance covers the derived impl too).
        #[allow(non_camel_case_types)]
        mod object {
            #[derive(serde::Serialize)]
            pub struct Object<$($key),*> { $(pub $key: $key),* }
        }
        object::Object { $($key: $value),* }
    }};
}
pub(crate) use object;

/// A number the output writes as `null`: where (a JSON pointer) and what it
/// was.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Undefined {
    pub at: String,
    pub value: String,
}

/// Every NaN or infinite number in `value`, in the order they are written.
pub fn undefined<T: Serialize + ?Sized>(value: &T) -> Vec<Undefined> {
    let mut found = Vec::new();
    // ciborium's tree keeps floats as they are (and fields in their order);
    // a value whose own Serialize fails lists nothing: the real
    // serialisation reports that failure.
    if let Ok(tree) = Value::serialized(value) {
        walk(&tree, &mut String::new(), &mut found);
    }
    found
}

/// Notes each non-finite float in `tree`, whose JSON pointer is `at`.
fn walk(tree: &Value, at: &mut String, found: &mut Vec<Undefined>) {
    match tree {
        Value::Float(v) if !v.is_finite() => found.push(Undefined {
            at: at.clone(),
            value: v.to_string(),
        }),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                below(&i.to_string(), item, at, found);
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries {
                below(&key(k), v, at, found);
            }
        }
        Value::Tag(_, inner) => walk(inner, at, found),
        _ => {}
    }
}

/// Walks `tree`, one level below `at`, at `key` (escaped as RFC 6901 says).
fn below(key: &str, tree: &Value, at: &mut String, found: &mut Vec<Undefined>) {
    let len = at.len();
    at.push('/');
    at.push_str(&key.replace('~', "~0").replace('/', "~1"));
    walk(tree, at, found);
    at.truncate(len);
}

/// A map key as JSON writes it (a string, or a number or boolean as text).
fn key(k: &Value) -> String {
    match k {
        Value::Text(s) => s.clone(),
        Value::Integer(i) => i128::from(*i).to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row {
        name: &'static str,
        accuracy: f64,
        per_class: Vec<f64>,
        gap: Option<f64>,
    }

    #[test]
    fn non_finite_numbers_are_found_with_their_pointer() {
        let mut m = std::collections::BTreeMap::new();
        m.insert(
            "a/b~c",
            Row {
                name: "x",
                accuracy: f64::NAN,
                per_class: vec![1.0, f64::INFINITY],
                gap: Some(f64::NAN),
            },
        );
        m.insert(
            "ok",
            Row {
                name: "y",
                accuracy: 50.0,
                per_class: vec![],
                gap: None,
            },
        );
        let at: Vec<String> = undefined(&m).into_iter().map(|u| u.at).collect();
        assert_eq!(
            at,
            ["/a~1b~0c/accuracy", "/a~1b~0c/per_class/1", "/a~1b~0c/gap"]
        );
        assert!(undefined(&serde_json::json!({"a": null, "b": [1.5]})).is_empty());
    }
}
