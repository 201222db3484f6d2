//! The command line's arguments (clap): every subcommand, flag and default.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use vigil::config;

/// vigil watches vital signs during ketamine-assisted therapy sessions and
/// raises alarms for the staff displays. It is a secondary notifier beside
/// the patient monitor, not a certified medical alarm system.
#[derive(Parser, Debug)]
#[command(name = "vigil", version, about, long_about = None)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Log filter (tracing env-filter syntax), e.g. `info` or `vigil=debug`.
    #[arg(long, global = true, env = "VIGIL_LOG", default_value = "info")]
    pub log: String,

    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum RecordCmd {
    /// Summary: duration, sources, readings per vital, alarms, gaps, corrupt records.
    Inspect {
        /// The recording.
        file: PathBuf,
    },
    /// Readings and alarm/session events as a table (the recording is
    /// replayed). Columns: type, time, wall_time, source, vital, value, unit,
    /// validity, alarm, kind, phase, priority, state, limit, ack_by, detail
    /// (docs/record-tools.md).
    Export {
        /// The recording.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Write here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// fhir, hl7: chart every reading instead of one per interval.
        #[arg(long, conflicts_with = "interval")]
        every_reading: bool,
        /// fhir, hl7: the charting interval (first valid reading of each
        /// vital per interval, plus every NIBP).
        #[arg(long, default_value = "5min", value_parser = parse_interval)]
        interval: std::time::Duration,
    },
    /// Send a recording's chart as HL7 ORU^R01 (IHE PCD-01) messages to an
    /// HL7 receiver over MLLP, each waiting for its ACK (docs/record-tools.md).
    Send {
        /// The recording.
        file: PathBuf,
        /// The receiver, HOST:PORT.
        #[arg(long)]
        to: String,
        /// Chart every reading instead of one per interval.
        #[arg(long, conflicts_with = "interval")]
        every_reading: bool,
        /// The charting interval.
        #[arg(long, default_value = "5min", value_parser = parse_interval)]
        interval: std::time::Duration,
        /// Attempts per message before giving up.
        #[arg(long, default_value_t = 3)]
        attempts: u32,
    },
    /// The HTML report of a recorded session (the same as `vigil report`).
    Report(ReportArgs),
    /// Build a recording from a CSV of timed readings (columns time, vital,
    /// value, validity), so it can be replayed and reported on.
    Import {
        /// The CSV file (`-` for standard input).
        csv: PathBuf,
        /// The recording to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Configuration whose alarm settings, site and bed the recording
        /// carries (default: the built-in defaults).
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Wall-clock time of the session start, RFC 3339
        /// (e.g. 2026-03-01T09:30:00Z; default: the Unix epoch).
        #[arg(long)]
        start: Option<String>,
    },
}

/// `vigil report` and `vigil record report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The recording.
    pub file: PathBuf,
    /// The HTML file to write (default: the recording's name with .html).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Show clock times at this fixed offset from UTC, e.g. +01:00
    /// (default: the system's time zone, from TZ or /etc/localtime, with
    /// its daylight-saving rules).
    #[arg(long, allow_hyphen_values = true)]
    pub utc_offset: Option<String>,
    /// The interval of the vitals table (plus every NIBP).
    #[arg(long, default_value = "5min", value_parser = parse_interval)]
    pub interval: std::time::Duration,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ExportFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
    /// FHIR R4 Bundle of vital-signs Observations (docs/record-tools.md).
    Fhir,
    /// HL7 v2.6 ORU^R01 messages, IHE PCD-01 (docs/record-tools.md).
    Hl7,
}

pub fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    match vigil::config::parse_duration(s) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "`{s}` is not an interval such as 5min, 15min or 900s"
        )),
    }
}

/// Where the displays read the feed.
#[derive(clap::Args, Debug)]
pub struct FeedArgs {
    /// MQTT broker: mqtt://HOST[:PORT], mqtts://HOST[:PORT] (TLS) or HOST:PORT.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub broker: String,
    /// File with the MQTT username on its first line and password on its
    /// second (or set VIGIL_MQTT_USERNAME and VIGIL_MQTT_PASSWORD).
    #[arg(long)]
    pub mqtt_credentials_file: Option<PathBuf>,
    /// CA certificates (PEM) that sign the broker's certificate (mqtts://).
    #[arg(long)]
    pub mqtt_ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for a broker that requires one.
    #[arg(long, requires = "mqtt_client_key")]
    pub mqtt_client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "mqtt_client_cert")]
    pub mqtt_client_key: Option<PathBuf>,
    /// Topic prefix template, as the daemon's mqtt.prefix.
    #[arg(long, default_value = vigil::display::feed::DEFAULT_PREFIX)]
    pub prefix: String,
    /// A bed to show, SITE/BED (repeat for several). Default: every bed on the broker.
    #[arg(long = "bed")]
    pub beds: Vec<String>,
    /// No heartbeat from a bed for this long: NO DATA (the daemon beats every 5 s).
    #[arg(long, default_value = "15s", value_parser = duration_arg)]
    pub heartbeat_timeout: std::time::Duration,
    /// MQTT client id (default vigil-display-PID or vigil-watch-PID). A
    /// chosen id also keeps a persistent session on the broker: alarm events
    /// published while this display is away are replayed when it is back.
    /// Give each display its own.
    #[arg(long)]
    pub client_id: Option<String>,
    /// MQTT version: auto (MQTT 5, or 3.1.1 when the broker does not speak
    /// it), 5 or 3.1.1.
    #[arg(long, value_enum, default_value = "auto")]
    pub mqtt_protocol: MqttProtocol,
}

/// `--mqtt-protocol`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MqttProtocol {
    /// MQTT 5, or 3.1.1 when the broker does not speak MQTT 5.
    Auto,
    /// MQTT 5.
    #[value(name = "5")]
    V5,
    /// MQTT 3.1.1.
    #[value(name = "3.1.1")]
    V311,
}

impl FeedArgs {
    pub fn options(self) -> vigil::display::FeedOptions {
        vigil::display::FeedOptions {
            broker: self.broker,
            credentials_file: self.mqtt_credentials_file,
            ca_file: self.mqtt_ca_file,
            client_cert: self.mqtt_client_cert,
            client_key: self.mqtt_client_key,
            prefix: self.prefix,
            beds: self.beds,
            heartbeat_timeout: self.heartbeat_timeout,
            client_id: self.client_id,
            protocol: match self.mqtt_protocol {
                MqttProtocol::Auto => None,
                MqttProtocol::V5 => Some(vigil::mqtt::wire::Protocol::V5),
                MqttProtocol::V311 => Some(vigil::mqtt::wire::Protocol::V311),
            },
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run the daemon.
    Run {
        /// Configuration file. Without it, the embedded defaults apply.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// How often to log the status line (latency, sources, alarms).
        #[arg(long, default_value = "30s", value_parser = duration_arg)]
        status_every: std::time::Duration,
        /// Stop after this much session time (for demos and tests).
        #[arg(long, value_parser = duration_arg)]
        run_for: Option<std::time::Duration>,
    },
    /// Run a complete demo on the embedded defaults: a simulated ketamine
    /// session (60x accelerated), alarms within a minute.
    Demo {
        /// Scenario: demo, typical, hypertensive, desaturation,
        /// sensor-problems, comm-loss, apnoea, or a scenario file.
        #[arg(long, default_value = "demo")]
        scenario: String,
        /// Protocol the simulated monitor speaks (ge-s5, philips-intellivue,
        /// masimo, nonin-df2, nonin-df7, nonin-df8, vigil-line).
        #[arg(long)]
        protocol: Option<String>,
        /// Time acceleration.
        #[arg(long, default_value_t = 60.0)]
        speed: f64,
        /// Random seed of the simulated patient.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// List the serial ports this machine has.
    Ports,
    /// Write a starting configuration for one site, bed and monitor: from
    /// the flags, asking for what they leave out. Lists the serial ports it
    /// sees. Every alarm setting is the shipped default, with its source.
    Setup {
        /// The clinic's name (part of the MQTT topics).
        #[arg(long)]
        site: Option<String>,
        /// The bed or room.
        #[arg(long)]
        bed: Option<String>,
        /// The monitor's protocol: ge-s5, philips-intellivue, masimo,
        /// nonin-df2, nonin-df7, nonin-df8, vigil-line.
        #[arg(long)]
        protocol: Option<String>,
        /// The monitor's serial port, e.g. /dev/ttyUSB0.
        #[arg(long, conflicts_with = "tcp")]
        serial: Option<PathBuf>,
        /// A serial device server instead, HOST:PORT.
        #[arg(long)]
        tcp: Option<String>,
        /// The source's name, used in alarm ids (source.NAME.disconnected).
        #[arg(long, default_value = "monitor")]
        name: String,
        /// The file to write (`-`: standard output). An existing file keeps
        /// its owner, group and mode.
        #[arg(short, long, default_value = "/etc/vigil/vigil.toml")]
        output: PathBuf,
        /// Replace a file that already configures a source.
        #[arg(long)]
        force: bool,
    },
    /// Replay a recorded session through the same decoders and engine.
    Replay {
        /// The recording.
        file: PathBuf,
        /// Replay with this configuration's alarm settings instead and show
        /// how the alarms differ (what-if).
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Print every alarm event.
        #[arg(long)]
        events: bool,
        /// Pace the replay at N times real time (default: as fast as possible).
        #[arg(long)]
        speed: Option<f64>,
    },
    /// Write a self-contained HTML report of a recorded session: charts of
    /// HR/PR, SpO2 and NIBP with baselines, limits, alarms and doses, and
    /// summary tables.
    Report(ReportArgs),
    /// Inspect, export and import recordings.
    Record {
        #[command(subcommand)]
        command: RecordCmd,
    },
    /// Serve the web alarm board: live vitals and alarms of one or more beds
    /// from the MQTT feed, with acknowledge buttons.
    Display {
        #[command(flatten)]
        feed: FeedArgs,
        /// Address to listen on. Anything but loopback needs --token-file
        /// and --tls-cert/--tls-key (or --insecure-listen).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// File whose first line is the access token (at least 128 bits:
        /// write one with --new-token), required on every request. Never
        /// logged.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Write a new random 256-bit access token to FILE (mode 0600, never
        /// over an existing file) and exit.
        #[arg(long, value_name = "FILE")]
        new_token: Option<PathBuf>,
        /// Serve a non-loopback --listen address without TLS (the token
        /// then travels in clear: only on a trusted network or behind a TLS
        /// proxy).
        #[arg(long)]
        insecure_listen: bool,
        /// PEM certificate chain for HTTPS (with --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key for HTTPS (with --tls-cert).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Watch the MQTT feed in the terminal: beds, alarms, alarm events;
    /// acknowledge with a key.
    Watch {
        #[command(flatten)]
        feed: FeedArgs,
    },
    /// Validate a configuration file and print the effective configuration,
    /// or every error (exit status 2).
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
}

pub fn duration_arg(s: &str) -> Result<std::time::Duration, String> {
    config::parse_duration(s).ok_or_else(|| format!("`{s}` is not a duration (e.g. 30s, 5min)"))
}
