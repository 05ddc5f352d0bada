//! `nsq_to_nsq`'s JSON filters, with NSQ's semantics: `--require-json-field` (and
//! `--require-json-value`) decide whether a message passes, `--whitelist-json-field` keeps
//! only the named top-level fields, re-encoded as Go's `encoding/json` would (keys sorted,
//! numbers as float64, `<>&` escaped), so consumers see the bytes NSQ's tool sends.

use bytes::Bytes;
use serde_json::{Map, Value};

/// The filter flags.
#[derive(Debug, Clone, Default)]
pub struct JsonFilter {
    /// `--require-json-field` (empty: none).
    pub require_field: String,
    /// `--require-json-value` (empty: any value).
    pub require_value: String,
    /// `--whitelist-json-field`s.
    pub whitelist: Vec<String>,
}

/// What to do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Publish this body.
    Pass(Bytes),
    /// Finish it without publishing (NSQ: not a JSON object, or filtered out).
    Drop(String),
    /// Requeue it with backoff (NSQ: the required field is missing while a value is required,
    /// or a whitelisted message is not an object).
    Requeue(String),
}

impl JsonFilter {
    /// Whether any filter is set (otherwise bodies pass untouched, JSON or not).
    pub fn is_active(&self) -> bool {
        !self.require_field.is_empty() || !self.whitelist.is_empty()
    }

    /// Judges one message body.
    pub fn apply(&self, body: &Bytes) -> Verdict {
        if !self.is_active() {
            return Verdict::Pass(body.clone());
        }
        // Go decodes into a map: a JSON null is an empty one, anything else not an object fails.
        let object = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => map,
            Ok(Value::Null) => Map::new(),
            _ => {
                return Verdict::Drop(format!(
                    "Unable to decode json: {}",
                    String::from_utf8_lossy(body)
                ))
            }
        };
        if let Some(verdict) = self.check_required(&object) {
            return verdict;
        }
        if self.whitelist.is_empty() {
            return Verdict::Pass(body.clone());
        }
        let mut kept: Vec<(&String, &Value)> = self
            .whitelist
            .iter()
            .filter_map(|key| object.get_key_value(key.as_str()))
            .collect();
        kept.sort_by(|a, b| a.0.cmp(b.0));
        kept.dedup_by(|a, b| a.0 == b.0);
        let mut out = String::from("{");
        for (i, (key, value)) in kept.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_string(&mut out, key);
            out.push(':');
            match value.as_f64() {
                // NSQ turns a whole top-level number into an integer ("avoid printing int as float").
                Some(f)
                    if f.fract() == 0.0
                        && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) =>
                {
                    out.push_str(&(f as i64).to_string())
                }
                _ => write_value(&mut out, value),
            }
        }
        out.push('}');
        Verdict::Pass(Bytes::from(out))
    }

    /// `None` when the message passes the require flags.
    fn check_required(&self, object: &Map<String, Value>) -> Option<Verdict> {
        if self.require_field.is_empty() {
            return None;
        }
        let Some(value) = object.get(&self.require_field) else {
            if self.require_value.is_empty() {
                return Some(Verdict::Drop(format!("no field {:?}", self.require_field)));
            }
            return Some(Verdict::Requeue(
                "missing field to check required value".to_string(),
            ));
        };
        if self.require_value.is_empty() {
            return None;
        }
        let matches = match value {
            Value::String(s) => *s == self.require_value,
            // Go compares numbers as float64 when the flag parses as one.
            Value::Number(n) => self
                .require_value
                .parse::<f64>()
                .is_ok_and(|wanted| n.as_f64() == Some(wanted)),
            _ => false,
        };
        (!matches).then(|| {
            Verdict::Drop(format!(
                "field {:?} is not {:?}",
                self.require_field, self.require_value
            ))
        })
    }
}

/// A value as Go's `json.Marshal` writes an `interface{}` decoded from JSON.
fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_float(out, n.as_f64().unwrap_or(0.0)),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

/// Go's float64 encoding: shortest digits, plain below 1e21 and from 1e-6, else `1e+21`/`1e-7`.
fn write_float(out: &mut String, f: f64) {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let text = format!("{f:e}");
        match text.split_once('e') {
            Some((mantissa, exponent)) if !exponent.starts_with('-') => {
                out.push_str(&format!("{mantissa}e+{exponent}"))
            }
            _ => out.push_str(&text),
        }
    } else {
        out.push_str(&f.to_string());
    }
}

/// Go's string encoding: `<`, `>`, `&`, U+2028 and U+2029 escaped as `\uXXXX`, control
/// characters as `\n`, `\r`, `\t` or `\u00xx`.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(field: &str, value: &str, whitelist: &[&str]) -> JsonFilter {
        JsonFilter {
            require_field: field.into(),
            require_value: value.into(),
            whitelist: whitelist.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn pass(f: &JsonFilter, body: &str) -> Option<String> {
        match f.apply(&Bytes::from(body.to_string())) {
            Verdict::Pass(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => None,
        }
    }

    #[test]
    fn require_field_and_value_as_nsq() {
        let f = filter("k", "v", &[]);
        assert_eq!(
            pass(&f, r#"{"k":"v","x":1}"#).as_deref(),
            Some(r#"{"k":"v","x":1}"#)
        );
        assert!(matches!(
            f.apply(&Bytes::from_static(br#"{"k":"w"}"#)),
            Verdict::Drop(_)
        ));
        assert!(matches!(
            f.apply(&Bytes::from_static(br#"{"a":1}"#)),
            Verdict::Requeue(_)
        ));
        assert!(matches!(
            f.apply(&Bytes::from_static(b"notjson")),
            Verdict::Drop(_)
        ));
        assert!(matches!(
            f.apply(&Bytes::from_static(b"[1,2]")),
            Verdict::Drop(_)
        ));
        let any = filter("k", "", &[]);
        assert!(matches!(
            any.apply(&Bytes::from_static(br#"{"a":1}"#)),
            Verdict::Drop(_)
        ));
        assert!(pass(&any, r#"{"k":[1]}"#).is_some());
        let number = filter("k", "5", &[]);
        assert!(pass(&number, r#"{"k":5.0}"#).is_some());
        assert!(pass(&number, r#"{"k":"5"}"#).is_some());
        assert!(pass(&number, r#"{"k":6}"#).is_none());
        assert!(pass(&filter("", "", &[]), "not json at all").is_some());
    }

    #[test]
    fn whitelist_reencodes_as_go_does() {
        // The bytes NSQ v1.3.0's nsq_to_nsq publishes for these bodies.
        let f = filter("", "", &["k", "a", "z", "f", "h", "b"]);
        assert_eq!(
            pass(
                &f,
                r#"{"k":"v","a":1,"z":[1.0,2.5],"f":2.0,"h":"<&>","q":0}"#
            )
            .as_deref(),
            Some(r#"{"a":1,"f":2,"h":"\u003c\u0026\u003e","k":"v","z":[1,2.5]}"#)
        );
        assert_eq!(
            pass(&f, r#"{"k":"v","b":{"y":1,"x":2.0}}"#).as_deref(),
            Some(r#"{"b":{"x":2,"y":1},"k":"v"}"#)
        );
        let g = filter("", "", &["s", "n", "m", "i"]);
        assert_eq!(
            pass(
                &g,
                r#"{"s":"a\bb\fc\u2028\u0001\/","n":1e-7,"m":[1e21,123456789012345678901234,-0.0,1.5e300],"i":12345678901234567890}"#
            )
            .as_deref(),
            Some(
                r#"{"i":12345678901234567000,"m":[1e+21,1.2345678901234569e+23,-0,1.5e+300],"n":1e-7,"s":"a\u0008b\u000cc\u2028\u0001/"}"#
            )
        );
    }
}
