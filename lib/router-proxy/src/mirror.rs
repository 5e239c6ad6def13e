//! Request mirroring: a copy of a share of matched requests goes to another
//! VPCService, fire and forget — its answer, its slowness or its failure never
//! touches the client's request.
//!
//! Bodies are teed as they stream: each data chunk the upstream request reads
//! is also offered to the mirror through a small bounded channel. If the mirror
//! falls behind and the channel is full, the mirror copy is aborted (its
//! request fails rather than arriving truncated) instead of slowing the real
//! request down or buffering without bound.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use http::{
    Request, Uri, Version,
    uri::{PathAndQuery, Scheme},
};
use http_body::Body;
use router_core::{balance::PickContext, snapshot::DestinationTarget};
use tokio::sync::mpsc;

use crate::{
    telemetry::Metrics,
    tls::{self, TlsState},
    upstream::{self, MirrorBody, RequestBody, Upstreams},
};

/// Data chunks the mirror may lag behind before its copy is aborted.
const MIRROR_BACKLOG: usize = 64;

/// Starts a mirrored copy of the request when `percent` says so, and
/// returns the body to send upstream (teed when the copy needs it).
pub(crate) fn start(
    upstreams: &Upstreams,
    tls_state: &TlsState,
    metrics: &Arc<Metrics>,
    target: &DestinationTarget,
    percent: u32,
    parts: &http::request::Parts,
    body: RequestBody,
) -> RequestBody {
    if percent == 0 || (percent < 100 && rand::random_range(0..100) >= percent) {
        return body;
    }
    let DestinationTarget::Resolved { service, picker } = target else {
        metrics.mirrors.with_label_values(&["unresolved"]).inc();
        return body;
    };
    let Some(endpoint) = picker.pick(&PickContext::default()) else {
        metrics.mirrors.with_label_values(&["no-endpoint"]).inc();
        return body;
    };
    let (client, scheme) = if !tls::wants_tls(service) {
        (upstreams.mirror_client(service.protocol, service.vrf_device.as_deref()), Scheme::HTTP)
    } else if let Some(Ok(clients)) = tls_state.upstream.get(&service.key) {
        (clients.mirror.clone(), Scheme::HTTPS)
    } else {
        metrics.mirrors.with_label_values(&["failed"]).inc();
        return body;
    };
    let path = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    let Ok(uri) = Uri::builder().scheme(scheme).authority(endpoint.authority.clone()).path_and_query(path).build() else {
        return body;
    };
    let aborted = Arc::new(AtomicBool::new(false));
    let (mirror_body, upstream_body) = match body {
        RequestBody::Replay(bytes) => (MirrorBody::Full(bytes.clone()), RequestBody::Replay(bytes)),
        RequestBody::Direct(inner) if inner.is_end_stream() => (MirrorBody::Empty, RequestBody::Direct(inner)),
        RequestBody::Direct(inner) => {
            let (tx, rx) = mpsc::channel(MIRROR_BACKLOG);
            (MirrorBody::Channel { rx, aborted: aborted.clone() }, RequestBody::Teed { inner, tx: Some(tx), aborted: aborted.clone() })
        }
        teed @ RequestBody::Teed { .. } => return teed,
    };
    let mut req = Request::new(mirror_body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = if upstream::is_http1(service.protocol) { Version::HTTP_11 } else { Version::HTTP_2 };
    *req.headers_mut() = parts.headers.clone();
    let metrics = metrics.clone();
    tokio::spawn(async move {
        let result = tokio::time::timeout(Duration::from_secs(30), client.request(req)).await;
        let outcome = match result {
            _ if aborted.load(Ordering::Acquire) => "aborted",
            Ok(Ok(_)) => "sent",
            _ => "failed",
        };
        metrics.mirrors.with_label_values(&[outcome]).inc();
    });
    upstream_body
}
