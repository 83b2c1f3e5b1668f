//! One transfer: the upload a sender left waiting, and the sender's side of
//! its transfer (which ends the sender's response exactly once).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::body::{Meter, UploadBody};
use super::hooks::{Cut, Hooks, Socket, Stats};
use crate::delayed::Completion;
use crate::error::{Error, Kind};
use crate::limit::Permit;

/// A sender waiting for its receiver, as kept in the registry.
pub(crate) struct Upload {
    pub(crate) body: UploadBody,
    /// `Some` for `multipart/form-data`: the first file part is streamed.
    pub(crate) boundary: Option<String>,
    /// The sender's held response.
    pub(crate) completion: Completion,
    pub(crate) socket: Socket,
    /// One unit of the sender's per-client cap on waiting uploads; given
    /// back when a receiver takes the socket.
    pub(crate) permit: Option<Permit>,
}

/// The sender's side of a running transfer. It ends the sender's response
/// exactly once: with the end line, or with a cut line — also when it is
/// dropped early, which is how a receiver that went away shows up.
pub(crate) struct Transfer {
    completion: Completion,
    socket: Socket,
    hooks: Arc<dyn Hooks>,
    /// 0: no limit.
    pub(super) limit: u64,
    bytes: u64,
    started: Instant,
    /// Ended (finished or cut): nothing more is read.
    pub(super) done: bool,
}

impl Transfer {
    pub(crate) fn new(
        completion: Completion,
        socket: Socket,
        hooks: Arc<dyn Hooks>,
        limit: u64,
    ) -> Self {
        Transfer {
            completion,
            socket,
            hooks,
            limit,
            bytes: 0,
            started: Instant::now(),
            done: false,
        }
    }

    pub(crate) fn socket(&self) -> &Socket {
        &self.socket
    }

    pub(crate) fn socket_mut(&mut self) -> &mut Socket {
        &mut self.socket
    }

    fn stats(&self) -> Stats {
        Stats {
            bytes: self.bytes,
            elapsed: self.started.elapsed(),
        }
    }

    /// The upload ended: the sender's response gets its completion line.
    pub(crate) fn finish(&mut self) {
        if !std::mem::replace(&mut self.done, true) {
            let stats = self.stats();
            tracing::debug!(id = %self.socket.id, bytes = stats.bytes, "pipe transfer done");
            self.completion.end(self.hooks.end(&self.socket, &stats));
        }
    }

    pub(crate) fn cut(&mut self, cut: Cut) {
        if !std::mem::replace(&mut self.done, true) {
            let stats = self.stats();
            tracing::debug!(id = %self.socket.id, bytes = stats.bytes, ?cut, "pipe transfer cut");
            self.completion
                .end(self.hooks.cut(&self.socket, &stats, cut));
        }
    }
}

impl Meter for Transfer {
    /// Counts `data`; `Err` when it takes the transfer over the limit.
    fn count(&mut self, data: &Bytes) -> Result<(), Error> {
        self.bytes += data.len() as u64;
        if self.limit > 0 && self.bytes > self.limit {
            self.cut(Cut::TooLarge { limit: self.limit });
            return Err(Error::with(Kind::Limit, "upload too large"));
        }
        self.hooks.progress(&self.socket, &self.stats());
        Ok(())
    }

    fn finish(&mut self) {
        Transfer::finish(self);
    }

    fn cut(&mut self, cut: Cut) {
        Transfer::cut(self, cut);
    }

    fn limit(&self) -> u64 {
        self.limit
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.cut(Cut::ReceiverGone);
    }
}
