//! Swarm ids, cids and tokens.

use std::fmt;

/// A swarm id, cid or token: 128 bits from the OS CSPRNG, written as 32
/// lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Id([u8; 16]);

impl Id {
    pub(crate) fn random() -> Result<Id, crate::Error> {
        crate::id::random_bytes().map(Id)
    }

    /// Parses 32 lowercase hex characters; anything else is no id we issued.
    pub(crate) fn parse(s: &str) -> Option<Id> {
        let s = s.as_bytes();
        if s.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            bytes[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(Id(bytes))
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // koa-signal drew ids and tokens from Math.random; these come from the
    // OS CSPRNG (getrandom), in koa-signal's 32-lowercase-hex shape.
    #[test]
    fn ids_round_trip_as_32_lowercase_hex() {
        let id = Id::random().unwrap();
        let s = id.to_string();
        assert_eq!(s.len(), 32);
        assert!(s
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert!(Id::parse(&s) == Some(id));
    }

    #[test]
    fn ids_are_distinct() {
        assert!(Id::random().unwrap() != Id::random().unwrap());
    }

    #[test]
    fn parse_rejects_everything_but_32_lowercase_hex() {
        assert!(Id::parse("toString").is_none());
        assert!(Id::parse(&"A".repeat(32)).is_none());
        assert!(Id::parse(&"a".repeat(31)).is_none());
        assert!(Id::parse(&"g".repeat(32)).is_none());
        assert!(Id::parse(&"0".repeat(32)).is_some());
    }
}
