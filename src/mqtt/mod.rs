//! MQTT: vigil's link to the nurses' displays.
//!
//! # Topics (under `mqtt.prefix`, default `vigil/v1/{site}/{bed}/`)
//!
//! | topic           | QoS | retained | what                                         |
//! |-----------------|-----|----------|----------------------------------------------|
//! | `vitals`        | 0   | yes      | latest value and validity of every vital (MQTT 5: expires after `mqtt.vitals_expiry`) |
//! | `alarms`        | 1   | no       | every alarm phase change (durable outbox)    |
//! | `alarms/active` | 1   | yes      | the alarms present now                       |
//! | `session`       | 1   | yes      | session event + state (durable outbox)       |
//! | `status`        | 1   | yes      | heartbeat; `offline` by Last Will            |
//! | `cmd`           | 1   | -        | inbound commands from displays               |
//! | `cmd/result`    | 1   | no       | accepted / rejected, with the reason         |
//! | `cmd/result/…`  | 1   | no       | the same, on a command's MQTT 5 response topic |
//!
//! The layout, shared with the displays: [`topics`]. Payloads: [`payload`],
//! schemas in `schemas/`. Commands: [`command`].
//!
//! # MQTT 5
//!
//! [`wire`] puts rumqttc's MQTT 5 and 3.1.1 clients behind one face
//! (`mqtt.protocol`; the embedded broker speaks 3.1.1). Over MQTT 5: vitals
//! carry a message expiry, a command's result goes to its response topic
//! when that is the bed's `cmd/result` or below it (any other is refused:
//! a display cannot make vigil publish elsewhere) with its correlation
//! data, and the broker is told vigil's packet limit.
//!
//! # Delivery
//!
//! rumqttc 0.25 loses queued QoS 1 publishes when a session is not resumed
//! (clean session, or a broker restart without persistence) while
//! `publish()` returns `Ok`, busy-loops reconnecting without a backoff, and
//! can deadlock when publishing from the polling task. So:
//!
//! - the event loop is polled by a task of its own with exponential backoff
//!   (100 ms doubling to 5 s) that only forwards what happens;
//! - the publisher never awaits the client: it queues with `try_publish`
//!   into a bounded request queue and keeps its own window;
//! - fixed client id, persistent session, `tcp_nodelay`;
//! - alarm and session messages go through the durable [`outbox`]: appended
//!   to the journal (a plain write, which survives vigil's crash) and
//!   published at once; the journal is fdatasynced in a group commit on a
//!   blocking thread (power-cut durability, off the alarm's path); a message
//!   is removed only when its PUBACK and a sync covering it are both in
//!   (packet ids are mapped to outbox entries through the client's
//!   `Outgoing::Publish` notifications, which come in request order), and
//!   after every reconnect or restart published again from the oldest,
//!   unchanged. The client's own resend queue is emptied so nothing goes out
//!   twice in one session;
//! - alarms before vitals: a batch of events from the driver publishes its
//!   alarm and session messages first, then one `vitals` message with the
//!   latest values; while the window is full the vitals wait and the
//!   readings meanwhile are coalesced and counted (`vitals_coalesced` in
//!   the heartbeat). Alarm and session messages are never coalesced.
//!
//! The MQTT side runs on its own thread with its own runtime: a slow disk
//! sync or a slow broker never stalls the driver loop. It reports problems
//! as technical alarms through the driver's system channel:
//! `system.broker_unreachable` after `mqtt.unreachable_after` without a
//! connection, `system.journal_failure` while the journal cannot be written
//! (the outbox goes on in memory; the journal is reopened every 5 s and the
//! condition ends after a good sync and 30 s without a failure, see
//! [`crate::record::health`]), `system.journal_corrupt` (latched) when the
//! journal was found damaged at start-up, `system.queue_overflow` when the
//! outbox had to evict.
//!
//! Depends on [`crate::io`] (sinks, driver types, clock), [`crate::engine`]
//! and [`crate::config`].

#[cfg(feature = "embedded-broker")]
pub mod broker;
mod client;
pub mod command;
pub mod journal;
pub mod link;
pub mod outbox;
pub mod payload;
pub mod topics;
pub mod wire;

use std::path::{Path, PathBuf};

pub use client::{check_link_files, spawn, MqttSetup, COMMAND_MAX_BYTES, LINK_MAX_PACKET};

pub use topics::expand;

use crate::config::StateDir;

/// Errors setting up MQTT publishing. Each names the key to fix.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The broker link (URL, credentials, TLS files) is misconfigured.
    #[error(transparent)]
    Link(#[from] link::LinkError),
    /// The state directory is unusable.
    #[error(transparent)]
    State(#[from] journal::JournalError),
    /// The embedded broker did not start.
    #[cfg(feature = "embedded-broker")]
    #[error(transparent)]
    EmbeddedBroker(#[from] broker::BrokerError),
    /// The embedded broker is configured but this build has none.
    #[error("mqtt.embedded = true, but this vigil was built without the embedded-broker feature: set mqtt.embedded = false and mqtt.broker")]
    NoEmbeddedBroker,
    /// The MQTT thread could not be started.
    #[error("cannot start the MQTT thread: {0}")]
    Thread(std::io::Error),
}

/// The state directory to use for `mqtt.state_dir`.
pub fn resolve_state_dir(dir: &StateDir) -> PathBuf {
    match dir {
        StateDir::Path(p) => p.clone(),
        StateDir::Auto => {
            if let Some(d) = std::env::var_os("STATE_DIRECTORY") {
                // systemd may list several, separated by ':'.
                let first = d
                    .to_string_lossy()
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .to_owned();
                if !first.is_empty() {
                    return PathBuf::from(first);
                }
            }
            let system = Path::new("/var/lib/vigil");
            if writable(system) {
                return system.to_owned();
            }
            let user = std::env::var_os("XDG_STATE_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
                .map(|p| p.join("vigil"));
            match user {
                Some(p) if std::fs::create_dir_all(&p).is_ok() && writable(&p) => p,
                _ => PathBuf::from("state"),
            }
        }
    }
}

fn writable(dir: &Path) -> bool {
    if !dir.is_dir() {
        return false;
    }
    let probe = dir.join(format!(".vigil-probe-{}", std::process::id()));
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}
