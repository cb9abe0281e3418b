//! Who may receive a record, decided once per record from its `dataClassification` and
//! `userId`, then checked per connection against the connection's identity.
//!
//! - `public` → every subscriber;
//! - `confidential` / `restricted` → only connections authenticated as the record's `userId`;
//! - `internal` → nobody (never leaves the gateway);
//! - private without a `userId`, or private while no JWT key is configured → nobody, counted.

use odin_events::Classification;

use crate::auth::ConnIdentity;

/// Why a record goes to nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withheld {
    /// `internal` records never leave the gateway.
    Internal,
    /// A `confidential`/`restricted` record without a `userId`: nobody it could belong to.
    PrivateWithoutUser,
    /// A private record while the gateway authenticates nobody (no JWT key configured).
    AuthDisabled,
}

impl Withheld {
    pub const fn as_str(self) -> &'static str {
        match self {
            Withheld::Internal => "internal",
            Withheld::PrivateWithoutUser => "private_without_user",
            Withheld::AuthDisabled => "auth_disabled",
        }
    }

    /// Counts one withheld record in `ws_records_withheld_total{reason}`.
    pub fn count(self) {
        metrics::counter!("ws_records_withheld_total", "reason" => self.as_str()).increment(1);
    }
}

/// The connections a record may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience<'a> {
    /// Every subscriber of its channel.
    Everyone,
    /// Only subscribers authenticated as this user id.
    User(&'a str),
    /// Nobody.
    Nobody(Withheld),
}

impl<'a> Audience<'a> {
    /// The audience of a record. `auth_enabled` is whether any JWT key is configured.
    pub fn of(
        classification: Classification,
        user_id: Option<&'a str>,
        auth_enabled: bool,
    ) -> Self {
        match classification {
            Classification::Public => Audience::Everyone,
            Classification::Internal => Audience::Nobody(Withheld::Internal),
            Classification::Confidential | Classification::Restricted => {
                match user_id.filter(|u| !u.is_empty()) {
                    None => Audience::Nobody(Withheld::PrivateWithoutUser),
                    Some(_) if !auth_enabled => Audience::Nobody(Withheld::AuthDisabled),
                    Some(u) => Audience::User(u),
                }
            }
        }
    }

    /// Whether a connection with `identity` may receive the record at `now_ms` (epoch ms).
    /// No allocation, no lock: called once per (record, subscriber).
    #[inline]
    pub fn admits(&self, identity: &ConnIdentity, now_ms: i64) -> bool {
        match self {
            Audience::Everyone => true,
            Audience::User(u) => identity.is(u, now_ms),
            Audience::Nobody(_) => false,
        }
    }

    /// Whether the record is private (needs the per-connection check).
    pub fn is_private(&self) -> bool {
        matches!(self, Audience::User(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Identity;

    fn conn(user: Option<&str>) -> ConnIdentity {
        let c = ConnIdentity::anonymous();
        if let Some(u) = user {
            c.authenticate(&Identity {
                user_id: u.into(),
                valid_until_ms: i64::MAX,
            })
            .unwrap();
        }
        c
    }

    #[test]
    fn classification_decides_the_audience() {
        use Classification::*;
        let anon = conn(None);
        let alice = conn(Some("alice"));
        let bob = conn(Some("bob"));

        let public = Audience::of(Public, None, false);
        assert!(public.admits(&anon, 0) && public.admits(&alice, 0));
        // A public record with a userId is still public.
        assert_eq!(
            Audience::of(Public, Some("alice"), true),
            Audience::Everyone
        );

        for c in [Confidential, Restricted] {
            let a = Audience::of(c, Some("alice"), true);
            assert_eq!(a, Audience::User("alice"));
            assert!(a.admits(&alice, 0));
            assert!(!a.admits(&bob, 0));
            assert!(!a.admits(&anon, 0));
            assert_eq!(
                Audience::of(c, None, true),
                Audience::Nobody(Withheld::PrivateWithoutUser)
            );
            assert_eq!(
                Audience::of(c, Some(""), true),
                Audience::Nobody(Withheld::PrivateWithoutUser)
            );
            assert_eq!(
                Audience::of(c, Some("alice"), false),
                Audience::Nobody(Withheld::AuthDisabled)
            );
        }
        let internal = Audience::of(Internal, Some("alice"), true);
        assert_eq!(internal, Audience::Nobody(Withheld::Internal));
        assert!(!internal.admits(&alice, 0) && !internal.admits(&anon, 0));
    }

    #[test]
    fn expired_identity_is_not_admitted() {
        let c = ConnIdentity::anonymous();
        c.authenticate(&Identity {
            user_id: "alice".into(),
            valid_until_ms: 100,
        })
        .unwrap();
        let a = Audience::User("alice");
        assert!(a.admits(&c, 99));
        assert!(!a.admits(&c, 100));
    }
}
