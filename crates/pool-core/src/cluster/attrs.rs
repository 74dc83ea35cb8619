//! Which servers a connection may land on: libpq's `target_session_attrs`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::manager::ServerState;

/// Which servers a connection may land on, with libpq's names and
/// meanings (`target_session_attrs` in a connection URL).
///
/// ```
/// use keel_pool_core::cluster::TargetSessionAttrs;
///
/// let attrs: TargetSessionAttrs = "prefer-standby".parse().unwrap();
/// assert_eq!(attrs, TargetSessionAttrs::PreferStandby);
/// let err = "primary-only".parse::<TargetSessionAttrs>().unwrap_err();
/// assert!(err.to_string().contains("primary-only"));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum TargetSessionAttrs {
    /// Any server (libpq's default).
    #[default]
    Any,
    /// A server that takes writes.
    ReadWrite,
    /// A server that does not take writes.
    ReadOnly,
    /// A server not in recovery.
    Primary,
    /// A server in recovery.
    Standby,
    /// A standby if one is available, else any server.
    PreferStandby,
}

impl TargetSessionAttrs {
    /// Every value, in libpq's order.
    pub const ALL: [Self; 6] = [
        Self::Any,
        Self::ReadWrite,
        Self::ReadOnly,
        Self::Primary,
        Self::Standby,
        Self::PreferStandby,
    ];

    /// libpq's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::ReadWrite => "read-write",
            Self::ReadOnly => "read-only",
            Self::Primary => "primary",
            Self::Standby => "standby",
            Self::PreferStandby => "prefer-standby",
        }
    }

    /// Whether a server in `state` satisfies it. `PreferStandby` accepts
    /// only standbys here; falling back to any server is the caller's
    /// second pass.
    pub fn accepts(self, state: ServerState) -> bool {
        match self {
            Self::Any => true,
            Self::ReadWrite => !state.read_only,
            Self::ReadOnly => state.read_only,
            Self::Primary => !state.in_recovery,
            Self::Standby | Self::PreferStandby => state.in_recovery,
        }
    }

    /// Whether only a primary satisfies it: a cluster whose endpoints are
    /// all declared replicas can never serve it (an error at build time).
    pub(crate) fn needs_writer(self) -> bool {
        matches!(self, Self::ReadWrite | Self::Primary)
    }
}

impl fmt::Display for TargetSessionAttrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `target_session_attrs` value libpq does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "target_session_attrs: unknown value `{0}` (expected any, read-write, read-only, primary, standby or prefer-standby)"
)]
pub struct UnknownAttrs(String);

impl FromStr for TargetSessionAttrs {
    type Err = UnknownAttrs;

    fn from_str(s: &str) -> Result<Self, UnknownAttrs> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAttrs(s.to_owned()))
    }
}

/// What an operation needs of its server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Access {
    /// It may write: the primary (a server that takes writes).
    Write,
    /// It only reads: a replica when one is in rotation, else the primary.
    Read,
}

impl Access {
    pub(crate) fn attrs(self) -> TargetSessionAttrs {
        match self {
            Self::Write => TargetSessionAttrs::ReadWrite,
            Self::Read => TargetSessionAttrs::PreferStandby,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_libpq() {
        for a in TargetSessionAttrs::ALL {
            assert_eq!(a.as_str().parse::<TargetSessionAttrs>().unwrap(), a);
        }
        assert!("Read-Write".parse::<TargetSessionAttrs>().is_err());
    }

    #[test]
    fn acceptance_follows_libpq() {
        use TargetSessionAttrs as T;
        let hot_standby = ServerState::STANDBY;
        let primary = ServerState::PRIMARY;
        let read_only_primary = ServerState {
            in_recovery: false,
            read_only: true,
        };
        for (attrs, p, s, rop) in [
            (T::Any, true, true, true),
            (T::ReadWrite, true, false, false),
            (T::ReadOnly, false, true, true),
            (T::Primary, true, false, true),
            (T::Standby, false, true, false),
            (T::PreferStandby, false, true, false),
        ] {
            assert_eq!(attrs.accepts(primary), p, "{attrs} on a primary");
            assert_eq!(attrs.accepts(hot_standby), s, "{attrs} on a standby");
            assert_eq!(
                attrs.accepts(read_only_primary),
                rop,
                "{attrs} on a read-only primary"
            );
        }
    }
}
