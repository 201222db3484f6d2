//! Configuration: the TOML file, validated into a typed [`Config`].
//!
//! Three steps, so that EVERY problem is reported at once, each naming the
//! file, line, column, key and reason
//! (`vigil.toml:12:1: alarms.spo2.low (95) must be below alarms.spo2.high (90)`):
//! 1. serde fills typed raw structs ([`raw`]) that keep a wrong type as a
//!    problem instead of stopping there; keys that match no field are
//!    collected with their paths (`serde_ignored`). Unknown keys are rejected:
//!    a misspelt limit must never silently fall back to a default.
//! 2. the validate step ([`validate`]) checks ranges and cross-field rules on
//!    the values as written, and builds the [`Config`]. A key that is absent
//!    takes the built-in default, which is also what `config/vigil.toml`
//!    spells out (a test keeps the two identical).
//! 3. [`runnable`] adds what a configuration needs to watch a patient (a
//!    `[[source]]`): start-up, SIGHUP and `vigil check-config` all call
//!    [`load_runnable`], so check-config refuses exactly what `vigil run` refuses.
//!
//! [`render`] prints a configuration back as TOML in the same schema, through
//! the toml serializer (always valid TOML), for `vigil check-config` and the
//! recordings.
//!
//! Depends on [`crate::engine::rules`] for the typed engine settings. Pure: the
//! only IO is [`load`], which reads the file.

use core::time::Duration;
use std::path::{Path, PathBuf};

use crate::engine::rules::{EngineConfig, TechnicalPriorities};
use crate::engine::Priority;
use crate::vitals::Vital;

mod raw;
mod render;
mod validate;

pub use render::render;

/// The shipped default configuration file, embedded in the binary.
pub const DEFAULT_TOML: &str = include_str!("../config/vigil.toml");

/// The demo configuration (a simulated monitor at 60x), embedded for `vigil demo`.
pub const DEMO_TOML: &str = include_str!("../config/demo.toml");

/// Errors loading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{origin}: not valid TOML: {message}")]
    Syntax {
        /// The file (or `<embedded>`).
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The file is valid TOML but its content is not a valid configuration.
    #[error("{origin}: {} error(s):{}", errors.len(), located(origin, errors))]
    Invalid {
        /// The file (or `<embedded>`).
        origin: String,
        /// Every problem, each naming its key.
        errors: Vec<Problem>,
    },
    /// A valid configuration that cannot watch a patient (no `[[source]]`):
    /// `vigil run` and SIGHUP refuse it, `vigil check-config` says why.
    #[error(
        "{origin}: not ready to run: {} problem(s) (start-up refuses it):\n  {}",
        missing.len(),
        missing.join("\n  ")
    )]
    NotReady {
        /// The file (or `<embedded>`).
        origin: String,
        /// What is missing ([`Readiness::missing`]).
        missing: Vec<String>,
        /// What is probably not meant ([`Readiness::warnings`]).
        warnings: Vec<String>,
    },
}

/// One problem of a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Line and column (from 1) of the key at fault, when the file has it
    /// (a problem with a default, such as a missing `[[source]]`, has none).
    pub at: Option<(usize, usize)>,
    /// The key and the reason: `alarms.spo2.low.priority: missing`.
    pub message: String,
}

/// The problems, one a line, each as `origin:line:column: message`.
fn located(origin: &str, errors: &[Problem]) -> String {
    errors
        .iter()
        .map(|p| match p.at {
            Some((line, column)) => format!("\n  {origin}:{line}:{column}: {}", p.message),
            None => format!("\n  {origin}: {}", p.message),
        })
        .collect()
}

// Defined with the protocols (a protocol's identity lives in `protocol/`).
pub use crate::protocol::{Parity, ProtocolKind, SerialSettings};

/// Where a source's bytes come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Link {
    /// A serial port.
    Serial {
        /// Device path.
        device: PathBuf,
        /// Line settings.
        settings: SerialSettings,
    },
    /// A TCP connection to a serial device server.
    Tcp {
        /// `host:port`.
        address: String,
    },
    /// A simulated monitor running a scenario in-process.
    Simulated {
        /// Scenario name or file.
        scenario: String,
        /// Time acceleration (1 = real time).
        speed: f64,
        /// Random seed.
        seed: u64,
    },
}

/// One configured source.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceConfig {
    /// Unique name, used in alarm ids (`source.<name>.disconnected`).
    pub name: String,
    /// Protocol.
    pub protocol: ProtocolKind,
    /// Where its bytes come from.
    pub link: Link,
    /// Silence longer than this means disconnected.
    pub timeout: Duration,
    /// The vitals taken from this source (default: all it sends). When
    /// several sources supply a vital, the one listed first in the file wins
    /// while it delivers valid values.
    pub vitals: Vec<Vital>,
}

/// Session recording settings.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordingConfig {
    /// Whether sessions are recorded.
    pub enabled: bool,
    /// Directory of the recordings (relative paths are relative to the
    /// working directory: the state directory under systemd).
    pub dir: PathBuf,
    /// Recordings older than this are deleted.
    pub retention: Duration,
    /// Flush and fdatasync period: at most this much raw input is lost on a crash.
    pub sync_every: Duration,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            enabled: true,
            dir: PathBuf::from("recordings"),
            retention: Duration::from_secs(30 * 86_400),
            sync_every: Duration::from_secs(1),
        }
    }
}

/// The live HL7 sink (`[hl7]`): the session's chart as ORU^R01 messages
/// over MLLP while it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Hl7Config {
    /// The receiver, `host:port`.
    pub to: String,
    /// The charting interval: one message per interval.
    pub interval: Duration,
    /// Connect and ACK timeout.
    pub timeout: Duration,
    /// MLLP over TLS (`hl7.tls`).
    pub tls: bool,
    /// The CA certificates (PEM) that sign the receiver's certificate
    /// (`hl7.ca_file`, required with TLS).
    pub ca_file: Option<PathBuf>,
}

impl Hl7Config {
    /// The defaults for a receiver.
    pub fn to(to: &str) -> Hl7Config {
        Hl7Config {
            to: to.to_owned(),
            interval: crate::record::chart::DEFAULT_INTERVAL,
            timeout: Duration::from_secs(10),
            tls: false,
            ca_file: None,
        }
    }
}

/// The whole validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Site (clinic) name, used in MQTT topics.
    pub site: String,
    /// Bed or room name, used in MQTT topics.
    pub bed: String,
    /// Sources, in order (index = `SourceId`).
    pub sources: Vec<SourceConfig>,
    /// Engine settings (source names filled in from `sources`).
    pub engine: EngineConfig,
    /// Session recording.
    pub recording: RecordingConfig,
    /// MQTT publishing (`[mqtt]`).
    pub mqtt: MqttConfig,
    /// The live HL7 sink (`[hl7]`), off when absent.
    pub hl7: Option<Hl7Config>,
}

/// A reload applies the alarm settings ([`crate::pipeline::Pipeline::feed`]).
impl crate::pipeline::Settings for Config {
    fn engine(&self) -> &EngineConfig {
        &self.engine
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            site: "demo-clinic".into(),
            bed: "bed-1".into(),
            sources: Vec::new(),
            engine: EngineConfig::default(),
            recording: RecordingConfig::default(),
            mqtt: MqttConfig::default(),
            hl7: None,
        }
    }
}

/// Where the MQTT outbox journal and the sequence reservation live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateDir {
    /// `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else
    /// `/var/lib/vigil` when writable, else `$XDG_STATE_HOME/vigil` or
    /// `~/.local/state/vigil`, else `./state`.
    Auto,
    /// This directory.
    Path(PathBuf),
}

/// The `[mqtt]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MqttConfig {
    /// Publish at all.
    pub enabled: bool,
    /// Run the in-process broker and connect to it.
    pub embedded: bool,
    /// The embedded broker's listen address.
    pub listen: std::net::SocketAddr,
    /// The external broker (`mqtt://host:port` or `mqtts://host:port`).
    pub broker: String,
    /// Topic prefix; `{site}` and `{bed}` are replaced.
    pub prefix: String,
    /// Fixed client id (persistent session); `{site}` and `{bed}` are replaced.
    pub client_id: String,
    /// The MQTT version spoken to an external broker (the embedded one
    /// speaks 3.1.1).
    pub protocol: crate::mqtt::wire::Protocol,
    /// MQTT 5 message expiry of `vitals`: the broker drops a retained or
    /// queued vitals message older than this instead of delivering it.
    pub vitals_expiry: Duration,
    /// File with the username on its first line and the password on its second.
    pub credentials_file: Option<PathBuf>,
    /// CA certificates (PEM) that sign the broker's certificate (mqtts).
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM), for brokers that require one.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub client_key: Option<PathBuf>,
    /// How often the status heartbeat is published.
    pub heartbeat: Duration,
    /// Broker unreachable for longer than this raises a technical alarm.
    pub unreachable_after: Duration,
    /// Commands older than this (by their timestamp) are rejected.
    pub command_max_age: Duration,
    /// Where the outbox journal lives.
    pub state_dir: StateDir,
    /// Undelivered alarm and session messages kept at most (see the outbox policy).
    pub outbox_max: u32,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            enabled: true,
            embedded: true,
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 1883)),
            broker: "mqtt://127.0.0.1:1883".into(),
            prefix: "vigil/v1/{site}/{bed}/".into(),
            client_id: "vigil-{site}-{bed}".into(),
            protocol: crate::mqtt::wire::Protocol::V5,
            vitals_expiry: Duration::from_secs(10),
            credentials_file: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            heartbeat: Duration::from_secs(5),
            unreachable_after: Duration::from_secs(30),
            command_max_age: Duration::from_secs(30),
            state_dir: StateDir::Auto,
            outbox_max: 10_000,
        }
    }
}

// The broker URL is the shared link's (daemon and displays parse it alike).
pub use crate::mqtt::link::{parse_broker_url, BrokerUrl};

/// What a valid configuration still lacks before it can watch a patient,
/// and what looks left over from the shipped example: the part of
/// `vigil check-config` beyond syntax and ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Problems that stop `vigil run` (check-config exits 2).
    pub missing: Vec<String>,
    /// Values that work but are probably not what the clinic wants.
    pub warnings: Vec<String>,
}

/// The `site` of the shipped example file, which every clinic must change.
pub const EXAMPLE_SITE: &str = "demo-clinic";

/// Checks that `cfg` can serve a bed: at least one source, and a site name
/// of the clinic's own (two clinics both called `demo-clinic` would share
/// MQTT topics on one broker).
pub fn readiness(cfg: &Config) -> Readiness {
    let mut r = Readiness::default();
    if cfg.sources.is_empty() {
        r.missing.push(
            "no [[source]] configured: uncomment the [[source]] example and set its name, \
             protocol and serial (or tcp), or write a starting file with `vigil setup` \
             (`vigil ports` lists the serial ports)"
                .into(),
        );
    }
    if cfg.site == EXAMPLE_SITE {
        r.warnings.push(format!(
            "site.site is still the example `{EXAMPLE_SITE}`: set it to the clinic's own name \
             (it is part of the MQTT topics and the client id)"
        ));
    }
    r
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        cause: source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Validates configuration text; `origin` names it in error messages.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let syntax = |e: toml::de::Error| ConfigError::Syntax {
        origin: origin.to_owned(),
        message: e.to_string().trim_end().replace('\n', "\n  "),
    };
    let doc = toml::de::DeTable::parse(text).map_err(syntax)?;
    let (raw, unknown) = raw::read(text).map_err(syntax)?;
    let (cfg, check) = validate::validate(&raw, unknown);
    if check.problems.is_empty() {
        return Ok(cfg);
    }
    let errors = check
        .problems
        .into_iter()
        .map(|(key, message)| Problem {
            at: position(text, doc.get_ref(), &key),
            message,
        })
        .collect();
    Err(ConfigError::Invalid {
        origin: origin.to_owned(),
        errors,
    })
}

/// Line and column (from 1) of `key` (`source[1].tcp`, `alarms.hr.low`) in
/// the document, or of its nearest ancestor the document has.
fn position(text: &str, doc: &toml::de::DeTable<'_>, key: &str) -> Option<(usize, usize)> {
    let mut table = Some(doc);
    let mut at = None;
    for part in key.split('.').filter(|p| !p.is_empty()) {
        let (name, index) = match part.split_once('[') {
            Some((name, i)) => (name, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some((k, v)) = table.and_then(|t| t.iter().find(|(k, _)| k.get_ref() == name)) else {
            break;
        };
        at = Some(k.span().start);
        let mut value = v;
        if let Some(i) = index {
            match value.get_ref().as_array().and_then(|a| a.get(i)) {
                Some(item) => {
                    at = Some(item.span().start);
                    value = item;
                }
                None => break,
            }
        }
        table = value.get_ref().as_table();
    }
    let offset = at?.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((line, column))
}

/// `cfg` if it can watch a patient ([`readiness`] finds nothing missing),
/// else [`ConfigError::NotReady`] with every reason.
pub fn runnable(cfg: Config, origin: &str) -> Result<Config, ConfigError> {
    let Readiness { missing, warnings } = readiness(&cfg);
    if missing.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError::NotReady {
            origin: origin.to_owned(),
            missing,
            warnings,
        })
    }
}

/// Reads, validates and checks a configuration file for running: THE check
/// of `vigil run` at start-up, of SIGHUP and of `vigil check-config`.
pub fn load_runnable(path: &Path) -> Result<Config, ConfigError> {
    runnable(load(path)?, &path.display().to_string())
}

/// Parses a duration: `500ms`, `10s`, `5min`, `2h`, or combinations such as
/// `1h30min`. A bare number is refused (the unit must be explicit).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        rest = &rest[unit_len..];
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "min" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return None,
        };
        total += Duration::try_from_secs_f64(number * scale).ok()?;
    }
    Some(total)
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".into()
    } else if ms.is_multiple_of(86_400_000) {
        format!("{}d", ms / 86_400_000)
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}min", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// 1-64 letters, digits, '-' or '_': safe as an MQTT topic level and a client id part.
fn is_topic_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The technical alarm priorities by their configuration name.
fn technical_slots(tp: &mut TechnicalPriorities) -> [(&'static str, &mut Priority); 21] {
    [
        ("stale", &mut tp.stale),
        ("sensor_off", &mut tp.sensor_off),
        ("invalid", &mut tp.invalid),
        ("artifact", &mut tp.artifact),
        ("cycle_overdue", &mut tp.cycle_overdue),
        ("disconnected", &mut tp.disconnected),
        ("link_errors", &mut tp.link_errors),
        ("not_associated", &mut tp.not_associated),
        ("no_valid_data", &mut tp.no_valid_data),
        ("monitor_restarted", &mut tp.monitor_restarted),
        ("low_battery", &mut tp.low_battery),
        ("queue_overflow", &mut tp.queue_overflow),
        ("broker_unreachable", &mut tp.broker_unreachable),
        ("storage_failure", &mut tp.storage_failure),
        ("journal_failure", &mut tp.journal_failure),
        ("journal_corrupt", &mut tp.journal_corrupt),
        ("broker_link_unstable", &mut tp.broker_link_unstable),
        ("input_overload", &mut tp.input_overload),
        ("hl7_undelivered", &mut tp.hl7_undelivered),
        ("hl7_backlog_failure", &mut tp.hl7_backlog_failure),
        ("broker_refused", &mut tp.broker_refused),
    ]
}

#[cfg(test)]
mod tests;
