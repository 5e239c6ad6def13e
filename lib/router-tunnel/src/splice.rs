//! Bytes both ways between a TCP connection and a tunnel stream, until both
//! directions have ended. Half-close propagates: the end of one side's reads
//! shuts the other side's writes (a TCP FIN becomes a QUIC stream FIN and
//! back), so request/response protocols that signal the end of a body by
//! closing their half keep working through the tunnel.

use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Large enough for a QUIC stream's flow-control window to stay busy.
const CHUNK: usize = 64 * 1024;

/// Copies `from` into `to`, counting into `bytes`, then shuts `to`'s writes.
async fn one_way(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin, bytes: &IntCounter) -> std::io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n]).await?;
        total += n as u64;
        bytes.inc_by(n as u64);
    }
    to.shutdown().await?;
    Ok(total)
}

/// Splices `a` and `b` (each a read half and a write half); returns the bytes
/// copied a→b and b→a. An error in either direction ends both.
pub async fn splice(
    (a_read, a_write): (impl AsyncRead + Unpin, impl AsyncWrite + Unpin),
    (b_read, b_write): (impl AsyncRead + Unpin, impl AsyncWrite + Unpin),
    a_to_b: &IntCounter,
    b_to_a: &IntCounter,
) -> std::io::Result<(u64, u64)> {
    tokio::try_join!(one_way(a_read, b_write, a_to_b), one_way(b_read, a_write, b_to_a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_cross_both_ways_and_a_half_close_reaches_the_other_side() {
        let (a, mut a_peer) = tokio::io::duplex(1024);
        let (b, mut b_peer) = tokio::io::duplex(1024);
        let (up, down) = (IntCounter::new("u", "u").unwrap(), IntCounter::new("d", "d").unwrap());
        let task = tokio::spawn({
            let (up, down) = (up.clone(), down.clone());
            async move { splice(tokio::io::split(a), tokio::io::split(b), &up, &down).await }
        });
        a_peer.write_all(b"request").await.unwrap();
        a_peer.shutdown().await.unwrap();
        let mut got = Vec::new();
        b_peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"request", "a's half-close ends b's reads");
        b_peer.write_all(b"response").await.unwrap();
        b_peer.shutdown().await.unwrap();
        let mut back = Vec::new();
        a_peer.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"response");
        assert_eq!(task.await.unwrap().unwrap(), (7, 8));
        assert_eq!((up.get(), down.get()), (7, 8));
    }
}
