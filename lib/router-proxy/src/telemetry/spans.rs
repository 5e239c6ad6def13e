//! Span export over OTLP (HTTP/protobuf), off unless an endpoint is given.
//!
//! Each proxied request becomes one span of kind Server: the gateway's hop.
//! Its parent is the caller's span (from `traceparent`), and its own span id
//! is what the upstream receives as parent, so the backend's spans hang under
//! the gateway's. The OpenTelemetry SDK samples (parent-based: a caller that
//! said "not sampled" is not overruled) and batches spans on its own thread,
//! so the request path only records.

use std::time::SystemTime;

use opentelemetry::{
    Context, KeyValue,
    trace::{
        Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer as _,
        TracerProvider as _,
    },
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    trace::{SdkTracer, SdkTracerProvider, Span},
};

use super::trace::TraceContext;

/// The OTLP exporter and the tracer that feeds it.
pub struct SpanExport {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl SpanExport {
    /// Spans go to `<endpoint>/v1/traces` (OTLP/HTTP, protobuf). Call outside
    /// an async context: the exporter's blocking HTTP client is built here.
    pub fn new(endpoint: &str, service_name: &str) -> Result<Self, String> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .build()
            .map_err(|e| format!("OTLP exporter: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(service_name.to_owned()).build())
            .build();
        let tracer = provider.tracer("router-gateway");
        Ok(Self { provider, tracer })
    }

    /// Starts the span of one request, child of the caller's span if there is one.
    pub fn start(&self, caller: Option<&TraceContext>, name: String, start: SystemTime) -> RequestSpan {
        let parent = match caller {
            Some(tc) => Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from_bytes(tc.trace_id),
                SpanId::from_bytes(tc.parent_id.unwrap_or_default()),
                if tc.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() },
                true,
                TraceState::default(),
            )),
            None => Context::new(),
        };
        let span =
            self.tracer.span_builder(name).with_kind(SpanKind::Server).with_start_time(start).start_with_context(&self.tracer, &parent);
        RequestSpan(span)
    }

    /// Flushes what is batched and stops the exporter thread.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "flushing spans at shutdown failed");
        }
    }
}

/// The gateway's span for one request.
pub struct RequestSpan(Span);

impl RequestSpan {
    /// The trace to log and the `traceparent` to send upstream: this span's
    /// trace id and sampling, with this span as the upstream's parent.
    pub fn upstream(&self) -> (TraceContext, [u8; 55]) {
        let sc = self.0.span_context();
        let trace = TraceContext { trace_id: sc.trace_id().to_bytes(), parent_id: None, sampled: sc.is_sampled() };
        let header = trace.header_with_span(sc.span_id().to_bytes());
        (trace, header)
    }

    /// Ends the span with what the request came to.
    pub fn finish(mut self, name: String, attributes: Vec<KeyValue>, error: Option<&'static str>, end: SystemTime) {
        self.0.update_name(name);
        self.0.set_attributes(attributes);
        if let Some(label) = error {
            self.0.set_status(Status::error(label));
        }
        self.0.end_with_timestamp(end);
    }
}
