//! systemd notifications (READY, STATUS, WATCHDOG, STOPPING). Every call is
//! a no-op when the daemon does not run under systemd.

use std::time::Duration;

use sd_notify::NotifyState;

/// READY=1 with a status line.
pub fn ready(status: &str) {
    let _ = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(status)]);
}

/// STATUS=...
pub fn status(status: &str) {
    let _ = sd_notify::notify(false, &[NotifyState::Status(status)]);
}

/// WATCHDOG=1
pub fn watchdog() {
    let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
}

/// STOPPING=1
pub fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}

/// How often to ping the watchdog: half of `WatchdogSec=`, or `None` when
/// the watchdog is off.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        Some(Duration::from_micros(usec / 2))
    } else {
        None
    }
}
