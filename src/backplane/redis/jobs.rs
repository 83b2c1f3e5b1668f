//! `park`'s jobs in Redis: [`JobBackplane`] for [`RedisBackplane`].
//!
//! Keys (each change is one Lua script, atomic):
//!
//! - `{prefix}:j:{id}`: a hash, the job's record: `n` the node that runs
//!   it, `o` its owner (absent when none); once finished `s` (status), `h`
//!   (headers, one `name: value` a line) and `b` (body). It lives for the
//!   lease plus the result's TTL, renewed with the lease; once finished,
//!   for the TTL.
//! - `{prefix}:jl:{id}`: the lease, the node's name with an expiry
//!   ([`RedisBuilder::lease`](super::RedisBuilder::lease)). A record
//!   without its result and without its lease is a lost job.
//!
//! Topics: `job:{id}` (its end: finished, cancelled) wakes the long-polls;
//! `jobs:{node}` is a node's inbox (the ids of its jobs cancelled
//! elsewhere).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use redis::Script;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::topic::TopicEvent;
use super::{ms, RedisBackplane, Shared};
use crate::backplane::jobs::{Claim, JobBackplane, JobInbox, JobResult, JobState};
use crate::backplane::BoxFuture;
use crate::error::Error;

/// The longest expiry set (about 34 years): a TTL too long to count keeps
/// a result "for ever" without overflowing Redis's clock.
const MAX_EXPIRY_MS: u64 = 1 << 40;

/// Leases renewed per script call.
const RENEW_BATCH: usize = 500;

static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('DEL', KEYS[1])
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'n', ARGV[1], 'o', ARGV[3])
else
  redis.call('HSET', KEYS[1], 'n', ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[4])
return 1
",
    )
});

/// KEYS: record and lease of each job, in pairs; ARGV: node, lease (ms),
/// then each job's record expiry (ms). Returns the (1-based) numbers of the
/// jobs whose lease the node does not hold.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local gone = {}
for i = 1, #KEYS / 2 do
  local record, lease = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('GET', lease) == ARGV[1] then
    redis.call('PEXPIRE', lease, ARGV[2])
    redis.call('PEXPIRE', record, ARGV[2 + i])
  else
    table.insert(gone, i)
  end
end
return gone
",
    )
});

/// KEYS: record, lease; ARGV: node, status, headers, body, TTL (ms), the
/// job's topic. 0 when the node no longer holds the lease.
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 's', ARGV[2], 'h', ARGV[3], 'b', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[6], 'finished')
return 1
",
    )
});

/// KEYS: record, lease. The record's `n`, `o`, `s`, `h`, `b` and whether
/// the lease exists (`1`/`0`).
static STATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local r = redis.call('HMGET', KEYS[1], 'n', 'o', 's', 'h', 'b')
r[6] = tostring(redis.call('EXISTS', KEYS[2]))
return r
",
    )
});

/// KEYS: record, lease; ARGV: the job's topic, the inbox topic's prefix,
/// the id. Deletes both; tells the node holding the lease. 0 when there
/// was no record.
static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local holder = redis.call('GET', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
if holder then redis.call('PUBLISH', ARGV[2] .. holder, ARGV[3]) end
redis.call('PUBLISH', ARGV[1], 'cancelled')
return 1
",
    )
});

fn expiry(d: Duration) -> u64 {
    ms(d).min(MAX_EXPIRY_MS)
}

fn job_topic(id: &str) -> String {
    format!("job:{id}")
}

fn inbox_topic(node: &str) -> String {
    format!("jobs:{node}")
}

impl Shared {
    fn job_keys(&self, id: &str) -> (String, String) {
        (self.key("j", id), self.key("jl", id))
    }

    /// A record's expiry: the lease, then the result's TTL.
    fn record_expiry(&self, ttl: Duration) -> u64 {
        expiry(self.lease.saturating_add(ttl))
    }

    async fn job_inbox(self: &Arc<Self>, node: &str) -> Result<JobInbox, Error> {
        let mut topic = self.topic(&inbox_topic(node)).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    event = topic.recv() => match event {
                        Some(TopicEvent::Message(id)) => {
                            if let Ok(id) = String::from_utf8(id.to_vec()) {
                                let _ = tx.send(id);
                            }
                        }
                        // Missed cancellations show at the next renewal.
                        Some(TopicEvent::Resubscribed) => {}
                        None => return,
                    },
                }
            }
        });
        Ok(JobInbox::new(rx))
    }

    async fn job_claim(&self, claim: Claim<'_>) -> Result<(), Error> {
        let (record, lease) = self.job_keys(claim.id);
        let mut cmd = self.cmd.clone();
        let mut inv = CLAIM.prepare_invoke();
        inv.key(record)
            .key(lease)
            .arg(claim.node)
            .arg(if claim.owner.is_some() { "1" } else { "0" })
            .arg(claim.owner.unwrap_or(""))
            .arg(expiry(self.lease))
            .arg(self.record_expiry(claim.ttl));
        self.call(inv.invoke_async::<i64>(&mut cmd)).await?;
        Ok(())
    }

    async fn job_renew(
        &self,
        node: &str,
        ids: &[(String, Duration)],
    ) -> Result<Vec<String>, Error> {
        let mut gone = Vec::new();
        for batch in ids.chunks(RENEW_BATCH) {
            let mut inv = RENEW.prepare_invoke();
            inv.arg(node).arg(expiry(self.lease));
            for (id, ttl) in batch {
                let (record, lease) = self.job_keys(id);
                inv.key(record).key(lease).arg(self.record_expiry(*ttl));
            }
            let mut cmd = self.cmd.clone();
            let numbers: Vec<usize> = self.call(inv.invoke_async(&mut cmd)).await?;
            gone.extend(
                numbers
                    .into_iter()
                    .filter_map(|n| batch.get(n.wrapping_sub(1)).map(|(id, _)| id.clone())),
            );
        }
        Ok(gone)
    }

    async fn job_finish(
        &self,
        id: &str,
        node: &str,
        result: &JobResult,
        ttl: Duration,
    ) -> Result<bool, Error> {
        let (record, lease) = self.job_keys(id);
        let mut cmd = self.cmd.clone();
        let mut inv = FINISH.prepare_invoke();
        inv.key(record)
            .key(lease)
            .arg(node)
            .arg(result.status.as_u16())
            .arg(encode_headers(&result.headers))
            .arg(&result.body[..])
            .arg(expiry(ttl))
            .arg(self.topic_key(&job_topic(id)));
        let stored: i64 = self.call(inv.invoke_async(&mut cmd)).await?;
        Ok(stored == 1)
    }

    async fn job_read(&self, id: &str) -> Result<JobState, Error> {
        let (record, lease) = self.job_keys(id);
        let mut cmd = self.cmd.clone();
        let mut inv = STATE.prepare_invoke();
        inv.key(record).key(lease);
        let fields: Vec<Option<Vec<u8>>> = self.call(inv.invoke_async(&mut cmd)).await?;
        Ok(decode_state(fields))
    }

    async fn job_state(
        self: &Arc<Self>,
        id: &str,
        wait: Option<Duration>,
    ) -> Result<JobState, Error> {
        let Some(wait) = wait.filter(|w| !w.is_zero()) else {
            return self.job_read(id).await;
        };
        let now = Instant::now();
        let deadline = now.checked_add(wait);
        // Subscribed before the first read: an end after it wakes us.
        let mut topic = self.topic(&job_topic(id)).await?;
        // A lost job sends nothing: look again every third of a lease.
        let every = (self.lease / 3).max(Duration::from_millis(10));
        loop {
            let state = self.job_read(id).await?;
            let now = Instant::now();
            if !matches!(state, JobState::Running { .. }) || deadline.is_some_and(|d| now >= d) {
                return Ok(state);
            }
            let next = deadline.map_or(now + every, |d| d.min(now + every));
            if let Ok(None) = tokio::time::timeout_at(next, topic.recv()).await {
                return Ok(state);
            }
        }
    }

    async fn job_cancel(&self, id: &str) -> Result<bool, Error> {
        let (record, lease) = self.job_keys(id);
        let mut cmd = self.cmd.clone();
        let mut inv = CANCEL.prepare_invoke();
        inv.key(record)
            .key(lease)
            .arg(self.topic_key(&job_topic(id)))
            .arg(self.topic_key(&inbox_topic("")))
            .arg(id);
        let found: i64 = self.call(inv.invoke_async(&mut cmd)).await?;
        Ok(found == 1)
    }
}

/// `name: value` lines (neither may hold a line break).
fn encode_headers(headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}

/// The headers of [`encode_headers`]; a line that is not one is skipped.
fn decode_headers(raw: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in raw.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let value = line[colon + 1..]
            .strip_prefix(b" ")
            .unwrap_or(&line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

fn decode_state(mut fields: Vec<Option<Vec<u8>>>) -> JobState {
    fields.resize(6, None);
    let mut f = fields.into_iter();
    let (node, owner, status, headers, body, lease) =
        (f.next(), f.next(), f.next(), f.next(), f.next(), f.next());
    let (Some(Some(_node)), Some(owner), Some(status), Some(headers), Some(body), Some(lease)) =
        (node, owner, status, headers, body, lease)
    else {
        return JobState::Missing;
    };
    let owner = owner.map(|o| String::from_utf8_lossy(&o).into_owned());
    if let Some(status) = status {
        let status = std::str::from_utf8(&status)
            .ok()
            .and_then(|s| s.parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let result = JobResult {
            status,
            headers: decode_headers(headers.as_deref().unwrap_or_default()),
            body: Bytes::from(body.unwrap_or_default()),
        };
        return JobState::Finished { owner, result };
    }
    if lease.as_deref() == Some(b"1") {
        JobState::Running { owner }
    } else {
        JobState::Lost { owner }
    }
}

impl JobBackplane for RedisBackplane {
    fn inbox<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<JobInbox, Error>> {
        Box::pin(self.shared.job_inbox(node))
    }

    fn claim<'a>(&'a self, claim: Claim<'a>) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.shared.job_claim(claim))
    }

    fn renew<'a>(
        &'a self,
        node: &'a str,
        ids: &'a [(String, Duration)],
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        Box::pin(self.shared.job_renew(node, ids))
    }

    fn renew_every(&self) -> Duration {
        self.shared.lease / 3
    }

    fn finish<'a>(
        &'a self,
        id: &'a str,
        node: &'a str,
        result: &'a JobResult,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(self.shared.job_finish(id, node, result, ttl))
    }

    fn state<'a>(
        &'a self,
        id: &'a str,
        wait: Option<Duration>,
    ) -> BoxFuture<'a, Result<JobState, Error>> {
        Box::pin(self.shared.job_state(id, wait))
    }

    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(self.shared.job_cancel(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("two: 2"));
        h.insert("x-empty", HeaderValue::from_static(""));
        assert_eq!(decode_headers(&encode_headers(&h)), h);
    }

    #[test]
    fn a_record_without_its_lease_is_lost() {
        let running = vec![
            Some(b"n".to_vec()),
            None,
            None,
            None,
            None,
            Some(b"1".to_vec()),
        ];
        assert_eq!(decode_state(running), JobState::Running { owner: None });
        let lost = vec![
            Some(b"n".to_vec()),
            Some(b"u".to_vec()),
            None,
            None,
            None,
            Some(b"0".to_vec()),
        ];
        assert_eq!(
            decode_state(lost),
            JobState::Lost {
                owner: Some("u".into())
            }
        );
        assert_eq!(decode_state(vec![None; 6]), JobState::Missing);
    }
}
