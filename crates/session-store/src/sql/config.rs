//! Where the SQL backend keeps its tables.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Where the sessions tables live: a schema (`None`: the connection's
/// search path) and a prefix for the table names (`keel_`: tables
/// `keel_sessions`, `keel_session_journal`, `keel_session_schema`).
///
/// Both are SQL identifiers written into statements, so they are held to
/// lowercase letters, digits and `_` (checked by [`SqlConfig::validate`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SqlConfig {
    /// The schema holding the tables; `None` for the search path's first.
    pub schema: Option<String>,
    /// Prefix of the table names.
    pub table_prefix: String,
}

impl Default for SqlConfig {
    fn default() -> Self {
        Self {
            schema: None,
            table_prefix: "keel_".into(),
        }
    }
}

impl SqlConfig {
    /// The tables in schema `schema`.
    #[must_use]
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Table names starting with `prefix`.
    #[must_use]
    pub fn with_table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.table_prefix = prefix.into();
        self
    }

    /// Checks both names are identifiers keel may write into SQL.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `schema` or `table_prefix`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(schema) = &self.schema {
            identifier("schema", schema, false)?;
        }
        identifier("table_prefix", &self.table_prefix, true)
    }

    /// `name` qualified by the schema, prefixed.
    pub(crate) fn table(&self, name: &str) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.{}{name}", self.table_prefix),
            None => format!("{}{name}", self.table_prefix),
        }
    }

    /// An index or lock name: prefixed, unqualified.
    pub(crate) fn local(&self, name: &str) -> String {
        format!("{}{name}", self.table_prefix)
    }
}

fn identifier(field: &'static str, value: &str, may_be_empty: bool) -> Result<(), ConfigError> {
    if value.is_empty() {
        return if may_be_empty {
            Ok(())
        } else {
            Err(ConfigError::new(field, "must not be empty"))
        };
    }
    if value.len() > 40 {
        return Err(ConfigError::new(field, "must be at most 40 characters"));
    }
    let first_ok = value.starts_with(|c: char| c.is_ascii_lowercase() || c == '_');
    let rest_ok = value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!(
                "{value:?} is not a plain SQL identifier: lowercase letters, digits and `_`, not starting with a digit"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_change_a_statement_are_refused_by_field() {
        let bad = SqlConfig::default().with_schema("app; drop table users");
        let err = bad.validate().unwrap_err();
        assert_eq!(err.field(), "schema");
        let bad = SqlConfig::default().with_table_prefix("Sessions\"");
        assert_eq!(bad.validate().unwrap_err().field(), "table_prefix");
        assert!(SqlConfig::default().with_schema("").validate().is_err());
        assert!(SqlConfig::default().with_schema("9x").validate().is_err());
        let good = SqlConfig::default()
            .with_schema("app_1")
            .with_table_prefix("");
        good.validate().unwrap();
        assert_eq!(good.table("sessions"), "app_1.sessions");
        assert_eq!(SqlConfig::default().table("sessions"), "keel_sessions");
    }
}
