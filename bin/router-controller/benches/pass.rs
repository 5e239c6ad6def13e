//! The controller's pure pass over synthetic fleets of 1,000 and 10,000
//! routes (250 and 2,500 services, four routes each):
//! - cold: every status still to write, nothing kept from a previous pass;
//! - converged: every status current, after a change no routing object
//!   depends on (a status write coming back, a Pod): the pass keeps the
//!   snapshot report and match keys of the one before (`memo`);
//! - route-changed: every status current, one route's spec changed since the
//!   previous pass: the report is rebuilt, one route's match keys recomputed;
//! - snapshot: the routing snapshot the gateways build from the same objects.
//!
//! docs/performance.md, "Control plane", has the numbers.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use k8s_openapi::jiff::Timestamp;
use router_controller::{plan::plan, world::World};
use router_kube::status_queue::with_status;
use serde_json::Value;
use std::collections::HashMap;

fn world(services: usize) -> World {
    let f = router_tests::fleet::fleet("default", services, 4);
    World::routing(f.vpcs, f.attachments, f.services, f.routes)
}

/// `objects` with the statuses `writes` gave them.
fn written<K: serde::Serialize + serde::de::DeserializeOwned + kube::Resource>(objects: &mut [K], writes: &HashMap<String, Value>) {
    for o in objects {
        if let Some(status) = writes.get(o.meta().name.as_deref().unwrap_or_default()) {
            *o = with_status(serde_json::to_value(&*o).unwrap(), status).unwrap();
        }
    }
}

fn converged(services: usize, now: Timestamp) -> World {
    let writes = plan(&world(services), now).into_iter().map(|w| (w.key.name, w.status)).collect();
    let mut w = world(services);
    written(&mut w.services, &writes);
    written(&mut w.routes, &writes);
    assert!(plan(&w, now).is_empty(), "a converged world offers nothing");
    w
}

/// A fresh world of `current`'s objects (as each pass builds one: its lookup
/// index is part of the cost), sharing its memo.
fn copy(current: &World) -> World {
    let mut w = World::routing(current.vpcs.clone(), current.attachments.clone(), current.services.clone(), current.routes.clone());
    w.memo = current.memo.clone();
    w
}

fn pass(c: &mut Criterion) {
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let mut group = c.benchmark_group("pass");
    group.sample_size(10);
    for services in [250, 2_500] {
        let routes = services * 4;
        group.bench_with_input(BenchmarkId::new("cold", routes), &services, |b, &s| {
            b.iter_batched(|| world(s), |w| plan(&w, now).len(), criterion::BatchSize::LargeInput)
        });
        let current = converged(services, now);
        group.bench_with_input(BenchmarkId::new("converged", routes), &services, |b, _| {
            b.iter_batched(|| copy(&current), |w| plan(&w, now).len(), criterion::BatchSize::LargeInput)
        });
        let generation = std::cell::Cell::new(1i64);
        group.bench_with_input(BenchmarkId::new("route-changed", routes), &services, |b, _| {
            b.iter_batched(
                || {
                    let mut w = copy(&current);
                    generation.set(generation.get() + 1);
                    // A weight change: a new generation, and that route's status to write.
                    w.routes[0].spec.destinations[0].weight = 1 + i32::from(generation.get() % 2 == 0);
                    w.routes[0].metadata.generation = Some(generation.get());
                    w
                },
                |w| plan(&w, now).len(),
                criterion::BatchSize::LargeInput,
            )
        });
        group.bench_with_input(BenchmarkId::new("snapshot", routes), &services, |b, _| b.iter(|| current.snapshot()));
    }
    group.finish();
}

criterion_group!(benches, pass);
criterion_main!(benches);

/// The allocator the binaries use.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
