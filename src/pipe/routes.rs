//! Which handler a request goes to.

use http::Method;

/// A request's route, borrowed from its path.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route<'a> {
    /// `POST /`, `PUT /`, `PUT /{name}`: opens a socket.
    Open {
        filename: Option<&'a str>,
    },
    /// `POST /reserve/{id}/{secret}`: opens a reserved socket.
    OpenReserved {
        id: &'a str,
        secret: &'a str,
    },
    /// `GET /reserve`.
    Reserve,
    /// `GET /{id}`: takes a socket.
    Tap(&'a str),
    NotFound,
    /// A method the path does not take; the `Allow` header's value.
    Method(&'static str),
}

fn is_upload(method: &Method) -> bool {
    method == Method::POST || method == Method::PUT
}

impl<'a> Route<'a> {
    /// The route of `method` on `path` (the part of the URL path under the
    /// service, with or without a leading or trailing `/`).
    pub(super) fn of(method: &Method, path: &'a str, reservations: bool) -> Self {
        let path = path.strip_prefix('/').unwrap_or(path);
        let path = path.strip_suffix('/').unwrap_or(path);
        let get = method == Method::GET;
        if path.is_empty() {
            return if is_upload(method) {
                Route::Open { filename: None }
            } else {
                Route::Method("POST, PUT")
            };
        }
        if reservations {
            if path == "reserve" && get {
                return Route::Reserve;
            }
            if let Some(rest) = path.strip_prefix("reserve/") {
                // The download id alone opens nothing: the upload needs the
                // secret that only the reserver got.
                let Some((id, secret)) = rest.split_once('/') else {
                    return Route::NotFound;
                };
                return if secret.contains('/') {
                    Route::NotFound
                } else if is_upload(method) {
                    Route::OpenReserved { id, secret }
                } else {
                    Route::Method("POST, PUT")
                };
            }
        }
        if path.contains('/') {
            return Route::NotFound;
        }
        if get {
            Route::Tap(path)
        } else if is_upload(method) {
            // `curl -T file http://host/` sends `PUT /file`.
            Route::Open {
                filename: Some(path),
            }
        } else {
            Route::Method("GET, POST, PUT")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_and_path() {
        let of = |m: Method, p: &'static str| Route::of(&m, p, true);
        assert_eq!(of(Method::POST, "/"), Route::Open { filename: None });
        assert_eq!(
            of(Method::PUT, "/a.txt"),
            Route::Open {
                filename: Some("a.txt")
            }
        );
        assert_eq!(of(Method::GET, "/abc"), Route::Tap("abc"));
        assert_eq!(of(Method::GET, "/reserve"), Route::Reserve);
        assert_eq!(
            of(Method::POST, "/reserve/abc/s3"),
            Route::OpenReserved {
                id: "abc",
                secret: "s3"
            }
        );
        assert_eq!(of(Method::POST, "/reserve/abc"), Route::NotFound);
        assert_eq!(of(Method::POST, "/reserve/a/b/c"), Route::NotFound);
        assert_eq!(
            of(Method::GET, "/reserve/abc/s3"),
            Route::Method("POST, PUT")
        );
        assert_eq!(of(Method::GET, "/a/b"), Route::NotFound);
        assert_eq!(of(Method::DELETE, "/"), Route::Method("POST, PUT"));
        assert_eq!(
            Route::of(&Method::GET, "/reserve", false),
            Route::Tap("reserve")
        );
    }
}
