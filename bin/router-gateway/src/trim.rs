//! Hands the memory a configuration change freed back to the system.
//!
//! A rebuild allocates the new snapshot (and, from a configuration file, the
//! objects it parses) before the previous one is freed. glibc's
//! malloc keeps what is freed for reuse instead of returning it, so the
//! gateway's RSS settles near the peak of a rebuild rather than near what it
//! holds: 163 MiB at 10,000 routes in cluster mode (when a rebuild still
//! copied the cached objects), of which `malloc_trim` gave back 47 MiB
//! (docs/performance.md, "Control plane"). So after each
//! publish, once requests on the previous snapshot have had a moment to
//! finish, the free memory at the top of each heap and whole free pages
//! inside it are returned. This costs a walk of the free lists, milliseconds,
//! off the runtime's workers, once per (debounced) configuration change.

use std::time::Duration;

use router_proxy::config::SnapshotCell;

/// How long requests holding the previous snapshot get before the trim.
const SETTLE: Duration = Duration::from_secs(1);

/// Trims after every publish of `cell`, until the gateway stops.
pub fn after_each_publish(cell: &SnapshotCell) {
    let mut published = cell.subscribe();
    tokio::spawn(async move {
        while published.changed().await.is_ok() {
            tokio::time::sleep(SETTLE).await;
            // Publishes during the wait are covered by this trim.
            published.mark_unchanged();
            let _ = tokio::task::spawn_blocking(trim).await;
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes no pointers and only works on glibc's own heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators return memory by themselves, or not at all.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
