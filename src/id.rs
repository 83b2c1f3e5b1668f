//! Unguessable ids from the operating system's CSPRNG.

/// `N` random bytes from the OS CSPRNG.
///
/// # Errors
///
/// Only when the OS has no entropy source at all (callers answer 503).
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], crate::Error> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf)
        .map_err(|e| crate::Error::with(crate::error::Kind::Io, e.to_string()))?;
    Ok(buf)
}

// The text form of park's and the pipe's ids and of the backplane's tokens.
#[cfg(any(
    feature = "park",
    feature = "pipe",
    all(feature = "redis", feature = "signal")
))]
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// 128 bits from the OS CSPRNG as unpadded base64url (22 characters): an
/// unguessable id, secret or instance name.
///
/// # Errors
///
/// As [`random_bytes`].
#[cfg(any(
    feature = "park",
    feature = "pipe",
    all(feature = "redis", feature = "signal")
))]
pub(crate) fn random_token() -> Result<String, crate::Error> {
    Ok(base64url(&random_bytes::<16>()?))
}

/// Unpadded base64url (RFC 4648 §5).
#[cfg(any(
    feature = "park",
    feature = "pipe",
    all(feature = "redis", feature = "signal")
))]
pub(crate) fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(URL_SAFE[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Is `s` made only of base64url characters?
#[cfg(any(feature = "park", feature = "pipe"))]
pub(crate) fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(all(test, any(feature = "park", feature = "pipe")))]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn random_ids_differ() {
        let a = base64url(&random_bytes::<16>().unwrap());
        let b = base64url(&random_bytes::<16>().unwrap());
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
        assert!(is_base64url(&a));
    }
}
