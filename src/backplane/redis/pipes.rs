//! The pipe's ids in Redis: `{prefix}:pipe:{id}` holds the owner's
//! advertised URL with a TTL (the lease), and `{prefix}:pipes:secret` the
//! secret of the instances' forwarded requests.
//!
//! A hold is a script (`GET`, then `SET … PX` when the key is free or
//! ours), so two instances never both hold one id, and an owner renews its
//! holds, all of them, in one round trip per [`BATCH`] ids. A release is a
//! compare-and-delete, so a late release never removes another owner's
//! hold.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{AsyncCommands, Script};

use super::{ms, RedisBackplane, Shared};
use crate::backplane::pipes::PipeBackplane;
use crate::backplane::BoxFuture;
use crate::error::Error;

/// The most ids one hold script takes (a renewal of many is split).
const BATCH: usize = 256;

/// KEYS: the ids' keys; ARGV: owner, lease ms. Returns how many are the
/// owner's now.
static HOLD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local held = 0
for _, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == false or owner == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    held = held + 1
  end
end
return held
",
    )
});

/// KEYS: the id's key; ARGV: owner.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// KEYS: the secret's key; ARGV: a fresh secret, used when there is none.
static SECRET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
",
    )
});

impl Shared {
    fn pipe_key(&self, id: &str) -> String {
        self.key("pipe", id)
    }

    async fn pipe_hold(
        &self,
        ids: &[String],
        owner: &str,
        lease: Duration,
    ) -> Result<usize, Error> {
        let mut held = 0;
        for batch in ids.chunks(BATCH) {
            let mut inv = HOLD.prepare_invoke();
            for id in batch {
                inv.key(self.pipe_key(id));
            }
            inv.arg(owner).arg(ms(lease));
            let mut cmd = self.cmd.clone();
            let n: usize = self.call(inv.invoke_async(&mut cmd)).await?;
            held += n;
        }
        Ok(held)
    }

    async fn pipe_release(&self, id: &str, owner: &str) -> Result<(), Error> {
        let mut inv = RELEASE.prepare_invoke();
        inv.key(self.pipe_key(id)).arg(owner);
        let mut cmd = self.cmd.clone();
        let _: i64 = self.call(inv.invoke_async(&mut cmd)).await?;
        Ok(())
    }

    async fn pipe_owner(&self, id: &str) -> Result<Option<String>, Error> {
        let mut cmd = self.cmd.clone();
        self.call(cmd.get(self.pipe_key(id))).await
    }

    async fn pipe_secret(&self) -> Result<String, Error> {
        // Only the first instance's is kept.
        let fresh = crate::id::random_token()?;
        let mut inv = SECRET.prepare_invoke();
        inv.key(self.key("pipes", "secret")).arg(fresh);
        let mut cmd = self.cmd.clone();
        self.call(inv.invoke_async(&mut cmd)).await
    }
}

impl PipeBackplane for RedisBackplane {
    fn hold<'a>(
        &'a self,
        ids: &'a [String],
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<usize, Error>> {
        Box::pin(self.shared.pipe_hold(ids, owner, lease))
    }

    fn release<'a>(&'a self, id: &'a str, owner: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.shared.pipe_release(id, owner))
    }

    fn owner<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<String>, Error>> {
        Box::pin(self.shared.pipe_owner(id))
    }

    fn secret(&self) -> BoxFuture<'_, Result<String, Error>> {
        Box::pin(self.shared.pipe_secret())
    }

    /// The backplane's [lease](super::RedisBuilder::lease) (default 15 s).
    fn lease(&self) -> Duration {
        self.shared.lease
    }
}
