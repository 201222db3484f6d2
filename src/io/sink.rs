//! Sinks: where events go after the engine (log, MQTT, recording).
//!
//! Each sink is a task fed through a bounded queue. The driver never waits
//! for a sink: [`SinkHandle::offer`] either queues an event or reports that
//! it could not. Readings (the bulk of the traffic) may only use the first
//! three quarters of a queue, so alarm, session and status events still find
//! room when a slow sink falls behind on readings.

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

/// The driver's handle on one sink.
pub struct SinkHandle {
    name: &'static str,
    tx: mpsc::Sender<SinkMsg>,
    capacity: usize,
    task: JoinHandle<()>,
}

impl SinkHandle {
    /// Wraps a queue and the task consuming it.
    pub fn new(
        name: &'static str,
        tx: mpsc::Sender<SinkMsg>,
        capacity: usize,
        task: JoinHandle<()>,
    ) -> Self {
        SinkHandle {
            name,
            tx,
            capacity,
            task,
        }
    }

    /// The sink's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Queues an event without waiting; false when it had to be dropped.
    pub fn offer(&self, msg: SinkMsg) -> bool {
        if matches!(msg.event.kind, EventKind::Reading(_)) && self.tx.capacity() < self.capacity / 4
        {
            return false;
        }
        self.tx.try_send(msg).is_ok()
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
    let (tx, mut rx) = mpsc::channel::<SinkMsg>(capacity);
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let forward = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let _ = out_tx.send(m);
        }
    });
    (SinkHandle::new("collect", tx, capacity, forward), out_rx)
}

/// Starts the log sink: alarms, sessions and status to the log; readings at
/// debug level, with a one-line vitals summary at info every `summary_every`
/// of session time.
pub fn spawn_log(
    source_names: Arc<Vec<String>>,
    capacity: usize,
    summary_every: Duration,
) -> SinkHandle {
    let (tx, mut rx) = mpsc::channel::<SinkMsg>(capacity);
    let task = tokio::spawn(async move {
        let mut vitals = Latest::default();
        let mut last_summary: Option<crate::time::Instant> = None;
        while let Some(msg) = rx.recv().await {
            log_event(&msg, &source_names, &mut vitals);
            let due = last_summary.is_none_or(|t| msg.event.at - t >= summary_every);
            if due && vitals.any() {
                tracing::info!(target: "vigil::vitals", "{}", vitals.line());
                last_summary = Some(msg.event.at);
            }
        }
    });
    SinkHandle::new("log", tx, capacity, task)
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
