//! HTTP/2 floods against the real binary, each from a raw peer that writes
//! frames as fast as the gateway takes them while a well-behaved HTTP/1.1
//! client keeps requesting beside it: the flooding connection is closed with
//! GOAWAY(ENHANCE_YOUR_CALM), the other client sees no failure, and the
//! gateway's memory stays bounded. Each test prints the other client's p99,
//! the gateway's peak RSS and the CPU it spent during the flood.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use router_tests::{
    backend::{Backend, start_backends},
    client::Client,
    gateway::{GatewayProcess, route, rss_kib, service_on},
    h2frames::{
        self, ACK, CONTINUATION, ENHANCE_YOUR_CALM, FloodResult, HEADERS, PING, Peer, RST_STREAM, SETTINGS, WINDOW_UPDATE, frame,
        header_block,
    },
    probe::Probe,
};
use tokio::io::AsyncWriteExt;

const BIN: &str = env!("CARGO_BIN_EXE_router-gateway");

async fn gateway() -> (Vec<Backend>, GatewayProcess) {
    let b = start_backends(&["flood"]).await;
    let config = [service_on("svc", "svc", &[&b[0]], "HTTP"), route("r", "  destinations: [{vpcServiceRef: {name: svc}}]")].concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    (b, gw)
}

/// What the gateway and the other client went through during an attack.
struct Measured<T> {
    attack: T,
    peak_rss_kib: u64,
}

/// Runs `attack` with the probe beside it and the gateway's RSS sampled; asserts the probe saw no failure.
async fn beside_probe<T>(what: &str, gw: &GatewayProcess, attack: impl Future<Output = T>) -> Measured<T> {
    let rss_before = gw.rss_kib();
    let cpu_before = gw.cpu_seconds();
    let peak = Arc::new(AtomicU64::new(rss_before));
    let pid_peak = peak.clone();
    let pid = gw.pid();
    let sampled = tokio::spawn(async move {
        loop {
            pid_peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let window = std::time::Instant::now();
    let probe = Probe::start(gw.url("/"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let attack = attack.await;
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = probe.finish().await;
    // CPU over the whole window (the probe's own requests included), against a window of at least a second.
    let cpu = gw.cpu_seconds() - cpu_before;
    let window = window.elapsed();
    sampled.abort();
    let peak_rss_kib = peak.load(Ordering::Relaxed);
    println!(
        "{what}: flood {:.2} s; other client: {} ok, p99 {:?}, max {:?}; gateway RSS {} KiB before, {} KiB peak; CPU {:.2} s in a {:.2} s window",
        took.as_secs_f64(),
        report.ok,
        report.p99,
        report.max,
        rss_before,
        peak_rss_kib,
        cpu,
        window.as_secs_f64(),
    );
    assert!(report.failed.is_empty(), "{what}: the other client saw failures: {:?}", report.failed);
    assert!(report.ok > 0, "{what}: the other client was served");
    Measured { attack, peak_rss_kib }
}

fn assert_closed_calmly(what: &str, r: &FloodResult) {
    assert!(r.closed, "{what}: the connection was closed ({r:?})");
    assert_eq!(r.goaway, Some(ENHANCE_YOUR_CALM), "{what}: GOAWAY(ENHANCE_YOUR_CALM) ({r:?})");
}

async fn still_serving(gw: &GatewayProcess) {
    assert_eq!(Client::h2c().get(&gw.url("/"), &[]).await.expect("h2c answers").status, 200, "h2c clients are still served");
}

#[tokio::test]
async fn rapid_reset_is_closed_with_enhance_your_calm() {
    let (_b, gw) = gateway().await;
    let flood = |i: usize| {
        let stream = 2 * i as u32 + 1;
        let mut f = h2frames::get(stream, "/", &[]);
        f.extend(frame(RST_STREAM, 0, stream, &h2frames::CANCEL.to_be_bytes()));
        f
    };
    let m = beside_probe("rapid reset", &gw, h2frames::flood(gw.addr, &[], flood, 200_000)).await;
    assert_closed_calmly("rapid reset", &m.attack);
    assert!(m.attack.sent < 200_000, "closed long before the cap: {:?}", m.attack);
    assert!(gw.metric_sum("datum_router_http2_goaways_sent_total{code=\"ENHANCE_YOUR_CALM\"}").await >= 1);
    still_serving(&gw).await;
}

#[tokio::test]
async fn slow_rapid_reset_on_accepted_streams_is_bounded_too() {
    // HEADERS for a slow answer, a pause while the gateway accepts the streams and starts their
    // requests, then RST_STREAM for each: h2's pending-accept bound never sees these (the streams were
    // accepted); the gateway's own bound (more than half the streams, once 250 were reset) does.
    let (_b, gw) = gateway().await;
    let attack = async {
        let mut peer = Peer::connect(gw.addr).await;
        let mut sent = 0u32;
        for batch in 0..100u32 {
            let streams: Vec<u32> = (0..10).map(|i| 2 * (batch * 10 + i) + 1).collect();
            let heads: Vec<u8> = streams.iter().flat_map(|&s| h2frames::get(s, "/slow/500", &[])).collect();
            if peer.write.write_all(&heads).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let resets: Vec<u8> = streams.iter().flat_map(|&s| frame(RST_STREAM, 0, s, &h2frames::CANCEL.to_be_bytes())).collect();
            if peer.write.write_all(&resets).await.is_err() {
                break;
            }
            sent += 10;
            let frames = peer.frames(Duration::from_millis(5)).await;
            if frames.iter().any(|f| f.goaway_code().is_some()) {
                return (sent, frames.iter().find_map(|f| f.goaway_code()));
            }
        }
        (sent, peer.frames(Duration::from_secs(1)).await.iter().find_map(|f| f.goaway_code()))
    };
    let m = beside_probe("slow rapid reset", &gw, attack).await;
    let (sent, goaway) = m.attack;
    assert_eq!(goaway, Some(ENHANCE_YOUR_CALM), "GOAWAY after {sent} resets");
    assert!(sent < 1000, "closed within the bound: {sent} resets");
    assert_eq!(gw.metric_sum("datum_router_http2_flood_closes_total{bound=\"resets\"}").await, 1, "the gateway's own bound closed it");
    still_serving(&gw).await;
}

#[tokio::test]
async fn continuation_flood_is_closed_with_enhance_your_calm() {
    let (_b, gw) = gateway().await;
    let open = frame(HEADERS, 0, 1, &header_block(&[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "x")]));
    let more = |_| frame(CONTINUATION, 0, 1, &header_block(&[("x-flood", "0123456789")]));
    let m = beside_probe("CONTINUATION flood", &gw, h2frames::flood(gw.addr, &open, more, 200_000)).await;
    assert_closed_calmly("CONTINUATION flood", &m.attack);
    still_serving(&gw).await;
}

#[tokio::test]
async fn settings_ping_priority_and_window_update_floods_are_closed() {
    let (_b, gw) = gateway().await;
    let floods: [(&str, Vec<u8>, &str); 4] = [
        ("SETTINGS flood", frame(SETTINGS, 0, 0, &[]), "control-frames"),
        ("PING flood", frame(PING, 0, 0, &[0; 8]), "control-frames"),
        ("PING ACK flood", frame(PING, ACK, 0, &[0; 8]), "control-frames"),
        ("WINDOW_UPDATE storm", frame(WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes()), "window-updates"),
    ];
    for (what, one, bound) in floods {
        let before = gw.metric_sum(&format!("datum_router_http2_flood_closes_total{{bound=\"{bound}\"}}")).await;
        let m = beside_probe(what, &gw, h2frames::flood(gw.addr, &[], |_| one.clone(), 200_000)).await;
        assert_closed_calmly(what, &m.attack);
        assert!(m.attack.sent < 200_000, "{what}: closed long before the cap ({} frames written)", m.attack.sent);
        let after = gw.metric_sum(&format!("datum_router_http2_flood_closes_total{{bound=\"{bound}\"}}")).await;
        assert_eq!(after, before + 1, "{what}: counted under {bound}");
    }
    still_serving(&gw).await;
}

#[tokio::test]
async fn a_client_that_never_reads_its_streams_holds_bounded_memory() {
    let (_b, gw) = gateway().await;
    let rss_idle = gw.rss_kib();
    let attack = async {
        let mut peer = Peer::connect(gw.addr).await;
        // Ask for everything at once: the largest windows, 256 streams of 1 MiB each, and never read a byte.
        let mut ask = frame(SETTINGS, 0, 0, &[0, 4, 0x7f, 0xff, 0xff, 0xff]);
        ask.extend(frame(WINDOW_UPDATE, 0, 0, &(0x7fff_ffffu32 - 65_535).to_be_bytes()));
        for i in 0..256u32 {
            ask.extend(h2frames::get(2 * i + 1, "/bytes/1048576", &[]));
        }
        peer.write.write_all(&ask).await.expect("requests sent");
        tokio::time::sleep(Duration::from_secs(3)).await;
        peer
    };
    let m = beside_probe("256 unread streams", &gw, attack).await;
    let per_stream_kib = m.peak_rss_kib.saturating_sub(rss_idle) / 256;
    println!("256 unread streams: {per_stream_kib} KiB of gateway memory per stream");
    // Per stream: the h2 send buffer (64 KiB, plus the chunk in hand) and the upstream connection's
    // read buffer (64 KiB), with the allocator's slack; never the 1 MiB each stream asked for.
    assert!(per_stream_kib < 384, "{per_stream_kib} KiB per unread stream");
    drop(m.attack);
    still_serving(&gw).await;
}
