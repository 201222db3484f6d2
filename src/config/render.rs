//! [`render`]: a configuration as TOML in the file's schema, every value
//! explicit, written by the toml serializer so that any string (quotes,
//! backslashes, control characters, any script) comes out as valid TOML
//! that reads back to the same value. `vigil check-config` and `vigil setup`
//! print it; every recording stores it.

use core::time::Duration;
use std::path::Path;

use serde::Serialize;

use super::{format_duration, technical_slots, Config, Link, StateDir};
use crate::engine::rules::{BaselineRule, Limit, RateRule, VitalRules};
use crate::vitals::Vital;

/// Renders a configuration as TOML in the file's schema (every value explicit).
pub fn render(cfg: &Config) -> String {
    toml::to_string(&Out::from(cfg)).expect("a configuration always serializes to TOML")
}

/// A number as the file writes it: integral values without a fraction, and
/// an `f32` by its shortest decimal form (0.2, not 0.20000000298023224).
#[derive(Serialize)]
#[serde(untagged)]
enum Num {
    Int(i64),
    Float(f64),
}

fn num(v: f32) -> Num {
    if v.fract() == 0.0 && v.abs() < 1e9 {
        Num::Int(v as i64)
    } else {
        Num::Float(format!("{v}").parse().unwrap_or(f64::from(v)))
    }
}

fn dur(d: Duration) -> String {
    format_duration(d)
}

fn off_or(d: Option<Duration>) -> String {
    d.map_or_else(|| "off".to_owned(), dur)
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[derive(Serialize)]
struct Out {
    site: OutSite,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    source: Vec<OutSource>,
    alarms: OutAlarms,
    session: OutSession,
    recording: OutRecording,
    mqtt: OutMqtt,
    #[serde(skip_serializing_if = "Option::is_none")]
    hl7: Option<OutHl7>,
}

#[derive(Serialize)]
struct OutHl7 {
    to: String,
    interval: String,
    timeout: String,
    tls: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<String>,
}

#[derive(Serialize)]
struct OutSite {
    site: String,
    bed: String,
}

#[derive(Serialize, Default)]
struct OutSource {
    name: String,
    protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    baud: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parity: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_bits: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rts_cts: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    simulated: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    speed: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    timeout: String,
    vitals: Vec<&'static str>,
}

#[derive(Serialize)]
struct OutAlarms {
    realert_after: String,
    escalate_after: String,
    max_audio_pause: String,
    technical_delay: String,
    hr: OutVital,
    pr: OutVital,
    spo2: OutVital,
    nibp_sys: OutVital,
    nibp_dia: OutVital,
    nibp_mean: OutVital,
    rr: OutVital,
    etco2: OutVital,
    apnoea: OutApnoea,
    nibp: OutNibp,
    technical: toml::Table,
    link: OutLink,
}

#[derive(Serialize)]
struct OutVital {
    enabled: bool,
    low: OutLimit,
    high: OutLimit,
    critical_low: OutLimit,
    critical_high: OutLimit,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stale_after: Option<String>,
    hysteresis: Num,
    latching: bool,
    plausible: [Num; 2],
    questionable: &'static str,
    discharge: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline: Option<OutBaseline>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<OutRate>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutLimit {
    Off(&'static str),
    On {
        limit: Num,
        priority: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        delay: Option<String>,
    },
}

#[derive(Serialize)]
struct OutBaseline {
    #[serde(skip_serializing_if = "Option::is_none")]
    rise_percent: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rise: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fall_percent: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fall: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutRate {
    Off(&'static str),
    On {
        window: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        rise: Option<Num>,
        #[serde(skip_serializing_if = "Option::is_none")]
        fall: Option<Num>,
        priority: &'static str,
    },
}

#[derive(Serialize)]
struct OutApnoea {
    enabled: bool,
    delay: String,
    priority: &'static str,
}

#[derive(Serialize)]
struct OutNibp {
    confirm: &'static str,
    confirm_window: String,
    cycle: String,
    grace: String,
    watch_cycle: bool,
    combined_high: bool,
}

#[derive(Serialize)]
struct OutLink {
    window: String,
    max_error_rate: Num,
    min_errors: u32,
}

#[derive(Serialize)]
struct OutSession {
    discharge: OutDischarge,
    baseline: OutBaselineMin,
}

#[derive(Serialize)]
struct OutDischarge {
    within_percent: Num,
    hold: String,
}

#[derive(Serialize)]
struct OutBaselineMin {
    min_nibp_readings: u32,
    min_continuous: String,
}

#[derive(Serialize)]
struct OutRecording {
    enabled: bool,
    dir: String,
    retention: String,
    sync_every: String,
}

#[derive(Serialize)]
struct OutMqtt {
    enabled: bool,
    embedded: bool,
    listen: String,
    broker: String,
    prefix: String,
    client_id: String,
    protocol: &'static str,
    vitals_expiry: String,
    credentials_file: String,
    ca_file: String,
    client_cert: String,
    client_key: String,
    heartbeat: String,
    unreachable_after: String,
    command_max_age: String,
    state_dir: String,
    outbox_max: u32,
}

fn limit(l: Option<Limit>) -> OutLimit {
    match l {
        None => OutLimit::Off("off"),
        Some(l) => OutLimit::On {
            limit: num(l.value),
            priority: l.priority.key(),
            delay: l.delay.map(dur),
        },
    }
}

fn baseline(b: &BaselineRule) -> Option<OutBaseline> {
    b.is_enabled().then(|| OutBaseline {
        rise_percent: b.rise_percent.map(num),
        rise: b.rise_abs.map(num),
        fall_percent: b.fall_percent.map(num),
        fall: b.fall_abs.map(num),
        priority: b.priority.map(|p| p.key()),
    })
}

fn rate(r: Option<RateRule>) -> OutRate {
    match r {
        None => OutRate::Off("off"),
        Some(r) => OutRate::On {
            window: dur(r.window),
            rise: r.rise.map(num),
            fall: r.fall.map(num),
            priority: r.priority.key(),
        },
    }
}

fn vital(v: Vital, r: &VitalRules) -> OutVital {
    let continuous = v.is_continuous();
    OutVital {
        enabled: r.enabled,
        low: limit(r.low),
        high: limit(r.high),
        critical_low: limit(r.critical_low),
        critical_high: limit(r.critical_high),
        delay: continuous.then(|| dur(r.delay)),
        stale_after: continuous.then(|| dur(r.stale_after)),
        hysteresis: num(r.hysteresis),
        latching: r.latching,
        plausible: [num(r.plausible_min), num(r.plausible_max)],
        questionable: r.questionable.key(),
        discharge: r.discharge,
        baseline: baseline(&r.baseline),
        rate: continuous.then(|| rate(r.rate)),
    }
}

fn source(s: &super::SourceConfig) -> OutSource {
    let mut o = OutSource {
        name: s.name.clone(),
        protocol: s.protocol.key(),
        timeout: dur(s.timeout),
        vitals: s.vitals.iter().map(|v| v.key()).collect(),
        ..OutSource::default()
    };
    match &s.link {
        Link::Serial { device, settings } => {
            o.serial = Some(path(device));
            o.baud = Some(settings.baud);
            o.parity = Some(settings.parity.key());
            o.stop_bits = Some(settings.stop_bits);
            o.rts_cts = Some(settings.rts_cts);
        }
        Link::Tcp { address } => o.tcp = Some(address.clone()),
        Link::Simulated {
            scenario,
            speed,
            seed,
        } => {
            o.simulated = Some(scenario.clone());
            o.speed = Some(*speed);
            o.seed = Some(*seed);
        }
    }
    o
}

impl From<&Config> for Out {
    fn from(cfg: &Config) -> Self {
        let e = &cfg.engine;
        let v = |vl: Vital| vital(vl, e.rules(vl));
        let mut technical_priorities = e.technical;
        let technical = technical_slots(&mut technical_priorities)
            .into_iter()
            .map(|(k, p)| (k.to_owned(), toml::Value::from(p.key())))
            .collect();
        let m = &cfg.mqtt;
        let opt_path = |p: &Option<std::path::PathBuf>| p.as_deref().map_or("off".into(), path);
        Out {
            site: OutSite {
                site: cfg.site.clone(),
                bed: cfg.bed.clone(),
            },
            source: cfg.sources.iter().map(source).collect(),
            alarms: OutAlarms {
                realert_after: dur(e.realert_after),
                escalate_after: off_or(e.escalate_after),
                max_audio_pause: dur(e.max_audio_pause),
                technical_delay: dur(e.technical_delay),
                hr: v(Vital::HeartRate),
                pr: v(Vital::PulseRate),
                spo2: v(Vital::SpO2),
                nibp_sys: v(Vital::NibpSystolic),
                nibp_dia: v(Vital::NibpDiastolic),
                nibp_mean: v(Vital::NibpMean),
                rr: v(Vital::RespRate),
                etco2: v(Vital::EtCo2),
                apnoea: OutApnoea {
                    enabled: e.apnoea.enabled,
                    delay: dur(e.apnoea.delay),
                    priority: e.apnoea.priority.key(),
                },
                nibp: OutNibp {
                    confirm: e.nibp.confirm.key(),
                    confirm_window: off_or(e.nibp.confirm_window),
                    cycle: dur(e.nibp.cycle),
                    grace: dur(e.nibp.grace),
                    watch_cycle: e.nibp.watch_cycle,
                    combined_high: e.nibp.combined_high,
                },
                technical,
                link: OutLink {
                    window: dur(e.link.window),
                    max_error_rate: num(e.link.max_error_rate),
                    min_errors: e.link.min_errors,
                },
            },
            session: OutSession {
                discharge: OutDischarge {
                    within_percent: num(e.discharge.within_percent),
                    hold: dur(e.discharge.hold),
                },
                baseline: OutBaselineMin {
                    min_nibp_readings: e.baseline_min.nibp_readings,
                    min_continuous: dur(e.baseline_min.continuous),
                },
            },
            recording: OutRecording {
                enabled: cfg.recording.enabled,
                dir: path(&cfg.recording.dir),
                retention: dur(cfg.recording.retention),
                sync_every: dur(cfg.recording.sync_every),
            },
            mqtt: OutMqtt {
                enabled: m.enabled,
                embedded: m.embedded,
                listen: m.listen.to_string(),
                broker: m.broker.clone(),
                prefix: m.prefix.clone(),
                client_id: m.client_id.clone(),
                protocol: m.protocol.key(),
                vitals_expiry: dur(m.vitals_expiry),
                credentials_file: opt_path(&m.credentials_file),
                ca_file: opt_path(&m.ca_file),
                client_cert: opt_path(&m.client_cert),
                client_key: opt_path(&m.client_key),
                heartbeat: dur(m.heartbeat),
                unreachable_after: dur(m.unreachable_after),
                command_max_age: dur(m.command_max_age),
                state_dir: match &m.state_dir {
                    StateDir::Auto => "auto".into(),
                    StateDir::Path(p) => path(p),
                },
                outbox_max: m.outbox_max,
            },
            hl7: cfg.hl7.as_ref().map(|h| OutHl7 {
                to: h.to.clone(),
                interval: dur(h.interval),
                timeout: dur(h.timeout),
                tls: h.tls,
                ca_file: h.ca_file.as_deref().map(path),
            }),
        }
    }
}
