//! The cursor: one position per channel of a stream, as one opaque string.
//!
//! Written `{epoch:x}-{offset}` per channel, in the stream's (sorted)
//! channel order, joined with `.`: only `[0-9a-f.-]`, so it is safe in a
//! header, an SSE `id:` and a query string alike.

use std::fmt::Write as _;

use crate::backplane::Position;

/// The longest cursor accepted: 32 channels of a 16-digit epoch and a
/// 20-digit offset, with separators, fit.
pub(crate) const MAX_LEN: usize = 40 * 64;

/// Writes `positions` as a cursor.
pub(crate) fn format(positions: &[Position]) -> String {
    let mut out = String::with_capacity(positions.len() * 16);
    for (i, p) in positions.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        let _ = write!(out, "{:x}-{}", p.epoch, p.offset);
    }
    out
}

/// Parses a cursor for a stream of `channels` channels; `None` when it is
/// malformed or covers another number of channels.
pub(crate) fn parse(s: &str, channels: usize) -> Option<Vec<Position>> {
    if s.len() > MAX_LEN {
        return None;
    }
    let positions: Vec<Position> = s
        .split('.')
        .map(|part| {
            let (epoch, offset) = part.split_once('-')?;
            let hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
            if epoch.is_empty() || epoch.len() > 16 || !epoch.bytes().all(hex) {
                return None;
            }
            if offset.is_empty() || offset.len() > 20 || !offset.bytes().all(|c| c.is_ascii_digit())
            {
                return None;
            }
            Some(Position {
                epoch: u64::from_str_radix(epoch, 16).ok()?,
                offset: offset.parse().ok()?,
            })
        })
        .collect::<Option<_>>()?;
    (positions.len() == channels).then_some(positions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let ps = vec![
            Position {
                epoch: 0xabc,
                offset: 7,
            },
            Position {
                epoch: u64::MAX,
                offset: u64::MAX,
            },
        ];
        let s = format(&ps);
        assert_eq!(s, "abc-7.ffffffffffffffff-18446744073709551615");
        assert_eq!(parse(&s, 2), Some(ps));
    }

    #[test]
    fn malformed_cursors_and_wrong_arity_are_refused() {
        for bad in [
            "", "x", "1", "1-", "-1", "g-1", "1-a", "1-1.", "1-1..2-2", "A-1", "1-1-1",
        ] {
            assert_eq!(parse(bad, 1), None, "{bad:?}");
        }
        assert_eq!(parse("1-1", 2), None);
        assert_eq!(parse("1-1.2-2", 1), None);
        assert_eq!(parse(&"1".repeat(17).to_string(), 1), None);
    }
}
