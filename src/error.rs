//! The crate's one error type.

use std::fmt;

/// A boxed error from user code (work futures, bodies, hooks).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error type of this crate.
///
/// It is opaque: ask what happened with the `is_*` predicates, and find the
/// underlying cause through [`std::error::Error::source`].
///
/// A deadline that turns into `202 Accepted` is an *outcome*, not an error; an
/// `Error` with [`is_timeout`](Error::is_timeout) only shows up where a timeout
/// really is a failure (for example the body of a long-poll response that timed
/// out after its head had gone out).
pub struct Error {
    // Boxed, as hyper does: an `Error` is one pointer, so the `Result`s and
    // `Poll`s of every body frame stay small.
    inner: Box<Inner>,
}

struct Inner {
    kind: Kind,
    source: Option<BoxError>,
}

// Errors cross tasks (a body's error goes to hyper's connection task).
const _: () = {
    const fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Error>();
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Kind {
    #[error("the work failed")]
    Work,
    #[error("the work did not finish in time")]
    Timeout,
    #[error("the client went away")]
    Aborted,
    #[error("the server is shutting down")]
    Shutdown,
    #[error("error from a response body")]
    Body,
    #[error("the completion was dropped without ending the response")]
    Dropped,
    #[error("a limit was exceeded")]
    Limit,
    #[error("invalid input")]
    Invalid,
    #[error("i/o error")]
    Io,
    #[error("the response has already ended")]
    Ended,
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Error {
            inner: Box::new(Inner { kind, source: None }),
        }
    }

    pub(crate) fn with<E: Into<BoxError>>(kind: Kind, source: E) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                source: Some(source.into()),
            }),
        }
    }

    /// Wraps an error that came out of a body.
    ///
    /// An `Error` passed in is returned as it is.
    pub(crate) fn body(source: BoxError) -> Self {
        match source.downcast::<Error>() {
            Ok(e) => *e,
            Err(source) => Error::with(Kind::Body, source),
        }
    }

    /// Wraps an error returned by the work.
    pub(crate) fn work(source: BoxError) -> Self {
        match source.downcast::<Error>() {
            Ok(e) => *e,
            Err(source) => Error::with(Kind::Work, source),
        }
    }

    /// The work returned an error.
    pub fn is_work(&self) -> bool {
        self.inner.kind == Kind::Work
    }

    /// The work did not finish before its deadline.
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == Kind::Timeout
    }

    /// The client disconnected before the response finished.
    pub fn is_aborted(&self) -> bool {
        self.inner.kind == Kind::Aborted
    }

    /// The server is shutting down.
    pub fn is_shutdown(&self) -> bool {
        self.inner.kind == Kind::Shutdown
    }

    /// A body (the work's streamed result, or an upload) failed.
    pub fn is_body(&self) -> bool {
        self.inner.kind == Kind::Body
    }

    /// Every [`Completion`](crate::Completion) of a handle was dropped before one
    /// of them ended the response.
    pub fn is_dropped(&self) -> bool {
        self.inner.kind == Kind::Dropped
    }

    /// A configured limit (bytes, connections, queue size) was exceeded.
    pub fn is_limit(&self) -> bool {
        self.inner.kind == Kind::Limit
    }

    /// An argument was invalid (a hub channel name or cursor that breaks
    /// the rules, say); the error's `source` says which rule.
    pub fn is_invalid(&self) -> bool {
        self.inner.kind == Kind::Invalid
    }

    /// An I/O error (accepting connections, reading a socket).
    pub fn is_io(&self) -> bool {
        self.inner.kind == Kind::Io
    }

    /// The response had already ended (a write or an end after the first end).
    pub fn is_ended(&self) -> bool {
        self.inner.kind == Kind::Ended
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("delayed_response::Error");
        d.field("kind", &self.inner.kind);
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.source {
            Some(source) => write!(f, "{}: {}", self.inner.kind, source),
            None => fmt::Display::fmt(&self.inner.kind, f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|e| &**e as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::with(Kind::Io, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_short_and_lowercase_with_cause() {
        let e = Error::with(Kind::Work, "boom");
        assert_eq!(e.to_string(), "the work failed: boom");
        assert!(e.is_work());
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn an_error_is_one_pointer() {
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn wrapping_an_error_keeps_its_kind() {
        let inner: BoxError = Box::new(Error::new(Kind::Timeout));
        assert!(Error::body(inner).is_timeout());
    }
}
