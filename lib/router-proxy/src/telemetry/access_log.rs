//! One line per request on stdout, as JSON (for log pipelines) or in a
//! common-log-like text form (for people), or off. Written off the request's
//! critical path: see [`AccessLog`].

use std::{
    io::Write,
    net::SocketAddr,
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

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

/// How often buffered lines go to stdout.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Lines held while stdout does not keep up; past this, lines are dropped (and counted), requests never wait.
const MAX_BUFFERED: usize = 8 * 1024 * 1024;

/// The access log. Requests format their line into a shared buffer (no
/// allocation of their own, no syscall); a writer thread moves the buffer to
/// stdout every [`FLUSH_EVERY`]. A slow or blocked stdout costs dropped lines,
/// counted and reported, never a stalled request.
#[derive(Clone)]
pub struct AccessLog {
    format: AccessLogFormat,
    sink: Option<Arc<Sink>>,
}

struct Sink {
    lines: Mutex<Vec<u8>>,
    dropped: AtomicU64,
}

impl AccessLog {
    pub fn new(format: AccessLogFormat) -> Self {
        if format == AccessLogFormat::Off {
            return Self { format, sink: None };
        }
        let sink = Arc::new(Sink { lines: Mutex::new(Vec::with_capacity(64 * 1024)), dropped: AtomicU64::new(0) });
        let weak = Arc::downgrade(&sink);
        let spawned = std::thread::Builder::new().name("access-log".into()).spawn(move || {
            let mut spare = Vec::with_capacity(64 * 1024);
            while let Some(sink) = weak.upgrade() {
                sink.drain_into(&mut spare);
                drop(sink);
                std::thread::sleep(FLUSH_EVERY);
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "no access log writer thread: access log off");
            return Self { format: AccessLogFormat::Off, sink: None };
        }
        Self { format, sink: Some(sink) }
    }

    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// Appends one line to the buffer.
    pub fn write(&self, r: &AccessRecord<'_>) {
        let Some(sink) = &self.sink else { return };
        let mut buf = sink.lines.lock().unwrap_or_else(|p| p.into_inner());
        if buf.len() >= MAX_BUFFERED {
            sink.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let written = match self.format {
            AccessLogFormat::Off => return,
            AccessLogFormat::Json => serde_json::to_writer(&mut *buf, r).map_err(std::io::Error::from),
            AccessLogFormat::Common => write!(
                buf,
                "{} \"{} {} {}\" {} host={} route={} upstream=",
                r.client.ip(),
                r.method,
                r.path,
                r.protocol,
                r.status,
                r.host,
                r.route
            )
            .and_then(|()| match r.upstream {
                Some(u) => write!(buf, "{u}"),
                None => buf.write_all(b"-"),
            })
            .and_then(|()| write!(buf, " error={} {:.3}ms trace={}", r.error.unwrap_or("-"), r.duration_ms, r.trace_id)),
        };
        if written.is_ok() {
            buf.push(b'\n');
        }
    }

    /// Writes out what is buffered now (at shutdown, so no line is lost).
    pub fn flush(&self) {
        if let Some(sink) = &self.sink {
            sink.drain_into(&mut Vec::new());
        }
    }
}

impl Sink {
    /// Swaps the buffer with `spare` (keeping both allocations) and writes it to stdout.
    fn drain_into(&self, spare: &mut Vec<u8>) {
        std::mem::swap(&mut *self.lines.lock().unwrap_or_else(|p| p.into_inner()), spare);
        if !spare.is_empty() {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(spare).and_then(|()| out.flush());
            spare.clear();
        }
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "access log lines dropped: stdout did not keep up");
        }
    }
}

/// Milliseconds as a float with microsecond precision.
pub fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}
