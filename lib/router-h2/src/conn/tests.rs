//! The connection driven as a client would drive it, frame by frame.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::*;
use crate::{frame::Head, hpack::Name};

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn config() -> Config {
    Config {
        max_concurrent_streams: 4,
        max_header_list_size: 1024,
        stream_window: 1000,
        connection_window: 100_000,
        max_send_buffer: 64,
        max_local_resets: 3,
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    frame::head(&mut b, payload.len(), kind, flags, stream);
    b.extend_from_slice(payload);
    b.to_vec()
}

/// A header block of literals, as the gateway's own encoder writes them (the
/// decoder is held to RFC 7541's examples in `hpack`).
fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut b = BytesMut::new();
    for (n, v) in fields {
        hpack::encode_literal(n.as_bytes(), v.as_bytes(), &mut b);
    }
    b.to_vec()
}

fn get(stream: u32, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut fields = vec![(":method", "GET"), (":scheme", "http"), (":path", "/x"), (":authority", "a.example")];
    fields.extend_from_slice(extra);
    frame(kind::HEADERS, END_HEADERS | END_STREAM, stream, &block(&fields))
}

fn post(stream: u32, length: &str) -> Vec<u8> {
    let fields = [(":method", "POST"), (":scheme", "http"), (":path", "/up"), (":authority", "a.example"), ("content-length", length)];
    frame(kind::HEADERS, END_HEADERS, stream, &block(&fields))
}

/// A frame the gateway wrote.
#[derive(Debug)]
struct Out {
    head: Head,
    payload: Bytes,
}

impl Out {
    fn reset(&self) -> Option<Reason> {
        (self.head.kind == kind::RST_STREAM).then(|| Reason(u32::from_be_bytes(self.payload[..4].try_into().unwrap())))
    }

    fn goaway(&self) -> Option<Reason> {
        (self.head.kind == kind::GOAWAY).then(|| Reason(u32::from_be_bytes(self.payload[4..8].try_into().unwrap())))
    }

    fn window_update(&self) -> Option<(u32, u32)> {
        (self.head.kind == kind::WINDOW_UPDATE).then(|| (self.head.stream, u32::from_be_bytes(self.payload[..4].try_into().unwrap())))
    }

    /// The fields of a HEADERS frame, decoded by a fresh decoder (the gateway's encoder keeps no state).
    fn fields(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        hpack::Decoder::new(4096)
            .decode(&self.payload, |e, _| {
                let name = match &e.name {
                    Name::Field(n) => n.to_string(),
                    other => format!("{other:?}"),
                };
                out.push((name, String::from_utf8(e.value.as_ref().unwrap().as_bytes().to_vec()).unwrap()));
            })
            .unwrap();
        out
    }
}

struct Client {
    conn: Connection,
    inbox: BytesMut,
}

impl Client {
    /// A connection past the preface and both SETTINGS, its own output read.
    fn new(config: Config) -> Self {
        Self::with_settings(config, &[])
    }

    fn with_settings(config: Config, settings: &[u8]) -> Self {
        let mut c = Self { conn: Connection::new(config), inbox: BytesMut::new() };
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(kind::SETTINGS, 0, 0, settings));
        c.send(&hello).unwrap();
        let first = c.read();
        assert_eq!(first[0].head.kind, kind::SETTINGS, "the server's preface comes first");
        assert!(first.iter().any(|f| f.head.kind == kind::SETTINGS && f.head.flags == 1), "the client's SETTINGS are acknowledged");
        c
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        self.inbox.extend_from_slice(bytes);
        self.conn.recv(&mut self.inbox)
    }

    fn read(&mut self) -> Vec<Out> {
        let mut chunks = VecDeque::new();
        self.conn.output(&mut chunks);
        let mut all = BytesMut::new();
        for c in chunks {
            all.extend_from_slice(&c);
        }
        let mut all = all.freeze();
        let mut frames = Vec::new();
        while !all.is_empty() {
            let head = Head::parse(all[..HEAD_LEN].try_into().unwrap());
            let payload = all.slice(HEAD_LEN..HEAD_LEN + head.len);
            all = all.slice(HEAD_LEN + head.len..);
            frames.push(Out { head, payload });
        }
        frames
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.conn.poll_event()).collect()
    }
}

#[test]
fn a_get_is_answered_and_its_stream_forgotten() {
    let mut c = Client::new(config());
    c.send(&get(1, &[("accept", "*/*")])).unwrap();
    let events = c.events();
    let [Event::Request { stream: 1, head, end_stream: true }] = &events[..] else { panic!("{events:?}") };
    assert_eq!((head.method.clone(), head.uri.to_string()), (Method::GET, "http://a.example/x".to_string()));
    assert_eq!(head.headers["accept"], "*/*");

    let mut fields = HeaderMap::new();
    fields.insert("content-type", HeaderValue::from_static("text/plain"));
    fields.insert("connection", HeaderValue::from_static("close"));
    c.conn.send_headers(1, StatusCode::OK, |b| encode_map(&fields, b), false).unwrap();
    c.conn.send_data(1, Bytes::from_static(b"ok"), true).unwrap();
    let out = c.read();
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(
        out[0].fields(),
        [("Pseudo(Status)".into(), "200".into()), ("content-type".into(), "text/plain".into())],
        "no connection field"
    );
    assert_eq!((out[1].head.kind, out[1].head.flags, &out[1].payload[..]), (kind::DATA, END_STREAM, &b"ok"[..]));
    assert_eq!(c.conn.open_streams(), 0);
    assert_eq!(c.conn.send_data(1, Bytes::new(), true), Err(StreamGone));
}

#[test]
fn a_request_body_is_handed_over_and_its_window_given_back_in_halves() {
    let mut c = Client::new(config());
    c.send(&post(1, "700")).unwrap();
    c.send(&frame(kind::DATA, 0, 1, &[b'a'; 300])).unwrap();
    c.send(&frame(kind::DATA, END_STREAM, 1, &[b'b'; 400])).unwrap();
    let events = c.events();
    assert!(
        matches!(&events[..], [Event::Request { end_stream: false, .. }, Event::Data { data: a, end_stream: false, .. }, Event::Data { data: b, end_stream: true, .. }] if a.len() == 300 && b.len() == 400)
    );
    c.conn.release(1, 300);
    assert!(c.read().is_empty(), "300 of 1000 consumed: not yet");
    c.conn.release(1, 400);
    // The stream has ended: only the connection's window matters now, and it is large.
    assert!(c.read().iter().all(|f| f.window_update().is_none_or(|(s, _)| s == 0)));
}

#[test]
fn a_body_longer_or_shorter_than_its_content_length_is_malformed() {
    let mut c = Client::new(config());
    c.send(&post(1, "3")).unwrap();
    c.send(&frame(kind::DATA, 0, 1, b"four")).unwrap();
    c.send(&post(3, "3")).unwrap();
    c.send(&frame(kind::DATA, END_STREAM, 3, b"ab")).unwrap();
    let resets: Vec<_> = c.read().iter().filter_map(|f| f.reset().map(|r| (f.head.stream, r))).collect();
    assert_eq!(resets, [(1, Reason::PROTOCOL_ERROR), (3, Reason::PROTOCOL_ERROR)]);
    assert!(c.events().iter().filter(|e| matches!(e, Event::Reset { .. })).count() == 2);
}

#[test]
fn response_data_waits_for_the_clients_windows() {
    // The client allows 10 bytes per stream.
    let mut c = Client::with_settings(config(), &[0, 4, 0, 0, 0, 10]);
    c.send(&get(1, &[])).unwrap();
    c.conn.send_headers(1, StatusCode::OK, |_| {}, false).unwrap();
    c.conn.send_data(1, Bytes::from_static(b"0123456789abcdefghijklmno"), true).unwrap();
    assert_eq!(c.conn.send_room(1), Ok(64 - 15));
    let out = c.read();
    assert_eq!(out.last().map(|f| (&f.payload[..], f.head.flags)), Some((&b"0123456789"[..], 0)));
    c.send(&frame(kind::WINDOW_UPDATE, 0, 1, &100u32.to_be_bytes())).unwrap();
    let out = c.read();
    assert_eq!(out.iter().map(|f| (&f.payload[..], f.head.flags)).collect::<Vec<_>>(), [(&b"abcdefghijklmno"[..], END_STREAM)]);
    assert_eq!(c.conn.open_streams(), 0);
}

#[test]
fn lowering_the_initial_window_can_stall_open_streams() {
    let mut c = Client::new(config());
    c.send(&get(1, &[])).unwrap();
    c.conn.send_headers(1, StatusCode::OK, |_| {}, false).unwrap();
    c.send(&frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0])).unwrap();
    c.read();
    c.conn.send_data(1, Bytes::from_static(b"held"), true).unwrap();
    assert!(c.read().iter().all(|f| f.head.kind != kind::DATA), "a zero window holds the data");
    c.send(&frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 4])).unwrap();
    assert!(c.read().iter().any(|f| f.head.kind == kind::DATA && &f.payload[..] == b"held"));
}

#[test]
fn trailers_go_both_ways() {
    let mut c = Client::new(config());
    c.send(&frame(
        kind::HEADERS,
        END_HEADERS,
        1,
        &block(&[(":method", "POST"), (":scheme", "http"), (":path", "/svc/M"), (":authority", "g")]),
    ))
    .unwrap();
    c.send(&frame(kind::DATA, 0, 1, b"msg")).unwrap();
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 1, &block(&[("x-end", "1")]))).unwrap();
    let events = c.events();
    assert!(matches!(&events[2], Event::Trailers { stream: 1, trailers } if trailers["x-end"] == "1"), "{events:?}");
    c.conn.send_headers(1, StatusCode::OK, |_| {}, false).unwrap();
    c.conn.send_data(1, Bytes::from_static(b"reply"), false).unwrap();
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_static("0"));
    c.conn.send_trailers(1, &t).unwrap();
    let out = c.read();
    let last = out.last().unwrap();
    assert_eq!((last.head.kind, last.head.flags), (kind::HEADERS, END_STREAM | END_HEADERS));
    assert_eq!(last.fields(), [("grpc-status".into(), "0".into())]);
    assert_eq!(out[out.len() - 2].head.flags, 0, "the data frame before the trailers does not end the stream");
}

#[test]
fn malformed_requests_are_reset_and_too_many_close_the_connection() {
    let mut c = Client::new(config());
    c.send(&get(1, &[("connection", "keep-alive")])).unwrap();
    c.send(&get(3, &[("X-Upper", "v")])).unwrap();
    c.send(&get(5, &[("te", "gzip")])).unwrap();
    assert!(c.events().is_empty(), "never handed over");
    let resets: Vec<_> = c.read().iter().filter_map(|f| f.reset().map(|r| (f.head.stream, r))).collect();
    assert_eq!(resets, [(1, Reason::PROTOCOL_ERROR), (3, Reason::PROTOCOL_ERROR), (5, Reason::PROTOCOL_ERROR)]);
    let e = c.send(&get(7, &[("keep-alive", "1")])).unwrap_err();
    assert_eq!(e.reason, Reason::ENHANCE_YOUR_CALM);
    assert_eq!(c.read().last().and_then(Out::goaway), Some(Reason::ENHANCE_YOUR_CALM));
    assert!(c.conn.is_finished());
}

#[test]
fn streams_past_the_concurrency_limit_are_refused() {
    let mut c = Client::new(config());
    for s in [1, 3, 5, 7, 9] {
        c.send(&get(s, &[])).unwrap();
    }
    assert_eq!(c.events().len(), 4);
    let resets: Vec<_> = c.read().iter().filter_map(|f| f.reset().map(|r| (f.head.stream, r))).collect();
    assert_eq!(resets, [(9, Reason::REFUSED_STREAM)]);
}

#[test]
fn a_header_block_may_span_continuations_but_not_be_interrupted_or_endless() {
    let mut c = Client::new(config());
    let b = block(&[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a")]);
    c.send(&frame(kind::HEADERS, END_STREAM, 1, &b[..10])).unwrap();
    c.send(&frame(kind::CONTINUATION, 0, 1, &b[10..20])).unwrap();
    c.send(&frame(kind::CONTINUATION, END_HEADERS, 1, &b[20..])).unwrap();
    assert!(matches!(&c.events()[..], [Event::Request { stream: 1, .. }]));

    c.send(&frame(kind::HEADERS, END_STREAM, 3, &b[..10])).unwrap();
    let e = c.send(&frame(kind::PING, 0, 0, &[0; 8])).unwrap_err();
    assert_eq!(e.reason, Reason::PROTOCOL_ERROR);

    let mut c = Client::new(config());
    c.send(&frame(kind::HEADERS, 0, 1, &b)).unwrap();
    let more = frame(kind::CONTINUATION, 0, 1, &block(&[("x-flood", "0123456789")]));
    let e = (0..100).find_map(|_| c.send(&more).err()).expect("bounded");
    assert_eq!(e.reason, Reason::ENHANCE_YOUR_CALM);
}

#[test]
fn a_head_over_the_header_list_size_is_answered_431() {
    let mut c = Client::new(config());
    let big = "v".repeat(1100);
    let fields = block(&[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a"), ("x-big", &big)]);
    c.send(&frame(kind::HEADERS, END_HEADERS | END_STREAM, 1, &fields)).unwrap();
    assert!(c.events().is_empty());
    let out = c.read();
    assert_eq!(out[0].fields(), [("Pseudo(Status)".into(), "431".into())]);
    assert_eq!(out[0].head.flags & END_STREAM, END_STREAM);
}

#[test]
fn a_client_reset_ends_the_stream_for_the_gateway() {
    let mut c = Client::new(config());
    c.send(&get(1, &[])).unwrap();
    c.send(&frame(kind::RST_STREAM, 0, 1, &Reason::CANCEL.0.to_be_bytes())).unwrap();
    assert!(matches!(&c.events()[..], [Event::Request { .. }, Event::Reset { stream: 1, reason: Reason::CANCEL }]));
    assert_eq!(c.conn.send_headers(1, StatusCode::OK, |_| {}, true), Err(StreamGone));
    assert_eq!(c.send(&frame(kind::RST_STREAM, 0, 9, &[0; 4])).unwrap_err().reason, Reason::PROTOCOL_ERROR, "idle stream");
}

#[test]
fn pings_are_answered_with_their_payload() {
    let mut c = Client::new(config());
    c.send(&frame(kind::PING, 0, 0, b"12345678")).unwrap();
    let out = c.read();
    assert_eq!((out[0].head.kind, out[0].head.flags, &out[0].payload[..]), (kind::PING, 1, &b"12345678"[..]));
    c.conn.ping();
    assert_eq!(c.read()[0].head.kind, kind::PING);
    c.send(&frame(kind::PING, 1, 0, b"datumkap")).unwrap();
    assert_eq!(c.conn.pongs(), 1);
}

#[test]
fn a_connection_must_open_with_the_preface_and_settings() {
    let mut conn = Connection::new(config());
    assert_eq!(conn.recv(&mut BytesMut::from(&b"GET / HTTP/1.1\r\n"[..])).unwrap_err().reason, Reason::PROTOCOL_ERROR);
    let mut conn = Connection::new(config());
    let mut hello = BytesMut::from(&PREFACE[..]);
    hello.extend_from_slice(&frame(kind::PING, 0, 0, &[0; 8]));
    assert_eq!(conn.recv(&mut hello).unwrap_err().reason, Reason::PROTOCOL_ERROR);
    // A preface in pieces is fine.
    let mut conn = Connection::new(config());
    let mut part = BytesMut::from(&PREFACE[..10]);
    conn.recv(&mut part).unwrap();
    part.extend_from_slice(&PREFACE[10..]);
    conn.recv(&mut part).unwrap();
    assert!(part.is_empty());
}

#[test]
fn an_undecodable_header_block_is_a_compression_error() {
    let mut c = Client::new(config());
    assert_eq!(c.send(&frame(kind::HEADERS, END_HEADERS, 1, &[0xff, 0xff])).unwrap_err().reason, Reason::COMPRESSION_ERROR);
}

#[test]
fn flow_control_overruns_are_errors_of_their_scope() {
    let mut c = Client::new(config());
    c.send(&post(1, "2000")).unwrap();
    c.send(&frame(kind::DATA, 0, 1, &[0; 1000])).unwrap();
    c.send(&frame(kind::DATA, 0, 1, &[0; 1])).unwrap();
    assert!(c.read().iter().any(|f| f.head.stream == 1 && f.reset() == Some(Reason::FLOW_CONTROL_ERROR)));
    c.send(&get(3, &[])).unwrap();
    c.send(&frame(kind::WINDOW_UPDATE, 0, 3, &0x7fff_ffffu32.to_be_bytes())).unwrap();
    assert!(c.read().iter().any(|f| f.head.stream == 3 && f.reset() == Some(Reason::FLOW_CONTROL_ERROR)));
    assert_eq!(c.send(&frame(kind::WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes())).unwrap_err().reason, Reason::FLOW_CONTROL_ERROR);
}

#[test]
fn go_away_lets_open_streams_finish_and_refuses_new_ones() {
    let mut c = Client::new(config());
    c.send(&get(1, &[])).unwrap();
    c.conn.go_away();
    c.send(&get(3, &[])).unwrap();
    let out = c.read();
    assert_eq!(out[0].goaway(), Some(Reason::NO_ERROR));
    assert_eq!(&out[0].payload[..4], &1u32.to_be_bytes(), "stream 1 is the last one served");
    assert_eq!(out[1].reset(), Some(Reason::REFUSED_STREAM));
    assert!(!c.conn.is_finished());
    c.conn.send_headers(1, StatusCode::NO_CONTENT, |_| {}, true).unwrap();
    assert!(c.conn.is_finished());
}

#[test]
fn a_response_that_ends_before_its_request_asks_the_client_to_stop() {
    let mut c = Client::new(config());
    c.send(&post(1, "100")).unwrap();
    c.conn.send_headers(1, StatusCode::PAYLOAD_TOO_LARGE, |_| {}, true).unwrap();
    let out = c.read();
    assert_eq!(out.last().and_then(Out::reset), Some(Reason::NO_ERROR));
    assert!(matches!(c.events().last(), Some(Event::Reset { stream: 1, reason: Reason::NO_ERROR })));
    // Data still in flight for it counts for the connection and is dropped.
    c.send(&frame(kind::DATA, 0, 1, &[0; 10])).unwrap();
    assert!(!c.events().iter().any(|e| matches!(e, Event::Data { .. })));
}

#[test]
fn empty_data_frames_in_a_row_close_the_connection() {
    let mut c = Client::new(config());
    c.send(&post(1, "1")).unwrap();
    for _ in 0..5 {
        c.send(&frame(kind::DATA, 0, 1, b"")).unwrap();
    }
    c.send(&frame(kind::DATA, 0, 1, b"x")).unwrap();
    let e = (0..20).find_map(|_| c.send(&frame(kind::DATA, 0, 1, b"")).err()).expect("bounded");
    assert_eq!(e.reason, Reason::ENHANCE_YOUR_CALM);
}

#[test]
fn an_interim_response_goes_before_the_final_one_and_ends_nothing() {
    let mut c = Client::new(config());
    c.send(&post(1, "2")).unwrap();
    c.conn.send_interim(1, StatusCode::CONTINUE).unwrap();
    let out = c.read();
    assert_eq!((out[0].fields(), out[0].head.flags), (vec![("Pseudo(Status)".into(), "100".into())], END_HEADERS));
    c.send(&frame(kind::DATA, END_STREAM, 1, b"ok")).unwrap();
    c.conn.send_headers(1, StatusCode::OK, |_| {}, false).unwrap();
    assert_eq!(c.read()[0].head.flags, END_HEADERS);
    c.conn.send_interim(1, StatusCode::CONTINUE).unwrap();
    assert!(c.read().is_empty(), "too late once the final head is out");
}
