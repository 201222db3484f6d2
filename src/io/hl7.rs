//! The live HL7 sink (`[hl7]`): the running session's chart sent to an HL7
//! receiver (an EHR's interface engine) as ORU^R01 messages (IHE PCD-01)
//! over MLLP while the session runs.
//!
//! The sink charts the engine's events as `vigil record export --format
//! hl7` charts a recording ([`crate::record::chart::Sampler`]: only readings
//! inside a session, the first valid reading of each vital per
//! `hl7.interval` and every NIBP), with the intervals aligned to the wall
//! clock (every 5 min at :00, :05, ...). When an interval is over (a later
//! event arrived, or the interval's time passed) its readings go out as one
//! message ([`crate::record::hl7`]); the end of a session sends what is
//! left at once.
//!
//! Sending runs on its own thread ([`crate::record::mllp::send_all`], one
//! message at a time, each waiting for its ACK), so a slow receiver never
//! holds up the event loop. Undelivered messages wait in a backlog
//! ([`backlog`]: `hl7.journal` in the bed's state directory,
//! `mqtt.state_dir`/`{site}/{bed}`, so a restart loses none of them) and are retried every
//! [`RETRY_EVERY`] (or sooner, when the next message is due), in order;
//! a restarted sink sends what the previous run left first. The backlog
//! holds at most [`BACKLOG`] messages: when it is full the oldest is
//! dropped, logged, and the queue-overflow technical alarm
//! (`system.queue_overflow`) is raised, as the MQTT outbox does; it ends a
//! minute after the last drop.
//!
//! No silent failure: when a message cannot be delivered (the receiver is
//! unreachable, does not acknowledge in `hl7.timeout`, or refuses it with
//! `AE`/`AR`), the technical alarm `system.hl7_undelivered` is raised
//! through the driver's system channel, and it ends when a message is
//! accepted again. A refused message is dropped (sending it again would be
//! refused again) and logged with the receiver's reason.
//!
//! With `hl7.tls = true` the link is MLLP over TLS: the receiver's
//! certificate must be signed by a CA of `hl7.ca_file` and name the host
//! of `hl7.to` ([`crate::mqtt::link::tls_client`], the CA file read as the
//! MQTT link reads `mqtt.ca_file`); a failed handshake counts as
//! unreachable.
//!
//! Control ids (MSH-10) are `<session>.<n>`, `n` counting on from the
//! sink's start time in Unix seconds or from above the last number the
//! backlog file ever held, whichever is higher, so a restarted daemon does
//! not reuse the ids of messages a receiver already has.

mod backlog;

pub use backlog::{Backlog, BacklogError, Pending, FILE as BACKLOG_FILE};

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use super::sink::{self, SinkHandle};
use crate::config::Hl7Config;
use crate::engine::{EventKind, SessionEvent, SessionPhase, SystemCondition};
use crate::record::chart::{Chart, Device, Point, Sampler, Sampling};
use crate::record::health::{Change, Health};
use crate::record::{hl7, mllp};

/// Undelivered messages kept for a later attempt (a day of 5-minute
/// intervals).
pub const BACKLOG: usize = 288;
/// How often undelivered messages are tried again.
pub const RETRY_EVERY: Duration = Duration::from_secs(30);
/// The queue-overflow alarm ends this long after the last dropped message.
const OVERFLOW_CLEARS_AFTER: Duration = Duration::from_secs(60);
/// How often a backlog file that failed is tried again.
pub const REATTACH_EVERY: Duration = Duration::from_secs(5);

/// What the sink needs.
pub struct Hl7Setup {
    /// The `[hl7]` section.
    pub config: Hl7Config,
    /// Site (MSH-4, PID-3's authority).
    pub site: String,
    /// Bed (PV1-3).
    pub bed: String,
    /// The configured sources (OBX-18).
    pub sources: Vec<Device>,
    /// The driver's channel for technical conditions.
    pub system: mpsc::Sender<(SystemCondition, bool)>,
    /// The sink's queue length.
    pub queue: usize,
    /// Where the backlog file lives (`mqtt.state_dir`); `None`: in memory.
    pub state_dir: Option<PathBuf>,
    /// MLLP over TLS with this client configuration (`hl7.tls`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Starts the sink.
pub fn spawn(setup: Hl7Setup) -> SinkHandle {
    let Hl7Setup {
        config,
        site,
        bed,
        sources,
        system,
        queue,
        state_dir,
        tls,
    } = setup;
    let backlog = open_backlog(state_dir.as_deref(), &config.to);
    let (tx, mut rx) = sink::queue(queue);
    let (out_tx, out_rx) = std_mpsc::channel::<(u64, String)>();
    let first_number = backlog.next_number();
    let sender = {
        let config = config.clone();
        std::thread::Builder::new()
            .name("vigil-hl7".into())
            .spawn(move || {
                send_loop(
                    &config,
                    tls.as_ref(),
                    backlog,
                    state_dir.as_deref(),
                    &out_rx,
                    &system,
                )
            })
            .expect("start the HL7 sender thread")
    };
    let interval = config.interval;
    let task = tokio::spawn(async move {
        let mut sampler = match Sampler::new(Sampling::Interval(interval)) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("hl7: {e}");
                return;
            }
        };
        let mut chart = Chart {
            site,
            bed,
            sources,
            points: Vec::new(),
        };
        let mut next = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
            .max(first_number);
        let mut emit = |points: Vec<Point>, generated: SystemTime| {
            if points.is_empty() {
                return;
            }
            chart.points = points;
            for m in hl7::messages_from(&chart, generated, next) {
                let _ = out_tx.send((next, m));
                next += 1;
            }
        };
        loop {
            let batch = match tokio::time::timeout(interval, rx.recv()).await {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(_) => {
                    // Nothing arrived for a whole interval: what is complete
                    // by the wall clock goes out.
                    let now = SystemTime::now();
                    emit(sampler.take_complete(since_epoch(now)), now);
                    continue;
                }
            };
            for msg in batch.iter() {
                let was_in_session = sampler.in_session();
                sampler.push(since_epoch(msg.wall), msg.wall, &msg.event.kind);
                let ended = was_in_session
                    && matches!(
                        msg.event.kind,
                        EventKind::Session(SessionEvent::Phase {
                            phase: SessionPhase::Ended | SessionPhase::Idle,
                            ..
                        })
                    );
                let points = if ended {
                    sampler.take_all()
                } else {
                    sampler.take_complete(since_epoch(msg.wall))
                };
                emit(points, msg.wall);
            }
        }
        // Shutting down: the interval in progress goes out too.
        emit(sampler.take_all(), SystemTime::now());
        drop(out_tx);
        let _ = tokio::task::spawn_blocking(move || sender.join()).await;
    });
    SinkHandle::new("hl7", tx, task)
}

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()
}

/// Opens the backlog file in `dir`; in memory (logged) when there is none
/// or it cannot be used.
fn open_backlog(dir: Option<&std::path::Path>, to: &str) -> Backlog {
    let Some(dir) = dir else {
        return Backlog::memory(BACKLOG);
    };
    match Backlog::open(dir, BACKLOG) {
        Ok((b, opened)) => {
            if opened.report.corrupt() {
                tracing::error!(
                    "hl7: the backlog {} was damaged ({} bytes unreadable, copy kept as {}.damaged): \
                     messages in the damaged part are lost",
                    dir.join(BACKLOG_FILE).display(),
                    opened.report.damaged_bytes(),
                    BACKLOG_FILE
                );
            }
            if opened.restored > 0 {
                tracing::info!(
                    "hl7: {} message(s) the previous run did not deliver to {to} go out first",
                    opened.restored
                );
            }
            b
        }
        Err(e) => {
            logged(Err(e));
            Backlog::memory(BACKLOG)
        }
    }
}

/// Logs a backlog file failure (the backlog goes on in memory: the first
/// failure is the only one).
fn logged(r: Result<(), BacklogError>) {
    if let Err(e) = r {
        tracing::error!(
            "hl7: {e}; undelivered messages are kept in memory only and are lost if vigil stops"
        );
    }
}

/// The sender thread: delivers messages in order, keeps the undelivered
/// ones, raises and ends `system.hl7_undelivered` and, when the backlog
/// overflows, `system.queue_overflow`; `system.hl7_backlog_failure` while
/// a backlog file was asked for (`state_dir`) and is not in use: it is
/// tried again every [`REATTACH_EVERY`], and the condition ends once the
/// file has worked for [`crate::record::health::RECOVERY_HOLD`] (a nearly
/// full disk does not make it flap).
fn send_loop(
    config: &Hl7Config,
    tls: Option<&Arc<rustls::ClientConfig>>,
    mut backlog: Backlog,
    state_dir: Option<&std::path::Path>,
    messages: &std_mpsc::Receiver<(u64, String)>,
    system: &mpsc::Sender<(SystemCondition, bool)>,
) {
    let opts = mllp::SendOptions {
        timeout: config.timeout,
        attempts: 1,
        retry_after: Duration::ZERO,
    };
    let mut undelivered = false;
    let mut overflow = false;
    let mut storage = false;
    let mut last_drop: Option<Instant> = None;
    let tell = |flag: &mut bool, cond: SystemCondition, on: bool| {
        if on != *flag {
            *flag = on;
            let _ = system.blocking_send((cond, on));
        }
    };
    let mut health = Health::default();
    let mut reattach_at: Option<Instant> = None;
    let mut open = true;
    loop {
        // A backlog file was asked for (a state directory) but cannot be
        // used: what is undelivered would not survive a restart.
        let now = Instant::now();
        if let (Some(dir), false) = (state_dir, backlog.durable()) {
            if reattach_at.is_some_and(|t| now >= t) {
                match backlog.reattach(dir) {
                    Ok(older) => tracing::info!(
                        "hl7: the backlog file {} works again: {} undelivered message(s) written out ({older} left there earlier); system.hl7_backlog_failure ends after {:?} without a failure",
                        dir.join(BACKLOG_FILE).display(),
                        backlog.len(),
                        crate::record::health::RECOVERY_HOLD
                    ),
                    Err(e) => tracing::debug!("hl7: the backlog file still fails: {e}"),
                }
            }
        }
        match (state_dir.is_some(), backlog.durable()) {
            (true, false) => {
                reattach_at = Some(
                    reattach_at
                        .filter(|t| *t > now)
                        .unwrap_or(now + REATTACH_EVERY),
                );
                if health.failed() == Some(Change::Failed) {
                    tracing::error!(
                        "hl7: the backlog file cannot be used: raising system.hl7_backlog_failure, retrying every {REATTACH_EVERY:?} (check the state directory, mqtt.state_dir)"
                    );
                    tell(&mut storage, SystemCondition::Hl7BacklogFailure, true);
                }
            }
            // Every write of the backlog is synced; durable means the last
            // one worked.
            (true, true) => {
                reattach_at = None;
                if health.synced(now) == Some(Change::Recovered) {
                    tracing::info!("hl7: the backlog file has worked for {:?}: system.hl7_backlog_failure ends", crate::record::health::RECOVERY_HOLD);
                    tell(&mut storage, SystemCondition::Hl7BacklogFailure, false);
                }
            }
            (false, _) => {}
        }
        // What is waiting goes out first, in order.
        while let Some(p) = backlog.front() {
            match mllp::send_all_tls(&config.to, std::slice::from_ref(&p.message), opts, tls) {
                Ok(_) => {
                    logged(backlog.delivered());
                    tell(&mut undelivered, SystemCondition::Hl7Undelivered, false);
                }
                Err(e @ mllp::MllpError::Refused { .. }) => {
                    tracing::warn!(
                        "hl7: {e}; the message is dropped, raising system.hl7_undelivered"
                    );
                    logged(backlog.drop_front());
                    tell(&mut undelivered, SystemCondition::Hl7Undelivered, true);
                }
                Err(e @ mllp::MllpError::Unreachable { .. }) => {
                    if !undelivered {
                        tracing::warn!(
                            "hl7: {e}; raising system.hl7_undelivered, retrying every {RETRY_EVERY:?}"
                        );
                    }
                    tell(&mut undelivered, SystemCondition::Hl7Undelivered, true);
                    break;
                }
            }
        }
        if last_drop.is_some_and(|t| t.elapsed() >= OVERFLOW_CLEARS_AFTER) {
            last_drop = None;
            tell(&mut overflow, SystemCondition::QueueOverflow, false);
        }
        if !open {
            // Shutting down after one attempt at what is left: the rest
            // stays in the backlog file for the next start.
            if !backlog.is_empty() {
                tracing::warn!(
                    "hl7: {} message(s) not delivered to {} at shutdown{}",
                    backlog.len(),
                    config.to,
                    if backlog.durable() {
                        ": kept for the next start"
                    } else {
                        ": lost (no backlog file)"
                    }
                );
            }
            break;
        }
        let mut wait = if backlog.is_empty() {
            Duration::from_secs(3600)
        } else {
            RETRY_EVERY
        };
        if let Some(t) = last_drop {
            wait = wait.min(OVERFLOW_CLEARS_AFTER.saturating_sub(t.elapsed()));
        }
        if let Some(t) = reattach_at {
            wait = wait.min(t.saturating_duration_since(Instant::now()));
        }
        if storage && backlog.durable() {
            // Wake up to end the condition when the hold is over.
            wait = wait.min(Duration::from_secs(1));
        }
        let mut arrived = Vec::new();
        match messages.recv_timeout(wait) {
            Ok(m) => arrived.push(m),
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => open = false,
        }
        arrived.extend(messages.try_iter());
        for (number, m) in arrived {
            match backlog.push(number, m) {
                Ok(0) => {}
                Ok(dropped) => {
                    tracing::warn!(
                        "hl7: more than {BACKLOG} messages undelivered to {}: the oldest {dropped} dropped, raising system.queue_overflow",
                        config.to
                    );
                    last_drop = Some(Instant::now());
                    tell(&mut overflow, SystemCondition::QueueOverflow, true);
                }
                Err(e) => logged(Err(e)),
            }
        }
    }
}
