//! The tunnel with real iroh endpoints on 127.0.0.1 (relays disabled, direct
//! addresses only) and real TCP origins: what a client of the gateway-side
//! listener observes, and what each side refuses.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::BytesMut;
use router_tunnel::{
    ALPN, connect,
    connector::{self, ConnectorPolicy},
    endpoint::{self, Endpoint, EndpointSettings, peer_addr},
    link::Link,
    listener::{Route, ServiceListener},
    metrics::TunnelMetrics,
    serve::refuse_incoming,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Notify,
};

async fn bind(seed: u8) -> Endpoint {
    endpoint::bind(EndpointSettings {
        secret_key: iroh::SecretKey::from_bytes(&[seed; 32]),
        bind: "127.0.0.1:0".parse().unwrap(),
        relay_urls: Vec::new(),
        alpns: vec![ALPN.to_vec()],
    })
    .await
    .expect("endpoint binds on loopback")
}

/// An origin that echoes what it reads and closes its half when the client closes its own.
async fn echo_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A port nothing listens on.
async fn dead_origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

struct Tunnel {
    gateway: Endpoint,
    connector: Endpoint,
    connector_metrics: Arc<TunnelMetrics>,
    gateway_metrics: Arc<TunnelMetrics>,
    link: Arc<Link>,
}

/// A connector serving `targets` to gateway seed 1, and a live link to it.
async fn tunnel(targets: &[String]) -> Tunnel {
    let (gateway, connector) = (bind(1).await, bind(2).await);
    let connector_metrics = Arc::new(TunnelMetrics::new());
    let policy = Arc::new(ConnectorPolicy::new([gateway.id()], targets.iter().cloned()));
    tokio::spawn(connector::run(connector.clone(), policy, connector_metrics.clone()));
    let gateway_metrics = Arc::new(TunnelMetrics::new());
    let addr = peer_addr(connector.id(), &connector.bound_sockets(), None);
    let link = Link::spawn(gateway.clone(), addr, Arc::new(Notify::new()), gateway_metrics.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !link.is_up() {
        assert!(tokio::time::Instant::now() < deadline, "the link comes up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Tunnel { gateway, connector, connector_metrics, gateway_metrics, link }
}

impl Tunnel {
    /// A gateway-side listener carrying to `target`.
    async fn listener(&self, target: &str) -> ServiceListener {
        let route = Route { binding: "n/b".into(), target: target.into(), links: vec![self.link.clone()] };
        ServiceListener::open("127.0.0.1:0".parse().unwrap(), route, self.gateway_metrics.clone()).unwrap()
    }

    /// The status a connector answers to a CONNECT for `target`.
    async fn connect_status(&self, target: &str) -> u16 {
        let conn = self.link.connection().expect("up");
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        connect::send_request(&mut send, target).await.unwrap();
        connect::read_response(&mut recv, &mut BytesMut::new()).await.unwrap()
    }
}

fn count(m: &TunnelMetrics, binding: &str, result: &str) -> u64 {
    m.connections.with_label_values(&[binding, result]).get()
}

#[tokio::test]
async fn an_allowed_target_round_trips_bytes_and_a_half_close_reaches_the_origin() {
    let origin = echo_origin().await;
    let t = tunnel(&[origin.to_string()]).await;
    assert_eq!(t.connect_status(&origin.to_string()).await, 200);
    let listener = t.listener(&origin.to_string()).await;
    let mut tcp = TcpStream::connect(listener.addr).await.unwrap();
    tcp.write_all(b"hello through the tunnel").await.unwrap();
    // Half-close: the origin only answers the rest once it sees our FIN, then closes its half.
    tcp.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut back)).await.expect("the origin's FIN comes back").unwrap();
    assert_eq!(back, b"hello through the tunnel");
    assert_eq!(count(&t.gateway_metrics, "n/b", "ok"), 1);
    assert_eq!(t.gateway_metrics.bytes.with_label_values(&["n/b", "to-origin"]).get(), 24);
}

#[tokio::test]
async fn a_target_not_listed_gets_403_and_a_dead_origin_502() {
    let (origin, dead) = (echo_origin().await, dead_origin().await);
    let t = tunnel(&[origin.to_string(), dead.to_string()]).await;
    assert_eq!(t.connect_status("10.1.2.3:22").await, 403, "not a listed target");
    assert_eq!(t.connect_status(&dead.to_string()).await, 502, "nothing listens there");
    assert_eq!(count(&t.connector_metrics, "10.1.2.3:22", "forbidden"), 1);
    assert_eq!(count(&t.connector_metrics, &dead.to_string(), "bad-gateway"), 1);
    // Through the listener, a refused CONNECT closes the client's connection without a byte.
    let listener = t.listener(&dead.to_string()).await;
    let mut tcp = TcpStream::connect(listener.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(count(&t.gateway_metrics, "n/b", "bad-gateway"), 1);
}

#[tokio::test]
async fn two_hundred_concurrent_streams_share_one_connection() {
    let origin = echo_origin().await;
    let t = tunnel(&[origin.to_string()]).await;
    let listener = t.listener(&origin.to_string()).await;
    let addr = listener.addr;
    let clients: Vec<_> = (0..200)
        .map(|i| {
            tokio::spawn(async move {
                let mut tcp = TcpStream::connect(addr).await.unwrap();
                let message = format!("stream {i}");
                tcp.write_all(message.as_bytes()).await.unwrap();
                tcp.shutdown().await.unwrap();
                let mut back = String::new();
                tcp.read_to_string(&mut back).await.unwrap();
                back == message
            })
        })
        .collect();
    for c in clients {
        assert!(tokio::time::timeout(Duration::from_secs(30), c).await.unwrap().unwrap(), "each stream gets its own bytes back");
    }
    assert_eq!(count(&t.gateway_metrics, "n/b", "ok"), 200);
    assert_eq!(t.gateway_metrics.dials.with_label_values(&["ok"]).get(), 1, "one warm connection carried them all");
}

#[tokio::test]
async fn a_sixteen_mebibyte_body_arrives_intact() {
    let origin = echo_origin().await;
    let t = tunnel(&[origin.to_string()]).await;
    let listener = t.listener(&origin.to_string()).await;
    let body: Vec<u8> = (0..16u32 * 1024 * 1024).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let checksum = |b: &[u8]| b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| (h ^ u64::from(*x)).wrapping_mul(0x100_0000_01b3));
    let tcp = TcpStream::connect(listener.addr).await.unwrap();
    let (mut r, mut w) = tcp.into_split();
    let sent = body.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::with_capacity(body.len());
    tokio::time::timeout(Duration::from_secs(60), r.read_to_end(&mut back)).await.unwrap().unwrap();
    writer.await.unwrap();
    assert_eq!(back.len(), body.len());
    assert_eq!(checksum(&back), checksum(&body));
}

#[tokio::test]
async fn peers_with_unlisted_keys_are_refused_on_both_sides_and_counted() {
    let origin = echo_origin().await;
    let t = tunnel(&[origin.to_string()]).await;
    // A gateway the connector does not list: the handshake completes, then the connection is closed.
    let stranger = bind(9).await;
    let conn = stranger.connect(peer_addr(t.connector.id(), &t.connector.bound_sockets(), None), ALPN).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await.expect("closed by the connector");
    assert!(reason.to_string().contains("gateway not allowed"), "{reason}");
    assert_eq!(t.connector_metrics.denied_peers.with_label_values(&["connector"]).get(), 1);

    // A peer that dials a gateway is refused the same way.
    let gateway_metrics = Arc::new(TunnelMetrics::new());
    tokio::spawn(refuse_incoming(t.gateway.clone(), gateway_metrics.clone()));
    let conn = stranger.connect(peer_addr(t.gateway.id(), &t.gateway.bound_sockets(), None), ALPN).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), conn.closed()).await.expect("closed by the gateway");
    assert_eq!(gateway_metrics.denied_peers.with_label_values(&["gateway"]).get(), 1);
    // The allowed gateway keeps working.
    assert_eq!(t.connect_status(&origin.to_string()).await, 200);
}
