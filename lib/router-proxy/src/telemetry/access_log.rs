//! One line per request on stdout, as JSON (for log pipelines) or in a
//! common-log-like text form (for people), or off.

use std::{io::Write, net::SocketAddr, str::FromStr, time::Duration};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    Json,
    Common,
    Off,
}

impl FromStr for AccessLogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Self::Json),
            "common" => Ok(Self::Common),
            "off" => Ok(Self::Off),
            other => Err(format!("access log format {other:?} is not json, common or off")),
        }
    }
}

/// What is logged about one request. The query string is left out: it often carries tokens.
#[derive(Debug, Serialize)]
pub struct AccessRecord<'a> {
    pub client: SocketAddr,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub protocol: &'static str,
    pub status: u16,
    pub route: &'a str,
    pub upstream: Option<SocketAddr>,
    pub error: Option<&'static str>,
    pub duration_ms: f64,
    pub upstream_ms: Option<f64>,
    pub trace_id: &'a str,
    pub request_id: &'a str,
}

pub struct AccessLog {
    format: AccessLogFormat,
}

impl AccessLog {
    pub fn new(format: AccessLogFormat) -> Self {
        Self { format }
    }

    pub fn enabled(&self) -> bool {
        self.format != AccessLogFormat::Off
    }

    pub fn write(&self, r: &AccessRecord<'_>) {
        let line = match self.format {
            AccessLogFormat::Off => return,
            AccessLogFormat::Json => match serde_json::to_string(r) {
                Ok(l) => l,
                Err(_) => return,
            },
            AccessLogFormat::Common => format!(
                "{} \"{} {} {}\" {} host={} route={} upstream={} error={} {:.3}ms trace={}",
                r.client.ip(),
                r.method,
                r.path,
                r.protocol,
                r.status,
                r.host,
                r.route,
                r.upstream.map_or_else(|| "-".to_owned(), |u| u.to_string()),
                r.error.unwrap_or("-"),
                r.duration_ms,
                r.trace_id
            ),
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}

/// Milliseconds as a float with microsecond precision.
pub fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}
