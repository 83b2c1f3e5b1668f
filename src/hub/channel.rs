//! Channel names, namespaces and the glob patterns of grants.

use std::time::Duration;

use crate::backplane::Retention;

/// The longest channel name.
pub(crate) const MAX_NAME: usize = 128;

/// Event names that a multiplexed stream uses for itself; a channel with
/// one of these names cannot be multiplexed (its events would be mistaken
/// for them).
pub(crate) const RESERVED: &[&str] = &[
    "message",
    "join",
    "leave",
    "gap",
    "overflow",
    "broadcast",
    "kicked",
];

/// The internal channel of [`Hub::broadcast`](super::Hub::broadcast); not a
/// valid name, so no client can subscribe or publish to it.
pub(crate) const BROADCAST: &str = "*";

/// Is `name` 1–128 characters of `[A-Za-z0-9_.:@-]`?
pub(crate) fn valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'-'))
}

/// What a channel's name makes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind<'a> {
    /// `user:{id}`: the personal channel of user `id`.
    User(&'a str),
    /// `private:…`: only with the authorizer's permission.
    Private,
    /// Anything else.
    Public,
}

pub(crate) fn kind(name: &str) -> Kind<'_> {
    if let Some(user) = name.strip_prefix("user:") {
        Kind::User(user)
    } else if name.starts_with("private:") {
        Kind::Private
    } else {
        Kind::Public
    }
}

/// Who may publish to the channels of a [`Namespace`] over HTTP. The Rust
/// API ([`Hub::publish`](super::Hub::publish)) always may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Publishers {
    /// Those the [`Authorizer`](super::Authorizer) lets publish there (with
    /// [`JwtAuthorizer`](super::JwtAuthorizer): the token's `publish`
    /// patterns). The default.
    #[default]
    Authorized,
    /// Any identified user.
    Users,
    /// Anyone, anonymous clients included (demos, load tests).
    Anyone,
}

/// The settings of the channels whose names start with a prefix (see
/// [`Builder::namespace`](super::Builder::namespace)).
///
/// | setting | default |
/// |---|---|
/// | [`history`](Self::history) | 100 messages, 5 minutes |
/// | [`presence`](Self::presence) | on |
/// | [`join_leave`](Self::join_leave) | off |
/// | [`anonymous`](Self::anonymous) | on (`user:` and `private:` channels: off) |
/// | [`publishers`](Self::publishers) | [`Publishers::Authorized`] |
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Namespace {
    pub(crate) retention: Retention,
    pub(crate) presence: bool,
    pub(crate) join_leave: bool,
    pub(crate) anonymous: bool,
    pub(crate) publishers: Publishers,
}

/// The default history length: 100 messages per channel.
pub const DEFAULT_HISTORY: usize = 100;

/// The default history age: 5 minutes.
pub const DEFAULT_HISTORY_AGE: Duration = Duration::from_secs(300);

impl Default for Namespace {
    fn default() -> Self {
        Namespace {
            retention: Retention {
                max_messages: DEFAULT_HISTORY,
                max_age: DEFAULT_HISTORY_AGE,
            },
            presence: true,
            join_leave: false,
            anonymous: true,
            publishers: Publishers::Authorized,
        }
    }
}

impl Namespace {
    /// The defaults (see the table above).
    pub fn new() -> Self {
        Namespace::default()
    }

    /// Keeps at most `messages` per channel, none older than `age`, for
    /// replay. `0` messages keeps no history: every reconnect with a cursor
    /// that missed something gets a gap.
    pub fn history(mut self, messages: usize, age: Duration) -> Self {
        self.retention = Retention {
            max_messages: messages,
            max_age: age,
        };
        self
    }

    /// Tracks who is subscribed ([`Hub::presence`](super::Hub::presence)).
    pub fn presence(mut self, yes: bool) -> Self {
        self.presence = yes;
        self
    }

    /// Sends `join` and `leave` events to the channel's subscribers (and
    /// turns presence on).
    pub fn join_leave(mut self, yes: bool) -> Self {
        self.join_leave = yes;
        if yes {
            self.presence = true;
        }
        self
    }

    /// May anonymous clients subscribe to its public channels?
    pub fn anonymous(mut self, yes: bool) -> Self {
        self.anonymous = yes;
        self
    }

    /// Who may publish over HTTP.
    pub fn publishers(mut self, who: Publishers) -> Self {
        self.publishers = who;
        self
    }
}

/// Does `name` match the glob `pattern`? `*` matches any run of characters
/// (none included); every other character matches itself.
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    // Iterative glob with one backtrack point: linear in practice, and
    // never exponential.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_1_to_128_of_the_allowed_characters() {
        assert!(valid("a"));
        assert!(valid("chat.room-1:x@y_z"));
        assert!(valid(&"a".repeat(128)));
        assert!(!valid(""));
        assert!(!valid(&"a".repeat(129)));
        assert!(!valid("a b"));
        assert!(!valid("a/b"));
        assert!(!valid("é"));
        assert!(!valid(BROADCAST));
    }

    #[test]
    fn kinds_follow_the_prefix() {
        assert_eq!(kind("user:ann"), Kind::User("ann"));
        assert_eq!(kind("private:x"), Kind::Private);
        assert_eq!(kind("users"), Kind::Public);
    }

    #[test]
    fn globs_match_runs_with_star() {
        assert!(matches("*", "anything"));
        assert!(matches("chat.*", "chat.room"));
        assert!(matches("chat.*", "chat."));
        assert!(!matches("chat.*", "chat"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("private:room-1", "private:room-1"));
        assert!(!matches("private:room-1", "private:room-12"));
    }
}
