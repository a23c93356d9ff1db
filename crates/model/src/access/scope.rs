//! Scopes: what a credential allows. `admin` grants every scope.

use std::fmt;

macro_rules! scopes {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// One permission a credential may carry.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Scope {
            $(#[doc = $doc] $variant,)*
        }

        impl Scope {
            /// Every scope, in a stable order.
            pub const ALL: &'static [Scope] = &[$(Scope::$variant),*];

            /// The scope's name in tokens, claims and errors (`content:read`).
            pub fn as_str(self) -> &'static str {
                match self { $(Scope::$variant => $name,)* }
            }

            /// What the scope allows, in a line.
            pub fn describe(self) -> &'static str {
                match self { $(Scope::$variant => $doc,)* }
            }

            pub fn parse(name: &str) -> Option<Scope> {
                match name { $($name => Some(Scope::$variant),)* _ => None }
            }
        }
    };
}

scopes! {
    ContentRead => "content:read", "List content and pins; read any CID when reads are not public.";
    ContentWrite => "content:write", "Add content, import CARs, pin, upload over WebSocket.";
    ContentDelete => "content:delete", "Delete content and unpin.";
    StreamsWrite => "streams:write", "Create and delete WebRTC streams.";
    StreamsAdmin => "streams:admin", "List, inspect, close and steer WebRTC connections.";
    NotificationsRead => "notifications:read", "Subscribe to notifications and read their history.";
    NotificationsPublish => "notifications:publish", "Publish notifications.";
    MetricsRead => "metrics:read", "Read /metrics, the monitoring API and the dashboard's data.";
    Admin => "admin", "Every scope, and fault injection.";
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Scope::parse(name).ok_or_else(|| {
            let known: Vec<_> = Scope::ALL.iter().map(|scope| scope.as_str()).collect();
            format!("unknown scope {name:?} (known: {})", known.join(", "))
        })
    }
}

/// A set of scopes, as a bit set (cheap to copy and test on every request).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Scopes(u16);

impl Scopes {
    pub fn of(scopes: &[Scope]) -> Self {
        Self(scopes.iter().fold(0, |bits, scope| bits | (1 << *scope as u16)))
    }

    /// Whether a caller holding these scopes may act where `needed` is required.
    pub fn grants(self, needed: Scope) -> bool {
        self.contains(Scope::Admin) || self.contains(needed)
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & (1 << scope as u16) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.iter().copied().filter(move |scope| self.contains(*scope))
    }

    /// Space-separated names, as OAuth's `scope` claim writes them.
    pub fn to_claim(self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(" ")
    }

    /// Parses a space- or comma-separated list; an unknown name is an error naming it.
    pub fn parse_list(list: &str) -> Result<Self, String> {
        let mut scopes = Vec::new();
        for name in list.split([' ', ',']).filter(|name| !name.is_empty()) {
            scopes.push(name.parse::<Scope>()?);
        }
        Ok(Self::of(&scopes))
    }

    /// Like [`Scopes::parse_list`], but names it does not know are left out (an identity
    /// provider's `scope` claim carries scopes of other services too).
    pub fn parse_known(list: &str) -> Self {
        Self::of(&list.split(' ').filter_map(Scope::parse).collect::<Vec<_>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_named() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>().unwrap(), *scope);
        }
        let error = "content:erase".parse::<Scope>().unwrap_err();
        assert!(
            error.contains("content:erase") && error.contains("content:delete"),
            "{error}"
        );
    }

    #[test]
    fn admin_grants_every_scope_and_others_only_their_own() {
        let admin = Scopes::of(&[Scope::Admin]);
        assert!(Scope::ALL.iter().all(|scope| admin.grants(*scope)));
        let reader = Scopes::parse_list("content:read metrics:read").unwrap();
        assert!(reader.grants(Scope::ContentRead) && reader.grants(Scope::MetricsRead));
        assert!(!reader.grants(Scope::ContentWrite) && !reader.grants(Scope::Admin));
        assert_eq!(reader.to_claim(), "content:read metrics:read");
        assert_eq!(
            Scopes::parse_known("openid content:write profile"),
            Scopes::of(&[Scope::ContentWrite])
        );
        assert!(Scopes::parse_list("content:read,bogus").is_err());
    }
}
