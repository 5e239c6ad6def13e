//! What the access log, the metrics and the trace span need to know about how
//! a request ended, filled in by each stage as it goes.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::Response;

use crate::{
    error::ProxyError,
    local::{ProxyBody, error_response},
};

#[derive(Default)]
pub struct Outcome {
    pub route: Option<Arc<str>>,
    pub service: Option<Arc<str>>,
    pub upstream: Option<SocketAddr>,
    pub error: Option<ProxyError>,
    pub upstream_elapsed: Option<Duration>,
    /// Upstream attempts made; 0 when the request did not go upstream.
    pub attempts: u32,
}

impl Outcome {
    /// Records `e` as the request's error and answers with it.
    pub fn fail(&mut self, e: ProxyError) -> Response<ProxyBody> {
        self.error = Some(e);
        error_response(e)
    }
}
