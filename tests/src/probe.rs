//! A well-behaved client running beside an attack: one request after another
//! (10 ms apart) until stopped, with every latency kept, so a test can assert
//! that other clients kept being served and report their p99.

use std::time::Duration;

use tokio::{sync::watch, task::JoinHandle, time::Instant};

use crate::client::Client;

pub struct Probe {
    stop: watch::Sender<bool>,
    task: JoinHandle<ProbeReport>,
}

#[derive(Debug)]
pub struct ProbeReport {
    pub ok: usize,
    /// What went wrong with the requests that did not get a 200.
    pub failed: Vec<String>,
    pub p99: Duration,
    pub max: Duration,
}

impl Probe {
    /// Starts GETting `url`.
    pub fn start(url: String) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let client = Client::http1();
            let (mut latencies, mut failed) = (Vec::new(), Vec::new());
            while !*stopped.borrow() {
                let start = Instant::now();
                match client.get(&url, &[]).await {
                    Ok(r) if r.status == 200 => latencies.push(start.elapsed()),
                    Ok(r) => failed.push(format!("status {}: {}", r.status, r.body)),
                    Err(e) => failed.push(e),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            latencies.sort();
            let p99 = latencies.get(latencies.len().saturating_sub(1) * 99 / 100).copied().unwrap_or_default();
            ProbeReport { ok: latencies.len(), failed, p99, max: latencies.last().copied().unwrap_or_default() }
        });
        Self { stop, task }
    }

    pub async fn finish(self) -> ProbeReport {
        let _ = self.stop.send(true);
        self.task.await.expect("probe task")
    }
}
