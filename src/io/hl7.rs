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
//! holds up the event loop. Undelivered messages wait in a backlog (at most
//! [`BACKLOG`], the oldest dropped first, with a warning) and are retried
//! every [`RETRY_EVERY`] (or sooner, when the next message is due), in
//! order.
//!
//! No silent failure: when a message cannot be delivered (the receiver is
//! unreachable, does not acknowledge in `hl7.timeout`, or refuses it with
//! `AE`/`AR`), the technical alarm `system.hl7_undelivered` is raised
//! through the driver's system channel, and it ends when a message is
//! accepted again. A refused message is dropped (sending it again would be
//! refused again) and logged with the receiver's reason.
//!
//! Control ids (MSH-10) are `<session>.<n>`, `n` counting on from the
//! sink's start time in Unix seconds, so a restarted daemon does not reuse
//! the ids of messages a receiver already has.

use std::collections::VecDeque;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::sink::{SinkHandle, SinkMsg};
use crate::config::Hl7Config;
use crate::engine::{EventKind, SessionEvent, SessionPhase, SystemCondition};
use crate::record::chart::{Chart, Device, Point, Sampler, Sampling};
use crate::record::{hl7, mllp};

/// Undelivered messages kept for a later attempt (a day of 5-minute
/// intervals).
pub const BACKLOG: usize = 288;
/// How often undelivered messages are tried again.
pub const RETRY_EVERY: Duration = Duration::from_secs(30);

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
    } = setup;
    let (tx, mut rx) = mpsc::channel::<SinkMsg>(queue);
    let (out_tx, out_rx) = std_mpsc::channel::<String>();
    let sender = {
        let config = config.clone();
        std::thread::Builder::new()
            .name("vigil-hl7".into())
            .spawn(move || send_loop(&config, &out_rx, &system))
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
            .map_or(1, |d| d.as_secs());
        let mut emit = |points: Vec<Point>, generated: SystemTime| {
            if points.is_empty() {
                return;
            }
            chart.points = points;
            let messages = hl7::messages_from(&chart, generated, next);
            next += messages.len() as u64;
            for m in messages {
                let _ = out_tx.send(m);
            }
        };
        loop {
            let msg = match tokio::time::timeout(interval, rx.recv()).await {
                Ok(Some(msg)) => msg,
                Ok(None) => break,
                Err(_) => {
                    // Nothing arrived for a whole interval: what is complete
                    // by the wall clock goes out.
                    let now = SystemTime::now();
                    emit(sampler.take_complete(since_epoch(now)), now);
                    continue;
                }
            };
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
        // Shutting down: the interval in progress goes out too.
        emit(sampler.take_all(), SystemTime::now());
        drop(out_tx);
        let _ = tokio::task::spawn_blocking(move || sender.join()).await;
    });
    SinkHandle::new("hl7", tx, queue, task)
}

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()
}

/// The sender thread: delivers messages in order, keeps the undelivered
/// ones, raises and ends `system.hl7_undelivered`.
fn send_loop(
    config: &Hl7Config,
    messages: &std_mpsc::Receiver<String>,
    system: &mpsc::Sender<(SystemCondition, bool)>,
) {
    let opts = mllp::SendOptions {
        timeout: config.timeout,
        attempts: 1,
        retry_after: Duration::ZERO,
    };
    let mut backlog: VecDeque<String> = VecDeque::new();
    let mut alarmed = false;
    let set_alarm = |alarmed: &mut bool, on: bool| {
        if on != *alarmed {
            *alarmed = on;
            let _ = system.blocking_send((SystemCondition::Hl7Undelivered, on));
        }
    };
    let mut open = true;
    while open || !backlog.is_empty() {
        let wait = if backlog.is_empty() {
            Duration::from_secs(3600)
        } else {
            RETRY_EVERY
        };
        match messages.recv_timeout(wait) {
            Ok(m) => backlog.push_back(m),
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => open = false,
        }
        while let Ok(m) = messages.try_recv() {
            backlog.push_back(m);
        }
        while backlog.len() > BACKLOG {
            backlog.pop_front();
            tracing::warn!(
                "hl7: more than {BACKLOG} messages undelivered to {}: the oldest is dropped",
                config.to
            );
        }
        while let Some(m) = backlog.front() {
            match mllp::send_all(&config.to, std::slice::from_ref(m), opts) {
                Ok(_) => {
                    backlog.pop_front();
                    set_alarm(&mut alarmed, false);
                }
                Err(e @ mllp::MllpError::Refused { .. }) => {
                    tracing::warn!(
                        "hl7: {e}; the message is dropped, raising system.hl7_undelivered"
                    );
                    backlog.pop_front();
                    set_alarm(&mut alarmed, true);
                }
                Err(e @ mllp::MllpError::Unreachable { .. }) => {
                    if !alarmed {
                        tracing::warn!(
                            "hl7: {e}; raising system.hl7_undelivered, retrying every {RETRY_EVERY:?}"
                        );
                    }
                    set_alarm(&mut alarmed, true);
                    break;
                }
            }
        }
        if !open {
            // Shutting down: one attempt at what is left, then stop.
            if !backlog.is_empty() {
                tracing::warn!(
                    "hl7: {} message(s) not delivered to {} at shutdown",
                    backlog.len(),
                    config.to
                );
            }
            break;
        }
    }
}
