//! The chat app of `examples/hub_server.rs`: the page at `/`, `POST /login`
//! (which sets the JWT cookie), and the hub's routes under `/hub/`.
//! `tests/hub_browser.rs` builds the same app in process.

// Shared by the example and a test, each of which uses part of it.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use bytes::Bytes;
use delayed_response::hub::{self, Hub, Identity, JwtAuthorizer, Namespace, Publishers};
use delayed_response::Body;
use http::header::{CONTENT_TYPE, SET_COOKIE};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};

/// The page: plain HTML and JS, no build step.
pub const PAGE: &str = include_str!("index.html");

/// How long a login lasts.
const SESSION: Duration = Duration::from_secs(12 * 3600);

/// What `hub_server` takes on its command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// The JWT key.
    pub secret: Vec<u8>,
    /// Anyone may publish to public channels (demos, load tests).
    pub open_publish: bool,
    /// History per channel, in messages.
    pub history: usize,
    /// No rate limits or connection caps.
    pub no_limits: bool,
}

/// The app: the hub, its service, and the key that signs logins.
#[derive(Clone)]
pub struct App {
    pub hub: Hub,
    service: hub::Service,
    auth: JwtAuthorizer,
}

impl App {
    pub fn new(options: &Options) -> App {
        App::on(options, None)
    }

    /// The app on a backplane of its own (`hub_server --redis URL`).
    #[allow(dead_code)] // only hub_server with the redis feature uses it
    pub fn with_backplane(
        options: &Options,
        backplane: std::sync::Arc<dyn delayed_response::backplane::Backplane>,
    ) -> App {
        App::on(options, Some(backplane))
    }

    fn on(
        options: &Options,
        backplane: Option<std::sync::Arc<dyn delayed_response::backplane::Backplane>>,
    ) -> App {
        let auth = JwtAuthorizer::hs256(&options.secret);
        let history = |ns: Namespace| ns.history(options.history, Duration::from_secs(300));
        let open = if options.open_publish {
            Publishers::Anyone
        } else {
            Publishers::Users
        };
        let mut builder = Hub::builder()
            .authorizer(auth.clone())
            // Chat rooms: presence with join/leave; signed-in users post.
            .namespace(
                "chat.",
                history(Namespace::new()).join_leave(true).publishers(open),
            )
            .default_namespace(
                history(Namespace::new()).publishers(if options.open_publish {
                    Publishers::Anyone
                } else {
                    Publishers::Authorized
                }),
            );
        if options.no_limits {
            builder = builder.no_limits();
        }
        if let Some(backplane) = backplane {
            builder = builder.backplane(backplane);
        }
        let hub = builder.build();
        App {
            service: hub.service(),
            hub,
            auth,
        }
    }

    pub async fn respond<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Into<Bytes> + Send,
        B::Error: Into<delayed_response::BoxError>,
    {
        let path = req.uri().path().to_string();
        if let Some(rest) = path.strip_prefix("/hub") {
            if rest.starts_with('/') {
                let (mut parts, body) = req.into_parts();
                let rest = match parts.uri.query() {
                    Some(q) => format!("{}?{q}", rest),
                    None => rest.to_string(),
                };
                parts.uri = rest.parse::<Uri>().unwrap_or_default();
                return self
                    .service
                    .respond(Request::from_parts(parts, body))
                    .await
                    .unwrap_or_else(|never| match never {});
            }
        }
        match (req.method(), path.as_str()) {
            (&Method::GET | &Method::HEAD, "/") => {
                let mut res = Response::new(Body::from(PAGE));
                res.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                res
            }
            (&Method::POST, "/login") => self.login(req.into_body()).await,
            (_, "/" | "/login") => plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            _ => plain(StatusCode::NOT_FOUND, "not found"),
        }
    }

    /// `POST /login` with `{"name": …}`: a token for that user, in the
    /// `hub_token` cookie (and the body, for clients that send it as a
    /// bearer token).
    async fn login<B>(&self, body: B) -> Response<Body>
    where
        B: http_body::Body + Send + 'static,
        B::Error: Into<delayed_response::BoxError>,
    {
        let Ok(body) = Limited::new(body, 1024).collect().await else {
            return plain(StatusCode::BAD_REQUEST, "send {\"name\": ...}, under 1 KiB");
        };
        let name = serde_json::from_slice::<serde_json::Value>(&body.to_bytes())
            .ok()
            .and_then(|v| v["name"].as_str().map(str::to_string))
            .filter(|n| {
                (1..=32).contains(&n.len())
                    && n.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-')
                    })
            });
        let Some(name) = name else {
            return plain(
                StatusCode::BAD_REQUEST,
                "a name is 1-32 of letters, digits, _ . @ -",
            );
        };
        let identity = Identity::user(&name).info(serde_json::json!({ "name": name }));
        let Ok(token) = self.auth.sign(&identity, SESSION) else {
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot sign");
        };
        let mut res = Response::new(Body::from(
            serde_json::json!({"user": name, "token": token}).to_string(),
        ));
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let cookie = format!(
            "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            hub::DEFAULT_COOKIE,
            SESSION.as_secs()
        );
        if let Ok(cookie) = HeaderValue::from_str(&cookie) {
            res.headers_mut().insert(SET_COOKIE, cookie);
        }
        res
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut res = Response::new(Body::from(format!("{text}\n")));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}
