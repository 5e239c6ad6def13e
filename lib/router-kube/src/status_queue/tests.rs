use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::*;

/// A sink that records what it was given; `answer` decides each call's result
/// (by call number), and each call first takes a permit of `gate`.
struct Recording {
    calls: Arc<Mutex<Vec<(String, Value)>>>,
    gate: Arc<Semaphore>,
    answer: fn(usize) -> Result<(), WriteError>,
    active: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Sink for Recording {
    async fn apply(&self, write: &StatusWrite) -> Result<(), WriteError> {
        self.gate.acquire().await.expect("gate open").forget();
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.active.fetch_sub(1, Ordering::SeqCst);
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push((write.key.name.clone(), write.status.clone()));
            calls.len() - 1
        };
        (self.answer)(n)
    }
}

struct Harness {
    queue: Arc<StatusQueue>,
    calls: Arc<Mutex<Vec<(String, Value)>>>,
    gate: Arc<Semaphore>,
    metrics: Arc<KubeMetrics>,
    peak: Arc<AtomicUsize>,
}

fn harness(answer: fn(usize) -> Result<(), WriteError>, permits: usize, args: QueueArgs) -> Harness {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(Semaphore::new(permits));
    let metrics = Arc::new(KubeMetrics::new("test"));
    let peak = Arc::new(AtomicUsize::new(0));
    let sink = Recording { calls: calls.clone(), gate: gate.clone(), answer, active: Arc::default(), peak: peak.clone() };
    Harness { queue: StatusQueue::start(sink, &args, metrics.clone()), calls, gate, metrics, peak }
}

fn pod(name: &str, uid: &str, status: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "ns", "uid": uid },
        "status": status,
    }))
    .unwrap()
}

fn write(p: &Pod, status: Value) -> StatusWrite {
    StatusWrite::new("Pod", p, status, Vec::new())
}

fn phase(v: u32) -> Value {
    json!({ "message": format!("v{v}") })
}

impl Harness {
    fn calls(&self) -> Vec<(String, Value)> {
        self.calls.lock().unwrap().clone()
    }

    fn result(&self, result: &str) -> u64 {
        self.metrics.status_writes.with_label_values(&["Pod", result]).get()
    }

    async fn settle(&self) {
        for _ in 0..1000 {
            if self.queue.pending() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("queue did not drain: {} pending", self.queue.pending());
    }
}

fn ok(_: usize) -> Result<(), WriteError> {
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_100_changes_to_one_object_costs_the_write_in_flight_and_the_last() {
    let h = harness(ok, 0, QueueArgs::default());
    let p = pod("a", "u1", json!({}));
    h.queue.offer(write(&p, phase(0)));
    tokio::time::sleep(Duration::from_millis(10)).await; // v0 is taken and waits at the gate
    for v in 1..100 {
        h.queue.offer(write(&p, phase(v)));
    }
    h.gate.add_permits(100);
    h.settle().await;
    let statuses: Vec<Value> = h.calls().into_iter().map(|(_, s)| s).collect();
    assert_eq!(statuses, vec![phase(0), phase(99)]);
    assert_eq!(h.result("coalesced"), 98);
    assert_eq!(h.result("applied"), 2);
}

#[tokio::test(start_paused = true)]
async fn writes_of_many_objects_all_land_with_bounded_concurrency() {
    let h = harness(ok, 10_000, QueueArgs { status_concurrency: 4, ..QueueArgs::default() });
    for i in 0..500 {
        h.queue.offer(write(&pod(&format!("p{i}"), &format!("u{i}"), json!({})), phase(i)));
    }
    h.settle().await;
    let mut names: Vec<String> = h.calls().into_iter().map(|(n, _)| n).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 500, "every object written once");
    assert_eq!(h.result("applied"), 500);
    assert_eq!(h.peak.load(Ordering::SeqCst), 4, "four workers, all busy, never more");
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_spreads_writes_beyond_the_burst() {
    let h = harness(ok, 10_000, QueueArgs { status_qps: 10.0, status_burst: 5, status_concurrency: 8 });
    let start = tokio::time::Instant::now();
    for i in 0..25 {
        h.queue.offer(write(&pod(&format!("p{i}"), "u", json!({})), phase(i)));
    }
    h.settle().await;
    // 5 at once, then 20 at 10 per second.
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert!(took <= Duration::from_millis(2600), "{took:?}");
}

fn throttled_twice(n: usize) -> Result<(), WriteError> {
    if n < 2 { Err(WriteError::Retry { message: "429".into(), throttled: true, after: Some(Duration::from_secs(1)) }) } else { Ok(()) }
}

#[tokio::test(start_paused = true)]
async fn a_throttled_write_is_retried_after_the_servers_delay() {
    let h = harness(throttled_twice, 10_000, QueueArgs::default());
    let start = tokio::time::Instant::now();
    h.queue.offer(write(&pod("a", "u", json!({})), phase(1)));
    h.settle().await;
    assert_eq!(h.calls().len(), 3);
    assert!(start.elapsed() >= Duration::from_secs(2));
    assert_eq!(h.result("error"), 2);
    assert_eq!(h.result("applied"), 1);
}

fn always_throttled(_: usize) -> Result<(), WriteError> {
    Err(WriteError::Retry { message: "429".into(), throttled: true, after: None })
}

#[tokio::test(start_paused = true)]
async fn a_429_storm_never_makes_the_queue_spin() {
    let h = harness(always_throttled, usize::MAX >> 4, QueueArgs::default());
    for i in 0..100 {
        h.queue.offer(write(&pod(&format!("p{i}"), "u", json!({})), phase(i)));
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    let calls = h.calls().len();
    eprintln!("{calls} attempts for 100 objects in a minute of 429s");
    // Each object backs off 0.2 s, 0.4 s, … up to 30 s, and every 429 pauses all
    // writes: a minute of refusals costs a handful of attempts per object, not thousands.
    assert!(calls >= 100, "every object was tried: {calls}");
    assert!(calls <= 100 * 12, "{calls} attempts in a minute");
    assert_eq!(h.queue.pending(), 100, "nothing is given up");
}

fn refused(_: usize) -> Result<(), WriteError> {
    Err(WriteError::Refused { message: "403".into() })
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_stops_leading_sends_nothing_more_and_forgets_what_it_meant() {
    let h = harness(refused, 0, QueueArgs { status_concurrency: 1, ..QueueArgs::default() });
    let objects: Vec<Pod> = (0..3).map(|i| pod(&format!("p{i}"), "u", json!({ "message": "old" }))).collect();
    for p in &objects {
        h.queue.offer(write(p, json!({ "message": "new" })));
    }
    tokio::time::sleep(Duration::from_millis(10)).await; // p0 is in flight, waiting at the gate
    h.queue.stand_down();
    h.gate.add_permits(100);
    tokio::time::sleep(Duration::from_secs(600)).await;
    let written: Vec<String> = h.calls().into_iter().map(|(n, _)| n).collect();
    assert_eq!(written, ["p0"], "the write in flight lands (here: fails), and is not retried; the others are dropped");
    assert_eq!(h.queue.pending(), 0);
    let mut shown = objects.clone();
    h.queue.overlay("Pod", &mut shown);
    assert_eq!(shown, objects, "nothing intended is laid over the cache any more");
}

fn gone(_: usize) -> Result<(), WriteError> {
    Err(WriteError::Gone)
}

#[tokio::test(start_paused = true)]
async fn a_write_to_a_deleted_object_is_dropped() {
    let h = harness(gone, 10_000, QueueArgs::default());
    h.queue.offer(write(&pod("a", "u", json!({})), phase(1)));
    h.settle().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(h.calls().len(), 1);
    assert_eq!(h.result("gone"), 1);
}

#[tokio::test(start_paused = true)]
async fn the_intended_status_is_laid_over_a_lagging_cache_until_the_cache_shows_it() {
    let h = harness(ok, 10_000, QueueArgs::default());
    let cached = pod("a", "u1", json!({ "message": "old", "phase": "Running" }));
    h.queue.offer(write(&cached, json!({ "message": "new" })));
    h.settle().await;

    // The cache still shows the old status: the pass sees the one it wrote, the rest kept.
    let mut objects = vec![cached.clone()];
    h.queue.overlay("Pod", &mut objects);
    let status = objects[0].status.as_ref().unwrap();
    assert_eq!(status.message.as_deref(), Some("new"));
    assert_eq!(status.phase.as_deref(), Some("Running"));

    // Caught up: the entry is forgotten, the cached object passes unchanged.
    let current = pod("a", "u1", json!({ "message": "new", "phase": "Running" }));
    let mut objects = vec![current.clone()];
    h.queue.overlay("Pod", &mut objects);
    assert_eq!(objects[0], current);
    let mut objects = vec![cached.clone()];
    h.queue.overlay("Pod", &mut objects);
    assert_eq!(objects[0], cached, "forgotten once the cache showed it");
}

#[tokio::test(start_paused = true)]
async fn an_intended_status_is_not_laid_over_a_new_object_of_the_same_name_nor_kept_past_its_trust() {
    let h = harness(ok, 10_000, QueueArgs::default());
    let old = pod("a", "u1", json!({ "message": "old" }));
    h.queue.offer(write(&old, json!({ "message": "new" })));
    h.settle().await;

    let recreated = pod("a", "u2", json!({ "message": "old" }));
    let mut objects = vec![recreated.clone()];
    h.queue.overlay("Pod", &mut objects);
    assert_eq!(objects[0], recreated);

    h.queue.offer(write(&old, json!({ "message": "newer" })));
    h.settle().await;
    tokio::time::sleep(TRUST + Duration::from_secs(1)).await;
    let mut objects = vec![old.clone()];
    h.queue.overlay("Pod", &mut objects);
    assert_eq!(objects[0], old, "past TRUST the cache is believed again (someone else may have changed it)");
}

#[test]
fn conditions_are_compared_and_merged_by_type() {
    let stored = json!({
        "conditions": [
            { "type": "Ready", "status": "True", "reason": "EndpointsFound" },
            { "type": "Accepted", "status": "True", "reason": "Accepted", "lastTransitionTime": "t0" },
        ],
        "readyEndpoints": 3,
    });
    let ours = json!({ "conditions": [{ "type": "Accepted", "status": "True", "reason": "Accepted", "lastTransitionTime": "t0" }] });
    assert!(contains(&stored, &ours), "another writer's condition and field do not matter");
    let flipped = json!({ "conditions": [{ "type": "Accepted", "status": "False", "reason": "Invalid", "lastTransitionTime": "t1" }] });
    assert!(!contains(&stored, &flipped));

    let mut merged = stored.clone();
    merge(&mut merged, &flipped);
    assert_eq!(merged["conditions"][0]["type"], "Ready");
    assert_eq!(merged["conditions"][1]["status"], "False");
    assert_eq!(merged["readyEndpoints"], 3);
    assert!(contains(&merged, &flipped));

    // Absent, null and empty are the same to the API server.
    assert!(contains(&json!({}), &json!({ "endpoints": [], "note": null })));
    assert!(!contains(&json!({}), &json!({ "endpoints": [1] })));
    assert!(contains(&json!({ "list": [1, 2] }), &json!({ "list": [1, 2] })));
    assert!(!contains(&json!({ "list": [1, 2] }), &json!({ "list": [1] })), "plain lists must be equal");
}
