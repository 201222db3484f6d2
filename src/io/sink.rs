//! Sinks: where events go after the engine (log, MQTT, recording).
//!
//! Each sink is a task fed through a bounded queue. The driver hands each
//! sink one [`Batch`] per iteration (every event of the inputs it took, in
//! order), so a sink on another thread is woken at most once per iteration
//! and always sees an iteration's events together (the MQTT side puts its
//! alarms before its vitals). The driver never waits for a sink:
//! [`SinkHandle::offer`] queues what fits and reports what it could not.
//! The queue's capacity counts events, not batches. Readings (the bulk of
//! the traffic) may only use the first three quarters of it, so alarm,
//! session and status events still find room when a slow sink falls behind
//! on readings.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::engine::{
    AlarmEvent, AudioEvent, Event, EventKind, Phase, Priority, SessionEvent, TechnicalStatus,
};
use crate::time::rfc3339;
use crate::vitals::{Measurement, Sample};

/// An event on its way to a sink, with its wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct SinkMsg {
    /// The event.
    pub event: Event,
    /// Wall-clock time of `event.at`.
    pub wall: SystemTime,
}

/// One driver iteration's events, in order, shared by every sink.
pub type Batch = Arc<[SinkMsg]>;

/// The sending end of a sink's queue (the driver's side).
pub struct SinkTx {
    tx: mpsc::Sender<Batch>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

/// The receiving end of a sink's queue (the sink task's side).
pub struct SinkRx {
    rx: mpsc::Receiver<Batch>,
    queued: Arc<AtomicUsize>,
}

/// A sink queue holding `capacity` events at most.
pub fn queue(capacity: usize) -> (SinkTx, SinkRx) {
    let capacity = capacity.max(4);
    // Every batch holds at least one event: the event count, not the
    // channel, is what fills first.
    let (tx, rx) = mpsc::channel(capacity);
    let queued = Arc::new(AtomicUsize::new(0));
    (
        SinkTx {
            tx,
            queued: queued.clone(),
            capacity,
        },
        SinkRx { rx, queued },
    )
}

impl SinkRx {
    /// The next batch; `None` once the driver has closed the queue and it is empty.
    pub async fn recv(&mut self) -> Option<Batch> {
        let batch = self.rx.recv().await?;
        self.queued.fetch_sub(batch.len(), Ordering::Relaxed);
        Some(batch)
    }

    /// The next batch if one is waiting.
    pub fn try_recv(&mut self) -> Option<Batch> {
        let batch = self.rx.try_recv().ok()?;
        self.queued.fetch_sub(batch.len(), Ordering::Relaxed);
        Some(batch)
    }
}

/// The driver's handle on one sink.
pub struct SinkHandle {
    name: &'static str,
    tx: SinkTx,
    task: JoinHandle<()>,
}

impl SinkHandle {
    /// Wraps a queue and the task consuming it.
    pub fn new(name: &'static str, tx: SinkTx, task: JoinHandle<()>) -> Self {
        SinkHandle { name, tx, task }
    }

    /// The sink's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Queues an iteration's events without waiting; returns how many had
    /// to be dropped (readings once three quarters of the queue are used,
    /// anything once it is full).
    pub fn offer(&self, batch: &Batch) -> usize {
        if batch.is_empty() {
            return 0;
        }
        let q = &self.tx;
        let queued = q.queued.load(Ordering::Relaxed);
        let room = q.capacity.saturating_sub(queued);
        let reading_room = (q.capacity - q.capacity / 4).saturating_sub(queued);
        let is_reading = |m: &SinkMsg| matches!(m.event.kind, EventKind::Reading(_));
        let readings = batch.iter().filter(|m| is_reading(m)).count();
        let send = if batch.len() <= room && readings <= reading_room {
            batch.clone()
        } else {
            // Short of room: keep the events that still fit, in order.
            let (mut all, mut reads) = (0, 0);
            let kept: Vec<SinkMsg> = batch
                .iter()
                .filter(|m| {
                    let reading = is_reading(m);
                    let fits = all < room && (!reading || reads < reading_room);
                    if fits {
                        all += 1;
                        reads += usize::from(reading);
                    }
                    fits
                })
                .copied()
                .collect();
            if kept.is_empty() {
                return batch.len();
            }
            kept.into()
        };
        let n = send.len();
        q.queued.fetch_add(n, Ordering::Relaxed);
        match q.tx.try_send(send) {
            Ok(()) => batch.len() - n,
            Err(_) => {
                q.queued.fetch_sub(n, Ordering::Relaxed);
                batch.len()
            }
        }
    }

    /// Closes the queue and waits (bounded) for the sink to finish.
    pub async fn close(self, limit: Duration) {
        drop(self.tx);
        if tokio::time::timeout(limit, self.task).await.is_err() {
            tracing::warn!(sink = self.name, "sink did not finish within {limit:?}");
        }
    }
}

/// A sink that forwards every event to the returned receiver (tests,
/// embedding): `capacity` events queued at most, as any sink.
pub fn collecting(capacity: usize) -> (SinkHandle, mpsc::UnboundedReceiver<SinkMsg>) {
    let (tx, mut rx) = queue(capacity);
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let forward = tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            for m in batch.iter() {
                let _ = out_tx.send(*m);
            }
        }
    });
    (SinkHandle::new("collect", tx, forward), out_rx)
}

/// Starts the log sink: alarms, sessions and status to the log; readings at
/// debug level, with a one-line vitals summary at info every `summary_every`
/// of session time.
pub fn spawn_log(
    source_names: Arc<Vec<String>>,
    capacity: usize,
    summary_every: Duration,
) -> SinkHandle {
    let (tx, mut rx) = queue(capacity);
    let task = tokio::spawn(async move {
        let mut vitals = Latest::default();
        let mut last_summary: Option<crate::time::Instant> = None;
        while let Some(batch) = rx.recv().await {
            for msg in batch.iter() {
                log_event(msg, &source_names, &mut vitals);
                let due = last_summary.is_none_or(|t| msg.event.at - t >= summary_every);
                if due && vitals.any() {
                    tracing::info!(target: "vigil::vitals", "{}", vitals.line());
                    last_summary = Some(msg.event.at);
                }
            }
        }
    });
    SinkHandle::new("log", tx, task)
}

#[derive(Default)]
struct Latest {
    hr: Option<Sample>,
    pr: Option<Sample>,
    spo2: Option<Sample>,
    nibp: Option<(Sample, Sample, Sample)>,
    rr: Option<Sample>,
    etco2: Option<Sample>,
}

impl Latest {
    fn any(&self) -> bool {
        self.hr.is_some()
            || self.pr.is_some()
            || self.spo2.is_some()
            || self.nibp.is_some()
            || self.rr.is_some()
            || self.etco2.is_some()
    }

    fn line(&self) -> String {
        let show = |s: Option<Sample>| match s {
            None => "-".to_owned(),
            Some(s) => match s.get() {
                Some(v) => format!("{v:.0}"),
                None => s.validity.key().to_owned(),
            },
        };
        let bp = match self.nibp {
            None => "-".to_owned(),
            Some((s, d, m)) => format!("{}/{} ({})", show(Some(s)), show(Some(d)), show(Some(m))),
        };
        let mut line = format!(
            "HR {}  PR {}  SpO2 {}  NIBP {}",
            show(self.hr),
            show(self.pr),
            show(self.spo2),
            bp
        );
        // Breathing only where a monitor gives it.
        if self.rr.is_some() || self.etco2.is_some() {
            line.push_str(&format!(
                "  RR {}  etCO2 {}",
                show(self.rr),
                show(self.etco2)
            ));
        }
        line
    }
}

fn log_event(msg: &SinkMsg, names: &[String], latest: &mut Latest) {
    let when = rfc3339(msg.wall);
    match msg.event.kind {
        EventKind::Alarm(a) => log_alarm(&a, names, &when, msg.event.seq),
        EventKind::Session(s) => match s {
            SessionEvent::Phase { phase, session } => {
                tracing::info!(seq = msg.event.seq, at = %when, "SESSION {session}: phase {phase}")
            }
            SessionEvent::Baseline {
                vital,
                value,
                readings,
            } => tracing::info!(
                seq = msg.event.seq,
                at = %when,
                "SESSION baseline {vital} = {value:.0} {} (median of {readings} reading(s))",
                vital.unit().symbol()
            ),
            SessionEvent::Dose {
                number,
                route,
                amount,
                note,
            } => {
                let amount = amount.map_or(String::new(), |a| format!("{a} "));
                tracing::info!(seq = msg.event.seq, at = %when, "SESSION dose #{number} {amount}({route}) {note}")
            }
            SessionEvent::BaselineIncomplete { .. } => tracing::warn!(
                seq = msg.event.seq,
                at = %when,
                "SESSION baseline incomplete: no baseline for {} (too few readings before the dose)",
                s.missing_baselines().map(|v| v.key()).collect::<Vec<_>>().join(", ")
            ),
            SessionEvent::DischargeReadiness { ready } => tracing::info!(
                seq = msg.event.seq,
                at = %when,
                "SESSION discharge readiness: {}",
                if ready { "all vitals back near baseline" } else { "no longer ready" }
            ),
        },
        EventKind::Reading(r) => {
            match r.measurement {
                Measurement::HeartRate(s) => latest.hr = Some(s),
                Measurement::PulseRate(s) => latest.pr = Some(s),
                Measurement::SpO2(s) => latest.spo2 = Some(s),
                Measurement::Nibp(n) => latest.nibp = Some((n.systolic, n.diastolic, n.mean)),
                Measurement::RespRate(s) => latest.rr = Some(s),
                Measurement::EtCo2(s) => latest.etco2 = Some(s),
            }
            tracing::debug!(
                seq = msg.event.seq,
                source = r.source.0,
                "reading {:?}",
                r.measurement
            );
        }
        EventKind::Technical(t) => match t {
            TechnicalStatus::Source { source, health } => {
                let name = names.get(source.index()).map_or("?", String::as_str);
                if health.is_ok() {
                    tracing::info!(seq = msg.event.seq, "source {name}: {}", health.text())
                } else {
                    tracing::warn!(seq = msg.event.seq, "source {name}: {}", health.text())
                }
            }
            TechnicalStatus::Device { source, note } => {
                let name = names.get(source.index()).map_or("?", String::as_str);
                tracing::info!(seq = msg.event.seq, "device {name}: {note:?}")
            }
        },
        EventKind::Audio(a) => match a {
            AudioEvent::Paused { until, .. } => {
                tracing::info!(seq = msg.event.seq, "AUDIO paused until {until}")
            }
            AudioEvent::Resumed { reason } => {
                tracing::info!(seq = msg.event.seq, "AUDIO resumed ({reason:?})")
            }
        },
    }
}

fn log_alarm(a: &AlarmEvent, names: &[String], when: &str, seq: u64) {
    let id = a.id.key(names);
    let mut detail = String::new();
    if let Some(v) = a.value {
        detail.push_str(&format!(" value={v:.1}"));
    }
    if let Some(l) = a.limit {
        detail.push_str(&format!(" limit={l:.1}"));
    }
    if let Some(v) = a.validity {
        detail.push_str(&format!(" validity={v}"));
    }
    if !a.delay.is_zero() {
        detail.push_str(&format!(" delay={:?}", a.delay));
    }
    if let Some(ack) = a.ack {
        detail.push_str(&format!(" ack_by={}", ack.by));
    }
    let text = format!(
        "ALARM {} {} [{} {}] state={}{detail}",
        a.phase.key().to_uppercase(),
        id,
        a.priority,
        a.kind.key(),
        a.state.key()
    );
    let loud = matches!(a.phase, Phase::Start | Phase::Escalate | Phase::ReAlert);
    match (a.priority, loud) {
        (Priority::High, true) => tracing::error!(seq, at = %when, "{text}"),
        (Priority::Medium, true) => tracing::warn!(seq, at = %when, "{text}"),
        _ => tracing::info!(seq, at = %when, "{text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ResumeReason;
    use crate::vitals::{Reading, SourceId};

    fn reading(seq: u64) -> SinkMsg {
        let at = crate::time::Instant::from_millis(seq);
        SinkMsg {
            event: Event {
                seq,
                at,
                kind: EventKind::Reading(Reading {
                    source: SourceId(0),
                    arrival: at,
                    device_time: None,
                    measurement: Measurement::SpO2(Sample::new(
                        97.0,
                        crate::vitals::Validity::Valid,
                    )),
                }),
            },
            wall: SystemTime::UNIX_EPOCH,
        }
    }

    fn other(seq: u64) -> SinkMsg {
        SinkMsg {
            event: Event {
                seq,
                at: crate::time::Instant::from_millis(seq),
                kind: EventKind::Audio(AudioEvent::Resumed {
                    reason: ResumeReason::Command,
                }),
            },
            wall: SystemTime::UNIX_EPOCH,
        }
    }

    fn seqs(b: &Batch) -> Vec<u64> {
        b.iter().map(|m| m.event.seq).collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_iteration_arrives_as_one_batch_and_readings_leave_room_for_the_rest() {
        let (tx, mut rx) = queue(8);
        let sink = SinkHandle::new("test", tx, tokio::spawn(async {}));
        // One iteration: a reading and an alarm-class event, together.
        let first: Batch = vec![reading(1), other(2)].into();
        assert_eq!(sink.offer(&first), 0);
        assert_eq!(seqs(&rx.try_recv().unwrap()), [1, 2]);
        assert!(rx.try_recv().is_none());

        // Readings may fill three quarters of the queue (6 of 8), in order.
        let readings: Batch = (10..18).map(reading).collect::<Vec<_>>().into();
        assert_eq!(sink.offer(&readings), 2);
        // The last quarter still takes events that are not readings, but
        // no more readings; a full queue takes nothing.
        let mixed: Batch = vec![reading(20), other(21), other(22), other(23)].into();
        assert_eq!(sink.offer(&mixed), 2);
        assert_eq!(sink.offer(&vec![other(30)].into()), 1);
        assert_eq!(seqs(&rx.try_recv().unwrap()), [10, 11, 12, 13, 14, 15]);
        assert_eq!(seqs(&rx.try_recv().unwrap()), [21, 22]);
        // Taking batches frees their room.
        assert_eq!(sink.offer(&vec![reading(40)].into()), 0);
        assert_eq!(seqs(&rx.try_recv().unwrap()), [40]);
    }
}
