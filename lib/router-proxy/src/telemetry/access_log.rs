//! One line per request on stdout, as JSON (for log pipelines) or in a
//! common-log-like text form (for people), or off. Written off the request's
//! critical path: see [`AccessLog`].

use std::{
    io::Write,
    net::{IpAddr, SocketAddr},
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

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
#[derive(Debug)]
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
    /// Logged as `duration_ms`, milliseconds with microsecond precision.
    pub duration: Duration,
    /// Logged as `upstream_ms`.
    pub upstream_elapsed: Option<Duration>,
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
        match self.format {
            AccessLogFormat::Off => return,
            AccessLogFormat::Json => json_line(&mut buf, r),
            AccessLogFormat::Common => common_line(&mut buf, r),
        }
        buf.push(b'\n');
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

/// One JSON object, its fields in a fixed order, written straight into the
/// buffer. serde_json through `#[derive(Serialize)]` cost about 8k
/// instructions a line (addresses through `Display`, floats through ryu);
/// written field by field with only the strings checked for escapes it is a
/// fraction of that (docs/performance.md, "Access log").
fn json_line(buf: &mut Vec<u8>, r: &AccessRecord<'_>) {
    buf.extend_from_slice(b"{\"client\":\"");
    socket_addr(buf, r.client);
    buf.extend_from_slice(b"\",\"method\":");
    json_str(buf, r.method);
    buf.extend_from_slice(b",\"host\":");
    json_str(buf, r.host);
    buf.extend_from_slice(b",\"path\":");
    json_str(buf, r.path);
    buf.extend_from_slice(b",\"protocol\":");
    json_str(buf, r.protocol);
    buf.extend_from_slice(b",\"status\":");
    buf.extend_from_slice(itoa::Buffer::new().format(r.status).as_bytes());
    buf.extend_from_slice(b",\"route\":");
    json_str(buf, r.route);
    buf.extend_from_slice(b",\"upstream\":");
    or_null(buf, r.upstream, |buf, u| {
        buf.push(b'"');
        socket_addr(buf, u);
        buf.push(b'"');
    });
    buf.extend_from_slice(b",\"error\":");
    or_null(buf, r.error, json_str);
    buf.extend_from_slice(b",\"duration_ms\":");
    millis(buf, r.duration);
    buf.extend_from_slice(b",\"upstream_ms\":");
    or_null(buf, r.upstream_elapsed, millis);
    buf.extend_from_slice(b",\"trace_id\":");
    json_str(buf, r.trace_id);
    buf.extend_from_slice(b",\"request_id\":");
    json_str(buf, r.request_id);
    buf.push(b'}');
}

/// `client "METHOD path protocol" status host=… route=… upstream=… error=… 1.234ms trace=…`
fn common_line(buf: &mut Vec<u8>, r: &AccessRecord<'_>) {
    match r.client.ip() {
        IpAddr::V4(ip) => ipv4(buf, ip.octets()),
        ip => {
            let _ = write!(buf, "{ip}");
        }
    }
    for piece in [" \"", r.method, " ", r.path, " ", r.protocol, "\" "] {
        buf.extend_from_slice(piece.as_bytes());
    }
    buf.extend_from_slice(itoa::Buffer::new().format(r.status).as_bytes());
    for piece in [" host=", r.host, " route=", r.route, " upstream="] {
        buf.extend_from_slice(piece.as_bytes());
    }
    match r.upstream {
        Some(u) => socket_addr(buf, u),
        None => buf.push(b'-'),
    }
    for piece in [" error=", r.error.unwrap_or("-"), " "] {
        buf.extend_from_slice(piece.as_bytes());
    }
    millis(buf, r.duration);
    buf.extend_from_slice(b"ms trace=");
    buf.extend_from_slice(r.trace_id.as_bytes());
}

/// `write`'s JSON for a value, or `null`.
fn or_null<T>(buf: &mut Vec<u8>, value: Option<T>, write: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        Some(v) => write(buf, v),
        None => buf.extend_from_slice(b"null"),
    }
}

/// A JSON string: as it is when nothing in it needs escaping (the usual
/// case), else escaped by serde_json.
fn json_str(buf: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        let _ = serde_json::to_writer(&mut *buf, s);
    } else {
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    }
}

/// `a.b.c.d:port` without `Display`'s formatter; IPv6 as `Display` writes it (`[…]:port`).
fn socket_addr(buf: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            ipv4(buf, a.ip().octets());
            buf.push(b':');
            buf.extend_from_slice(itoa::Buffer::new().format(a.port()).as_bytes());
        }
        SocketAddr::V6(a) => {
            let _ = write!(buf, "{a}");
        }
    }
}

fn ipv4(buf: &mut Vec<u8>, octets: [u8; 4]) {
    let mut digits = itoa::Buffer::new();
    for (i, o) in octets.into_iter().enumerate() {
        if i > 0 {
            buf.push(b'.');
        }
        buf.extend_from_slice(digits.format(o).as_bytes());
    }
}

/// Milliseconds with microsecond precision: `12.345`.
fn millis(buf: &mut Vec<u8>, d: Duration) {
    let micros = d.as_micros();
    let mut digits = itoa::Buffer::new();
    buf.extend_from_slice(digits.format(micros / 1000).as_bytes());
    let frac = (micros % 1000) as u16;
    buf.extend_from_slice(&[b'.', b'0' + (frac / 100) as u8, b'0' + (frac / 10 % 10) as u8, b'0' + (frac % 10) as u8]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(host: &'a str, request_id: &'a str, upstream: Option<SocketAddr>) -> AccessRecord<'a> {
        AccessRecord {
            client: "10.0.0.7:51234".parse().unwrap(),
            method: "GET",
            host,
            path: "/a/b",
            protocol: "HTTP/1.1",
            status: 503,
            route: "default/r",
            upstream,
            error: upstream.is_none().then_some("no-healthy-upstream"),
            duration: Duration::from_micros(12_045),
            upstream_elapsed: upstream.map(|_| Duration::from_micros(7)),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
            request_id,
        }
    }

    fn json(r: &AccessRecord<'_>) -> serde_json::Value {
        let mut buf = Vec::new();
        json_line(&mut buf, r);
        serde_json::from_slice(&buf).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&buf)))
    }

    #[test]
    fn json_lines_parse_back_to_every_field() {
        let v = json(&record("api.example.com", "req-1", Some("[2001:db8::1]:8080".parse().unwrap())));
        assert_eq!(
            v,
            serde_json::json!({
                "client": "10.0.0.7:51234", "method": "GET", "host": "api.example.com", "path": "/a/b",
                "protocol": "HTTP/1.1", "status": 503, "route": "default/r", "upstream": "[2001:db8::1]:8080",
                "error": null, "duration_ms": 12.045, "upstream_ms": 0.007,
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "request_id": "req-1",
            })
        );
        let v = json(&record("h", "r", None));
        assert_eq!(
            (&v["upstream"], &v["error"], &v["upstream_ms"]),
            (&serde_json::Value::Null, &"no-healthy-upstream".into(), &serde_json::Value::Null)
        );
    }

    #[test]
    fn json_strings_a_client_chose_are_escaped() {
        // Request ids and hosts come from the client: quotes, backslashes and control bytes must not break the line.
        let id = "a\"b\\c\u{1}d\u{7f}é";
        let v = json(&record("evil\"host", id, None));
        assert_eq!((v["host"].as_str(), v["request_id"].as_str()), (Some("evil\"host"), Some(id)));
    }

    #[test]
    fn common_lines_read_as_before() {
        let mut buf = Vec::new();
        common_line(&mut buf, &record("h", "r", Some("10.1.2.3:80".parse().unwrap())));
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "10.0.0.7 \"GET /a/b HTTP/1.1\" 503 host=h route=default/r upstream=10.1.2.3:80 error=- 12.045ms trace=4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }
}
