//! `hub_cursor`: scripts against the hub's routes (`/pub/{channel}`,
//! `/sub/{channel}`, `/sub?channel=…`, `/poll…`, `/presence/…`, `/stats`),
//! where anyone may publish (see `shim::hub`). `$CUR` is the last cursor
//! a subscribe got (an SSE `id:`, a poll's `cursor`), `$ID` the last
//! publish's `id` (a one-channel cursor). After the script, long-polls end (at most 25 s) and
//! the streams are read as they stand. Checks:
//!
//! - every status is one the hub documents for an anonymous client;
//! - the cursor of a subscribe (SSE: `Last-Event-ID`, else
//!   `?last_event_id=`; long-poll: `?cursor=`), read independently by its
//!   documented grammar (`{epoch:x}-{offset}` per channel, joined by `.`,
//!   one per channel of the request): malformed gets `400 malformed
//!   cursor`, a well-formed one is never refused as malformed;
//! - every cursor the hub issues is well-formed, for the right number of
//!   channels;
//! - round trips: a stream or poll that resumes from a cursor the hub
//!   issued for the same channels gets no `gap` (outside the `history.`
//!   namespace, which keeps two messages) and exactly the messages
//!   published after it, in order, with their data (SSE: CR and CRLF as
//!   LF); a poll's new cursor is where its messages end; a fresh stream
//!   gets exactly what was published after it opened.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::Value;

use crate::driver::{self, End, Exchange, Tracked};
use crate::script;
use crate::shim;
use crate::sse;

/// How long a request may take to show its first byte (virtual time).
const PATIENCE: Duration = Duration::from_secs(5);
/// Long-polls wait at most 25 s (`shim::hub`); a margin.
const POLLS_END: Duration = Duration::from_secs(30);
/// What the hub may answer an anonymous client with no limits.
const STATUSES: &[u16] = &[200, 201, 202, 400, 401, 404, 405, 413];
/// Names a multiplexed stream uses for its own events.
const RESERVED: &[&str] = &[
    "message",
    "join",
    "leave",
    "gap",
    "overflow",
    "broadcast",
    "kicked",
];
/// The most channels one subscribe may name (the default).
const MAX_CHANNELS: usize = 32;
/// Channels with a short history (`shim::hub`): a resume may get a gap.
const SHORT_HISTORY: &str = "history.";

/// A position: `(epoch, offset)`.
type Position = (u64, u64);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Pub(String),
    /// A stream or a long-poll: its channels as the hub will see them
    /// (sorted, without duplicates) when they are valid, and its cursor.
    Sub {
        poll: bool,
        multiplexed: bool,
        channels: Option<Vec<String>>,
        cursor: Option<String>,
    },
    Other,
}

struct Ask {
    method: Method,
    route: Route,
    /// Its first byte came within [`PATIENCE`] of sending.
    started: bool,
    /// The body it carried.
    body: Vec<u8>,
}

/// A published message.
#[derive(Debug, Clone)]
struct Published {
    offset: u64,
    data: String,
    /// The index of its publish among the script's requests.
    step: usize,
}

/// See the module docs.
pub fn hub_cursor(data: &[u8]) {
    let steps = script::parse(data);
    driver::runtime().block_on(async move {
        let hub = shim::hub();
        let service = shim::hub_service(&hub);
        let mut cur = String::new();
        let mut id = String::new();
        let mut tracked: Vec<Tracked> = Vec::new();
        let mut asks: Vec<Ask> = Vec::new();
        for mut step in steps {
            if step.sleep_ms > 0 {
                tokio::time::sleep(Duration::from_millis(step.sleep_ms)).await;
            }
            let leave = driver::take_leave(&mut step);
            let give_up = driver::take_give_up(&mut step);
            let Some((req, sent)) =
                driver::request(&step, &[("CUR", cur.clone()), ("ID", id.clone())])
            else {
                continue;
            };
            let method = req.method().clone();
            let route = route_of(&req);
            let mut t = driver::send_until(&service, req, leave, give_up);
            let started = t.started(PATIENCE).await;
            if let Some(c) = last_issued(&route, &t.snapshot()) {
                match route {
                    Route::Pub(_) => id = c,
                    _ => cur = c,
                }
            }
            tracked.push(t);
            asks.push(Ask {
                method,
                route,
                started,
                body: sent.body,
            });
        }
        tokio::time::sleep(POLLS_END).await;
        let exchanges: Vec<Exchange> = tracked.iter().map(Tracked::snapshot).collect();
        for (i, (ex, ask)) in exchanges.iter().zip(&asks).enumerate() {
            driver::trace(&format!("hub #{i} {} {:?}", ask.method, ask.route), ex);
        }
        let (published, unsure) = published(&exchanges, &asks);
        let mut issued: HashSet<(String, Vec<String>)> = HashSet::new();
        for (ex, ask) in exchanges.iter().zip(&asks) {
            check_answer(ex, ask);
            collect_issued(ex, ask, &mut issued);
        }
        for (i, (ex, ask)) in exchanges.iter().zip(&asks).enumerate() {
            check_round_trip(i, ex, ask, &published, &unsure, &issued);
        }
        for t in &tracked {
            t.task.abort();
        }
        drop(hub);
    });
}

fn route_of<B>(req: &http::Request<B>) -> Route {
    let path = req.uri().path();
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let last = |name: &str| {
        query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let (poll, path_channel) = match path {
        "/sub" => (false, None),
        "/poll" => (true, None),
        _ => {
            if let Some(ch) = path.strip_prefix("/pub/") {
                return Route::Pub(ch.to_string());
            } else if let Some(ch) = path.strip_prefix("/sub/") {
                (false, Some(ch.to_string()))
            } else if let Some(ch) = path.strip_prefix("/poll/") {
                (true, Some(ch.to_string()))
            } else {
                return Route::Other;
            }
        }
    };
    let multiplexed = path_channel.is_none();
    let names: Vec<String> = match path_channel {
        Some(ch) => vec![ch],
        None => query
            .iter()
            .filter(|(k, _)| k == "channel")
            .map(|(_, v)| v.clone())
            .collect(),
    };
    let reserved_ok = poll || !multiplexed;
    let valid = names
        .iter()
        .all(|n| valid_channel(n) && (reserved_ok || !RESERVED.contains(&n.as_str())));
    let mut set: Vec<String> = names;
    set.sort();
    set.dedup();
    let channels = (valid && !set.is_empty() && set.len() <= MAX_CHANNELS).then_some(set);
    let cursor = if poll {
        last("cursor")
    } else {
        req.headers()
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .or_else(|| last("last_event_id"))
    };
    Route::Sub {
        poll,
        multiplexed,
        channels,
        cursor,
    }
}

/// A channel name as documented: 1–128 characters of `[A-Za-z0-9_.:@-]`.
fn valid_channel(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b))
}

/// A cursor by its documented grammar: `{epoch:x}-{offset}` per channel
/// (lowercase hex of a u64, then the decimal u64), joined by `.`.
fn parse_cursor(s: &str, channels: usize) -> Option<Vec<Position>> {
    let mut out = Vec::new();
    for part in s.split('.') {
        let dash = part.find('-')?;
        let (epoch, offset) = (&part[..dash], &part[dash + 1..]);
        let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if epoch.is_empty() || epoch.len() > 16 || !epoch.bytes().all(hex) {
            return None;
        }
        if offset.is_empty() || offset.len() > 20 || !offset.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        out.push((
            u64::from_str_radix(epoch, 16).ok()?,
            offset.parse::<u64>().ok()?,
        ));
    }
    (out.len() == channels).then_some(out)
}

/// The last cursor an answer issued so far, for `$CUR` or `$ID`.
fn last_issued(route: &Route, ex: &Exchange) -> Option<String> {
    match route {
        Route::Pub(_) => json(ex)?.get("id")?.as_str().map(str::to_string),
        Route::Sub { poll: true, .. } => json(ex)?.get("cursor")?.as_str().map(str::to_string),
        Route::Sub { poll: false, .. } => ids(&ex.body).pop(),
        Route::Other => None,
    }
}

fn json(ex: &Exchange) -> Option<Value> {
    serde_json::from_slice(&ex.body).ok()
}

/// Every `id:` field of a stream, in order.
fn ids(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split('\n')
        .filter_map(|l| l.strip_prefix("id:"))
        .map(|v| {
            v.strip_prefix(' ')
                .unwrap_or(v)
                .trim_end_matches('\r')
                .to_string()
        })
        .collect()
}

/// Messages published per channel, by offset; and the channels where a
/// publish may have happened unseen (its answer was not read), which are
/// not checked.
type Publishes = HashMap<String, Vec<Published>>;

fn published(exchanges: &[Exchange], asks: &[Ask]) -> (Publishes, HashSet<String>) {
    let mut by_channel: HashMap<String, BTreeMap<u64, Published>> = HashMap::new();
    let mut unsure: HashSet<String> = HashSet::new();
    for (step, (ex, ask)) in exchanges.iter().zip(asks).enumerate() {
        let Route::Pub(channel) = &ask.route else {
            continue;
        };
        if ask.method != Method::POST {
            continue;
        }
        match ex.status.map(|s| s.as_u16()) {
            Some(201 | 202) => {}
            Some(_) => continue,
            None => {
                unsure.insert(channel.clone());
                continue;
            }
        }
        let id = json(ex).and_then(|v| v.get("id")?.as_str().map(str::to_string));
        let Some(id) = id else {
            unsure.insert(channel.clone());
            continue;
        };
        let position = parse_cursor(&id, 1).unwrap_or_else(|| panic!("a publish id {id:?}"));
        let data = String::from_utf8(ask.body.clone()).expect("the hub took UTF-8 only");
        let message = Published {
            offset: position[0].1,
            data,
            step,
        };
        by_channel
            .entry(channel.clone())
            .or_default()
            .insert(message.offset, message);
    }
    let by_channel = by_channel
        .into_iter()
        .map(|(ch, m)| (ch, m.into_values().collect()))
        .collect();
    (by_channel, unsure)
}

fn check_answer(ex: &Exchange, ask: &Ask) {
    let Some(status) = ex.status else {
        return;
    };
    let code = status.as_u16();
    assert!(
        STATUSES.contains(&code),
        "unexpected {status} for {} {:?}",
        ask.method,
        ask.route
    );
    let Route::Sub {
        channels: Some(channels),
        cursor,
        ..
    } = &ask.route
    else {
        return;
    };
    if ask.method != Method::GET && ask.method != Method::HEAD {
        return;
    }
    let malformed = cursor
        .as_deref()
        .is_some_and(|c| parse_cursor(c, channels.len()).is_none());
    // The reason is checked where the whole body was read.
    let whole = ask.method == Method::GET && ex.end == End::Complete;
    let said_malformed = code == 400 && (!whole || ex.body == b"malformed cursor\n");
    if malformed {
        assert!(
            said_malformed,
            "the malformed cursor {cursor:?} for {channels:?} got {status}: {:?}",
            String::from_utf8_lossy(&ex.body)
        );
    } else {
        assert_ne!(
            status,
            StatusCode::BAD_REQUEST,
            "the well-formed cursor {cursor:?} for {channels:?} was refused: {:?}",
            String::from_utf8_lossy(&ex.body)
        );
    }
}

/// Records the cursors an answer issued, checking that each is
/// well-formed for its channels.
fn collect_issued(ex: &Exchange, ask: &Ask, issued: &mut HashSet<(String, Vec<String>)>) {
    if ex.status != Some(StatusCode::OK) || ask.method != Method::GET {
        if let (Route::Pub(ch), Some(201 | 202)) = (&ask.route, ex.status.map(|s| s.as_u16())) {
            if let Some(id) = json(ex).and_then(|v| v.get("id")?.as_str().map(str::to_string)) {
                assert!(
                    parse_cursor(&id, 1).is_some(),
                    "a malformed publish id {id:?}"
                );
                issued.insert((id, vec![ch.clone()]));
            }
        }
        return;
    }
    let Route::Sub {
        poll,
        channels: Some(channels),
        ..
    } = &ask.route
    else {
        return;
    };
    if *poll {
        if ex.end != End::Complete {
            return;
        }
        let v = json(ex).expect("a poll answer is JSON");
        let cursor = v["cursor"].as_str().expect("a poll cursor").to_string();
        assert!(
            parse_cursor(&cursor, channels.len()).is_some(),
            "a malformed poll cursor {cursor:?} for {channels:?}"
        );
        issued.insert((cursor, channels.clone()));
        for m in v["messages"].as_array().expect("poll messages") {
            let id = m["id"].as_str().expect("a message id");
            let ch = m["channel"].as_str().expect("a message channel");
            assert!(
                parse_cursor(id, 1).is_some(),
                "a malformed message id {id:?}"
            );
            issued.insert((id.to_string(), vec![ch.to_string()]));
        }
    } else {
        for id in ids(&ex.body) {
            assert!(
                parse_cursor(&id, channels.len()).is_some(),
                "a malformed stream id {id:?} for {channels:?}"
            );
            issued.insert((id, channels.clone()));
        }
    }
}

/// What one channel of a resumed or fresh subscription must get.
struct Expected<'a> {
    channel: &'a str,
    /// Messages published after the cursor (or after the stream opened).
    messages: Vec<&'a Published>,
    /// Of those, how many had been published when the request was sent.
    waiting: usize,
}

fn check_round_trip(
    step: usize,
    ex: &Exchange,
    ask: &Ask,
    published: &Publishes,
    unsure: &HashSet<String>,
    issued: &HashSet<(String, Vec<String>)>,
) {
    let Route::Sub {
        poll,
        multiplexed,
        channels: Some(channels),
        cursor,
    } = &ask.route
    else {
        return;
    };
    if ex.status != Some(StatusCode::OK) || ask.method != Method::GET || !ask.started {
        return;
    }
    let positions: Option<Vec<Position>> = match cursor {
        None => None,
        Some(c) if issued.contains(&(c.clone(), channels.clone())) => {
            parse_cursor(c, channels.len())
        }
        // A cursor the hub did not issue for these channels: a gap is
        // allowed; nothing more is known.
        Some(_) => return,
    };
    let mut expected = Vec::new();
    for (i, channel) in channels.iter().enumerate() {
        if unsure.contains(channel) {
            continue;
        }
        let all = published.get(channel).map_or(&[][..], Vec::as_slice);
        let resumable = !channel.starts_with(SHORT_HISTORY);
        let messages: Vec<&Published> = match &positions {
            Some(p) if resumable => all.iter().filter(|m| m.offset > p[i].1).collect(),
            Some(_) => continue,
            None => all.iter().filter(|m| m.step > step).collect(),
        };
        let waiting = messages.iter().filter(|m| m.step < step).count();
        expected.push(Expected {
            channel,
            messages,
            waiting,
        });
    }
    if *poll {
        check_poll(ex, channels, positions.as_deref(), &expected);
    } else {
        check_stream(ex, channels, *multiplexed, &expected, positions.is_some());
    }
}

fn check_poll(
    ex: &Exchange,
    channels: &[String],
    positions: Option<&[Position]>,
    expected: &[Expected<'_>],
) {
    if ex.end != End::Complete {
        return;
    }
    let v = json(ex).expect("a poll answer is JSON");
    let Some(positions) = positions else {
        return;
    };
    if channels.iter().all(|c| !c.starts_with(SHORT_HISTORY)) {
        assert_eq!(
            v["gap"],
            Value::Bool(false),
            "a resumed poll got a gap: {v}"
        );
    }
    let messages = v["messages"].as_array().expect("poll messages");
    let new =
        parse_cursor(v["cursor"].as_str().unwrap_or(""), channels.len()).expect("a poll cursor");
    for e in expected {
        let got: Vec<(u64, &str)> = messages
            .iter()
            .filter(|m| m["channel"] == e.channel)
            .map(|m| {
                let id = parse_cursor(m["id"].as_str().unwrap_or(""), 1).expect("an id");
                (id[0].1, m["data"].as_str().unwrap_or(""))
            })
            .collect();
        let want: Vec<(u64, &str)> = e.messages.iter().map(|m| (m.offset, &*m.data)).collect();
        assert!(
            want.starts_with(&got),
            "a poll of {} got {got:?}, not a prefix of {want:?}",
            e.channel
        );
        assert!(
            got.len() >= e.waiting,
            "a poll of {} got {} messages, {} were waiting",
            e.channel,
            got.len(),
            e.waiting
        );
        let i = channels
            .iter()
            .position(|c| c == e.channel)
            .expect("its channel");
        let end = got.last().map_or(positions[i].1, |g| g.0);
        assert_eq!(
            new[i].1, end,
            "a poll's cursor for {} is not where its messages end",
            e.channel
        );
    }
}

fn check_stream(
    ex: &Exchange,
    channels: &[String],
    multiplexed: bool,
    expected: &[Expected<'_>],
    resumed: bool,
) {
    let parsed = sse::parse(&ex.body);
    if let Some(gap) = parsed.events.iter().find(|e| e.event_type == "gap") {
        let v: Value = serde_json::from_str(&gap.data).expect("gap data is JSON");
        for ch in v["channels"].as_array().expect("gap channels") {
            let ch = ch.as_str().unwrap_or("");
            assert!(
                resumed && ch.starts_with(SHORT_HISTORY),
                "a gap for {ch} on a stream that {}: {:?}",
                if resumed {
                    "resumed from an issued cursor"
                } else {
                    "had no cursor"
                },
                String::from_utf8_lossy(&ex.body)
            );
        }
    }
    for e in expected {
        let i = channels
            .iter()
            .position(|c| c == e.channel)
            .expect("its channel");
        let got: Vec<(u64, String)> = parsed
            .events
            .iter()
            .filter(|ev| {
                if multiplexed {
                    ev.event_type == e.channel
                } else {
                    ev.event_type == "message"
                }
            })
            .map(|ev| {
                let at = parse_cursor(&ev.last_event_id, channels.len()).expect("an event id");
                (at[i].1, ev.data.clone())
            })
            .collect();
        // SSE cannot carry CR: it arrives as LF.
        let want: Vec<(u64, String)> = e
            .messages
            .iter()
            .map(|m| (m.offset, m.data.replace("\r\n", "\n").replace('\r', "\n")))
            .collect();
        if ex.end == End::Pending {
            assert_eq!(
                got,
                want,
                "the stream of {} got other messages: {:?}",
                e.channel,
                String::from_utf8_lossy(&ex.body)
            );
        } else {
            assert!(
                want.starts_with(&got),
                "the stream of {} got {got:?}, not a prefix of {want:?}",
                e.channel
            );
        }
    }
}
