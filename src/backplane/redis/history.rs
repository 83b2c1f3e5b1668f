//! History: the stream read after a cursor, with its gap rules.

use std::sync::Arc;

use bytes::Bytes;
use redis::Value;

use super::{fanout, io, meta_ttl, ms, Shared};
use crate::backplane::{History, Message, Position, Replay, Retention};
use crate::error::Error;

impl Shared {
    pub(super) async fn history(
        &self,
        channel: &str,
        after: Option<Position>,
        retention: Retention,
    ) -> Result<History, Error> {
        if self.listening(channel) {
            self.remember(channel, retention);
        }
        fanout::subscribed(self, channel).await?;
        let mut cmd = self.cmd.clone();
        let mut inv = self.scripts.history.prepare_invoke();
        inv.key(self.key("m", channel))
            .key(self.key("s", channel))
            .arg(Shared::new_epoch()?)
            .arg(after.map(|a| a.offset.to_string()).unwrap_or_default())
            .arg(meta_ttl(retention));
        let (epoch, seq, now, entries): (String, u64, u64, Vec<Value>) =
            self.call(inv.invoke_async(&mut cmd)).await?;
        let head = Position {
            epoch: epoch.parse().map_err(io)?,
            offset: seq,
        };
        let Some(after) = after else {
            return Ok(History {
                head,
                replay: Replay::Messages(Vec::new()),
            });
        };
        if after.epoch != head.epoch || after.offset > head.offset {
            return Ok(History {
                head,
                replay: Replay::Gap,
            });
        }
        let oldest = now.saturating_sub(ms(retention.max_age));
        let name: Arc<str> = Arc::from(channel);
        let mut kept: Vec<Message> = entries
            .into_iter()
            .filter_map(|e| entry(&name, head.epoch, e))
            .filter(|(_, at)| *at >= oldest)
            .map(|(m, _)| m)
            .collect();
        if kept.len() > retention.max_messages {
            kept.drain(..kept.len() - retention.max_messages);
        }
        let covered = match kept.first() {
            Some(first) => first.position.offset == after.offset + 1,
            None => after.offset == head.offset,
        };
        let replay = if covered {
            Replay::Messages(kept)
        } else {
            Replay::Gap
        };
        Ok(History { head, replay })
    }
}

/// A stream entry `[id, [t, ms, e, event, d, data]]` as a message and the
/// time it was stored.
fn entry(channel: &Arc<str>, epoch: u64, value: Value) -> Option<(Message, u64)> {
    let (id, fields): (String, Vec<Bytes>) = redis::from_redis_value(value).ok()?;
    let offset: u64 = id.strip_prefix("0-")?.parse().ok()?;
    let mut at = 0;
    let mut event = None;
    let mut data = Bytes::new();
    for pair in fields.chunks(2) {
        let [name, value] = pair else { continue };
        match &name[..] {
            b"t" => at = std::str::from_utf8(value).ok()?.parse().ok()?,
            b"e" if !value.is_empty() => {
                event = Some(Arc::from(std::str::from_utf8(value).ok()?));
            }
            b"d" => data = value.clone(),
            _ => {}
        }
    }
    Some((
        Message {
            channel: channel.clone(),
            position: Position { epoch, offset },
            event,
            data,
        },
        at,
    ))
}
