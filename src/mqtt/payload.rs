//! The JSON payloads vigil publishes, one function per topic: each fills
//! in its type of [`super::messages`] (the types the displays parse) and
//! serialises it. Every payload carries `schema_version`, the site and bed,
//! the stream epoch, the event sequence number `seq` and RFC 3339 UTC
//! times; `schemas/*.schema.json` describe each one (a test validates what
//! the daemon sends against them, and pins its bytes).
//!
//! `seq` is monotonic across restarts (see [`super::journal::SeqFile`]):
//! displays keep the highest `seq` seen per topic and drop anything not
//! above it. Alarm and session messages also carry `stream_seq`,
//! consecutive per topic, so a display can tell that it missed one.
//!
//! Pure: times come in as arguments. Depends on [`crate::engine`],
//! [`crate::vitals`], [`crate::pipeline::LiveState`] (the published state)
//! and [`crate::time::rfc3339`].

use std::time::SystemTime;

use std::borrow::Cow;

use super::messages::{self as m, Keyed};

use crate::engine::{
    AlarmEvent, DoseAmount, Limit, SessionEvent, SessionId, SessionPhase, VitalRules,
};
use crate::pipeline::LiveState;
use crate::time::rfc3339;
use crate::vitals::{Measurement, Sample, Validity, Vital};

pub use super::messages::SCHEMA_VERSION;

/// What every payload names.
pub struct Ctx<'a> {
    /// Site.
    pub site: &'a str,
    /// Bed.
    pub bed: &'a str,
    /// Source names (for alarm ids and vitals).
    pub names: &'a [String],
    /// The stream epoch ([`super::journal::SeqFile`]): `seq` is ordered
    /// within it.
    pub epoch: &'a str,
}

fn head<'a>(ctx: &'a Ctx<'_>, seq: u64, time: SystemTime) -> m::Head<'a> {
    m::Head {
        schema_version: SCHEMA_VERSION,
        site: Cow::Borrowed(ctx.site),
        bed: Cow::Borrowed(ctx.bed),
        epoch: Some(Cow::Borrowed(ctx.epoch)),
        seq,
        time: Some(Cow::Owned(rfc3339(time))),
        stream_seq: None,
    }
}

/// A finite value, rounded; `None` (null) otherwise.
fn finite(v: Option<f32>) -> Option<f64> {
    v.filter(|v| v.is_finite()).map(round)
}

fn text(s: &str) -> m::Text<'_> {
    Cow::Borrowed(s)
}

fn time(t: SystemTime) -> Option<m::Text<'static>> {
    Some(Cow::Owned(rfc3339(t)))
}

/// f32 to a short decimal (82.0 stays 82, 36.6 does not become 36.599998).
fn round(v: f32) -> f64 {
    let d = f64::from(v);
    (d * 1000.0).round() / 1000.0
}

/// One alarm (in `alarms` and `alarms/active`). `wall` maps a core
/// instant to wall-clock time.
pub fn alarm_object<'a>(
    ctx: &Ctx<'_>,
    a: &'a AlarmEvent,
    wall: impl Fn(crate::time::Instant) -> SystemTime,
) -> m::Alarm<'a> {
    m::Alarm {
        id: Cow::Owned(a.id.key(ctx.names)),
        kind: text(a.kind.key()),
        priority: text(a.priority.key()),
        base_priority: text(a.base_priority.key()),
        phase: text(a.phase.key()),
        state: text(a.state.key()),
        value: finite(a.value),
        limit: finite(a.limit),
        validity: a.validity.map(|v| text(v.key())),
        delay_ms: a.delay.as_millis() as u64,
        onset: time(wall(a.onset)),
        determined: time(wall(a.determined)),
        ack: a.ack.as_ref().map(|k| m::Ack {
            by: text(k.by.as_str()),
            at: time(wall(k.at)),
        }),
        components: a.components.map(|parts| {
            Keyed(
                parts
                    .iter()
                    .map(|c| {
                        let part = m::Component {
                            value: finite(c.value),
                            limit: finite(c.limit),
                        };
                        (text(c.vital.key()), part)
                    })
                    .collect(),
            )
        }),
    }
}

/// `alarms`: one alarm phase change.
pub fn alarm(
    ctx: &Ctx<'_>,
    seq: u64,
    stream_seq: u64,
    time: SystemTime,
    a: &AlarmEvent,
    wall: impl Fn(crate::time::Instant) -> SystemTime,
) -> Vec<u8> {
    m::to_vec(&m::AlarmChange {
        head: m::Head {
            stream_seq: Some(stream_seq),
            ..head(ctx, seq, time)
        },
        alarm: alarm_object(ctx, a, wall),
    })
}

/// `alarms/active`: every alarm present now (retained).
pub fn active(
    ctx: &Ctx<'_>,
    seq: u64,
    time: SystemTime,
    live: &LiveState,
    wall: impl Fn(crate::time::Instant) -> SystemTime + Copy,
) -> Vec<u8> {
    m::to_vec(&m::Active {
        head: head(ctx, seq, time),
        alarms: live
            .present_alarms
            .iter()
            .map(|a| alarm_object(ctx, a, wall))
            .collect(),
        audio_paused_until: live.audio_paused_until.and_then(|t| self::time(wall(t))),
    })
}

/// `limits`: the alarm limits in force per vital (retained), published at
/// start-up and after every configuration reload.
pub fn limits(
    ctx: &Ctx<'_>,
    seq: u64,
    time: SystemTime,
    rules: &[VitalRules; Vital::COUNT],
) -> Vec<u8> {
    let limit = |l: Option<Limit>| {
        l.map(|l| m::Limit {
            value: round(l.value),
            priority: text(l.priority.key()),
        })
    };
    let vitals = Vital::ALL
        .iter()
        .map(|v| {
            let r = &rules[v.index()];
            let o = m::VitalLimits {
                enabled: r.enabled,
                unit: text(v.unit().symbol()),
                low: limit(r.low),
                high: limit(r.high),
                critical_low: limit(r.critical_low),
                critical_high: limit(r.critical_high),
                delay_ms: r.delay.as_millis() as u64,
                hysteresis: round(r.hysteresis),
            };
            (text(v.key()), o)
        })
        .collect();
    m::to_vec(&m::Limits {
        head: head(ctx, seq, time),
        vitals: Keyed(vitals),
    })
}

/// The session's state as the MQTT side tracks it from session events.
#[derive(Clone, Debug, Default)]
pub struct SessionState {
    /// Phase.
    pub phase: SessionPhase,
    /// Pseudonymous id.
    pub session: SessionId,
    /// Baselines by vital index.
    pub baselines: [Option<f32>; Vital::COUNT],
    /// Doses: number, route, amount, note, time.
    pub doses: Vec<(u16, String, Option<DoseAmount>, String, SystemTime)>,
    /// Discharge readiness.
    pub discharge_ready: bool,
}

impl SessionState {
    /// Applies one event.
    pub fn apply(&mut self, e: &SessionEvent, time: SystemTime) {
        match *e {
            SessionEvent::Phase { phase, session } => {
                if phase == SessionPhase::Baseline || phase == SessionPhase::Idle {
                    *self = SessionState::default();
                }
                self.phase = phase;
                self.session = session;
            }
            SessionEvent::Baseline { vital, value, .. } => {
                self.baselines[vital.index()] = Some(value);
            }
            SessionEvent::Dose {
                number,
                route,
                amount,
                note,
            } => self.doses.push((
                number,
                route.as_str().into(),
                amount,
                note.as_str().into(),
                time,
            )),
            SessionEvent::DischargeReadiness { ready } => self.discharge_ready = ready,
            // Advisory: the event says it; the state holds the baselines set.
            SessionEvent::BaselineIncomplete { .. } => {}
        }
    }
}

/// `session`: the event and the state after it (retained).
pub fn session(
    ctx: &Ctx<'_>,
    seq: u64,
    stream_seq: u64,
    time: SystemTime,
    e: &SessionEvent,
    state: &SessionState,
) -> Vec<u8> {
    let event = match e {
        SessionEvent::Phase { phase, session } => m::SessionEvent::Phase {
            phase: text(phase.key()),
            session: text(session.as_str()),
        },
        SessionEvent::Baseline {
            vital,
            value,
            readings,
        } => m::SessionEvent::Baseline {
            vital: text(vital.key()),
            value: round(*value),
            readings: *readings,
        },
        SessionEvent::Dose {
            number,
            route,
            amount,
            note,
        } => m::SessionEvent::Dose(dose(*number, route.as_str(), note.as_str(), None, *amount)),
        SessionEvent::DischargeReadiness { ready } => {
            m::SessionEvent::DischargeReadiness { ready: *ready }
        }
        SessionEvent::BaselineIncomplete { .. } => {
            let missing: Vec<&str> = e.missing_baselines().map(|v| v.key()).collect();
            m::SessionEvent::BaselineIncomplete {
                text: Cow::Owned(format!(
                    "baseline incomplete: no baseline for {} (too few readings before the dose); their trend alarms are not armed",
                    missing.join(", ")
                )),
                missing: missing.into_iter().map(text).collect(),
            }
        }
    };
    let baselines = Vital::ALL
        .iter()
        .filter_map(|v| state.baselines[v.index()].map(|b| (text(v.key()), round(b))))
        .collect();
    let doses = state
        .doses
        .iter()
        .map(|(n, route, amount, note, t)| dose(*n, route, note, Some(*t), *amount))
        .collect();
    m::to_vec(&m::Session {
        head: m::Head {
            stream_seq: Some(stream_seq),
            ..head(ctx, seq, time)
        },
        event,
        state: m::SessionState {
            phase: text(state.phase.key()),
            session: text(state.session.as_str()),
            baselines: Keyed(baselines),
            doses,
            discharge_ready: state.discharge_ready,
        },
    })
}

/// A dose, with its `amount` and `unit` when it has them (absent otherwise).
fn dose<'a>(
    number: u16,
    route: &'a str,
    note: &'a str,
    at: Option<SystemTime>,
    amount: Option<DoseAmount>,
) -> m::Dose<'a> {
    m::Dose {
        number: u32::from(number),
        route: text(route),
        note: text(note),
        time: at.and_then(time),
        amount: amount.map(|a| round(a.value)),
        unit: amount.map(|a| text(a.unit.key())),
    }
}

/// The latest reading of each vital, as the MQTT side saw them.
#[derive(Clone, Debug, Default)]
pub struct Latest {
    slots: [Option<(Sample, SystemTime, u16)>; Vital::COUNT],
}

impl Latest {
    /// Whether no reading was seen yet.
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }

    /// Records a reading's samples.
    pub fn apply(&mut self, m: &Measurement, time: SystemTime, source: u16) {
        let mut put = |v: Vital, s: Sample| self.slots[v.index()] = Some((s, time, source));
        match *m {
            Measurement::HeartRate(s) => put(Vital::HeartRate, s),
            Measurement::PulseRate(s) => put(Vital::PulseRate, s),
            Measurement::SpO2(s) => put(Vital::SpO2, s),
            Measurement::RespRate(s) => put(Vital::RespRate, s),
            Measurement::EtCo2(s) => put(Vital::EtCo2, s),
            Measurement::Nibp(n) => {
                put(Vital::NibpSystolic, n.systolic);
                put(Vital::NibpDiastolic, n.diastolic);
                put(Vital::NibpMean, n.mean);
            }
        }
    }
}

/// `vitals`: the latest value and validity of every vital seen (retained, QoS 0).
pub fn vitals(ctx: &Ctx<'_>, seq: u64, time: SystemTime, latest: &Latest) -> Vec<u8> {
    let vitals = Vital::ALL
        .iter()
        .filter_map(|v| {
            let (s, t, src) = latest.slots[v.index()]?;
            let source = match ctx.names.get(src as usize) {
                Some(name) => text(name),
                None => Cow::Owned(src.to_string()),
            };
            // An old measurement keeps its number, to be shown as old; a
            // questionable one keeps it too, to be shown with its doubt (it
            // drives alarms by default, so a nurse must see what it is).
            let value = if matches!(s.validity, Validity::Old | Validity::Questionable) {
                Some(s.value)
            } else {
                s.get()
            };
            let reading = m::VitalValue {
                value: finite(value),
                validity: text(s.validity.key()),
                unit: text(v.unit().symbol()),
                time: self::time(t),
                source: Some(source),
            };
            Some((text(v.key()), reading))
        })
        .collect();
    m::to_vec(&m::Vitals {
        head: head(ctx, seq, time),
        vitals: Keyed(vitals),
    })
}

/// Outbox and connection figures for the heartbeat.
#[derive(Clone, Copy, Debug, Default)]
pub struct Delivery {
    /// Undelivered alarm and session messages.
    pub pending: usize,
    /// Evicted since start.
    pub evicted: u64,
    /// The outbox limit.
    pub max: u32,
    /// Whether the outbox is journaled to disk.
    pub durable: bool,
    /// Reconnections since start.
    pub reconnects: u64,
    /// Commands answered `rejected` since start (any reason).
    pub commands_rejected: u64,
    /// Of them, commands too large to read (over the size limit).
    pub commands_oversized: u64,
    /// Readings whose own `vitals` message was coalesced into a later one
    /// because the publish window was full (alarms first).
    pub vitals_coalesced: u64,
    /// Alarm and session messages the broker refused (MQTT 5 only tells).
    pub refused: u64,
}

/// `status` while running: the heartbeat (retained).
pub fn heartbeat(
    ctx: &Ctx<'_>,
    seq: u64,
    time: SystemTime,
    beat: u64,
    live: &LiveState,
    delivery: Delivery,
) -> Vec<u8> {
    let [p50, p99, p999, max] = live.latency_us;
    let beat = m::Heartbeat {
        beat,
        uptime_s: live.uptime.as_secs(),
        sources: live
            .sources
            .iter()
            .map(|s| m::Source {
                name: text(&s.name),
                up: s.up,
                health: Some(text(s.health.key())),
                associated: s.associated,
                frames_ok: s.frames_ok,
                frames_ignored: s.frames_ignored,
                frames_dropped: s.frames_dropped,
            })
            .collect(),
        latency_us: Some(m::Latency {
            p50,
            p99,
            p999,
            max,
        }),
        events_dropped: live.events_dropped,
        vitals_coalesced: delivery.vitals_coalesced,
        outbox: Some(m::Outbox {
            pending: delivery.pending,
            evicted: delivery.evicted,
            refused: delivery.refused,
            max: delivery.max,
            durable: delivery.durable,
            reconnects: delivery.reconnects,
        }),
        commands: Some(m::Commands {
            rejected: delivery.commands_rejected,
            oversized: delivery.commands_oversized,
        }),
    };
    m::to_vec(&m::Status {
        head: head(ctx, seq, time),
        state: m::StatusState::Online(beat),
    })
}

/// `status` when vigil is gone: the Last Will (`reason` = `connection_lost`,
/// set when connecting) or the goodbye on a clean shutdown (`shutdown`).
pub fn offline(ctx: &Ctx<'_>, seq: u64, time: SystemTime, reason: &str) -> Vec<u8> {
    m::to_vec(&m::Status {
        head: head(ctx, seq, time),
        state: m::StatusState::Offline {
            reason: Some(text(reason)),
        },
    })
}

/// `cmd/result`: the verdict on one command.
pub fn command_result(
    ctx: &Ctx<'_>,
    seq: u64,
    time: SystemTime,
    id: Option<&str>,
    command: Option<&str>,
    verdict: Result<(), &str>,
) -> Vec<u8> {
    m::to_vec(&m::CommandResult {
        head: head(ctx, seq, time),
        id: id.map(text),
        command: command.map(text),
        result: text(if verdict.is_ok() {
            "accepted"
        } else {
            "rejected"
        }),
        reason: verdict.err().map(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_rfc3339;
    use serde_json::{json, Value};
    use std::time::Duration;

    #[test]
    fn old_and_questionable_values_keep_their_number_other_non_valid_ones_do_not() {
        let names = vec!["monitor".to_owned()];
        let ctx = Ctx {
            site: "s",
            bed: "b",
            names: &names,
            epoch: "e",
        };
        let mut latest = Latest::default();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_460_645);
        latest.apply(
            &Measurement::HeartRate(Sample::valid(72.0).into_old()),
            t,
            0,
        );
        latest.apply(
            &Measurement::SpO2(Sample::new(88.0, Validity::Artifact)),
            t,
            0,
        );
        latest.apply(
            &Measurement::PulseRate(Sample::new(131.0, Validity::Questionable)),
            t,
            0,
        );
        let v: Value = serde_json::from_slice(&vitals(&ctx, 1, t, &latest)).unwrap();
        assert_eq!(v["vitals"]["hr"]["validity"], "old");
        assert_eq!(v["vitals"]["hr"]["value"].as_f64(), Some(72.0));
        assert_eq!(v["vitals"]["pr"]["validity"], "questionable");
        assert_eq!(v["vitals"]["pr"]["value"].as_f64(), Some(131.0));
        assert_eq!(v["vitals"]["spo2"]["validity"], "artifact");
        assert!(v["vitals"]["spo2"]["value"].is_null());
    }

    #[test]
    fn the_combined_nibp_high_carries_both_components_and_matches_its_schema() {
        use crate::vitals::{DeviceTime, Nibp, NibpMode};
        let names = vec!["monitor".to_owned()];
        let ctx = test_ctx(&names);
        let mut e = nibp_engine(&names);
        let now = crate::time::Instant::from_secs(1);
        let n = Nibp {
            systolic: Sample::valid(187.0),
            diastolic: Sample::valid(114.0),
            mean: Sample::valid(138.0),
            measured_at: Some(DeviceTime(1)),
            mode: NibpMode::Auto,
        };
        feed_nibp(&mut e, now, n);
        let a = alarms_of(&mut e).into_iter().next().expect("nibp.high");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_460_645);
        let v: Value = serde_json::from_slice(&alarm(&ctx, 1, 1, t, &a, |_| t)).unwrap();
        let o = &v["alarm"];
        assert_eq!(o["id"], "nibp.high");
        assert_eq!(
            (o["value"].as_f64(), o["limit"].as_f64()),
            (Some(187.0), Some(180.0))
        );
        assert_eq!(
            o["components"],
            json!({"nibp_sys": {"value": 187.0, "limit": 180.0},
                   "nibp_dia": {"value": 114.0, "limit": 110.0}})
        );
        check_schema("alarm.schema.json", &v);
    }

    /// An engine for `names` that raises NIBP alarms at once (no
    /// confirmation by a second measurement).
    fn nibp_engine(names: &[String]) -> crate::engine::Engine {
        let mut cfg = crate::engine::EngineConfig {
            source_names: names.to_vec(),
            ..crate::engine::EngineConfig::default()
        };
        cfg.nibp.confirm = crate::engine::NibpConfirm::Off;
        crate::engine::Engine::new(cfg)
    }

    fn feed_nibp(e: &mut crate::engine::Engine, now: crate::time::Instant, n: crate::vitals::Nibp) {
        e.handle_reading(
            now,
            crate::vitals::Reading {
                source: crate::vitals::SourceId(0),
                arrival: now,
                device_time: None,
                measurement: Measurement::Nibp(n),
            },
        );
    }

    /// The alarm events the engine has queued.
    fn alarms_of(e: &mut crate::engine::Engine) -> Vec<AlarmEvent> {
        std::iter::from_fn(|| e.poll_event())
            .filter_map(|ev| match ev.kind {
                crate::engine::EventKind::Alarm(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    /// The validator of `schemas/{file}`.
    fn schema(file: &str) -> jsonschema::Validator {
        let path = format!("{}/schemas/{file}", env!("CARGO_MANIFEST_DIR"));
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        jsonschema::validator_for(&schema).unwrap()
    }

    fn check_schema(file: &str, v: &Value) {
        let errors: Vec<String> = schema(file).iter_errors(v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{file}: {errors:?}\n{v}");
    }

    /// A publishing context for bed `s`/`b` with a fixed epoch.
    fn test_ctx(names: &[String]) -> Ctx<'_> {
        Ctx {
            site: "s",
            bed: "b",
            names,
            epoch: "0123456789abcdef",
        }
    }

    #[test]
    fn breathing_vitals_and_the_apnoea_alarm_match_their_schemas() {
        use crate::engine::{AlarmKind, Engine, EngineConfig, EventKind};
        use crate::vitals::{Reading, SourceId};
        let names = vec!["monitor".to_owned()];
        let ctx = test_ctx(&names);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_460_645);
        let mut latest = Latest::default();
        latest.apply(&Measurement::RespRate(Sample::valid(14.0)), t, 0);
        latest.apply(&Measurement::EtCo2(Sample::valid(38.0)), t, 0);
        let v: Value = serde_json::from_slice(&vitals(&ctx, 1, t, &latest)).unwrap();
        assert_eq!(v["vitals"]["rr"]["value"].as_f64(), Some(14.0));
        assert_eq!(v["vitals"]["rr"]["unit"], "/min");
        assert_eq!(v["vitals"]["etco2"]["value"].as_f64(), Some(38.0));
        assert_eq!(v["vitals"]["etco2"]["unit"], "mm[Hg]");
        check_schema("vitals.schema.json", &v);

        let mut e = Engine::new(EngineConfig {
            source_names: names.clone(),
            ..EngineConfig::default()
        });
        for s in 0..=20 {
            let now = crate::time::Instant::from_secs(s);
            e.handle_reading(
                now,
                Reading {
                    source: SourceId(0),
                    arrival: now,
                    device_time: None,
                    measurement: Measurement::RespRate(Sample::valid(0.0)),
                },
            );
        }
        let a = std::iter::from_fn(|| e.poll_event())
            .find_map(|ev| match ev.kind {
                EventKind::Alarm(a) => Some(a),
                _ => None,
            })
            .expect("rr.apnoea");
        assert_eq!(a.kind, AlarmKind::Physiological);
        let v: Value = serde_json::from_slice(&alarm(&ctx, 1, 1, t, &a, |_| t)).unwrap();
        assert_eq!(v["alarm"]["id"], "rr.apnoea");
        assert_eq!(v["alarm"]["priority"], "high");
        assert_eq!(v["alarm"]["value"].as_f64(), Some(0.0));
        check_schema("alarm.schema.json", &v);
    }

    #[test]
    fn a_dose_publishes_its_amount_and_unit_when_it_has_them() {
        use crate::engine::{DoseAmount, DoseUnit};
        use crate::vitals::ShortText;
        let names = vec!["m".to_owned()];
        let ctx = test_ctx(&names);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_460_645);
        let mut state = SessionState::default();
        let with = SessionEvent::Dose {
            number: 1,
            route: ShortText::new("im"),
            amount: DoseAmount::new(0.5, DoseUnit::MgPerKg),
            note: ShortText::new("racemic"),
        };
        state.apply(&with, t);
        let v: Value = serde_json::from_slice(&session(&ctx, 3, 2, t, &with, &state)).unwrap();
        assert_eq!(
            (&v["event"]["amount"], &v["event"]["unit"]),
            (&json!(0.5), &json!("mg/kg"))
        );
        assert_eq!(v["state"]["doses"][0]["amount"], 0.5);
        check_schema("session.schema.json", &v);
        let without = SessionEvent::Dose {
            number: 2,
            route: ShortText::new("sl"),
            amount: None,
            note: ShortText::empty(),
        };
        state.apply(&without, t);
        let v: Value = serde_json::from_slice(&session(&ctx, 4, 3, t, &without, &state)).unwrap();
        assert!(v["event"].get("amount").is_none() && v["event"].get("unit").is_none());
        assert_eq!(v["state"]["doses"][1]["route"], "sl");
        check_schema("session.schema.json", &v);
        // The schema refuses an amount without its unit.
        let mut half = v.clone();
        half["event"]["amount"] = json!(25);
        assert!(!schema("session.schema.json").is_valid(&half));
    }

    #[test]
    fn the_limits_in_force_carry_every_vital_and_match_their_schema() {
        use crate::engine::{EngineConfig, Priority};
        let ctx = test_ctx(&[]);
        let mut rules = EngineConfig::default().vitals;
        rules[Vital::SpO2.index()].low = Some(Limit::new(92.0, Priority::High));
        rules[Vital::NibpMean.index()].enabled = false;
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_460_645);
        let v: Value = serde_json::from_slice(&limits(&ctx, 7, t, &rules)).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["epoch"], "0123456789abcdef");
        let spo2 = &v["vitals"]["spo2"];
        assert_eq!(spo2["low"], json!({"value": 92.0, "priority": "high"}));
        assert_eq!(
            spo2["critical_low"],
            json!({"value": 85.0, "priority": "high"})
        );
        assert_eq!(spo2["high"], Value::Null);
        assert_eq!(spo2["unit"], "%");
        assert_eq!(spo2["delay_ms"], 15_000);
        assert_eq!(v["vitals"]["hr"]["high"]["value"], 120.0);
        assert_eq!(v["vitals"]["nibp_mean"]["enabled"], false);
        assert_eq!(v["vitals"].as_object().unwrap().len(), Vital::COUNT);
        check_schema("limits.schema.json", &v);
    }

    #[test]
    fn rfc3339_round_trips_and_rejects_nonsense() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_460_645_123);
        assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        assert_eq!(
            parse_rfc3339("2026-11-23T20:04:05.123+01:00"),
            Some(t),
            "offsets are applied"
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00Z"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400))
        );
        for bad in [
            "",
            "yesterday",
            "2026-11-23",
            "2026-11-23T19:04:05",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-23T19:04:05.Z",
            "2026-11-23T19:04:05+0100",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    /// Every kind of payload, built from fixed inputs: (name, bytes).
    fn every_payload() -> Vec<(String, Vec<u8>)> {
        use crate::engine::{Command, DoseUnit, EngineConfig, SessionId, SourceHealth};
        use crate::pipeline::SourceState;
        use crate::time::Instant;
        use crate::vitals::{DeviceTime, Nibp, NibpMode, ShortText};
        let names = vec!["monitor".to_owned()];
        let ctx = test_ctx(&names);
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_460_645_123);
        let wall = move |i: Instant| t + (i - Instant::ZERO);
        let mut out = Vec::new();

        let mut latest = Latest::default();
        latest.apply(&Measurement::HeartRate(Sample::valid(72.0)), t, 0);
        latest.apply(
            &Measurement::SpO2(Sample::new(88.0, Validity::Artifact)),
            t,
            0,
        );
        latest.apply(
            &Measurement::PulseRate(Sample::valid(71.0).into_old()),
            t,
            0,
        );
        latest.apply(
            &Measurement::RespRate(Sample::new(13.5, Validity::Questionable)),
            t,
            0,
        );
        latest.apply(&Measurement::EtCo2(Sample::valid(36.6)), t, 0);
        let nibp = Nibp {
            systolic: Sample::valid(187.0),
            diastolic: Sample::valid(114.0),
            mean: Sample::missing(Validity::Unavailable),
            measured_at: Some(DeviceTime(1)),
            mode: NibpMode::Auto,
        };
        latest.apply(&Measurement::Nibp(nibp), t, 1);
        out.push(("vitals".into(), vitals(&ctx, 1, t, &latest)));

        let mut e = nibp_engine(&names);
        let nibp = Nibp {
            mean: Sample::valid(138.0),
            ..nibp
        };
        feed_nibp(&mut e, Instant::from_secs(1), nibp);
        let start = alarms_of(&mut e).remove(0);
        e.handle_command(
            Instant::from_secs(2),
            Command::Acknowledge {
                alarm: start.id,
                by: ShortText::new("RN"),
            },
        )
        .unwrap();
        let acked = alarms_of(&mut e).remove(0);
        out.push(("alarm start".into(), alarm(&ctx, 2, 1, t, &start, wall)));
        out.push((
            "alarm acknowledge".into(),
            alarm(&ctx, 3, 2, t, &acked, wall),
        ));

        let live = LiveState {
            uptime: Duration::from_secs(3600),
            sources: vec![SourceState {
                name: "monitor".into(),
                up: true,
                health: SourceHealth::Ok,
                associated: Some(true),
                frames_ok: 1000,
                frames_ignored: 20,
                frames_dropped: 3,
            }],
            latency_us: [40, 120, 300, 900],
            events_dropped: 1,
            present_alarms: vec![acked, start],
            audio_paused_until: Some(Instant::from_secs(120)),
            ..LiveState::default()
        };
        out.push(("active".into(), active(&ctx, 4, t, &live, wall)));
        let empty = LiveState::default();
        out.push(("active empty".into(), active(&ctx, 5, t, &empty, wall)));
        let rules = EngineConfig::default().vitals;
        out.push(("limits".into(), limits(&ctx, 6, t, &rules)));

        let session_id = SessionId::new("K-0142");
        let events = [
            SessionEvent::Phase {
                phase: SessionPhase::Baseline,
                session: session_id,
            },
            SessionEvent::Baseline {
                vital: Vital::HeartRate,
                value: 72.5,
                readings: 30,
            },
            SessionEvent::Dose {
                number: 1,
                route: ShortText::new("im"),
                amount: DoseAmount::new(0.5, DoseUnit::MgPerKg),
                note: ShortText::new("racemic, \"left\" arm"),
            },
            SessionEvent::Dose {
                number: 2,
                route: ShortText::new("iv"),
                amount: None,
                note: ShortText::empty(),
            },
            SessionEvent::BaselineIncomplete {
                missing: core::array::from_fn(|i| {
                    i == Vital::SpO2.index() || i == Vital::NibpMean.index()
                }),
            },
            SessionEvent::Phase {
                phase: SessionPhase::Recovery,
                session: session_id,
            },
            SessionEvent::DischargeReadiness { ready: true },
        ];
        let mut state = SessionState::default();
        for (i, ev) in events.iter().enumerate() {
            state.apply(ev, t + Duration::from_secs(i as u64));
            let n = i as u64;
            out.push((
                format!("session {n}"),
                session(&ctx, 7 + n, 3 + n, t, ev, &state),
            ));
        }

        let delivery = Delivery {
            pending: 2,
            evicted: 1,
            max: 1000,
            durable: true,
            reconnects: 4,
            commands_rejected: 5,
            commands_oversized: 1,
            vitals_coalesced: 7,
            refused: 0,
        };
        out.push((
            "heartbeat".into(),
            heartbeat(&ctx, 20, t, 9, &live, delivery),
        ));
        out.push(("offline".into(), offline(&ctx, 21, t, "connection_lost")));
        out.push((
            "result accepted".into(),
            command_result(&ctx, 22, t, Some("d-1"), Some("acknowledge"), Ok(())),
        ));
        out.push((
            "result rejected".into(),
            command_result(&ctx, 23, t, None, None, Err("not JSON")),
        ));
        out
    }

    /// The payloads' bytes as they go on the wire today, one `name: json`
    /// line each: a change in any of them (a key's order, a number's form)
    /// shows here, and must be one the schemas and the displays allow.
    /// `VIGIL_BLESS=1` rewrites the file after a deliberate change.
    #[test]
    fn every_payload_keeps_its_bytes_on_the_wire() {
        let path = format!("{}/tests/fixtures/payloads.txt", env!("CARGO_MANIFEST_DIR"));
        let got: String = every_payload()
            .into_iter()
            .map(|(name, bytes)| format!("{name}: {}\n", String::from_utf8(bytes).unwrap()))
            .collect();
        if std::env::var_os("VIGIL_BLESS").is_some() {
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap();
        for (g, w) in got.lines().zip(want.lines()) {
            assert_eq!(g, w);
        }
        assert_eq!(got.lines().count(), want.lines().count());
        // And every one matches its schema.
        for (name, bytes) in every_payload() {
            let file = match name.split(' ').next().unwrap() {
                "alarm" => "alarm.schema.json",
                "active" => "alarms-active.schema.json",
                "result" => "command-result.schema.json",
                "heartbeat" | "offline" => "status.schema.json",
                other => &format!("{other}.schema.json"),
            };
            check_schema(file, &serde_json::from_slice(&bytes).unwrap());
        }
    }
}
