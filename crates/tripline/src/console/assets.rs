//! The stylesheet, script and icon, compiled into the binary and served with the
//! build's version in their URL, so a new build is fetched anew.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::ConsoleError;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");
const SVG: &str = include_str!("assets/icon.svg");

pub(crate) const STYLESHEET: &str = concat!("/assets/console-", env!("CARGO_PKG_VERSION"), ".css");
pub(crate) const SCRIPT: &str = concat!("/assets/console-", env!("CARGO_PKG_VERSION"), ".js");
pub(crate) const ICON: &str = concat!("/assets/icon-", env!("CARGO_PKG_VERSION"), ".svg");

pub(crate) async fn asset(Path(name): Path<String>) -> Result<Response, ConsoleError> {
    let path = format!("/assets/{name}");
    let (body, kind) = match path.as_str() {
        STYLESHEET => (CSS, "text/css; charset=utf-8"),
        SCRIPT => (JS, "text/javascript; charset=utf-8"),
        ICON => (SVG, "image/svg+xml"),
        _ => return Err(ConsoleError::NotFound(format!("asset {name}"))),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // Debug builds change assets without changing the version.
    let cache = if cfg!(debug_assertions) { "no-cache" } else { "public, max-age=86400" };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok(response)
}

/// Browsers ask for `/favicon.ico` whatever the page says.
pub(crate) async fn favicon() -> Response {
    axum::response::Redirect::permanent(ICON).into_response()
}
