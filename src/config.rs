//! Configuration: the TOML file, validated into a typed [`Config`].
//!
//! The file is read into a TOML table and walked key by key, so that EVERY
//! problem is reported at once, each naming the file, the key and the reason
//! (`alarms.spo2.low (95) must be below alarms.spo2.high (90)`). Unknown keys
//! are rejected: a misspelt limit must never silently fall back to a default.
//! A key that is absent takes the built-in default, which is also what
//! `config/vigil.toml` spells out (a test keeps the two identical).
//!
//! [`render`] prints a configuration back as TOML in the same schema, for
//! `vigil check-config`.
//!
//! Depends on [`crate::engine::rules`] for the typed engine settings. Pure: the
//! only IO is [`load`], which reads the file.

use core::fmt::Write as _;
use core::time::Duration;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::engine::rules::{
    BaselineRule, DischargeRules, EngineConfig, Limit, LinkRules, NibpConfirm, NibpRules,
    QuestionablePolicy, RateRule, TechnicalPriorities, VitalRules,
};
use crate::engine::Priority;
use crate::vitals::Vital;

/// The shipped default configuration file, embedded in the binary.
pub const DEFAULT_TOML: &str = include_str!("../config/vigil.toml");

/// The demo configuration (a simulated monitor at 60x), embedded for `vigil demo`.
pub const DEMO_TOML: &str = include_str!("../config/demo.toml");

/// Errors loading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
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
    #[error("{origin}: {} error(s):\n  {}", errors.len(), errors.join("\n  "))]
    Invalid {
        /// The file (or `<embedded>`).
        origin: String,
        /// Every problem, each naming its key.
        errors: Vec<String>,
    },
}

/// The serial line settings of a source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerialSettings {
    /// Baud rate.
    pub baud: u32,
    /// Parity: `none`, `even` or `odd`.
    pub parity: Parity,
    /// Stop bits: 1 or 2.
    pub stop_bits: u8,
    /// RTS/CTS hardware flow control.
    pub rts_cts: bool,
}

/// Serial parity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parity {
    /// No parity bit.
    None,
    /// Even parity.
    Even,
    /// Odd parity.
    Odd,
}

impl Parity {
    /// Stable short name.
    pub const fn key(self) -> &'static str {
        match self {
            Parity::None => "none",
            Parity::Even => "even",
            Parity::Odd => "odd",
        }
    }
}

/// Which protocol a source speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolKind {
    /// GE/Datex-Ohmeda S/5 Computer Interface.
    Ge,
    /// Philips IntelliVue Data Export (MIB/RS232).
    Philips,
    /// Masimo ASCII output.
    Masimo,
    /// Nonin Data Format 2.
    NoninDf2,
    /// Nonin Data Format 7.
    NoninDf7,
    /// Nonin Data Format 8.
    NoninDf8,
    /// vigil's own line protocol.
    Line,
}

impl ProtocolKind {
    /// Every protocol.
    pub const ALL: [ProtocolKind; 7] = [
        ProtocolKind::Ge,
        ProtocolKind::Philips,
        ProtocolKind::Masimo,
        ProtocolKind::NoninDf2,
        ProtocolKind::NoninDf7,
        ProtocolKind::NoninDf8,
        ProtocolKind::Line,
    ];

    /// The name used in the configuration.
    pub const fn key(self) -> &'static str {
        match self {
            ProtocolKind::Ge => "ge-s5",
            ProtocolKind::Philips => "philips-intellivue",
            ProtocolKind::Masimo => "masimo",
            ProtocolKind::NoninDf2 => "nonin-df2",
            ProtocolKind::NoninDf7 => "nonin-df7",
            ProtocolKind::NoninDf8 => "nonin-df8",
            ProtocolKind::Line => "vigil-line",
        }
    }

    /// The protocol's usual serial settings (protocols.md).
    pub const fn default_serial(self) -> SerialSettings {
        match self {
            ProtocolKind::Ge => SerialSettings {
                baud: 19_200,
                parity: Parity::Even,
                stop_bits: 1,
                rts_cts: true,
            },
            ProtocolKind::Philips => SerialSettings {
                baud: 115_200,
                parity: Parity::None,
                stop_bits: 1,
                rts_cts: false,
            },
            _ => SerialSettings {
                baud: 9_600,
                parity: Parity::None,
                stop_bits: 1,
                rts_cts: false,
            },
        }
    }
}

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
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Validates configuration text; `origin` names it in error messages.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
    let mut r = Reader::default();
    let cfg = r.config(&table);
    if r.errors.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError::Invalid {
            origin: origin.to_owned(),
            errors: r.errors,
        })
    }
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

// ----- the walker ------------------------------------------------------------

#[derive(Default)]
struct Reader {
    errors: Vec<String>,
}

impl Reader {
    fn err(&mut self, msg: String) {
        self.errors.push(msg);
    }

    /// Reports keys of `t` not in `allowed`.
    fn check_keys(&mut self, path: &str, t: &Table, allowed: &[&str]) {
        for key in t.keys() {
            if !allowed.contains(&key.as_str()) {
                self.err(format!(
                    "{}: unknown key (expected one of: {})",
                    join(path, key),
                    allowed.join(", ")
                ));
            }
        }
    }

    fn sub<'t>(&mut self, path: &str, t: &'t Table, key: &str) -> Option<&'t Table> {
        match t.get(key)? {
            Value::Table(sub) => Some(sub),
            other => {
                self.err(format!(
                    "{}: expected a table, found {}",
                    join(path, key),
                    other.type_str()
                ));
                None
            }
        }
    }

    fn number(&mut self, path: &str, t: &Table, key: &str) -> Option<f32> {
        match t.get(key)? {
            Value::Integer(i) => Some(*i as f32),
            Value::Float(f) if f.is_finite() => Some(*f as f32),
            other => {
                self.err(format!(
                    "{}: expected a number, found {}",
                    join(path, key),
                    other
                ));
                None
            }
        }
    }

    fn boolean(&mut self, path: &str, t: &Table, key: &str) -> Option<bool> {
        match t.get(key)? {
            Value::Boolean(b) => Some(*b),
            other => {
                self.err(format!(
                    "{}: expected true or false, found {}",
                    join(path, key),
                    other
                ));
                None
            }
        }
    }

    fn string<'t>(&mut self, path: &str, t: &'t Table, key: &str) -> Option<&'t str> {
        match t.get(key)? {
            Value::String(s) => Some(s),
            other => {
                self.err(format!(
                    "{}: expected a string, found {}",
                    join(path, key),
                    other
                ));
                None
            }
        }
    }

    fn duration(&mut self, path: &str, t: &Table, key: &str) -> Option<Duration> {
        let s = self.string(path, t, key)?;
        let d = parse_duration(s);
        if d.is_none() {
            self.err(format!(
                "{}: `{s}` is not a duration (write e.g. \"500ms\", \"10s\", \"5min\", \"2h\", \"30d\")",
                join(path, key)
            ));
        }
        d
    }

    /// A duration that may be `"off"`.
    fn optional_duration(
        &mut self,
        path: &str,
        t: &Table,
        key: &str,
        default: Option<Duration>,
    ) -> Option<Duration> {
        match t.get(key) {
            None => default,
            Some(Value::String(s)) if s == "off" => None,
            Some(_) => self.duration(path, t, key).or(default),
        }
    }

    fn priority(&mut self, path: &str, t: &Table, key: &str) -> Option<Priority> {
        let s = self.string(path, t, key)?;
        let p = Priority::parse(s);
        if p.is_none() {
            self.err(format!(
                "{}: `{s}` is not a priority (expected low, medium or high)",
                join(path, key)
            ));
        }
        p
    }

    fn limit(&mut self, path: &str, t: &Table, key: &str, default: Option<Limit>) -> Option<Limit> {
        let here = join(path, key);
        match t.get(key) {
            None => default,
            Some(Value::String(s)) if s == "off" => None,
            Some(Value::Table(lt)) => {
                self.check_keys(&here, lt, &["limit", "priority", "delay"]);
                let value = self.number(&here, lt, "limit");
                let priority = self.priority(&here, lt, "priority");
                let delay = lt
                    .get("delay")
                    .and_then(|_| self.duration(&here, lt, "delay"));
                match (value, priority) {
                    (Some(value), Some(priority)) => Some(Limit {
                        value,
                        priority,
                        delay,
                    }),
                    (v, p) => {
                        if v.is_none() && !lt.contains_key("limit") {
                            self.err(format!("{here}.limit: missing"));
                        }
                        if p.is_none() && !lt.contains_key("priority") {
                            self.err(format!("{here}.priority: missing"));
                        }
                        default
                    }
                }
            }
            Some(other) => {
                self.err(format!(
                    "{here}: expected {{ limit = ..., priority = \"...\" }} or \"off\", found {other}"
                ));
                default
            }
        }
    }

    fn config(&mut self, t: &Table) -> Config {
        self.check_keys(
            "",
            t,
            &["site", "source", "alarms", "session", "recording", "mqtt"],
        );
        let mut cfg = Config::default();
        if let Some(s) = self.sub("", t, "site") {
            self.check_keys("site", s, &["site", "bed"]);
            for (key, slot) in [("site", &mut cfg.site), ("bed", &mut cfg.bed)] {
                if let Some(v) = self.string("site", s, key) {
                    if is_topic_safe(v) {
                        *slot = v.to_owned();
                    } else {
                        self.err(format!(
                            "site.{key}: `{v}` must be 1-64 letters, digits, '-' or '_' (it is part of MQTT topics)"
                        ));
                    }
                }
            }
        }
        match t.get("source") {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("source[{i}]");
                    match item {
                        Value::Table(st) => {
                            if let Some(s) = self.source(&path, st) {
                                cfg.sources.push(s);
                            }
                        }
                        other => self.err(format!(
                            "{path}: expected a table ([[source]]), found {}",
                            other.type_str()
                        )),
                    }
                }
            }
            Some(other) => self.err(format!(
                "source: expected [[source]] tables, found {}",
                other.type_str()
            )),
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &cfg.sources {
            if !seen.insert(s.name.clone()) {
                self.err(format!("source: the name `{}` is used twice", s.name));
            }
        }
        if let Some(a) = self.sub("", t, "alarms") {
            self.alarms(a, &mut cfg.engine);
        }
        if let Some(s) = self.sub("", t, "session") {
            self.session(s, &mut cfg.engine);
        }
        if let Some(r) = self.sub("", t, "recording") {
            self.recording(r, &mut cfg.recording);
        }
        if let Some(m) = self.sub("", t, "mqtt") {
            self.mqtt(m, &mut cfg.mqtt);
        }
        cfg.engine.source_names = cfg.sources.iter().map(|s| s.name.clone()).collect();
        cfg
    }

    fn source(&mut self, path: &str, t: &Table) -> Option<SourceConfig> {
        self.check_keys(
            path,
            t,
            &[
                "name",
                "protocol",
                "serial",
                "tcp",
                "simulated",
                "baud",
                "parity",
                "stop_bits",
                "rts_cts",
                "speed",
                "seed",
                "timeout",
                "vitals",
            ],
        );
        let name = self.string(path, t, "name");
        if name.is_none() && !t.contains_key("name") {
            self.err(format!("{path}.name: missing"));
        }
        let name = name.filter(|n| {
            let ok = is_topic_safe(n);
            if !ok {
                self.err(format!(
                    "{path}.name: `{n}` must be 1-64 letters, digits, '-' or '_'"
                ));
            }
            ok
        });
        let protocol = match self.string(path, t, "protocol") {
            None => {
                if !t.contains_key("protocol") {
                    self.err(format!("{path}.protocol: missing"));
                }
                None
            }
            Some(p) => {
                let found = ProtocolKind::ALL.into_iter().find(|k| k.key() == p);
                if found.is_none() {
                    let names: Vec<_> = ProtocolKind::ALL.iter().map(|k| k.key()).collect();
                    self.err(format!(
                        "{path}.protocol: unknown protocol `{p}` (expected one of: {})",
                        names.join(", ")
                    ));
                }
                found
            }
        };
        let links: Vec<&str> = ["serial", "tcp", "simulated"]
            .into_iter()
            .filter(|k| t.contains_key(*k))
            .collect();
        if links.len() != 1 {
            self.err(format!(
                "{path}: give exactly one of serial = \"/dev/...\", tcp = \"host:port\" or simulated = \"scenario\" (found {})",
                if links.is_empty() { "none".to_owned() } else { links.join(" and ") }
            ));
        }
        let timeout = t
            .get("timeout")
            .and_then(|_| self.duration(path, t, "timeout"))
            .unwrap_or(Duration::from_secs(10));
        let vitals = match t.get("vitals") {
            None => Vital::ALL.to_vec(),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    match item.as_str().map(str::parse::<Vital>) {
                        Some(Ok(v)) if !out.contains(&v) => out.push(v),
                        Some(Ok(v)) => self.err(format!("{path}.vitals: `{v}` listed twice")),
                        Some(Err(e)) => self.err(format!("{path}.vitals: {e}")),
                        None => self.err(format!("{path}.vitals: expected strings, found {item}")),
                    }
                }
                if out.is_empty() {
                    self.err(format!("{path}.vitals: list at least one vital"));
                }
                out
            }
            Some(other) => {
                self.err(format!(
                    "{path}.vitals: expected a list such as [\"spo2\", \"pr\"], found {other}"
                ));
                Vital::ALL.to_vec()
            }
        };
        let link = match links.first().copied() {
            Some("serial") => {
                let device = self.string(path, t, "serial").map(PathBuf::from);
                let mut settings = protocol.unwrap_or(ProtocolKind::Line).default_serial();
                if let Some(b) = self.number(path, t, "baud") {
                    if (50.0..=4_000_000.0).contains(&b) && b.fract() == 0.0 {
                        settings.baud = b as u32;
                    } else {
                        self.err(format!("{path}.baud: {b} is not a baud rate"));
                    }
                }
                if let Some(p) = self.string(path, t, "parity") {
                    match p {
                        "none" => settings.parity = Parity::None,
                        "even" => settings.parity = Parity::Even,
                        "odd" => settings.parity = Parity::Odd,
                        _ => self.err(format!("{path}.parity: `{p}` (expected none, even or odd)")),
                    }
                }
                if let Some(s) = self.number(path, t, "stop_bits") {
                    if s == 1.0 || s == 2.0 {
                        settings.stop_bits = s as u8;
                    } else {
                        self.err(format!("{path}.stop_bits: {s} (expected 1 or 2)"));
                    }
                }
                if let Some(f) = self.boolean(path, t, "rts_cts") {
                    settings.rts_cts = f;
                }
                device.map(|device| Link::Serial { device, settings })
            }
            Some("tcp") => self.string(path, t, "tcp").and_then(|a| {
                let ok = a
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if !ok {
                    self.err(format!(
                        "{path}.tcp: `{a}` is not host:port (e.g. \"10.1.2.3:4001\")"
                    ));
                }
                ok.then(|| Link::Tcp {
                    address: a.to_owned(),
                })
            }),
            Some("simulated") => {
                let scenario = self.string(path, t, "simulated").map(str::to_owned);
                let speed = self.number(path, t, "speed").unwrap_or(1.0);
                if !(speed > 0.0 && speed <= 10_000.0) {
                    self.err(format!(
                        "{path}.speed: {speed} (expected 0 < speed <= 10000)"
                    ));
                }
                let seed = match t.get("seed") {
                    None => 1,
                    Some(Value::Integer(i)) if *i >= 0 => *i as u64,
                    Some(other) => {
                        self.err(format!(
                            "{path}.seed: expected a non-negative integer, found {other}"
                        ));
                        1
                    }
                };
                scenario.map(|scenario| Link::Simulated {
                    scenario,
                    speed: f64::from(speed),
                    seed,
                })
            }
            _ => None,
        };
        if !matches!(link, Some(Link::Serial { .. })) {
            for k in ["baud", "parity", "stop_bits", "rts_cts"] {
                if t.contains_key(k) {
                    self.err(format!("{path}.{k}: only applies to serial sources"));
                }
            }
        }
        if !matches!(link, Some(Link::Simulated { .. })) {
            for k in ["speed", "seed"] {
                if t.contains_key(k) {
                    self.err(format!("{path}.{k}: only applies to simulated sources"));
                }
            }
        }
        Some(SourceConfig {
            name: name?.to_owned(),
            protocol: protocol?,
            link: link?,
            timeout,
            vitals,
        })
    }

    fn alarms(&mut self, t: &Table, e: &mut EngineConfig) {
        let mut allowed = vec![
            "realert_after",
            "escalate_after",
            "max_audio_pause",
            "technical_delay",
            "nibp",
            "technical",
            "link",
        ];
        allowed.extend(Vital::ALL.iter().map(|v| v.key()));
        self.check_keys("alarms", t, &allowed);
        let p = "alarms";
        if let Some(d) = t
            .get("realert_after")
            .and(self.duration(p, t, "realert_after"))
        {
            e.realert_after = d;
        }
        e.escalate_after = self.optional_duration(p, t, "escalate_after", e.escalate_after);
        if let Some(d) = t
            .get("max_audio_pause")
            .and(self.duration(p, t, "max_audio_pause"))
        {
            e.max_audio_pause = d;
        }
        if let Some(d) = t
            .get("technical_delay")
            .and(self.duration(p, t, "technical_delay"))
        {
            e.technical_delay = d;
        }
        if e.max_audio_pause > Duration::from_secs(120) {
            self.err(format!(
                "alarms.max_audio_pause ({}) must be at most 2min (IEC 60601-1-8 audio paused is bounded)",
                format_duration(e.max_audio_pause)
            ));
        }
        if e.max_audio_pause.is_zero() {
            self.err("alarms.max_audio_pause must be longer than zero".into());
        }
        if e.realert_after.is_zero() {
            self.err("alarms.realert_after must be longer than zero".into());
        }
        if e.escalate_after.is_some_and(|d| d.is_zero()) {
            self.err("alarms.escalate_after must be longer than zero (or \"off\")".into());
        }
        for vital in Vital::ALL {
            if let Some(vt) = self.sub(p, t, vital.key()) {
                let path = format!("alarms.{}", vital.key());
                let rules = self.vital(&path, vital, vt, e.vitals[vital.index()]);
                e.vitals[vital.index()] = rules;
            }
        }
        if let Some(nt) = self.sub(p, t, "nibp") {
            self.nibp(nt, &mut e.nibp);
        }
        if let Some(tt) = self.sub(p, t, "technical") {
            self.technical(tt, &mut e.technical);
        }
        if let Some(lt) = self.sub(p, t, "link") {
            self.link(lt, &mut e.link);
        }
    }

    fn vital(&mut self, path: &str, vital: Vital, t: &Table, d: VitalRules) -> VitalRules {
        let mut allowed = vec![
            "enabled",
            "low",
            "high",
            "critical_low",
            "critical_high",
            "hysteresis",
            "latching",
            "plausible",
            "baseline",
            "questionable",
        ];
        if vital.is_continuous() {
            allowed.extend(["delay", "stale_after", "rate"]);
        }
        self.check_keys(path, t, &allowed);
        let mut r = d;
        if let Some(b) = self.boolean(path, t, "enabled") {
            r.enabled = b;
        }
        r.low = self.limit(path, t, "low", d.low);
        r.high = self.limit(path, t, "high", d.high);
        r.critical_low = self.limit(path, t, "critical_low", d.critical_low);
        r.critical_high = self.limit(path, t, "critical_high", d.critical_high);
        if let Some(dl) = t.get("delay").and(self.duration(path, t, "delay")) {
            r.delay = dl;
        }
        if let Some(h) = self.number(path, t, "hysteresis") {
            r.hysteresis = h;
        }
        if let Some(l) = self.boolean(path, t, "latching") {
            r.latching = l;
        }
        if let Some(q) = self.string(path, t, "questionable") {
            match [QuestionablePolicy::Alarm, QuestionablePolicy::Off]
                .into_iter()
                .find(|k| k.key() == q)
            {
                Some(k) => r.questionable = k,
                None => self.err(format!(
                    "{path}.questionable: expected \"alarm\" or \"off\", found {q:?}"
                )),
            }
        }
        if let Some(s) = t
            .get("stale_after")
            .and(self.duration(path, t, "stale_after"))
        {
            r.stale_after = s;
        }
        match t.get("plausible") {
            None => {}
            Some(Value::Array(a))
                if a.len() == 2 && a.iter().all(|v| v.is_integer() || v.is_float()) =>
            {
                let n = |v: &Value| {
                    v.as_float()
                        .unwrap_or_else(|| v.as_integer().unwrap_or(0) as f64)
                        as f32
                };
                r.plausible_min = n(&a[0]);
                r.plausible_max = n(&a[1]);
            }
            Some(other) => self.err(format!(
                "{path}.plausible: expected [min, max], found {other}"
            )),
        }
        if let Some(bt) = self.sub(path, t, "baseline") {
            let bp = format!("{path}.baseline");
            self.check_keys(
                &bp,
                bt,
                &["rise_percent", "rise", "fall_percent", "fall", "priority"],
            );
            r.baseline = BaselineRule {
                rise_percent: self.number(&bp, bt, "rise_percent"),
                rise_abs: self.number(&bp, bt, "rise"),
                fall_percent: self.number(&bp, bt, "fall_percent"),
                fall_abs: self.number(&bp, bt, "fall"),
                priority: self.priority(&bp, bt, "priority"),
            };
            for (k, v) in [
                ("rise_percent", r.baseline.rise_percent),
                ("rise", r.baseline.rise_abs),
                ("fall_percent", r.baseline.fall_percent),
                ("fall", r.baseline.fall_abs),
            ] {
                if v.is_some_and(|v| v <= 0.0) {
                    self.err(format!("{bp}.{k} must be greater than zero"));
                }
            }
            if r.baseline.is_enabled()
                && r.baseline.priority.is_none()
                && !bt.contains_key("priority")
            {
                self.err(format!("{bp}.priority: missing"));
            }
        }
        match t.get("rate") {
            None => {}
            Some(Value::String(s)) if s == "off" => r.rate = None,
            Some(Value::Table(rt)) => {
                let rp = format!("{path}.rate");
                self.check_keys(&rp, rt, &["window", "rise", "fall", "priority"]);
                let window = self.duration(&rp, rt, "window");
                let rise = self.number(&rp, rt, "rise");
                let fall = self.number(&rp, rt, "fall");
                let priority = self.priority(&rp, rt, "priority");
                if window.is_none() && !rt.contains_key("window") {
                    self.err(format!("{rp}.window: missing"));
                }
                if priority.is_none() && !rt.contains_key("priority") {
                    self.err(format!("{rp}.priority: missing"));
                }
                if rise.is_none() && fall.is_none() {
                    self.err(format!("{rp}: give rise, fall or both"));
                }
                for (k, v) in [("rise", rise), ("fall", fall)] {
                    if v.is_some_and(|v| v <= 0.0) {
                        self.err(format!("{rp}.{k} must be greater than zero"));
                    }
                }
                if let Some(w) = window {
                    if w < Duration::from_secs(1) || w > Duration::from_secs(3600) {
                        self.err(format!(
                            "{rp}.window ({}) must be between 1s and 1h",
                            format_duration(w)
                        ));
                    }
                }
                if let (Some(window), Some(priority)) = (window, priority) {
                    r.rate = Some(RateRule {
                        window,
                        rise,
                        fall,
                        priority,
                    });
                }
            }
            Some(other) => self.err(format!(
                "{path}.rate: expected a table or \"off\", found {other}"
            )),
        }
        self.check_vital(path, &r);
        r
    }

    /// Cross-field checks of one vital.
    fn check_vital(&mut self, path: &str, r: &VitalRules) {
        let v = |l: Option<Limit>| l.map(|l| l.value);
        let pairs = [
            ("critical_low", v(r.critical_low), "low", v(r.low)),
            ("low", v(r.low), "high", v(r.high)),
            ("high", v(r.high), "critical_high", v(r.critical_high)),
            ("critical_low", v(r.critical_low), "high", v(r.high)),
            ("low", v(r.low), "critical_high", v(r.critical_high)),
            (
                "critical_low",
                v(r.critical_low),
                "critical_high",
                v(r.critical_high),
            ),
        ];
        for (a, av, b, bv) in pairs {
            if let (Some(x), Some(y)) = (av, bv) {
                if x >= y {
                    self.err(format!("{path}.{a} ({x}) must be below {path}.{b} ({y})"));
                }
            }
        }
        if r.plausible_min >= r.plausible_max {
            self.err(format!(
                "{path}.plausible: min ({}) must be below max ({})",
                r.plausible_min, r.plausible_max
            ));
        }
        for (name, l) in [
            ("low", r.low),
            ("high", r.high),
            ("critical_low", r.critical_low),
            ("critical_high", r.critical_high),
        ] {
            if let Some(l) = l {
                if l.value < r.plausible_min || l.value > r.plausible_max {
                    self.err(format!(
                        "{path}.{name} ({}) lies outside the plausible range [{}, {}]",
                        l.value, r.plausible_min, r.plausible_max
                    ));
                }
                if l.delay.is_some() && name.starts_with("critical") {
                    self.err(format!(
                        "{path}.{name}.delay: the critical tier never has a delay"
                    ));
                }
            }
        }
        if r.hysteresis < 0.0 {
            self.err(format!(
                "{path}.hysteresis ({}) must not be negative",
                r.hysteresis
            ));
        }
        if r.delay > Duration::from_secs(120) {
            self.err(format!(
                "{path}.delay ({}) is longer than 2min: alarms would come too late",
                format_duration(r.delay)
            ));
        }
        if r.stale_after < Duration::from_secs(1) || r.stale_after > Duration::from_secs(600) {
            self.err(format!(
                "{path}.stale_after ({}) must be between 1s and 10min",
                format_duration(r.stale_after)
            ));
        }
    }

    fn nibp(&mut self, t: &Table, n: &mut NibpRules) {
        let p = "alarms.nibp";
        self.check_keys(
            p,
            t,
            &[
                "confirm",
                "confirm_window",
                "cycle",
                "grace",
                "watch_cycle",
                "combined_high",
            ],
        );
        if let Some(c) = self.string(p, t, "confirm") {
            match [NibpConfirm::High, NibpConfirm::Both, NibpConfirm::Off]
                .into_iter()
                .find(|k| k.key() == c)
            {
                Some(k) => n.confirm = k,
                None => self.err(format!(
                    "alarms.nibp.confirm: expected \"high\", \"both\" or \"off\", found {c:?}"
                )),
            }
        }
        n.confirm_window = self.optional_duration(p, t, "confirm_window", n.confirm_window);
        if let Some(d) = t.get("cycle").and(self.duration(p, t, "cycle")) {
            n.cycle = d;
        }
        if let Some(d) = t.get("grace").and(self.duration(p, t, "grace")) {
            n.grace = d;
        }
        if let Some(b) = self.boolean(p, t, "watch_cycle") {
            n.watch_cycle = b;
        }
        if let Some(b) = self.boolean(p, t, "combined_high") {
            n.combined_high = b;
        }
        if n.cycle < Duration::from_secs(60) {
            self.err(format!(
                "alarms.nibp.cycle ({}) must be at least 1min",
                format_duration(n.cycle)
            ));
        }
    }

    fn technical(&mut self, t: &Table, tp: &mut TechnicalPriorities) {
        let p = "alarms.technical";
        let fields: [(&str, &mut Priority); 18] = [
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
        ];
        let names: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
        self.check_keys(p, t, &names);
        for (k, slot) in fields {
            if let Some(pr) = self.priority(p, t, k) {
                *slot = pr;
            }
        }
    }

    fn link(&mut self, t: &Table, l: &mut LinkRules) {
        let p = "alarms.link";
        self.check_keys(p, t, &["window", "max_error_rate", "min_errors"]);
        if let Some(d) = t.get("window").and(self.duration(p, t, "window")) {
            l.window = d;
        }
        if let Some(r) = self.number(p, t, "max_error_rate") {
            if (0.0..1.0).contains(&r) {
                l.max_error_rate = r;
            } else {
                self.err(format!("{p}.max_error_rate ({r}) must be in [0, 1)"));
            }
        }
        if let Some(m) = self.number(p, t, "min_errors") {
            if m >= 1.0 && m.fract() == 0.0 {
                l.min_errors = m as u32;
            } else {
                self.err(format!("{p}.min_errors ({m}) must be a whole number >= 1"));
            }
        }
    }

    fn recording(&mut self, t: &Table, r: &mut RecordingConfig) {
        let p = "recording";
        self.check_keys(p, t, &["enabled", "dir", "retention", "sync_every"]);
        if let Some(b) = self.boolean(p, t, "enabled") {
            r.enabled = b;
        }
        if let Some(d) = self.string(p, t, "dir") {
            if d.is_empty() {
                self.err("recording.dir must not be empty".into());
            } else {
                r.dir = PathBuf::from(d);
            }
        }
        if let Some(d) = t.get("retention").and(self.duration(p, t, "retention")) {
            if d < Duration::from_secs(86_400) {
                self.err(format!(
                    "recording.retention ({}) must be at least 1d",
                    format_duration(d)
                ));
            } else {
                r.retention = d;
            }
        }
        if let Some(d) = t.get("sync_every").and(self.duration(p, t, "sync_every")) {
            if d.is_zero() || d > Duration::from_secs(60) {
                self.err(format!(
                    "recording.sync_every ({}) must be between 1ms and 1min",
                    format_duration(d)
                ));
            } else {
                r.sync_every = d;
            }
        }
    }

    fn session(&mut self, t: &Table, e: &mut EngineConfig) {
        self.check_keys("session", t, &["discharge", "baseline"]);
        if let Some(bt) = self.sub("session", t, "baseline") {
            let p = "session.baseline";
            self.check_keys(p, bt, &["min_nibp_readings", "min_continuous"]);
            if let Some(n) = self.number(p, bt, "min_nibp_readings") {
                if n >= 1.0 && n.fract() == 0.0 && n <= 100.0 {
                    e.baseline_min.nibp_readings = n as u32;
                } else {
                    self.err(format!(
                        "{p}.min_nibp_readings ({n}) must be a whole number from 1 to 100"
                    ));
                }
            }
            if let Some(d) = bt
                .get("min_continuous")
                .and(self.duration(p, bt, "min_continuous"))
            {
                e.baseline_min.continuous = d;
            }
        }
        if let Some(dt) = self.sub("session", t, "discharge") {
            let p = "session.discharge";
            self.check_keys(p, dt, &["within_percent", "hold"]);
            let d: &mut DischargeRules = &mut e.discharge;
            if let Some(w) = self.number(p, dt, "within_percent") {
                if w > 0.0 && w <= 100.0 {
                    d.within_percent = w;
                } else {
                    self.err(format!("{p}.within_percent ({w}) must be in (0, 100]"));
                }
            }
            if let Some(h) = dt.get("hold").and(self.duration(p, dt, "hold")) {
                d.hold = h;
            }
        }
    }
}

impl Reader {
    fn optional_path(&mut self, path: &str, t: &Table, key: &str) -> Option<Option<PathBuf>> {
        let v = self.string(path, t, key)?;
        if v == "off" {
            Some(None)
        } else if v.is_empty() {
            self.err(format!("{}: give a file path or \"off\"", join(path, key)));
            None
        } else {
            Some(Some(PathBuf::from(v)))
        }
    }

    fn mqtt(&mut self, t: &Table, m: &mut MqttConfig) {
        let p = "mqtt";
        self.check_keys(
            p,
            t,
            &[
                "enabled",
                "embedded",
                "listen",
                "broker",
                "prefix",
                "client_id",
                "credentials_file",
                "ca_file",
                "client_cert",
                "client_key",
                "heartbeat",
                "unreachable_after",
                "command_max_age",
                "state_dir",
                "outbox_max",
            ],
        );
        if let Some(b) = self.boolean(p, t, "enabled") {
            m.enabled = b;
        }
        if let Some(b) = self.boolean(p, t, "embedded") {
            m.embedded = b;
        }
        if let Some(v) = self.string(p, t, "listen") {
            match v.parse() {
                Ok(a) => m.listen = a,
                Err(_) => self.err(format!(
                    "mqtt.listen: `{v}` is not an address:port (e.g. \"127.0.0.1:1883\")"
                )),
            }
        }
        if let Some(v) = self.string(p, t, "broker") {
            match parse_broker_url(v) {
                Ok(_) => m.broker = v.to_owned(),
                Err(e) => self.err(format!(
                    "mqtt.broker: `{v}` {e} (e.g. \"mqtt://127.0.0.1:1883\" or \"mqtts://broker.example:8883\")"
                )),
            }
        }
        if let Some(v) = self.string(p, t, "prefix") {
            let bad = v.is_empty()
                || !v.ends_with('/')
                || v.starts_with('/')
                || v.len() > 200
                || v.contains(['+', '#', '\0'])
                || v.contains("//");
            let unknown_placeholder = v
                .replace("{site}", "")
                .replace("{bed}", "")
                .contains(['{', '}']);
            if bad || unknown_placeholder {
                self.err(format!(
                    "mqtt.prefix: `{v}` must be a topic path ending in '/', without '+', '#', empty levels or placeholders other than {{site}} and {{bed}}"
                ));
            } else {
                m.prefix = v.to_owned();
            }
        }
        if let Some(v) = self.string(p, t, "client_id") {
            let plain = v.replace("{site}", "").replace("{bed}", "");
            if v.is_empty()
                || v.len() > 64
                || !plain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                self.err(format!(
                    "mqtt.client_id: `{v}` must be 1-64 letters, digits, '-' or '_' (placeholders {{site}} and {{bed}} allowed)"
                ));
            } else {
                m.client_id = v.to_owned();
            }
        }
        for (key, slot) in [
            ("credentials_file", &mut m.credentials_file),
            ("ca_file", &mut m.ca_file),
            ("client_cert", &mut m.client_cert),
            ("client_key", &mut m.client_key),
        ] {
            if let Some(v) = self.optional_path(p, t, key) {
                *slot = v;
            }
        }
        for (key, slot, min) in [
            ("heartbeat", &mut m.heartbeat, Duration::from_millis(100)),
            (
                "unreachable_after",
                &mut m.unreachable_after,
                Duration::from_secs(1),
            ),
            (
                "command_max_age",
                &mut m.command_max_age,
                Duration::from_secs(1),
            ),
        ] {
            if let Some(d) = t.get(key).and(self.duration(p, t, key)) {
                if d < min {
                    self.err(format!(
                        "mqtt.{key}: {} is too short (at least {})",
                        format_duration(d),
                        format_duration(min)
                    ));
                } else {
                    *slot = d;
                }
            }
        }
        if let Some(v) = self.string(p, t, "state_dir") {
            if v == "auto" {
                m.state_dir = StateDir::Auto;
            } else if v.is_empty() {
                self.err("mqtt.state_dir: give a directory or \"auto\"".into());
            } else {
                m.state_dir = StateDir::Path(PathBuf::from(v));
            }
        }
        match t.get("outbox_max") {
            None => {}
            Some(Value::Integer(n)) if (10..=1_000_000).contains(n) => m.outbox_max = *n as u32,
            Some(other) => self.err(format!(
                "mqtt.outbox_max: expected a whole number from 10 to 1000000, found {other}"
            )),
        }
        let tls = parse_broker_url(&m.broker).is_ok_and(|u| u.tls);
        if tls && !m.embedded && m.ca_file.is_none() {
            self.err(format!(
                "mqtt.ca_file: `{}` uses TLS: give the CA certificate file that signs the broker's certificate",
                m.broker
            ));
        }
        if m.client_cert.is_some() != m.client_key.is_some() {
            self.err("mqtt.client_cert and mqtt.client_key: give both or neither".into());
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn is_topic_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

// ----- rendering ---------------------------------------------------------------

/// Renders a configuration as TOML in the file's schema (every value explicit).
pub fn render(cfg: &Config) -> String {
    let mut o = String::new();
    let e = &cfg.engine;
    let _ = writeln!(o, "[site]\nsite = {:?}\nbed = {:?}\n", cfg.site, cfg.bed);
    for s in &cfg.sources {
        let _ = writeln!(
            o,
            "[[source]]\nname = {:?}\nprotocol = {:?}",
            s.name,
            s.protocol.key()
        );
        match &s.link {
            Link::Serial { device, settings } => {
                let _ = writeln!(
                    o,
                    "serial = {:?}\nbaud = {}\nparity = {:?}\nstop_bits = {}\nrts_cts = {}",
                    device.display().to_string(),
                    settings.baud,
                    settings.parity.key(),
                    settings.stop_bits,
                    settings.rts_cts
                );
            }
            Link::Tcp { address } => {
                let _ = writeln!(o, "tcp = {address:?}");
            }
            Link::Simulated {
                scenario,
                speed,
                seed,
            } => {
                let _ = writeln!(
                    o,
                    "simulated = {scenario:?}\nspeed = {speed}\nseed = {seed}"
                );
            }
        }
        let _ = writeln!(o, "timeout = {:?}", format_duration(s.timeout));
        let vitals: Vec<String> = s.vitals.iter().map(|v| format!("{:?}", v.key())).collect();
        let _ = writeln!(o, "vitals = [{}]\n", vitals.join(", "));
    }
    let dur = |d: Duration| format!("{:?}", format_duration(d));
    let opt_dur = |d: Option<Duration>| d.map_or("\"off\"".to_owned(), dur);
    let _ = writeln!(
        o,
        "[alarms]\nrealert_after = {}\nescalate_after = {}\nmax_audio_pause = {}\ntechnical_delay = {}\n",
        dur(e.realert_after),
        opt_dur(e.escalate_after),
        dur(e.max_audio_pause),
        dur(e.technical_delay)
    );
    for vital in Vital::ALL {
        let r = e.rules(vital);
        let _ = writeln!(o, "[alarms.{}]\nenabled = {}", vital.key(), r.enabled);
        for (k, l) in [
            ("low", r.low),
            ("high", r.high),
            ("critical_low", r.critical_low),
            ("critical_high", r.critical_high),
        ] {
            match l {
                None => {
                    let _ = writeln!(o, "{k} = \"off\"");
                }
                Some(l) => {
                    let delay = l
                        .delay
                        .map(|d| format!(", delay = {}", dur(d)))
                        .unwrap_or_default();
                    let _ = writeln!(
                        o,
                        "{k} = {{ limit = {}, priority = {:?}{delay} }}",
                        num(l.value),
                        l.priority.key()
                    );
                }
            }
        }
        if vital.is_continuous() {
            let _ = writeln!(
                o,
                "delay = {}\nstale_after = {}",
                dur(r.delay),
                dur(r.stale_after)
            );
        }
        let _ = writeln!(
            o,
            "hysteresis = {}\nlatching = {}\nplausible = [{}, {}]\nquestionable = {:?}",
            num(r.hysteresis),
            r.latching,
            num(r.plausible_min),
            num(r.plausible_max),
            r.questionable.key()
        );
        let b = r.baseline;
        if b.is_enabled() {
            let mut parts = Vec::new();
            for (k, v) in [
                ("rise_percent", b.rise_percent),
                ("rise", b.rise_abs),
                ("fall_percent", b.fall_percent),
                ("fall", b.fall_abs),
            ] {
                if let Some(v) = v {
                    parts.push(format!("{k} = {}", num(v)));
                }
            }
            if let Some(p) = b.priority {
                parts.push(format!("priority = {:?}", p.key()));
            }
            let _ = writeln!(o, "baseline = {{ {} }}", parts.join(", "));
        }
        if vital.is_continuous() {
            match r.rate {
                None => {
                    let _ = writeln!(o, "rate = \"off\"");
                }
                Some(rate) => {
                    let mut parts = vec![format!("window = {}", dur(rate.window))];
                    if let Some(v) = rate.rise {
                        parts.push(format!("rise = {}", num(v)));
                    }
                    if let Some(v) = rate.fall {
                        parts.push(format!("fall = {}", num(v)));
                    }
                    parts.push(format!("priority = {:?}", rate.priority.key()));
                    let _ = writeln!(o, "rate = {{ {} }}", parts.join(", "));
                }
            }
        }
        o.push('\n');
    }
    let n = &e.nibp;
    let _ = writeln!(
        o,
        "[alarms.nibp]\nconfirm = {:?}\nconfirm_window = {}\ncycle = {}\ngrace = {}\nwatch_cycle = {}\ncombined_high = {}\n",
        n.confirm.key(),
        opt_dur(n.confirm_window),
        dur(n.cycle),
        dur(n.grace),
        n.watch_cycle,
        n.combined_high
    );
    let t = &e.technical;
    let _ = writeln!(o, "[alarms.technical]");
    for (k, p) in [
        ("stale", t.stale),
        ("sensor_off", t.sensor_off),
        ("invalid", t.invalid),
        ("artifact", t.artifact),
        ("cycle_overdue", t.cycle_overdue),
        ("disconnected", t.disconnected),
        ("link_errors", t.link_errors),
        ("not_associated", t.not_associated),
        ("no_valid_data", t.no_valid_data),
        ("monitor_restarted", t.monitor_restarted),
        ("low_battery", t.low_battery),
        ("queue_overflow", t.queue_overflow),
        ("broker_unreachable", t.broker_unreachable),
        ("storage_failure", t.storage_failure),
        ("journal_failure", t.journal_failure),
        ("journal_corrupt", t.journal_corrupt),
        ("broker_link_unstable", t.broker_link_unstable),
        ("input_overload", t.input_overload),
    ] {
        let _ = writeln!(o, "{k} = {:?}", p.key());
    }
    let l = &e.link;
    let _ = writeln!(
        o,
        "\n[alarms.link]\nwindow = {}\nmax_error_rate = {}\nmin_errors = {}\n",
        dur(l.window),
        num(l.max_error_rate),
        l.min_errors
    );
    let _ = writeln!(
        o,
        "[session.discharge]\nwithin_percent = {}\nhold = {}\n",
        num(e.discharge.within_percent),
        dur(e.discharge.hold)
    );
    let _ = writeln!(
        o,
        "[session.baseline]\nmin_nibp_readings = {}\nmin_continuous = {}\n",
        e.baseline_min.nibp_readings,
        dur(e.baseline_min.continuous)
    );
    let r = &cfg.recording;
    let _ = writeln!(
        o,
        "[recording]\nenabled = {}\ndir = {:?}\nretention = {}\nsync_every = {}",
        r.enabled,
        r.dir.display().to_string(),
        dur(r.retention),
        dur(r.sync_every)
    );
    let m = &cfg.mqtt;
    let path = |p: &Option<PathBuf>| match p {
        None => "\"off\"".to_owned(),
        Some(p) => format!("{:?}", p.display().to_string()),
    };
    let state_dir = match &m.state_dir {
        StateDir::Auto => "\"auto\"".to_owned(),
        StateDir::Path(p) => format!("{:?}", p.display().to_string()),
    };
    let _ = writeln!(
        o,
        "\n[mqtt]\nenabled = {}\nembedded = {}\nlisten = {:?}\nbroker = {:?}\nprefix = {:?}\nclient_id = {:?}\ncredentials_file = {}\nca_file = {}\nclient_cert = {}\nclient_key = {}\nheartbeat = {}\nunreachable_after = {}\ncommand_max_age = {}\nstate_dir = {}\noutbox_max = {}",
        m.enabled,
        m.embedded,
        m.listen.to_string(),
        m.broker,
        m.prefix,
        m.client_id,
        path(&m.credentials_file),
        path(&m.ca_file),
        path(&m.client_cert),
        path(&m.client_key),
        dur(m.heartbeat),
        dur(m.unreachable_after),
        dur(m.command_max_age),
        state_dir,
        m.outbox_max
    );
    o
}

/// A number as TOML: integral values without a fraction.
fn num(v: f32) -> String {
    if v.fract() == 0.0 && v.abs() < 1e9 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match parse(text, "test.toml") {
            Err(ConfigError::Invalid { errors, .. }) => errors,
            other => panic!("expected errors, got {other:?}"),
        }
    }

    #[test]
    fn shipped_file_equals_the_built_in_defaults() {
        let cfg = parse(DEFAULT_TOML, "config/vigil.toml").unwrap();
        let mut expected = Config {
            sources: cfg.sources.clone(),
            ..Config::default()
        };
        expected.engine.source_names = cfg.engine.source_names.clone();
        assert_eq!(cfg, expected);
    }

    #[test]
    fn shipped_file_is_not_ready_and_says_what_to_fill_in() {
        let cfg = parse(DEFAULT_TOML, "config/vigil.toml").unwrap();
        let r = readiness(&cfg);
        assert_eq!(r.missing.len(), 1, "{r:?}");
        assert!(r.missing[0].contains("[[source]]") && r.missing[0].contains("vigil setup"));
        assert!(r.warnings[0].contains("site.site"), "{r:?}");
        let ready = parse(
            &DEFAULT_TOML.replace("site = \"demo-clinic\"", "site = \"north\"").replace(
                "# [[source]]\n# name = \"monitor\"",
                "[[source]]\nname = \"monitor\"\nprotocol = \"ge-s5\"\nserial = \"/dev/ttyUSB0\"\n# name",
            ),
            "filled in",
        )
        .unwrap();
        assert_eq!(readiness(&ready), Readiness::default());
    }

    #[test]
    fn demo_configuration_is_valid() {
        let cfg = parse(DEMO_TOML, "config/demo.toml").unwrap();
        assert!(matches!(cfg.sources[0].link, Link::Simulated { .. }));
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("", "x").unwrap(), Config::default());
    }

    #[test]
    fn rendered_configuration_parses_back_identically() {
        let cfg = parse(DEFAULT_TOML, "config/vigil.toml").unwrap();
        let text = render(&cfg);
        assert_eq!(parse(&text, "rendered").unwrap(), cfg, "{text}");
        let mut other = Config::default();
        other.engine.vitals[0].low = Some(Limit {
            value: 45.5,
            priority: Priority::High,
            delay: Some(Duration::from_millis(2500)),
        });
        other.engine.escalate_after = None;
        other.sources.push(SourceConfig {
            name: "cuff".into(),
            protocol: ProtocolKind::Ge,
            link: Link::Serial {
                device: "/dev/ttyUSB0".into(),
                settings: ProtocolKind::Ge.default_serial(),
            },
            timeout: Duration::from_secs(30),
            vitals: vec![Vital::NibpSystolic, Vital::NibpDiastolic, Vital::NibpMean],
        });
        other.sources.push(SourceConfig {
            name: "bridge".into(),
            protocol: ProtocolKind::Masimo,
            link: Link::Tcp {
                address: "10.0.0.7:4001".into(),
            },
            timeout: Duration::from_secs(10),
            vitals: Vital::ALL.to_vec(),
        });
        other.engine.source_names = vec!["cuff".into(), "bridge".into()];
        assert_eq!(parse(&render(&other), "rendered").unwrap(), other);
    }

    #[test]
    fn errors_name_the_key_and_the_reason() {
        let errs = errors(
            r#"
            [alarms.spo2]
            low = { limit = 95, priority = "medium" }
            high = { limit = 90, priority = "low" }
            "#,
        );
        assert!(
            errs.contains(&"alarms.spo2.low (95) must be below alarms.spo2.high (90)".to_owned()),
            "{errs:?}"
        );
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let errs = errors(
            r#"
            colour = "blue"
            [alarms]
            realert_after = "soon"
            [alarms.hr]
            hi = { limit = 120, priority = "medium" }
            low = { limit = 50, priority = "urgent" }
            delay = 10
            [alarms.nibp_sys]
            delay = "10s"
            "#,
        );
        let joined = errs.join("\n");
        for needle in [
            "colour: unknown key",
            "alarms.realert_after: `soon` is not a duration",
            "alarms.hr.hi: unknown key",
            "alarms.hr.low.priority: `urgent` is not a priority",
            "alarms.hr.delay: expected a string",
            "alarms.nibp_sys.delay: unknown key",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in\n{joined}");
        }
        assert!(errs.len() >= 6);
        let shown = parse("colour = 1", "clinic.toml").unwrap_err().to_string();
        assert!(shown.starts_with("clinic.toml: 1 error(s):"), "{shown}");
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let e = parse("[alarms\n", "clinic.toml").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { .. }));
        assert!(e.to_string().starts_with("clinic.toml: not valid TOML"));
    }

    #[test]
    fn nibp_confirmation_side_is_parsed_and_checked() {
        let cfg = parse("[alarms.nibp]\nconfirm = \"both\"\n", "x").unwrap();
        assert_eq!(cfg.engine.nibp.confirm, NibpConfirm::Both);
        let e = errors("[alarms.nibp]\nconfirm = \"low\"\n");
        assert!(e.iter().any(|m| m.contains("alarms.nibp.confirm")), "{e:?}");
    }

    #[test]
    fn limits_can_be_switched_off_and_overridden() {
        let cfg = parse(
            r#"
            [alarms.hr]
            high = { limit = 130, priority = "high", delay = "5min" }
            critical_low = "off"
            rate = "off"
            "#,
            "x",
        )
        .unwrap();
        let hr = cfg.engine.rules(Vital::HeartRate);
        assert_eq!(
            hr.high,
            Some(Limit {
                value: 130.0,
                priority: Priority::High,
                delay: Some(Duration::from_secs(300))
            })
        );
        assert_eq!(hr.critical_low, None);
        assert_eq!(hr.rate, None);
        // Untouched keys keep their defaults.
        assert_eq!(hr.low, EngineConfig::default().rules(Vital::HeartRate).low);
    }

    #[test]
    fn sources_are_validated() {
        let errs = errors(
            r#"
            [[source]]
            name = "mon itor"
            protocol = "acme"
            serial = "/dev/ttyS0"
            tcp = "x:1"
            [[source]]
            name = "ox"
            protocol = "masimo"
            tcp = "nohost"
            baud = 9600
            "#,
        );
        let joined = errs.join("\n");
        for needle in [
            "source[0].name: `mon itor`",
            "source[0].protocol: unknown protocol `acme`",
            "source[0]: give exactly one of",
            "source[1].tcp: `nohost` is not host:port",
            "source[1].baud: only applies to serial sources",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in\n{joined}");
        }
        let cfg = parse(
            r#"
            [[source]]
            name = "monitor"
            protocol = "ge-s5"
            serial = "/dev/ttyUSB0"
            "#,
            "x",
        )
        .unwrap();
        assert_eq!(
            cfg.sources[0].link,
            Link::Serial {
                device: "/dev/ttyUSB0".into(),
                settings: SerialSettings {
                    baud: 19_200,
                    parity: Parity::Even,
                    stop_bits: 1,
                    rts_cts: true
                }
            }
        );
        assert_eq!(cfg.engine.source_names, vec!["monitor".to_owned()]);
    }

    #[test]
    fn the_mqtt_section_is_validated_key_by_key() {
        let errs = errors(
            r#"
            [mqtt]
            broker = "http://example.org"
            listen = "localhost"
            prefix = "vigil/#/"
            client_id = "has space"
            heartbeat = "10ms"
            outbox_max = 3
            client_cert = "cert.pem"
            state_dir = ""
            colour = "blue"
            "#,
        );
        for key in [
            "mqtt.broker",
            "mqtt.listen",
            "mqtt.prefix",
            "mqtt.client_id",
            "mqtt.heartbeat",
            "mqtt.outbox_max",
            "mqtt.client_cert and mqtt.client_key",
            "mqtt.state_dir",
            "mqtt.colour: unknown key",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(key)),
                "{key} not reported in {errs:#?}"
            );
        }
        let errs = errors("[mqtt]\nembedded = false\nbroker = \"mqtts://broker.example\"");
        assert!(errs[0].starts_with("mqtt.ca_file"), "{errs:?}");

        let cfg = parse(
            r#"
            [mqtt]
            embedded = false
            broker = "mqtts://broker.example"
            ca_file = "/etc/vigil/ca.pem"
            credentials_file = "/etc/vigil/mqtt"
            state_dir = "/var/lib/vigil-test"
            "#,
            "t",
        )
        .unwrap();
        assert_eq!(
            parse_broker_url(&cfg.mqtt.broker).unwrap(),
            BrokerUrl {
                tls: true,
                host: "broker.example".into(),
                port: 8883
            }
        );
        assert_eq!(parse(&render(&cfg), "rendered").unwrap(), cfg);
        assert_eq!(
            parse_broker_url("mqtt://[::1]:1884").unwrap().host,
            "::1".to_owned()
        );
        assert!(parse_broker_url("mqtt://host:0").is_err());
    }

    #[test]
    fn durations_parse_and_format() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30min"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("5 weeks"), None);
        for d in [0u64, 1, 999, 1000, 60_000, 5_400_000, 3_600_000] {
            let d = Duration::from_millis(d);
            assert_eq!(parse_duration(&format_duration(d)), Some(d));
        }
    }
}
