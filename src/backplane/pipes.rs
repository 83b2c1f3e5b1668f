//! Where the pipe records which instance holds each waiting socket, when
//! several instances serve one pipe (see [`PipeBackplane`]).

use std::time::Duration;

use super::BoxFuture;
use crate::error::Error;

/// The map from a pipe's ids to the instances that hold them;
/// `RedisBackplane` implements it (feature `redis`).
///
/// A pipe's upload cannot move: it is a request held open on the instance
/// that received it. So the backplane keeps only a map from each id to its
/// **owner** (the owner's advertised URL, see
/// [`pipe::Builder::advertise`](crate::pipe::Builder::advertise)), under a
/// lease the owner renews while the socket waits. A `GET` for an id that
/// another instance owns is streamed through to the owner over HTTP, with a
/// secret that every instance shares ([`secret`](PipeBackplane::secret)).
///
/// # The contract
///
/// - [`hold`](PipeBackplane::hold) is atomic per id: an id that another
///   owner holds is never taken over (two instances cannot both hold one
///   id); the same owner may hold it again, which renews its lease.
/// - [`release`](PipeBackplane::release) removes an id only when the
///   releasing owner holds it.
/// - A hold that is not renewed ends after [`lease`](PipeBackplane::lease):
///   the ids of an instance that died are free again within one lease.
/// - [`secret`](PipeBackplane::secret) answers the same value on every
///   instance (until the store loses it; then a new one, again the same
///   everywhere).
///
/// A pipe uses one through
/// [`pipe::Builder::backplane`](crate::pipe::Builder::backplane) (feature
/// `redis`, which brings the HTTP client that streams a `GET` through to
/// the owner).
pub trait PipeBackplane: Send + Sync + 'static {
    /// Holds each of `ids` for `owner` for `lease` (renewing the holds
    /// `owner` has); returns how many are held by `owner` now (an id that
    /// another owner holds is left alone).
    ///
    /// # Errors
    ///
    /// The store failed or did not answer in time.
    fn hold<'a>(
        &'a self,
        ids: &'a [String],
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<usize, Error>>;

    /// Ends `owner`'s hold on `id` (nothing happens when another owner
    /// holds it, or none).
    ///
    /// # Errors
    ///
    /// The store failed or did not answer in time.
    fn release<'a>(&'a self, id: &'a str, owner: &'a str) -> BoxFuture<'a, Result<(), Error>>;

    /// Who holds `id`, if anyone.
    ///
    /// # Errors
    ///
    /// The store failed or did not answer in time.
    fn owner<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<String>, Error>>;

    /// The secret that authenticates a request one instance streams through
    /// to another (made at first use, shared by every instance).
    ///
    /// # Errors
    ///
    /// The store failed or did not answer in time.
    fn secret(&self) -> BoxFuture<'_, Result<String, Error>>;

    /// How long a hold lasts unless renewed; a pipe renews its holds every
    /// third of it.
    fn lease(&self) -> Duration;
}
