//! `DATABASE_URL` parsing whose errors name the bad part and never echo
//! the password.

use std::fmt;
use std::str::FromStr;

/// The part of a database URL that is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlPart {
    /// The whole string is not a URL.
    Syntax,
    /// `postgres://`, `mysql://`, ...
    Scheme,
    /// The host name or address.
    Host,
    /// The port.
    Port,
    /// The user name.
    User,
    /// The password.
    Password,
    /// The database name (the path).
    Database,
    /// A query parameter.
    Options,
}

impl fmt::Display for UrlPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Syntax => "syntax",
            Self::Scheme => "scheme",
            Self::Host => "host",
            Self::Port => "port",
            Self::User => "user",
            Self::Password => "password",
            Self::Database => "database name",
            Self::Options => "options",
        })
    }
}

/// A database URL that cannot be used. The message names the part and
/// says why; it never contains the password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("DATABASE_URL: bad {part}: {reason}")]
pub struct UrlError {
    part: UrlPart,
    reason: String,
}

impl UrlError {
    pub(crate) fn new(part: UrlPart, reason: impl Into<String>) -> Self {
        Self {
            part,
            reason: reason.into(),
        }
    }

    /// Which part is wrong.
    pub fn part(&self) -> UrlPart {
        self.part
    }

    /// Why, without the part's name.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Which database a URL points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `mysql://` or `mariadb://`.
    MySql,
    /// `sqlite:` (a file path or `:memory:`).
    Sqlite,
}

/// A parsed database URL. `Debug` and `Display` show it with the password
/// replaced by `***`; [`expose`](Self::expose) gives the real string to a
/// driver.
///
/// ```
/// use keel_pool_core::{Backend, DatabaseUrl, UrlPart};
///
/// let url: DatabaseUrl = "postgres://app:s3cret@db.internal:5432/orders".parse().unwrap();
/// assert_eq!(url.backend(), Backend::Postgres);
/// assert_eq!(url.to_string(), "postgres://app:***@db.internal:5432/orders");
/// assert!(!format!("{url:?}").contains("s3cret"));
///
/// let err = "postgres://app:s3cret@db.internal:54x2/orders".parse::<DatabaseUrl>().unwrap_err();
/// assert_eq!(err.part(), UrlPart::Port);
/// assert!(!err.to_string().contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    raw: String,
    backend: Backend,
    redacted: String,
}

impl DatabaseUrl {
    /// The backend the scheme names.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL with its password, for handing to a driver. Never log it.
    pub fn expose(&self) -> &str {
        &self.raw
    }
}

impl FromStr for DatabaseUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, UrlError> {
        let s = s.trim();
        let scheme = s
            .split_once(':')
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        let backend = match scheme.as_deref() {
            Some("postgres" | "postgresql") => Backend::Postgres,
            Some("mysql" | "mariadb") => Backend::MySql,
            Some("sqlite") => Backend::Sqlite,
            Some(other) if !other.is_empty() && !other.contains('/') => {
                return Err(UrlError::new(
                    UrlPart::Scheme,
                    format!(
                        "`{other}` is not supported (expected postgres, mysql, mariadb or sqlite)"
                    ),
                ));
            }
            _ => return Err(UrlError::new(UrlPart::Scheme, "missing (e.g. postgres://)")),
        };
        if backend == Backend::Sqlite {
            // sqlite:path, sqlite://path, sqlite::memory: carry no secrets.
            return Ok(Self {
                raw: s.to_owned(),
                backend,
                redacted: s.to_owned(),
            });
        }
        let url = url::Url::parse(s).map_err(parse_error)?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(UrlError::new(UrlPart::Host, "missing"));
        }
        if url.username().is_empty() && url.password().is_some() {
            return Err(UrlError::new(
                UrlPart::User,
                "a password is given without a user",
            ));
        }
        for (part, value) in [
            (UrlPart::User, url.username()),
            (UrlPart::Password, url.password().unwrap_or("")),
        ] {
            if percent_decodes(value).is_none() {
                return Err(UrlError::new(part, "invalid percent-encoding"));
            }
        }
        let db = url.path().trim_start_matches('/');
        if db.contains('/') {
            return Err(UrlError::new(
                UrlPart::Database,
                format!("`{db}` contains '/'"),
            ));
        }
        let mut shown = url.clone();
        if url.password().is_some() {
            // Cannot fail: the URL has a host, so it can carry a password.
            let _ = shown.set_password(Some("***"));
        }
        Ok(Self {
            raw: s.to_owned(),
            backend,
            redacted: shown.to_string(),
        })
    }
}

/// url's errors never include the input, so they are safe to show.
fn parse_error(e: url::ParseError) -> UrlError {
    use url::ParseError as P;
    let part = match e {
        P::InvalidPort => UrlPart::Port,
        P::EmptyHost
        | P::IdnaError
        | P::InvalidIpv4Address
        | P::InvalidIpv6Address
        | P::InvalidDomainCharacter => UrlPart::Host,
        _ => UrlPart::Syntax,
    };
    UrlError::new(part, e.to_string())
}

fn percent_decodes(s: &str) -> Option<()> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Some(())
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl").field(&self.redacted).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(s: &str) -> UrlPart {
        let err = s.parse::<DatabaseUrl>().unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        err.part()
    }

    #[test]
    fn errors_name_the_part_without_the_password() {
        assert_eq!(part("hunter2"), UrlPart::Scheme);
        assert_eq!(part("redis://u:hunter2@h/db"), UrlPart::Scheme);
        assert_eq!(part("postgres://u:hunter2@:5432/db"), UrlPart::Host);
        assert_eq!(part("postgres://u:hunter2@h:99999/db"), UrlPart::Port);
        assert_eq!(part("mysql://u:hunter2%zz@h/db"), UrlPart::Password);
        assert_eq!(part("postgres://u:hunter2@h/a/b"), UrlPart::Database);
        assert_eq!(part("postgres://:hunter2@h/db"), UrlPart::User);
    }

    #[test]
    fn display_and_debug_redact_the_password() {
        let url: DatabaseUrl = "mariadb://root:hunter2@127.0.0.1:3306/test"
            .parse()
            .unwrap();
        assert_eq!(url.backend(), Backend::MySql);
        assert_eq!(url.to_string(), "mariadb://root:***@127.0.0.1:3306/test");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(url.expose().contains("hunter2"));
        let plain: DatabaseUrl = "postgres://postgres@127.0.0.1/test".parse().unwrap();
        assert_eq!(plain.to_string(), "postgres://postgres@127.0.0.1/test");
        let lite: DatabaseUrl = "sqlite::memory:".parse().unwrap();
        assert_eq!(lite.backend(), Backend::Sqlite);
    }
}
