//! Whether a component's storage works, told without flapping.
//!
//! Both components that write to disk (the session recorder and the MQTT
//! outbox journal) raise their own technical condition while their writes
//! fail (`system.storage_failure` and `system.journal_failure`). A disk
//! that is full takes a write now and refuses the next, so "the last write
//! worked" would start and end the condition about once a second. Instead:
//!
//! - any failed write, sync or reopen makes the component **failing** (the
//!   condition starts once, however many failures follow);
//! - it stops failing only after a **real sync** (data on disk, not merely
//!   in a buffer) succeeded and nothing failed for [`RECOVERY_HOLD`] after it.
//!   A failure during the hold starts the hold again at the next good sync.
//!
//! Pure: time is passed in; the writers call it from their own threads.

use std::time::{Duration, Instant};

/// How long storage must keep working after a good sync before its
/// condition ends.
pub const RECOVERY_HOLD: Duration = Duration::from_secs(30);

/// A change of the condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The component started failing: raise its condition.
    Failed,
    /// It worked for the whole hold: end its condition.
    Recovered,
}

/// One component's storage health.
#[derive(Clone, Debug)]
pub struct Health {
    hold: Duration,
    failing: bool,
    /// Since when it has worked (a good sync, nothing failed since).
    good_since: Option<Instant>,
    /// How often the condition started and ended.
    starts: u64,
    ends: u64,
}

impl Default for Health {
    fn default() -> Health {
        Health::new(RECOVERY_HOLD)
    }
}

impl Health {
    /// Healthy, with `hold` as the recovery hold.
    pub fn new(hold: Duration) -> Health {
        Health {
            hold,
            failing: false,
            good_since: None,
            starts: 0,
            ends: 0,
        }
    }

    /// A write, sync or reopen failed.
    pub fn failed(&mut self) -> Option<Change> {
        self.good_since = None;
        if self.failing {
            return None;
        }
        self.failing = true;
        self.starts += 1;
        Some(Change::Failed)
    }

    /// Data reached the disk at `now` (a sync, or a synced rewrite).
    pub fn synced(&mut self, now: Instant) -> Option<Change> {
        if self.failing {
            self.good_since.get_or_insert(now);
        }
        self.poll(now)
    }

    /// Time passed; ends the condition when the hold is over.
    pub fn poll(&mut self, now: Instant) -> Option<Change> {
        let since = self.good_since?;
        if !self.failing || now.saturating_duration_since(since) < self.hold {
            return None;
        }
        self.failing = false;
        self.good_since = None;
        self.ends += 1;
        Some(Change::Recovered)
    }

    /// When [`Health::poll`] may end the condition, if a hold is running.
    pub fn poll_at(&self) -> Option<Instant> {
        self.good_since.map(|t| t + self.hold)
    }

    /// Whether the condition is active.
    pub fn is_failing(&self) -> bool {
        self.failing
    }

    /// Whether a hold is running (storage works again, the condition is
    /// still active).
    pub fn is_recovering(&self) -> bool {
        self.good_since.is_some()
    }

    /// How often the condition started and ended so far.
    pub fn transitions(&self) -> (u64, u64) {
        (self.starts, self.ends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_that_fails_every_other_write_does_not_flap() {
        let t0 = Instant::now();
        let mut h = Health::new(Duration::from_secs(30));
        let mut changes = Vec::new();
        // 120 s of a full disk: every other write and sync works.
        for ms in (0..120_000).step_by(500) {
            let now = t0 + Duration::from_millis(ms);
            let change = if ms % 1000 == 500 {
                h.failed()
            } else {
                h.synced(now)
            };
            changes.extend(change);
        }
        assert_eq!(changes, vec![Change::Failed]);
        assert!(h.is_failing());
        // Space is back: it ends once, 30 s after the first good sync.
        let back = t0 + Duration::from_secs(120);
        assert_eq!(h.synced(back), None);
        assert_eq!(h.poll(back + Duration::from_secs(29)), None);
        assert_eq!(h.poll_at(), Some(back + Duration::from_secs(30)));
        assert_eq!(
            h.poll(back + Duration::from_secs(30)),
            Some(Change::Recovered)
        );
        assert_eq!(h.poll(back + Duration::from_secs(60)), None);
        assert_eq!(h.transitions(), (1, 1));
    }

    #[test]
    fn a_failure_during_the_hold_starts_it_again() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut h = Health::new(s(30));
        assert_eq!(h.failed(), Some(Change::Failed));
        assert_eq!(h.synced(t0 + s(1)), None);
        assert!(h.is_recovering());
        assert_eq!(h.failed(), None);
        assert!(!h.is_recovering());
        assert_eq!(h.poll(t0 + s(40)), None, "no good sync since the failure");
        assert_eq!(h.synced(t0 + s(41)), None);
        assert_eq!(h.poll(t0 + s(70)), None);
        assert_eq!(h.poll(t0 + s(71)), Some(Change::Recovered));
    }

    #[test]
    fn a_healthy_component_reports_nothing() {
        let t0 = Instant::now();
        let mut h = Health::default();
        for i in 0..100 {
            assert_eq!(h.synced(t0 + Duration::from_secs(i)), None);
        }
        assert!(!h.is_failing());
        assert_eq!(h.poll_at(), None);
        assert_eq!(h.transitions(), (0, 0));
    }
}
