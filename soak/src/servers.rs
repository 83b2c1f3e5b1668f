//! The example services, served by `server::Server` on 127.0.0.1:0: the
//! pipe, signal and hub services as `pipe_server`, `signal_server` and
//! `hub_server` serve them, and the shapes of `async_jobs` (park) and
//! `long_poll` (the three ways of waiting), re-stated here because examples
//! cannot be imported. Every server cuts a client that takes longer than
//! [`HEADER_READ_TIMEOUT`] to send a request head.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use delayed_response::hub::Hub;
use delayed_response::limit::ClientKey;
use delayed_response::park::Store;
use delayed_response::server::Server;
use delayed_response::{Body, DelayedResponse, Heartbeat, Json};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::{service_fn, Service};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::shim;

/// The longest work, interval or deadline a request may ask for.
const MAX_MS: u64 = 60_000;

/// The servers' header read timeout (`Server::header_read_timeout`): short,
/// so that the slow-header clients are cut within their lifetime.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The addresses of the five servers.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub pipe: SocketAddr,
    pub signal: SocketAddr,
    pub jobs: SocketAddr,
    pub long_poll: SocketAddr,
    pub hub: SocketAddr,
}

/// Running servers; [`Servers::stop`] shuts them down gracefully.
pub struct Servers {
    pub addrs: Addrs,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
    /// Kept so that the hub lives as long as its server.
    _hub: Hub,
}

/// Bodies of the responses of the servers.
type Res = Response<Body>;

impl Servers {
    /// Starts the five servers on the current runtime.
    pub async fn start() -> std::io::Result<Servers> {
        let unbound: SocketAddr = ([127, 0, 0, 1], 0).into();
        let hub = shim::hub();
        let mut servers = Servers {
            addrs: Addrs {
                pipe: unbound,
                signal: unbound,
                jobs: unbound,
                long_poll: unbound,
                hub: unbound,
            },
            stops: Vec::new(),
            tasks: Vec::new(),
            _hub: hub.clone(),
        };
        servers.addrs.hub = servers.spawn(shim::hub_service(&hub)).await?;
        servers.addrs.pipe = servers.spawn(shim::pipe()).await?;
        servers.addrs.signal = servers.spawn(shim::signal()).await?;
        let store = Store::builder()
            .base_path("/jobs/")
            .ttl(Duration::from_secs(5))
            .build();
        let status = shim::park_status(store.clone());
        servers.addrs.jobs = servers
            .spawn(service_fn(move |req: Request<Incoming>| {
                let store = store.clone();
                let status = status.clone();
                async move {
                    Ok::<_, Infallible>(if req.uri().path().starts_with("/jobs/") {
                        match status.call(req).await {
                            Ok(res) => res,
                            Err(never) => match never {},
                        }
                    } else {
                        jobs(req, store).await
                    })
                }
            }))
            .await?;
        servers.addrs.long_poll = servers
            .spawn(service_fn(|req| async move {
                Ok::<_, Infallible>(long_poll(req).await)
            }))
            .await?;
        Ok(servers)
    }

    /// Serves `service` on a fresh 127.0.0.1:0 listener; its address.
    async fn spawn<S>(&mut self, service: S) -> std::io::Result<SocketAddr>
    where
        S: Service<Request<Incoming>, Response = Res, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        self.stops.push(stop);
        let server = Server::new()
            .grace_period(Duration::from_secs(5))
            .header_read_timeout(HEADER_READ_TIMEOUT);
        self.tasks
            .push(tokio::spawn(server.serve(listener, service, async {
                let _ = stopped.await;
            })));
        Ok(addr)
    }

    /// The hub's counts: channels with subscribers, connections.
    pub fn hub_counts(&self) -> (usize, usize) {
        let stats = self._hub.stats();
        (stats.channels, stats.connections)
    }

    /// Stops accepting, ends held responses, and waits for the servers.
    pub async fn stop(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

/// `async_jobs`: `POST /jobs?work_ms=N[&deadline_ms=M]`.
async fn jobs(req: Request<Incoming>, store: Store) -> Response<Body> {
    if req.uri().path() != "/jobs" {
        return text(StatusCode::NOT_FOUND, "not found: POST /jobs?work_ms=N\n");
    }
    if req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use POST /jobs\n");
    }
    let query = req.uri().query().unwrap_or("");
    let (work_ms, deadline_ms) = match (number(query, "work_ms"), number(query, "deadline_ms")) {
        (Ok(Some(w)), Ok(d)) => (w, d.unwrap_or(1000)),
        _ => return text(StatusCode::BAD_REQUEST, "work_ms=N, deadline_ms=M\n"),
    };
    DelayedResponse::for_request(&req)
        .timeout(Duration::from_millis(deadline_ms))
        .park(store, ClientKey::from_extensions(req.extensions()))
        .wait(async move {
            sleep_ms(work_ms).await;
            Json(serde_json::json!({ "slept_ms": work_ms }))
        })
        .await
}

/// `long_poll`: `/wait`, `/start` and `/poll`.
async fn long_poll(req: Request<Incoming>) -> Response<Body> {
    let query = req.uri().query().unwrap_or("").to_string();
    let q = |name| number(&query, name);
    let d = DelayedResponse::for_request(&req);
    let work = |ms: u64| async move {
        sleep_ms(ms).await;
        Json(serde_json::json!({ "slept_ms": ms }))
    };
    match (req.uri().path(), q("work_ms")) {
        ("/wait", Ok(Some(w))) => match q("timeout_ms") {
            Ok(t) => {
                let d = match t {
                    Some(t) => d.timeout(Duration::from_millis(t)),
                    None => d,
                };
                d.wait(work(w)).await
            }
            Err(()) => text(StatusCode::BAD_REQUEST, "bad timeout_ms\n"),
        },
        ("/start", Ok(Some(w))) => {
            let (Ok(interval), Ok(initial)) = (q("interval_ms"), q("initial_delay_ms")) else {
                return text(StatusCode::BAD_REQUEST, "bad interval\n");
            };
            let mut hb = Heartbeat::every(Duration::from_millis(interval.unwrap_or(1000).max(1)));
            if let Some(i) = initial {
                hb = hb.after(Duration::from_millis(i));
            }
            d.json().heartbeat(hb).start(work(w)).await
        }
        ("/poll", _) => {
            let (Ok(Some(ready)), Ok(interval)) = (q("ready_after_ms"), q("interval_ms")) else {
                return text(StatusCode::BAD_REQUEST, "ready_after_ms=N\n");
            };
            let started = tokio::time::Instant::now();
            let ready = Duration::from_millis(ready);
            d.json()
                .poll(
                    Duration::from_millis(interval.unwrap_or(100).max(1)),
                    move || async move {
                        (started.elapsed() >= ready)
                            .then(|| Json(serde_json::json!({"ready": true})))
                    },
                )
                .await
        }
        ("/wait" | "/start", _) => text(StatusCode::BAD_REQUEST, "work_ms=N\n"),
        _ => text(StatusCode::NOT_FOUND, "try /wait, /start or /poll\n"),
    }
}

/// Sleeps `ms`; not at all for 0 (a zero sleep still waits for the timer's
/// next 1 ms tick, which would dominate the latency of instant answers).
async fn sleep_ms(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// A query parameter as milliseconds (at most [`MAX_MS`]).
fn number(query: &str, name: &str) -> Result<Option<u64>, ()> {
    let Some(raw) = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
    else {
        return Ok(None);
    };
    match raw.parse::<u64>() {
        Ok(v) if v <= MAX_MS => Ok(Some(v)),
        _ => Err(()),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res
}
