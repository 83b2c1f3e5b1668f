//! Presence in leases: a sorted set per channel of connections by expiry,
//! renewed by the node that holds them; the expiry sweep is one atomic
//! script, so exactly one node reports each departure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{ms, Shared};
use crate::backplane::{Departure, Member, Presence};
use crate::error::Error;
use crate::http::lock;

pub(super) async fn join(shared: &Shared, entry: Presence<'_>) -> Result<bool, Error> {
    let pz = shared.key("pz", entry.channel);
    let member = format!("{}\n{}", entry.user, entry.connection);
    let lease = entry.lease.unwrap_or(shared.lease);
    let mut cmd = shared.cmd.clone();
    let mut inv = shared.scripts.join.prepare_invoke();
    inv.key(&pz)
        .key(shared.key("pn", entry.channel))
        .key(shared.key("pi", entry.channel))
        .key(format!("{}:pch", shared.prefix))
        .arg(entry.user)
        .arg(entry.connection)
        .arg(ms(lease))
        .arg(if entry.info.is_some() { "1" } else { "0" })
        .arg(entry.info.as_deref().unwrap_or(b""))
        .arg(entry.channel);
    let absent: i64 = shared.call(inv.invoke_async(&mut cmd)).await?;
    if entry.lease.is_none() {
        lock(&shared.held).insert((pz, member), ());
    }
    Ok(absent == 1)
}

pub(super) async fn leave(
    shared: &Shared,
    channel: &str,
    user: &str,
    connection: &str,
    grace: Duration,
) -> Result<(), Error> {
    let pz = shared.key("pz", channel);
    lock(&shared.held).remove(&(pz.clone(), format!("{user}\n{connection}")));
    let mut cmd = shared.cmd.clone();
    let mut inv = shared.scripts.leave.prepare_invoke();
    inv.key(pz)
        .key(shared.key("pn", channel))
        .arg(user)
        .arg(connection)
        .arg(ms(grace));
    let _: i64 = shared.call(inv.invoke_async(&mut cmd)).await?;
    Ok(())
}

pub(super) async fn expired(shared: &Shared) -> Result<Vec<Departure>, Error> {
    let mut cmd = shared.cmd.clone();
    let mut inv = shared.scripts.expired.prepare_invoke();
    inv.key(format!("{}:pch", shared.prefix))
        .arg(&shared.prefix);
    let flat: Vec<String> = shared.call(inv.invoke_async(&mut cmd)).await?;
    Ok(flat
        .chunks(2)
        .filter_map(|pair| match pair {
            [channel, user] => Some(Departure {
                channel: Arc::from(channel.as_str()),
                user: user.clone(),
            }),
            _ => None,
        })
        .collect())
}

/// The presence script's answer: now (ms), leases by expiry, infos.
type Read = (u64, Vec<(String, f64)>, Vec<(String, Bytes)>);

pub(super) async fn members(shared: &Shared, channel: &str) -> Result<Vec<Member>, Error> {
    let mut cmd = shared.cmd.clone();
    let mut inv = shared.scripts.presence.prepare_invoke();
    inv.key(shared.key("pz", channel))
        .key(shared.key("pi", channel));
    let (now, leases, infos): Read = shared.call(inv.invoke_async(&mut cmd)).await?;
    let mut users: BTreeMap<String, usize> = BTreeMap::new();
    for (member, expiry) in leases {
        #[allow(clippy::cast_precision_loss)]
        if expiry <= now as f64 {
            continue;
        }
        let Some((user, connection)) = member.split_once('\n') else {
            continue;
        };
        *users.entry(user.to_string()).or_default() += usize::from(!connection.is_empty());
    }
    let infos: BTreeMap<String, Bytes> = infos.into_iter().collect();
    Ok(users
        .into_iter()
        .map(|(user, connections)| Member {
            info: infos.get(&user).cloned(),
            user,
            connections,
        })
        .collect())
}

/// Renews the lease of every connection this node holds (one round trip).
pub(super) async fn renew(shared: &Shared) -> Result<(), Error> {
    let held: Vec<(String, String)> = lock(&shared.held).keys().cloned().collect();
    if held.is_empty() {
        return Ok(());
    }
    let mut cmd = shared.cmd.clone();
    let mut inv = shared.scripts.renew.prepare_invoke();
    inv.arg(ms(shared.lease));
    for (key, member) in &held {
        inv.arg(key).arg(member);
    }
    let _: i64 = shared.call(inv.invoke_async(&mut cmd)).await?;
    Ok(())
}
