//! Socket ids: how they are made and which strings may be one; and the
//! upload secrets of reservations.

use crate::error::BoxError;

/// How socket ids are generated and recognised.
///
/// The id is the only credential a receiver needs, so a generator must be
/// unpredictable: [`RandomIds`] (the default) draws 72 bits from the operating
/// system's CSPRNG. [`is_valid`](IdScheme::is_valid) is checked before any
/// lookup, so a malformed id gets a 404 without touching the registry.
///
/// # Examples
///
/// ```
/// use delayed_response::pipe::IdScheme;
///
/// /// Longer ids: 18 random bytes as 24 hex digits would also do.
/// struct Prefixed;
///
/// impl IdScheme for Prefixed {
///     fn generate(&self) -> Result<String, delayed_response::BoxError> {
///         let random = delayed_response::pipe::RandomIds.generate()?;
///         Ok(format!("p{random}"))
///     }
///     fn is_valid(&self, id: &str) -> bool {
///         id.len() == 13 && id.starts_with('p')
///     }
/// }
/// ```
pub trait IdScheme: Send + Sync + 'static {
    /// A fresh id. It is regenerated when it collides with a live socket.
    ///
    /// # Errors
    ///
    /// When no id can be made (the OS random source failed); the request is
    /// answered `503 Service Unavailable`.
    fn generate(&self) -> Result<String, BoxError>;

    /// Could `id` have come from [`generate`](IdScheme::generate)? Ids must be
    /// a single path segment (no `/`), and URL-safe.
    fn is_valid(&self, id: &str) -> bool;
}

/// The default id scheme: 9 bytes from the OS CSPRNG (`getrandom`), as 12
/// base64url characters (`[0-9A-Za-z_-]{12}`, 72 bits), like the original.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

/// The length of a [`RandomIds`] id.
pub const RANDOM_ID_LEN: usize = 12;

impl IdScheme for RandomIds {
    fn generate(&self) -> Result<String, BoxError> {
        let raw = crate::id::random_bytes::<9>()?;
        Ok(crate::id::base64url(&raw))
    }

    fn is_valid(&self, id: &str) -> bool {
        id.len() == RANDOM_ID_LEN && crate::id::is_base64url(id)
    }
}

/// The length of an upload secret: 16 bytes (128 bits) from the OS CSPRNG,
/// as base64url.
pub(crate) const SECRET_LEN: usize = 22;

/// A fresh upload secret.
///
/// # Errors
///
/// Only when the OS has no entropy source (the request gets `503`).
pub(crate) fn new_secret() -> Result<String, crate::Error> {
    crate::id::random_token()
}

/// Could `s` be an upload secret?
pub(crate) fn is_secret(s: &str) -> bool {
    s.len() == SECRET_LEN && crate::id::is_base64url(s)
}

/// Is `given` the secret `expected`? The time taken depends on the lengths
/// only, not on where the strings differ, so it cannot be guessed byte by
/// byte.
pub(crate) fn secret_matches(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_the_rfc_alphabet() {
        // base64 of ff ff fe ... is "///+" in standard base64, "___-" in base64url.
        let raw = [0xff, 0xff, 0xfe, 0, 0, 0, 0xfb, 0xef, 0xbe];
        assert_eq!(crate::id::base64url(&raw), "___-AAAA----");
    }

    #[test]
    fn generated_ids_are_valid_and_differ() {
        let a = RandomIds.generate().unwrap();
        let b = RandomIds.generate().unwrap();
        assert!(RandomIds.is_valid(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn validation_rejects_wrong_length_and_characters() {
        assert!(!RandomIds.is_valid("short"));
        assert!(!RandomIds.is_valid("abcdefghijk/"));
        assert!(!RandomIds.is_valid("abcdefghijk="));
        assert!(!RandomIds.is_valid("abcdefghijkéé"));
        assert!(RandomIds.is_valid("abc-_0123XYZ"));
    }

    #[test]
    fn secrets_are_128_bits_and_compared_whole() {
        let a = new_secret().unwrap();
        assert_eq!(a.len(), SECRET_LEN);
        assert!(is_secret(&a));
        assert_ne!(a, new_secret().unwrap());
        assert!(secret_matches(&a, &a.clone()));
        let mut last = a.clone().into_bytes();
        last[SECRET_LEN - 1] ^= 1;
        assert!(!secret_matches(&a, &String::from_utf8(last).unwrap()));
        assert!(!secret_matches(&a, &a[..SECRET_LEN - 1]));
        assert!(!secret_matches(&a, ""));
        assert!(!is_secret("short"));
    }
}
