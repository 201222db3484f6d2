//! Replay: a recording's inputs fed through the same decoders and engine
//! with a manual clock, so the events come out exactly as they did live.
//!
//! A replay can swap in another configuration's alarm settings (limits,
//! delays, priorities) while keeping the recorded sources: that is how a
//! clinic tunes delays against alarm fatigue ([`compare`]).
//!
//! Pure apart from reading the file: no tokio, no clock.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::{self, Config};
use crate::engine::{Event, EventKind, Phase, Priority};
use crate::pipeline::{Feed, Input, Pipeline, SourceRole};
use crate::time::Instant;
use crate::vitals::Vital;
// The core format, not `crate::record`: the export tools there replay
// through this module, so this one must not depend on them.
use vigil_core::record::{FileError, Loaded, Record, RecordError};

/// Errors loading a recording for replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be read.
    #[error(transparent)]
    File(#[from] FileError),
    /// The recording has no configuration record.
    #[error("{0}: the recording holds no configuration (it is empty or was cut off at once)")]
    NoConfig(String),
    /// The recorded configuration does not parse.
    #[error("{path}: the recorded configuration is invalid: {cause}")]
    Config {
        /// The file.
        path: String,
        /// Why.
        cause: config::ConfigError,
    },
}

/// One step of a replay.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// A pipeline input.
    Input(Input),
    /// A configuration reload (SIGHUP) took effect.
    Reconfigure(Box<Config>),
}

/// A recording ready to replay.
#[derive(Clone, Debug)]
pub struct Session {
    /// Metadata `key=value` pairs (version, site, bed, start time, speed).
    pub meta: Vec<(String, String)>,
    /// The configuration the run started with.
    pub config: Config,
    /// When the run's pipeline started.
    pub start: Instant,
    /// Every step with its time.
    pub steps: Vec<(Instant, Step)>,
    /// The clean end record's time, if the run stopped cleanly.
    pub end: Option<Instant>,
    /// Where reading stopped early (torn or corrupt tail), and why.
    pub corrupt_tail: Option<(u64, RecordError)>,
    /// Size of the file.
    pub size: u64,
}

impl Session {
    /// A metadata value.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.meta
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The time of the last record.
    pub fn last(&self) -> Instant {
        self.end
            .or(self.steps.last().map(|(t, _)| *t))
            .unwrap_or(self.start)
    }
}

/// Loads a recording.
pub fn load(path: &Path) -> Result<Session, ReplayError> {
    let shown = path.display().to_string();
    let loaded = Loaded::from_read(path, std::fs::read(path))?;
    let mut meta = Vec::new();
    let mut config: Option<Config> = None;
    let mut start = Instant::ZERO;
    let mut steps = Vec::new();
    let mut end = None;
    for r in loaded.records {
        match r.record {
            Record::Meta(kv) => {
                start = r.at;
                meta = kv;
            }
            Record::Config(text) => {
                let parsed =
                    config::parse(&text, &shown).map_err(|source| ReplayError::Config {
                        path: shown.clone(),
                        cause: source,
                    })?;
                if config.is_none() {
                    config = Some(parsed);
                } else {
                    steps.push((r.at, Step::Reconfigure(Box::new(parsed))));
                }
            }
            Record::Input(i) => steps.push((r.at, Step::Input(i))),
            Record::End(kv) => {
                end = Some(r.at);
                meta.extend(kv);
            }
        }
    }
    let config = config.ok_or_else(|| ReplayError::NoConfig(shown.clone()))?;
    Ok(Session {
        meta,
        config,
        start,
        steps,
        end,
        corrupt_tail: loaded.corrupt_tail,
        size: loaded.size,
    })
}

/// A configured source as the pipeline sees it ([`crate::pipeline::for_sources`]).
impl SourceRole for config::SourceConfig {
    fn protocol(&self) -> config::ProtocolKind {
        self.protocol
    }
    fn timeout(&self) -> core::time::Duration {
        self.timeout
    }
    fn vitals(&self) -> &[Vital] {
        &self.vitals
    }
}

/// Builds the pipeline a run started with.
pub fn pipeline(session: &Session, alarms: &Config) -> Pipeline {
    let mut engine = alarms.engine.clone();
    engine.source_names = session.config.engine.source_names.clone();
    crate::pipeline::for_sources(session.start, engine, &session.config.sources)
}

/// Replays a session; `alarms` overrides the alarm settings (the recorded
/// configuration when `None`, including its reloads). Every event goes to
/// `on_event`; `progress` is called with the fraction done now and then.
pub fn run(
    session: &Session,
    alarms: Option<&Config>,
    mut on_event: impl FnMut(&Event),
    mut progress: impl FnMut(f64),
) -> ReplayStats {
    let base = alarms.unwrap_or(&session.config);
    let mut p = pipeline(session, base);
    let mut stats = ReplayStats::default();
    let n = session.steps.len().max(1);
    for (i, (at, step)) in session.steps.iter().enumerate() {
        match step {
            Step::Input(input) => {
                if p.feed(&mut (), *at, Feed::<Config>::Input(input)).is_err() {
                    stats.commands_rejected += 1;
                }
                stats.inputs += 1;
            }
            Step::Reconfigure(cfg) => {
                if alarms.is_none() {
                    let _ = p.feed(&mut (), *at, Feed::Settings(cfg.as_ref()));
                }
            }
        }
        while let Some(ev) = p.poll_event() {
            stats.events += 1;
            on_event(&ev);
        }
        if i % 4096 == 0 {
            progress(i as f64 / n as f64);
        }
    }
    progress(1.0);
    stats
}

/// Counters of one replay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Inputs fed.
    pub inputs: u64,
    /// Events produced.
    pub events: u64,
    /// Commands the engine rejected (as it did live).
    pub commands_rejected: u64,
}

/// How often one alarm started during a replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlarmCount {
    /// Starts.
    pub count: u32,
    /// Priority at start.
    pub priority: Priority,
    /// First start (offset from the run's start).
    pub first: Instant,
    /// Last start.
    pub last: Instant,
}

/// Alarm starts by alarm id (text form).
pub type AlarmSummary = BTreeMap<String, AlarmCount>;

/// Summarises the alarm starts of a replay.
pub fn summarise(session: &Session, alarms: Option<&Config>) -> (AlarmSummary, ReplayStats) {
    let names = session.config.engine.source_names.clone();
    let mut summary = AlarmSummary::new();
    let stats = run(
        session,
        alarms,
        |ev| {
            if let EventKind::Alarm(a) = ev.kind {
                if a.phase == Phase::Start {
                    let at = Instant::from_nanos(
                        ev.at.as_nanos().saturating_sub(session.start.as_nanos()),
                    );
                    summary
                        .entry(a.id.key(&names))
                        .and_modify(|c| {
                            c.count += 1;
                            c.last = at;
                        })
                        .or_insert(AlarmCount {
                            count: 1,
                            priority: a.priority,
                            first: at,
                            last: at,
                        });
                }
            }
        },
        |_| {},
    );
    (summary, stats)
}

/// A row of a what-if comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    /// Alarm id.
    pub alarm: String,
    /// With the recorded configuration.
    pub recorded: Option<AlarmCount>,
    /// With the other configuration.
    pub other: Option<AlarmCount>,
}

/// Replays a session with its own and with another configuration's alarm
/// settings; returns every alarm whose starts differ in count or timing.
pub fn compare(session: &Session, other: &Config) -> Vec<Difference> {
    let (a, _) = summarise(session, None);
    let (b, _) = summarise(session, Some(other));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (a.get(k).copied(), b.get(k).copied());
            (x != y).then(|| Difference {
                alarm: k.clone(),
                recorded: x,
                other: y,
            })
        })
        .collect()
}

/// Formats an offset from the run's start as `h:mm:ss`.
pub fn clock_offset(t: Instant) -> String {
    let s = t.as_nanos() / 1_000_000_000;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use crate::engine::EventKind;
    use crate::time::Instant;
    use crate::vitals::SourceId;

    fn ms(t: u64) -> Instant {
        Instant::from_millis(t)
    }

    #[test]
    fn configured_vitals_decide_which_source_supplies_what() {
        let cfg = crate::config::parse(
            r#"
            [[source]]
            name = "oximeter"
            protocol = "vigil-line"
            tcp = "127.0.0.1:1"
            vitals = ["spo2", "pr"]
            [[source]]
            name = "monitor"
            protocol = "vigil-line"
            tcp = "127.0.0.1:2"
            "#,
            "test",
        )
        .unwrap();
        let mut p = crate::pipeline::for_sources(ms(0), cfg.engine.clone(), &cfg.sources);
        // HR from the oximeter is not taken; SpO2 from both: the oximeter wins.
        p.handle_bytes(ms(0), SourceId(0), b"hr 70\nspo2 97\n");
        p.handle_bytes(ms(10), SourceId(1), b"hr 71\nspo2 90\n");
        let got: Vec<(u16, String)> = std::iter::from_fn(|| p.poll_event())
            .filter_map(|e| match e.kind {
                EventKind::Reading(r) => Some((
                    r.source.0,
                    format!("{:?}", r.measurement.continuous().unwrap().0),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            vec![(0, "SpO2".to_owned()), (1, "HeartRate".to_owned())]
        );
    }
}
