//! Responses the gateway writes itself: its errors (status, plain-text body
//! and the `x-datum-router-error` label) and bodiless answers (redirects,
//! CORS preflights, CONNECT), all in the one body type of the request path.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};

use crate::{
    error::{ERROR_HEADER, ProxyError},
    upstream::BoxError,
};

/// The body of every response the gateway sends.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

fn text_response(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())).map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// The gateway's answer for `e`: its status, and its label as body and header.
pub fn error_response(e: ProxyError) -> Response<ProxyBody> {
    let mut r = text_response(e.status(), e.label());
    r.headers_mut().insert(ERROR_HEADER, HeaderValue::from_static(e.label()));
    r
}

pub fn empty_response(status: StatusCode) -> Response<ProxyBody> {
    let mut r = Response::new(empty_body());
    *r.status_mut() = status;
    r
}

pub fn empty_body() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}
