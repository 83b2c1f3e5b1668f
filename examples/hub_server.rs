//! A chat on the hub: a page at `/` (plain HTML and JS), `POST /login`, and
//! the hub's routes under `/hub/` (pub/sub over SSE and long-poll, presence,
//! JWT auth).
//!
//! Run it with:
//!
//! ```text
//! cargo run --features jwt --example hub_server -- [--addr 127.0.0.1:9000] \
//!     [--secret KEY] [--open-publish] [--history N] [--http1-only] [--no-limits] \
//!     [--redis redis://127.0.0.1:6379] [--lease MS]
//! ```
//!
//! With `--redis URL` (feature `redis`) history, presence, fan-out and the
//! rate limits live in Redis: several `hub_server`s on one Redis (and one
//! `--secret`) act as one hub. `--lease MS` sets the presence lease (default
//! 15000): a killed instance's users leave at most that long after.
//!
//! then open <http://127.0.0.1:9000/> in two browser windows, or try:
//!
//! ```text
//! curl -N http://127.0.0.1:9000/hub/sub/news            # an SSE stream
//! curl -d hello http://127.0.0.1:9000/hub/pub/news      # with --open-publish: 201 {"id", "subscribers": 1}
//! curl 'http://127.0.0.1:9000/hub/poll/news?cursor=ID'  # long-poll from a cursor
//! curl http://127.0.0.1:9000/hub/stats
//! ```
//!
//! Without `--secret` a random key is made at start (logins then last as
//! long as the process). Logs go to stderr.

use std::convert::Infallible;

use hyper::service::service_fn;

#[path = "hub/app.rs"]
mod app;
mod common;

const USAGE: &str = "usage: hub_server [--addr HOST:PORT] [--secret KEY] [--open-publish] \
                     [--history N] [--http1-only] [--no-limits] [--redis URL] [--lease MS]";

const ABOUT: &str = "A chat on the hub: a page at /, POST /login, and the hub's routes under /hub/.

try:
  curl -N http://127.0.0.1:9000/hub/sub/news            # an SSE stream
  curl -d hello http://127.0.0.1:9000/hub/pub/news      # with --open-publish
  curl http://127.0.0.1:9000/hub/stats";

struct Args {
    addr: String,
    options: app::Options,
    http1_only: bool,
    tls: common::Tls,
    redis: Option<String>,
    lease: Option<std::time::Duration>,
}

fn args() -> Args {
    let mut out = Args {
        addr: "127.0.0.1:9000".to_string(),
        options: app::Options {
            secret: Vec::new(),
            open_publish: false,
            history: delayed_response::hub::DEFAULT_HISTORY,
            no_limits: false,
        },
        http1_only: false,
        tls: common::Tls::default(),
        redis: None,
        lease: None,
    };
    let mut args = std::env::args().skip(1);
    let usage = format!("{USAGE}{}", common::TLS_USAGE);
    let fail = |problem: String| -> ! {
        eprintln!("hub_server: {problem}\n{usage}");
        std::process::exit(2);
    };
    while let Some(arg) = args.next() {
        match out.tls.take(&arg, &mut args) {
            Ok(true) => continue,
            Ok(false) => {}
            Err(problem) => fail(problem),
        }
        if arg == "-h" || arg == "--help" {
            common::help(&usage, ABOUT);
        }
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| fail(format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--addr" => out.addr = value("--addr"),
            "--secret" => out.options.secret = value("--secret").into_bytes(),
            "--history" => {
                out.options.history = value("--history")
                    .parse()
                    .unwrap_or_else(|_| fail("--history takes a number".into()))
            }
            "--open-publish" => out.options.open_publish = true,
            "--http1-only" => out.http1_only = true,
            "--no-limits" => out.options.no_limits = true,
            "--redis" if cfg!(feature = "redis") => out.redis = Some(value("--redis")),
            "--redis" => fail("--redis needs the feature redis (--features jwt,redis)".into()),
            "--lease" => {
                let ms: u64 = value("--lease")
                    .parse()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .unwrap_or_else(|| fail("--lease takes milliseconds (> 0)".into()));
                out.lease = Some(std::time::Duration::from_millis(ms));
            }
            other => fail(format!("unknown argument {other:?}")),
        }
    }
    if out.lease.is_some() && out.redis.is_none() {
        fail("--lease goes with --redis".into());
    }
    if let Err(problem) = out.tls.check() {
        fail(problem);
    }
    if out.options.secret.is_empty() {
        let mut key = [0u8; 32];
        if let Err(e) = getrandom::fill(&mut key) {
            fail(format!("no --secret, and no randomness for a key: {e}"));
        }
        out.options.secret = key.to_vec();
    }
    out
}

#[cfg(feature = "redis")]
async fn connect(
    url: &str,
    lease: Option<std::time::Duration>,
) -> Result<delayed_response::backplane::RedisBackplane, delayed_response::Error> {
    let mut builder = delayed_response::backplane::RedisBackplane::builder(url);
    if let Some(lease) = lease {
        builder = builder.lease(lease);
    }
    builder.connect().await
}

#[tokio::main]
async fn main() {
    common::init_tracing();
    let args = args();
    let app = match &args.redis {
        #[cfg(feature = "redis")]
        Some(url) => match connect(url, args.lease).await {
            Ok(backplane) => {
                app::App::with_backplane(&args.options, std::sync::Arc::new(backplane))
            }
            Err(e) => {
                eprintln!("hub_server: redis at {url}: {e}");
                std::process::exit(1);
            }
        },
        _ => app::App::new(&args.options),
    };
    let (server, listener) = common::start("hub_server", &args.addr, &args.tls).await;
    let service = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.respond(req).await) }
    });
    let server = server.http1_only(args.http1_only);
    if let Err(e) = server.serve(listener, service, common::ctrl_c()).await {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
}
