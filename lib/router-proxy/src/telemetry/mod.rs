//! What the gateway tells operators: Prometheus metrics with bounded labels,
//! a structured access log, and W3C trace context.

mod access_log;
mod metrics;
mod series;
pub mod spans;
pub mod trace;

pub use access_log::{AccessLog, AccessLogFormat, AccessRecord};
pub use metrics::{Metrics, method_label, status_class};
pub use series::RequestLabels;
