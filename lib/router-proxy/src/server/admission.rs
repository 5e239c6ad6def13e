//! The connection limit (`--max-connections`): one count of open client
//! connections across every listener (internal, TLS, VPCIngress), so that a
//! flood of idle connections runs into a number the operator chose instead of
//! the process's file descriptors, where accept() would fail for everyone
//! (upstream connects, health checks and the admin port included, which is
//! why the admin port is not counted).
//!
//! A connection over the limit is refused in a way the client can read: on a
//! cleartext listener, an HTTP/1.1 `503` with `x-datum-router-error:
//! connection-limit` and `retry-after: 1`, then the connection is closed (the
//! client's request is read and dropped for up to a second first, so the
//! close does not reset the answer away). On a TLS listener there is no
//! handshake to answer in and the connection is closed at once. Refusals are
//! themselves bounded (`MAX_REFUSING` at a time); past that, new connections
//! are closed unanswered. Every refusal counts in
//! `datum_router_connections_refused_total{reason="max-connections"}`.

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore},
};

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nx-datum-router-error: connection-limit\r\n\
retry-after: 1\r\nconnection: close\r\ncontent-length: 34\r\n\r\nthe gateway's connections are full";

/// Refusals being written at once; beyond this a connection over the limit is closed unanswered.
const MAX_REFUSING: usize = 256;
/// How long a refused client's request is read and dropped before the close.
const LINGER: Duration = Duration::from_secs(1);

/// Slots for open client connections, shared by every listener.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    slots: Option<Arc<Semaphore>>,
    refusing: Arc<Semaphore>,
}

impl ConnectionLimit {
    /// At most `max` open client connections; 0 is no limit.
    pub fn new(max: usize) -> Self {
        Self { slots: (max > 0).then(|| Arc::new(Semaphore::new(max))), refusing: Arc::new(Semaphore::new(MAX_REFUSING)) }
    }

    /// A slot for one more connection, held until the connection ends; `None` when the limit is reached.
    pub fn admit(&self) -> Option<Admitted> {
        match &self.slots {
            None => Some(Admitted { _slot: None }),
            Some(slots) => slots.clone().try_acquire_owned().ok().map(|p| Admitted { _slot: Some(p) }),
        }
    }

    /// Answers a cleartext connection over the limit, in the background, if refusals have room.
    pub fn refuse_cleartext(&self, mut stream: TcpStream) {
        let Ok(permit) = self.refusing.clone().try_acquire_owned() else { return };
        tokio::spawn(async move {
            let _permit = permit;
            let answer = async {
                stream.write_all(REFUSAL).await?;
                stream.shutdown().await?;
                let mut sink = [0u8; 4096];
                let mut read = 0;
                while read < 64 * 1024 {
                    match stream.read(&mut sink).await? {
                        0 => break,
                        n => read += n,
                    }
                }
                std::io::Result::Ok(())
            };
            let _ = tokio::time::timeout(LINGER, answer).await;
        });
    }
}

impl Default for ConnectionLimit {
    fn default() -> Self {
        Self::new(0)
    }
}

/// A connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Admitted {
    _slot: Option<OwnedSemaphorePermit>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_and_freed() {
        let limit = ConnectionLimit::new(2);
        let a = limit.admit().expect("first");
        let _b = limit.admit().expect("second");
        assert!(limit.admit().is_none(), "the third is over the limit");
        drop(a);
        assert!(limit.admit().is_some(), "a closed connection frees its slot");
        let unlimited = ConnectionLimit::new(0);
        let held: Vec<_> = (0..10_000).map(|_| unlimited.admit().expect("no limit")).collect();
        assert_eq!(held.len(), 10_000);
    }

    #[test]
    fn the_refusal_is_a_complete_response() {
        let text = std::str::from_utf8(REFUSAL).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length: ")).and_then(|v| v.parse().ok()).expect("length");
        assert_eq!(length, body.len());
    }
}
