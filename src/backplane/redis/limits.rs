//! Rate limits counted in Redis: one bucket per limit and client, shared by
//! every instance, taken in one atomic script (one round trip).

use std::time::Duration;

use super::Shared;
use crate::error::Error;
use crate::limit::{ClientKey, Rate};

/// The longest wait a refusal names: a day.
const MAX_WAIT: Duration = Duration::from_secs(86_400);

/// Takes one token of `limit` for `client` at `rate`: `None` when taken,
/// else how long until one is there.
pub(super) async fn take_token(
    shared: &Shared,
    limit: &str,
    client: &ClientKey,
    rate: Rate,
) -> Result<Option<Duration>, Error> {
    let interval_ms = 1000.0 / rate.tokens_per_second();
    let mut cmd = shared.cmd.clone();
    let mut inv = shared.scripts.take_token.prepare_invoke();
    inv.key(format!("{}:rl:{limit}:", shared.prefix))
        .arg(client.stable_id())
        .arg(interval_ms)
        .arg(rate.burst_tokens());
    let wait_us: u64 = shared.call(inv.invoke_async(&mut cmd)).await?;
    Ok((wait_us > 0).then(|| Duration::from_micros(wait_us).min(MAX_WAIT)))
}
