//! Configuration reloads: a changed file takes effect without a restart, a
//! broken one is refused while the last good configuration keeps serving,
//! and no request fails because of a reload, even under continuous load.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use router_tests::{
    backend::start_backends,
    client::Client,
    gateway::{GatewayProcess, route, service_on},
};

const BIN: &str = env!("CARGO_BIN_EXE_router-gateway");

#[tokio::test]
async fn changes_apply_and_invalid_files_keep_the_last_good_config() {
    let b = start_backends(&["blue", "green"]).await;
    let services = [service_on("blue", "blue", &[&b[0]], "HTTP"), service_on("green", "green", &[&b[1]], "HTTP")].concat();
    let to = |svc: &str| format!("{services}{}", route("r", &format!("  destinations: [{{vpcServiceRef: {{name: {svc}}}}}]")));
    let gw = GatewayProcess::start(BIN, &to("blue"), &[]).await;
    let c = Client::http1();
    assert_eq!(c.get(&gw.url("/"), &[]).await.unwrap().backend(), Some("blue"));

    gw.write_config(&to("green"));
    router_tests::eventually("traffic to move to green", async || c.get(&gw.url("/"), &[]).await.unwrap().backend() == Some("green")).await;

    // A port out of range fails validation: the gateway keeps routing to green and says why.
    gw.write_config(&to("blue").replace(&format!("port: {}", b[0].addr.port()), "port: 70000"));
    router_tests::eventually("the rejection to be logged", async || gw.log().contains("configuration rejected")).await;
    assert!(gw.log().contains("spec.port"), "the log names the field:\n{}", gw.log());
    assert_eq!(c.get(&gw.url("/"), &[]).await.unwrap().backend(), Some("green"));
    let metrics = c.get(&gw.admin_url("/metrics"), &[]).await.unwrap().body;
    assert!(metrics.contains(r#"datum_router_config_reloads_total{result="failure"} 1"#), "{metrics}");
    assert_eq!(c.get(&gw.admin_url("/readyz"), &[]).await.unwrap().status, 200, "still ready");
}

#[tokio::test]
async fn no_request_fails_during_many_reloads_under_load() {
    let b = start_backends(&["one", "two"]).await;
    let services = [service_on("one", "one", &[&b[0]], "HTTP"), service_on("two", "two", &[&b[1]], "HTTP")].concat();
    let to = |svc: &str| format!("{services}{}", route("r", &format!("  destinations: [{{vpcServiceRef: {{name: {svc}}}}}]")));
    // Two workers here: reloads racing requests across threads is the case that matters.
    let gw = Arc::new(GatewayProcess::start(BIN, &to("one"), &["--access-log", "off", "--worker-threads", "2"]).await);

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (gw, stop, ok, failed) = (gw.clone(), stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let c = Client::http1();
            // Bounded: stops when told, or after 20,000 requests per worker at most.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match c.get(&gw.url("/"), &[]).await {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let reloads = 40;
    for i in 0..reloads {
        gw.write_config(&to(if i % 2 == 0 { "two" } else { "one" }));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let successes = gw.metric_sum(r#"datum_router_config_reloads_total{result="success"}"#).await;
    assert!(successes >= reloads / 2, "reloads happened: {successes}");
    assert!(ok.load(Ordering::Relaxed) > 1000, "load was applied: {}", ok.load(Ordering::Relaxed));
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed during reloads");
    assert!(b[0].hits() > 0 && b[1].hits() > 0, "traffic moved back and forth");
}
