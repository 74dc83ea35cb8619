//! libpq-style multi-host URLs: `postgres://u:p@h1:5432,h2:5433/db?target_session_attrs=read-write`.

use std::fmt;
use std::str::FromStr;

use super::url::{DatabaseUrl, UrlError, UrlPart};
use crate::cluster::{Balance, TargetSessionAttrs};

/// A database URL naming several hosts, as libpq takes them: one URL per
/// host (same user, password, database and options), plus
/// `target_session_attrs` and `load_balance_hosts`, which the cluster
/// applies instead of the driver. `Debug` and `Display` hide the password.
///
/// ```
/// use keel_pool_core::UrlPart;
/// use keel_pool_core::cluster::{ClusterUrl, TargetSessionAttrs};
///
/// let url: ClusterUrl =
///     "postgres://app:s3cret@db1:5432,db2:5433/orders?target_session_attrs=read-write&sslmode=prefer"
///         .parse()
///         .unwrap();
/// assert_eq!(url.endpoints().len(), 2);
/// assert_eq!(url.endpoints()[1].to_string(), "postgres://app:***@db2:5433/orders?sslmode=prefer");
/// assert_eq!(url.target_session_attrs(), TargetSessionAttrs::ReadWrite);
/// assert!(!format!("{url:?}").contains("s3cret"));
///
/// let err = "postgres://app:s3cret@db1,/orders".parse::<ClusterUrl>().unwrap_err();
/// assert_eq!(err.part(), UrlPart::Host);
/// let err = "postgres://db1,db2/orders?target_session_attrs=master".parse::<ClusterUrl>().unwrap_err();
/// assert_eq!(err.part(), UrlPart::Options);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    endpoints: Vec<DatabaseUrl>,
    attrs: TargetSessionAttrs,
    balance: Option<Balance>,
}

impl ClusterUrl {
    /// One URL per host, in the order given.
    pub fn endpoints(&self) -> &[DatabaseUrl] {
        &self.endpoints
    }

    /// `target_session_attrs` (default `any`).
    pub fn target_session_attrs(&self) -> TargetSessionAttrs {
        self.attrs
    }

    /// `load_balance_hosts=random` asks for [`Balance::Random`];
    /// `disable` (or nothing) leaves the cluster's own setting.
    pub fn balance(&self) -> Option<Balance> {
        self.balance
    }
}

impl FromStr for ClusterUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, UrlError> {
        let s = s.trim();
        let Some((scheme, rest)) = s.split_once("://") else {
            // sqlite: and the like: one endpoint, nothing to split.
            return Ok(Self::single(s.parse()?));
        };
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((user, hosts)) => (Some(user), hosts),
            None => (None, authority),
        };
        let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
        let mut attrs = TargetSessionAttrs::Any;
        let mut balance = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "target_session_attrs" => {
                    attrs = value
                        .parse()
                        .map_err(|e| UrlError::new(UrlPart::Options, format!("{e}")))?;
                }
                "load_balance_hosts" => {
                    balance = match value {
                        "random" => Some(Balance::Random),
                        "disable" => None,
                        other => {
                            return Err(UrlError::new(
                                UrlPart::Options,
                                format!(
                                    "load_balance_hosts: unknown value `{other}` (expected disable or random)"
                                ),
                            ));
                        }
                    };
                }
                _ => kept.push(pair),
            }
        }
        let query = if kept.is_empty() {
            String::new()
        } else {
            format!("?{}", kept.join("&"))
        };
        let hosts: Vec<&str> = hosts.split(',').collect();
        let count = hosts.len();
        let mut endpoints = Vec::with_capacity(count);
        for (n, host) in hosts.into_iter().enumerate() {
            if host.is_empty() {
                return Err(UrlError::new(
                    UrlPart::Host,
                    format!("host {} of {count} is empty", n + 1),
                ));
            }
            let user = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
            let one = format!("{scheme}://{user}{host}{path}{query}");
            let url: DatabaseUrl = one.parse().map_err(|e: UrlError| {
                if count == 1 {
                    e
                } else {
                    // A host name carries no secret; the reason never does.
                    UrlError::new(
                        e.part(),
                        format!("host {} of {count} (`{host}`): {}", n + 1, e.reason()),
                    )
                }
            })?;
            endpoints.push(url);
        }
        Ok(Self {
            endpoints,
            attrs,
            balance,
        })
    }
}

impl ClusterUrl {
    fn single(url: DatabaseUrl) -> Self {
        Self {
            endpoints: vec![url],
            attrs: TargetSessionAttrs::Any,
            balance: None,
        }
    }
}

impl fmt::Debug for ClusterUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterUrl")
            .field("endpoints", &self.endpoints)
            .field("target_session_attrs", &self.attrs)
            .field("balance", &self.balance)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(s: &str) -> UrlPart {
        let err = s.parse::<ClusterUrl>().unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        err.part()
    }

    #[test]
    fn every_host_keeps_the_user_database_and_options() {
        let url: ClusterUrl =
            "postgresql://u:hunter2@[::1]:5432,h2/db?application_name=x&load_balance_hosts=random"
                .parse()
                .unwrap();
        let shown: Vec<String> = url.endpoints().iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "postgresql://u:***@[::1]:5432/db?application_name=x",
                "postgresql://u:***@h2/db?application_name=x"
            ]
        );
        assert!(url.endpoints()[1].expose().contains("hunter2"));
        assert_eq!(url.balance(), Some(Balance::Random));
        assert_eq!(url.target_session_attrs(), TargetSessionAttrs::Any);
        let one: ClusterUrl = "mysql://root@127.0.0.1:3306/test".parse().unwrap();
        assert_eq!(one.endpoints().len(), 1);
        let lite: ClusterUrl = "sqlite::memory:".parse().unwrap();
        assert_eq!(lite.endpoints().len(), 1);
    }

    #[test]
    fn errors_name_the_part_and_the_host_without_the_password() {
        assert_eq!(part("postgres://u:hunter2@h1,,h3/db"), UrlPart::Host);
        assert_eq!(part("postgres://u:hunter2@h1,h2:99999/db"), UrlPart::Port);
        assert_eq!(
            part("postgres://u:hunter2@h1,h2/db?target_session_attrs=master"),
            UrlPart::Options
        );
        assert_eq!(
            part("postgres://u:hunter2@h1/db?load_balance_hosts=yes"),
            UrlPart::Options
        );
        assert_eq!(part("redis://u:hunter2@h1,h2/db"), UrlPart::Scheme);
        let err = "postgres://u:hunter2@h1,h2:99999/db"
            .parse::<ClusterUrl>()
            .unwrap_err();
        assert!(
            err.to_string().contains("host 2 of 2 (`h2:99999`)"),
            "{err}"
        );
    }
}
