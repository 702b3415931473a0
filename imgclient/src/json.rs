//! JSON helpers for the documents imgclient writes (`stats --json`, `bench --json`); the
//! documents themselves are serde types next to the code that fills them.
//!
//! Trust boundary: keys written here may come from the server (counter names); serde_json
//! escapes them, and they are written as data, never interpreted.

use serde::{Serialize, Serializer};

/// `(key, value)` pairs written as one JSON object in the list's order: a server's counters
/// and a bench mix's ops keep their order, where a map type would sort them. Repeated keys are
/// written as given.
#[derive(Debug, Clone, PartialEq)]
pub struct Object<K, V>(pub Vec<(K, V)>);

impl<K: Serialize, V: Serialize> Serialize for Object<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<K, V> FromIterator<(K, V)> for Object<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Object(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_keep_their_order_and_escape_keys() {
        let o: Object<&str, u64> = [("z", 1), ("a\"b\\c\n", 2), ("\u{1}é", 3)]
            .into_iter()
            .collect();
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            r#"{"z":1,"a\"b\\c\n":2,"\u0001é":3}"#
        );
        let back: serde_json::Value = serde_json::to_value(&o).unwrap();
        assert_eq!(back["a\"b\\c\n"], 2);
        assert_eq!(
            serde_json::to_string(&Object::<&str, u8>(vec![])).unwrap(),
            "{}"
        );
    }
}
