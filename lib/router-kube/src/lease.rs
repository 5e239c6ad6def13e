//! Leader election on a `coordination.k8s.io/v1` Lease, the way client-go
//! does it: the holder renews every `renew_every`; a candidate takes the
//! lease over when it has seen the same record unchanged for longer than
//! `lease_duration` by its own clock (so clock skew between nodes does not
//! matter). Every write carries the resourceVersion it read, so two
//! candidates cannot both win. A leader that cannot renew within the
//! duration steps down on its own; on shutdown it releases the lease so a
//! standby takes over at once.

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api,
    api::{PostParams, ResourceExt},
};
use tokio::sync::watch;

/// Settings of one election.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
}

/// What a candidate remembers of the record it last read.
struct Observed {
    holder: Option<String>,
    renew: Option<MicroTime>,
    at: Instant,
}

/// Runs the election until `stop` turns true; `leader` follows whether this replica leads.
pub async fn run(api: Api<Lease>, settings: LeaseSettings, leader: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
    let mut observed: Option<Observed> = None;
    let mut last_renewed: Option<Instant> = None;
    loop {
        match try_acquire_or_renew(&api, &settings, &mut observed).await {
            Ok(true) => {
                last_renewed = Some(Instant::now());
                if !leader.send_replace(true) {
                    tracing::info!(lease = %settings.name, identity = %settings.identity, "became leader");
                }
            }
            Ok(false) => {
                if leader.send_replace(false) {
                    tracing::warn!(lease = %settings.name, "lost leadership");
                }
            }
            Err(e) => {
                tracing::warn!(lease = %settings.name, error = %e, "lease update failed");
                // Without a renewal for a whole lease duration, another replica may already lead.
                if last_renewed.is_none_or(|t| t.elapsed() >= settings.lease_duration) && leader.send_replace(false) {
                    tracing::warn!(lease = %settings.name, "stepping down: could not renew the lease in time");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(settings.renew_every) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if *leader.borrow() {
        leader.send_replace(false);
        match release(&api, &settings).await {
            Ok(()) => tracing::info!(lease = %settings.name, "released the lease"),
            Err(e) => tracing::warn!(lease = %settings.name, error = %e, "could not release the lease; it expires on its own"),
        }
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// One round: Ok(true) when this replica holds the lease afterwards.
async fn try_acquire_or_renew(api: &Api<Lease>, s: &LeaseSettings, observed: &mut Option<Observed>) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(&s.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta { name: Some(s.name.clone()), namespace: Some(s.namespace.clone()), ..Default::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some(s.identity.clone()),
                lease_duration_seconds: Some(seconds(s.lease_duration)),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let changed = observed.as_ref().is_none_or(|o| o.holder != holder || o.renew != spec.renew_time);
    if changed {
        *observed = Some(Observed { holder: holder.clone(), renew: spec.renew_time.clone(), at: Instant::now() });
    }
    let mine = holder.as_deref() == Some(s.identity.as_str());
    let duration = spec.lease_duration_seconds.map_or(s.lease_duration, |d| Duration::from_secs(u64::try_from(d).unwrap_or(0)));
    let expired = holder.is_none() || observed.as_ref().is_some_and(|o| o.at.elapsed() > duration);
    if !mine && !expired {
        return Ok(false);
    }
    let mut new = spec;
    if !mine {
        new.holder_identity = Some(s.identity.clone());
        new.acquire_time = Some(now());
        new.lease_transitions = Some(new.lease_transitions.unwrap_or(0) + 1);
    }
    new.renew_time = Some(now());
    new.lease_duration_seconds = Some(seconds(s.lease_duration));
    lease.spec = Some(new);
    // replace() sends the resourceVersion read above: a concurrent writer makes this a 409.
    match api.replace(&lease.name_any(), &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the lease up (holder cleared) if this replica still holds it.
async fn release(api: &Api<Lease>, s: &LeaseSettings) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&s.name).await? else { return Ok(()) };
    let Some(spec) = lease.spec.as_mut() else { return Ok(()) };
    if spec.holder_identity.as_deref() != Some(s.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now());
    api.replace(&s.name, &PostParams::default(), &lease).await.map(|_| ())
}

/// The pod name (`POD_NAME`), else host name and process id: unique even for replicas on one machine.
pub fn default_identity() -> String {
    std::env::var("POD_NAME").ok().filter(|n| !n.is_empty()).unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
        format!("{host}-{}", std::process::id())
    })
}
