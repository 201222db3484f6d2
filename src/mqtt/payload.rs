//! The JSON payloads vigil publishes, one function per topic, and the RFC
//! 3339 parser commands need. Every payload carries `schema_version`, the
//! site and bed, the stream epoch, the event sequence number `seq` and RFC
//! 3339 UTC times; `schemas/*.schema.json` describe each one (a test
//! validates what the daemon sends against them).
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

use serde_json::{json, Map, Value};

use crate::engine::{
    AlarmEvent, DoseAmount, Limit, SessionEvent, SessionId, SessionPhase, VitalRules,
};
use crate::pipeline::LiveState;
use crate::time::rfc3339;
use crate::vitals::{Measurement, Sample, Validity, Vital};

/// The payloads' schema version.
pub const SCHEMA_VERSION: u32 = 1;

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

fn head(ctx: &Ctx<'_>, seq: u64, time: SystemTime) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("schema_version".into(), json!(SCHEMA_VERSION));
    m.insert("site".into(), json!(ctx.site));
    m.insert("bed".into(), json!(ctx.bed));
    m.insert("epoch".into(), json!(ctx.epoch));
    m.insert("seq".into(), json!(seq));
    m.insert("time".into(), json!(rfc3339(time)));
    m
}

fn finite(v: Option<f32>) -> Value {
    match v {
        Some(v) if v.is_finite() => json!(round(v)),
        _ => Value::Null,
    }
}

/// f32 to a short decimal (82.0 stays 82, 36.6 does not become 36.599998).
fn round(v: f32) -> f64 {
    let d = f64::from(v);
    (d * 1000.0).round() / 1000.0
}

/// One alarm as an object (used by `alarms` and `alarms/active`).
/// `wall` maps a core instant to wall-clock time.
pub fn alarm_object(
    ctx: &Ctx<'_>,
    a: &AlarmEvent,
    wall: impl Fn(crate::time::Instant) -> SystemTime,
) -> Value {
    let mut o = json!({
        "id": a.id.key(ctx.names),
        "kind": a.kind.key(),
        "priority": a.priority.key(),
        "base_priority": a.base_priority.key(),
        "phase": a.phase.key(),
        "state": a.state.key(),
        "value": finite(a.value),
        "limit": finite(a.limit),
        "validity": a.validity.map(|v| v.key()),
        "delay_ms": a.delay.as_millis() as u64,
        "onset": rfc3339(wall(a.onset)),
        "determined": rfc3339(wall(a.determined)),
        "ack": a.ack.map(|k| json!({"by": k.by.as_str(), "at": rfc3339(wall(k.at))})),
    });
    if let (Some(parts), Some(m)) = (a.components, o.as_object_mut()) {
        let parts: Map<String, Value> = parts
            .iter()
            .map(|c| {
                let v = json!({"value": finite(c.value), "limit": finite(c.limit)});
                (c.vital.key().to_owned(), v)
            })
            .collect();
        m.insert("components".into(), Value::Object(parts));
    }
    o
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
    let mut m = head(ctx, seq, time);
    m.insert("stream_seq".into(), json!(stream_seq));
    m.insert("alarm".into(), alarm_object(ctx, a, wall));
    to_vec(m)
}

/// `alarms/active`: every alarm present now (retained).
pub fn active(
    ctx: &Ctx<'_>,
    seq: u64,
    time: SystemTime,
    live: &LiveState,
    wall: impl Fn(crate::time::Instant) -> SystemTime + Copy,
) -> Vec<u8> {
    let mut m = head(ctx, seq, time);
    let alarms: Vec<Value> = live
        .present_alarms
        .iter()
        .map(|a| alarm_object(ctx, a, wall))
        .collect();
    m.insert("alarms".into(), Value::Array(alarms));
    m.insert(
        "audio_paused_until".into(),
        live.audio_paused_until
            .map_or(Value::Null, |t| json!(rfc3339(wall(t)))),
    );
    to_vec(m)
}

/// `limits`: the alarm limits in force per vital (retained), published at
/// start-up and after every configuration reload.
pub fn limits(
    ctx: &Ctx<'_>,
    seq: u64,
    time: SystemTime,
    rules: &[VitalRules; Vital::COUNT],
) -> Vec<u8> {
    let mut m = head(ctx, seq, time);
    let limit = |l: Option<Limit>| {
        l.map_or(
            Value::Null,
            |l| json!({"value": round(l.value), "priority": l.priority.key()}),
        )
    };
    let vitals: Map<String, Value> = Vital::ALL
        .iter()
        .map(|v| {
            let r = &rules[v.index()];
            let o = json!({
                "enabled": r.enabled,
                "unit": v.unit().symbol(),
                "low": limit(r.low),
                "high": limit(r.high),
                "critical_low": limit(r.critical_low),
                "critical_high": limit(r.critical_high),
                "delay_ms": r.delay.as_millis() as u64,
                "hysteresis": round(r.hysteresis),
            });
            (v.key().to_owned(), o)
        })
        .collect();
    m.insert("vitals".into(), Value::Object(vitals));
    to_vec(m)
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
    let mut m = head(ctx, seq, time);
    m.insert("stream_seq".into(), json!(stream_seq));
    let event = match *e {
        SessionEvent::Phase { phase, session } => {
            json!({"type": "phase", "phase": phase.key(), "session": session.as_str()})
        }
        SessionEvent::Baseline {
            vital,
            value,
            readings,
        } => {
            json!({"type": "baseline", "vital": vital.key(), "value": round(value), "readings": readings})
        }
        SessionEvent::Dose {
            number,
            route,
            amount,
            note,
        } => {
            let mut d = json!({"type": "dose", "number": number, "route": route.as_str(), "note": note.as_str()});
            put_amount(&mut d, amount);
            d
        }
        SessionEvent::DischargeReadiness { ready } => {
            json!({"type": "discharge_readiness", "ready": ready})
        }
        SessionEvent::BaselineIncomplete { .. } => {
            let missing: Vec<&str> = e.missing_baselines().map(|v| v.key()).collect();
            json!({
                "type": "baseline_incomplete",
                "missing": missing,
                "text": format!(
                    "baseline incomplete: no baseline for {} (too few readings before the dose); their trend alarms are not armed",
                    missing.join(", ")
                ),
            })
        }
    };
    m.insert("event".into(), event);
    let mut baselines = Map::new();
    for v in Vital::ALL {
        if let Some(b) = state.baselines[v.index()] {
            baselines.insert(v.key().into(), json!(round(b)));
        }
    }
    let doses: Vec<Value> = state
        .doses
        .iter()
        .map(|(n, route, amount, note, t)| {
            let mut d = json!({"number": n, "route": route, "note": note, "time": rfc3339(*t)});
            put_amount(&mut d, *amount);
            d
        })
        .collect();
    m.insert(
        "state".into(),
        json!({
            "phase": state.phase.key(),
            "session": state.session.as_str(),
            "baselines": baselines,
            "doses": doses,
            "discharge_ready": state.discharge_ready,
        }),
    );
    to_vec(m)
}

/// A dose's `amount` and `unit`, when it has them (absent otherwise).
fn put_amount(dose: &mut Value, amount: Option<DoseAmount>) {
    if let (Some(a), Some(m)) = (amount, dose.as_object_mut()) {
        m.insert("amount".into(), json!(round(a.value)));
        m.insert("unit".into(), json!(a.unit.key()));
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
    let mut m = head(ctx, seq, time);
    let mut vitals = Map::new();
    for v in Vital::ALL {
        if let Some((s, t, src)) = latest.slots[v.index()] {
            let source = ctx
                .names
                .get(src as usize)
                .cloned()
                .unwrap_or_else(|| src.to_string());
            // An old measurement keeps its number, to be shown as old; a
            // questionable one keeps it too, to be shown with its doubt (it
            // drives alarms by default, so a nurse must see what it is).
            let value = if matches!(s.validity, Validity::Old | Validity::Questionable) {
                Some(s.value)
            } else {
                s.get()
            };
            vitals.insert(
                v.key().into(),
                json!({
                    "value": finite(value),
                    "validity": s.validity.key(),
                    "unit": v.unit().symbol(),
                    "time": rfc3339(t),
                    "source": source,
                }),
            );
        }
    }
    m.insert("vitals".into(), Value::Object(vitals));
    to_vec(m)
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
    let mut m = head(ctx, seq, time);
    m.insert("state".into(), json!("online"));
    m.insert("beat".into(), json!(beat));
    m.insert("uptime_s".into(), json!(live.uptime.as_secs()));
    let sources: Vec<Value> = live
        .sources
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "up": s.up,
                "health": s.health.key(),
                "associated": s.associated,
                "frames_ok": s.frames_ok,
                "frames_ignored": s.frames_ignored,
                "frames_dropped": s.frames_dropped,
            })
        })
        .collect();
    m.insert("sources".into(), Value::Array(sources));
    let [p50, p99, p999, max] = live.latency_us;
    m.insert(
        "latency_us".into(),
        json!({"p50": p50, "p99": p99, "p999": p999, "max": max}),
    );
    m.insert("events_dropped".into(), json!(live.events_dropped));
    m.insert("vitals_coalesced".into(), json!(delivery.vitals_coalesced));
    m.insert(
        "outbox".into(),
        json!({
            "pending": delivery.pending,
            "evicted": delivery.evicted,
            "refused": delivery.refused,
            "max": delivery.max,
            "durable": delivery.durable,
            "reconnects": delivery.reconnects,
        }),
    );
    m.insert(
        "commands".into(),
        json!({
            "rejected": delivery.commands_rejected,
            "oversized": delivery.commands_oversized,
        }),
    );
    to_vec(m)
}

/// `status` when vigil is gone: the Last Will (`reason` = `connection_lost`,
/// set when connecting) or the goodbye on a clean shutdown (`shutdown`).
pub fn offline(ctx: &Ctx<'_>, seq: u64, time: SystemTime, reason: &str) -> Vec<u8> {
    let mut m = head(ctx, seq, time);
    m.insert("state".into(), json!("offline"));
    m.insert("reason".into(), json!(reason));
    to_vec(m)
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
    let mut m = head(ctx, seq, time);
    m.insert("id".into(), id.map_or(Value::Null, |s| json!(s)));
    m.insert("command".into(), command.map_or(Value::Null, |s| json!(s)));
    match verdict {
        Ok(()) => {
            m.insert("result".into(), json!("accepted"));
            m.insert("reason".into(), Value::Null);
        }
        Err(reason) => {
            m.insert("result".into(), json!("rejected"));
            m.insert("reason".into(), json!(reason));
        }
    }
    to_vec(m)
}

fn to_vec(m: Map<String, Value>) -> Vec<u8> {
    // Serialising a Value to a Vec cannot fail.
    serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_rfc3339;
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
        use crate::engine::{Engine, EngineConfig, EventKind, NibpConfirm};
        use crate::vitals::{DeviceTime, Nibp, NibpMode, Reading, SourceId};
        let names = vec!["monitor".to_owned()];
        let ctx = test_ctx(&names);
        let mut cfg = EngineConfig {
            source_names: names.clone(),
            ..EngineConfig::default()
        };
        cfg.nibp.confirm = NibpConfirm::Off;
        let mut e = Engine::new(cfg);
        let now = crate::time::Instant::from_secs(1);
        let n = Nibp {
            systolic: Sample::valid(187.0),
            diastolic: Sample::valid(114.0),
            mean: Sample::valid(138.0),
            measured_at: Some(DeviceTime(1)),
            mode: NibpMode::Auto,
        };
        e.handle_reading(
            now,
            Reading {
                source: SourceId(0),
                arrival: now,
                device_time: None,
                measurement: Measurement::Nibp(n),
            },
        );
        let a = std::iter::from_fn(|| e.poll_event())
            .find_map(|ev| match ev.kind {
                EventKind::Alarm(a) => Some(a),
                _ => None,
            })
            .expect("nibp.high");
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
}
