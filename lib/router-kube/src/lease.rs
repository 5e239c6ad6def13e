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
    let mine = match step(&spec, &s.identity, observed, Instant::now(), s.lease_duration) {
        Step::Wait => return Ok(false),
        Step::Renew => true,
        Step::TakeOver => false,
    };
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

/// What a candidate does with the record it just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// It holds the lease: renew it.
    Renew,
    /// Nobody holds it, or the holder has not renewed for a whole lease duration: take it.
    TakeOver,
    /// Someone else holds it and renews it.
    Wait,
}

/// Decides from the record and what this candidate saw of it before: a record
/// is stale only when it has not changed for a lease duration by this
/// replica's own clock (`now`), never by comparing timestamps across nodes.
fn step(spec: &LeaseSpec, identity: &str, observed: &mut Option<Observed>, now: Instant, default_duration: Duration) -> Step {
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    if observed.as_ref().is_none_or(|o| o.holder != holder || o.renew != spec.renew_time) {
        *observed = Some(Observed { holder: holder.clone(), renew: spec.renew_time.clone(), at: now });
    }
    if holder.as_deref() == Some(identity) {
        return Step::Renew;
    }
    let duration = spec.lease_duration_seconds.map_or(default_duration, |d| Duration::from_secs(u64::try_from(d).unwrap_or(0)));
    let stale = observed.as_ref().is_some_and(|o| now.duration_since(o.at) > duration);
    if holder.is_none() || stale { Step::TakeOver } else { Step::Wait }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed_at: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed_at).unwrap())),
            ..Default::default()
        }
    }

    #[test]
    fn the_holder_renews_others_wait_until_the_record_goes_stale() {
        let t0 = Instant::now();
        let d = Duration::from_secs(15);
        let mut seen = None;
        assert_eq!(step(&spec(Some("me"), 100), "me", &mut seen, t0, d), Step::Renew);
        let mut seen = None;
        assert_eq!(step(&spec(Some("other"), 100), "me", &mut seen, t0, d), Step::Wait);
        assert_eq!(step(&spec(Some("other"), 100), "me", &mut seen, t0 + Duration::from_secs(10), d), Step::Wait);
        // The holder renews: the record changed, the clock starts again.
        assert_eq!(step(&spec(Some("other"), 110), "me", &mut seen, t0 + Duration::from_secs(14), d), Step::Wait);
        assert_eq!(step(&spec(Some("other"), 110), "me", &mut seen, t0 + Duration::from_secs(28), d), Step::Wait);
        // Unchanged for longer than the lease duration by our clock: take over.
        assert_eq!(step(&spec(Some("other"), 110), "me", &mut seen, t0 + Duration::from_secs(30), d), Step::TakeOver);
    }

    #[test]
    fn a_released_lease_is_taken_at_once_and_remote_clocks_do_not_matter() {
        let t0 = Instant::now();
        let d = Duration::from_secs(15);
        let mut seen = None;
        assert_eq!(step(&spec(None, 0), "me", &mut seen, t0, d), Step::TakeOver, "released: no holder");
        assert_eq!(step(&spec(Some(""), 0), "me", &mut seen, t0, d), Step::TakeOver, "an empty holder is none");
        // A renewTime far in the past (a skewed clock) is not stale by itself: we have only just seen it.
        let mut seen = None;
        assert_eq!(step(&spec(Some("other"), 1), "me", &mut seen, t0, d), Step::Wait);
    }
}
