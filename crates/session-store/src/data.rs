//! A session's data: a JSON object, kept as its JSON text in one allocation.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeOwned};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A session's data: a JSON object, kept as its JSON text.
///
/// A store holds and copies data far more often than it looks inside, so the
/// data stays text until someone asks for a value. Parsed, 2 KB of JSON is
/// some thirty allocations spread over the heap, and writing a session and
/// freeing the version it replaces costs a cache miss for each; as text it
/// is one allocation (as ETS keeps a term in one block), its size is its
/// length, and the disk and backup formats take it as is.
///
/// ```
/// use keel_session_store::Data;
/// use serde_json::json;
///
/// let data = Data::from_value(json!({"user": 7, "cart": ["tea"]}))?;
/// assert_eq!(data.get::<u64>("user")?, Some(7));
/// assert_eq!(data.get::<u64>("missing")?, None);
///
/// // Change it through a map (or any type that serializes to an object).
/// let mut map = data.to_map();
/// map.insert("user".into(), json!(8));
/// let data = Data::from(map);
/// assert_eq!(data.get::<u64>("user")?, Some(8));
/// # Ok::<(), keel_session_store::DataError>(())
/// ```
///
/// Equality compares the text: data built from maps (whose keys are sorted)
/// compares equal exactly when the objects are equal. `Debug` prints only
/// the size: the data may hold secrets.
#[derive(Clone)]
pub struct Data(Option<Box<RawValue>>);

/// Data that is not a JSON object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The text is not JSON, or a value does not have the type asked for.
    #[error("session data: {0}")]
    Json(#[from] serde_json::Error),
    /// Valid JSON, but not an object.
    #[error("session data must be a JSON object, got {found}")]
    NotAnObject {
        /// What it is instead (`array`, `string`, ...).
        found: &'static str,
    },
}

impl Data {
    /// An empty object (which allocates nothing).
    pub const fn new() -> Self {
        Self(None)
    }

    /// Data from JSON text, which must be an object. The text is kept as
    /// given (its whitespace counts towards the size limit).
    ///
    /// # Errors
    /// [`DataError::Json`] for text that is not JSON,
    /// [`DataError::NotAnObject`] for other JSON values.
    pub fn from_json(text: impl Into<String>) -> Result<Self, DataError> {
        let raw = RawValue::from_string(text.into())?;
        check_object(&raw)?;
        Ok(Self(Some(raw)))
    }

    /// Data from a JSON value, which must be an object.
    ///
    /// # Errors
    /// [`DataError::NotAnObject`] for other values.
    pub fn from_value(value: Value) -> Result<Self, DataError> {
        match value {
            Value::Object(map) => Ok(Self::from(map)),
            other => Err(DataError::NotAnObject {
                found: kind(&other),
            }),
        }
    }

    /// Data from anything that serializes to a JSON object (a struct, a map).
    ///
    /// # Errors
    /// [`DataError::Json`] if it does not serialize,
    /// [`DataError::NotAnObject`] if it is not an object.
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Self, DataError> {
        let raw = serde_json::value::to_raw_value(value)?;
        check_object(&raw)?;
        Ok(Self(Some(raw)))
    }

    /// The data as a map.
    pub fn to_map(&self) -> Map<String, Value> {
        // Checked to be an object when built, so parsing it cannot fail.
        serde_json::from_str(self.as_json()).unwrap_or_default()
    }

    /// The data as a `T` (a struct of the session's fields, a map).
    ///
    /// # Errors
    /// [`DataError::Json`] if the data does not have `T`'s shape.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, DataError> {
        Ok(serde_json::from_str(self.as_json())?)
    }

    /// The value under `key` as a `T`, or `None` when there is none.
    ///
    /// # Errors
    /// [`DataError::Json`] if the value is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, DataError> {
        // Only the one value is parsed into `T`; the others stay text. Of
        // duplicate keys the last wins, as when parsing into a map.
        let fields: HashMap<String, &RawValue> = serde_json::from_str(self.as_json())?;
        match fields.get(key) {
            Some(raw) => Ok(Some(serde_json::from_str(raw.get())?)),
            None => Ok(None),
        }
    }

    /// The JSON text.
    pub fn as_json(&self) -> &str {
        self.0.as_deref().map_or("{}", RawValue::get)
    }

    /// The size of the JSON text in bytes (what the store's size limit counts).
    pub fn len(&self) -> usize {
        self.as_json().len()
    }

    /// Whether the object has no fields.
    pub fn is_empty(&self) -> bool {
        let text = self.as_json().trim();
        text.strip_prefix('{')
            .is_some_and(|rest| rest.trim_start() == "}")
    }
}

fn check_object(raw: &RawValue) -> Result<(), DataError> {
    // Valid JSON whose first byte is `{` is an object.
    if raw.get().trim_start().starts_with('{') {
        return Ok(());
    }
    let found = match raw.get().trim_start().as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    };
    Err(DataError::NotAnObject { found })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Default for Data {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Map<String, Value>> for Data {
    fn from(map: Map<String, Value>) -> Self {
        Self::from(&map)
    }
}

impl From<&Map<String, Value>> for Data {
    fn from(map: &Map<String, Value>) -> Self {
        // A map always serializes, to an object.
        serde_json::value::to_raw_value(map).map_or_else(|_| Self::new(), |raw| Self(Some(raw)))
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Self) -> bool {
        self.as_json() == other.as_json()
    }
}

impl Eq for Data {}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Data")
            .field("bytes", &self.len())
            .finish_non_exhaustive()
    }
}

/// Embedded as the object itself in JSON (not as a string); in a binary
/// format (one that is not human-readable, as the raft wire's), as its
/// JSON text.
impl Serialize for Data {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !serializer.is_human_readable() {
            return serializer.serialize_str(self.as_json());
        }
        match &self.0 {
            Some(raw) => raw.serialize(serializer),
            None => serializer.serialize_map(Some(0))?.end(),
        }
    }
}

/// Reads back what [`Serialize`] wrote: through serde_json, or a binary
/// format (the text is checked to be a JSON object either way).
impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            return Self::from_json(text).map_err(de::Error::custom);
        }
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        check_object(&raw).map_err(de::Error::custom)?;
        Ok(Self(Some(raw)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_objects_are_data() {
        assert!(Data::from_json(r#"{"a": 1}"#).is_ok());
        for (text, found) in [
            ("[1]", "an array"),
            ("\"x\"", "a string"),
            ("3", "a number"),
        ] {
            match Data::from_json(text) {
                Err(DataError::NotAnObject { found: f }) => assert_eq!(f, found),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(Data::from_json("{"), Err(DataError::Json(_))));
        assert!(matches!(
            Data::from_value(json!(null)),
            Err(DataError::NotAnObject { found: "null" })
        ));
        assert!(matches!(
            Data::from_serialize(&vec![1]),
            Err(DataError::NotAnObject { .. })
        ));
    }

    #[test]
    fn values_come_back_typed() {
        let data = Data::from_json(r#"{"n": 3, "s": "x", "n": 4, "o": {"k": [1]}}"#).unwrap();
        assert_eq!(
            data.get::<u64>("n").unwrap(),
            Some(4),
            "the last duplicate wins, as in a map"
        );
        assert_eq!(data.get::<String>("s").unwrap(), Some("x".into()));
        assert_eq!(data.get::<Value>("o").unwrap(), Some(json!({"k": [1]})));
        assert_eq!(data.get::<u64>("none").unwrap(), None);
        assert!(data.get::<u64>("s").is_err());
        assert_eq!(data.to_map()["n"], json!(4));
    }

    #[test]
    fn maps_round_trip_and_compare() {
        let map = json!({"b": 1, "a": [true, null]})
            .as_object()
            .cloned()
            .unwrap();
        let data = Data::from(map.clone());
        assert_eq!(data.to_map(), map);
        assert_eq!(
            data,
            Data::from_value(json!({"a": [true, null], "b": 1})).unwrap()
        );
        assert_eq!(data.len(), data.as_json().len());
        assert!(!data.is_empty());
        assert!(Data::new().is_empty());
        assert_eq!(Data::new(), Data::from(Map::new()));
        assert_eq!(Data::new().as_json(), "{}");
        assert_eq!(serde_json::to_string(&Data::new()).unwrap(), "{}");
        assert!(Data::from_json(" { } ").unwrap().is_empty());
    }

    #[test]
    fn serializes_as_the_object_itself() {
        let data = Data::from_value(json!({"k": "v"})).unwrap();
        let text = serde_json::to_string(&json!({"data": data.to_map()})).unwrap();
        #[derive(Serialize, Deserialize)]
        struct Wrapper {
            data: Data,
        }
        assert_eq!(
            serde_json::to_string(&Wrapper { data: data.clone() }).unwrap(),
            text
        );
        let back: Wrapper = serde_json::from_str(&text).unwrap();
        assert_eq!(back.data, data);
        assert!(serde_json::from_str::<Wrapper>(r#"{"data": [1]}"#).is_err());
    }

    #[test]
    fn debug_hides_the_contents() {
        let data = Data::from_value(json!({"password": "hunter2"})).unwrap();
        assert!(!format!("{data:?}").contains("hunter2"));
    }
}
