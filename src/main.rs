//! The `vigil` command line: argument parsing, logging setup, exit codes.
//!
//! Everything of substance lives in the library; this file turns user input
//! into library calls and errors into messages and exit statuses
//! (0 success, 1 runtime failure, 2 invalid configuration or usage).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use vigil::config::{self, Config, ConfigError};

/// vigil watches vital signs during ketamine-assisted therapy sessions and
/// raises alarms for the staff displays. It is a secondary notifier beside
/// the patient monitor, not a certified medical alarm system.
#[derive(Parser, Debug)]
#[command(name = "vigil", version, about, long_about = None)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,

    /// Log filter (tracing env-filter syntax), e.g. `info` or `vigil=debug`.
    #[arg(long, global = true, env = "VIGIL_LOG", default_value = "info")]
    log: String,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum RecordCmd {
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
struct ReportArgs {
    /// The recording.
    file: PathBuf,
    /// The HTML file to write (default: the recording's name with .html).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Show clock times at this fixed offset from UTC, e.g. +01:00
    /// (default: the system's time zone, from TZ or /etc/localtime, with
    /// its daylight-saving rules).
    #[arg(long, allow_hyphen_values = true)]
    utc_offset: Option<String>,
    /// The interval of the vitals table (plus every NIBP).
    #[arg(long, default_value = "5min", value_parser = parse_interval)]
    interval: std::time::Duration,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ExportFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
    /// FHIR R4 Bundle of vital-signs Observations (docs/record-tools.md).
    Fhir,
    /// HL7 v2.6 ORU^R01 messages, IHE PCD-01 (docs/record-tools.md).
    Hl7,
}

fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    match vigil::config::parse_duration(s) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "`{s}` is not an interval such as 5min, 15min or 900s"
        )),
    }
}

/// Where the displays read the feed.
#[derive(clap::Args, Debug)]
struct FeedArgs {
    /// MQTT broker: mqtt://HOST[:PORT], mqtts://HOST[:PORT] (TLS) or HOST:PORT.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    broker: String,
    /// File with the MQTT username on its first line and password on its
    /// second (or set VIGIL_MQTT_USERNAME and VIGIL_MQTT_PASSWORD).
    #[arg(long)]
    mqtt_credentials_file: Option<PathBuf>,
    /// CA certificates (PEM) that sign the broker's certificate (mqtts://).
    #[arg(long)]
    mqtt_ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for a broker that requires one.
    #[arg(long, requires = "mqtt_client_key")]
    mqtt_client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "mqtt_client_cert")]
    mqtt_client_key: Option<PathBuf>,
    /// Topic prefix template, as the daemon's mqtt.prefix.
    #[arg(long, default_value = vigil::display::feed::DEFAULT_PREFIX)]
    prefix: String,
    /// A bed to show, SITE/BED (repeat for several). Default: every bed on the broker.
    #[arg(long = "bed")]
    beds: Vec<String>,
    /// No heartbeat from a bed for this long: NO DATA (the daemon beats every 5 s).
    #[arg(long, default_value = "15s", value_parser = duration_arg)]
    heartbeat_timeout: std::time::Duration,
    /// MQTT client id (default vigil-display-PID or vigil-watch-PID).
    #[arg(long)]
    client_id: Option<String>,
}

impl FeedArgs {
    fn options(self) -> vigil::display::FeedOptions {
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
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
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
        /// sensor-problems, comm-loss, or a scenario file.
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The terminal view owns the terminal: its log lines would scribble over
    // the screen, so they go only where stderr is redirected.
    use std::io::IsTerminal as _;
    let tui = matches!(cli.command, Cmd::Watch { .. }) && std::io::stderr().is_terminal();
    if !tui {
        init_logging(cli.log_format, &cli.log);
    }
    match run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            // The chain names what the user can fix.
            eprintln!("vigil: error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(format: LogFormat, filter: &str) {
    let mut filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The embedded broker logs every connection at info and a clean
    // disconnect as an error; vigil logs what matters about MQTT itself.
    // `--log rumqttd=info` brings it back.
    if !filter.to_string().contains("rumqttd") {
        if let Ok(quiet) = "rumqttd=off".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn run(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::CheckConfig { file } => Ok(check_config(&file)),
        Cmd::Display {
            new_token: Some(file),
            ..
        } => {
            vigil::display::web::Token::write_new(&file)?;
            println!(
                "wrote a new access token to {0}; serve the board with --token-file {0}",
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Display {
            feed,
            listen,
            token_file,
            new_token: None,
            insecure_listen,
            tls_cert,
            tls_key,
        } => display_cmd(
            feed.options(),
            listen,
            token_file,
            tls_cert.zip(tls_key),
            insecure_listen,
        ),
        Cmd::Watch { feed } => {
            vigil::watch::run(&feed.options()).context("running the terminal view")?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run {
            config,
            status_every,
            run_for,
        } => {
            // The one check start-up, SIGHUP and check-config share.
            let checked = match config.as_deref() {
                Some(p) => config::load_runnable(p),
                None => config::parse(config::DEFAULT_TOML, "<embedded defaults>")
                    .and_then(|c| config::runnable(c, "<embedded defaults>")),
            };
            let cfg = match checked {
                Ok(cfg) => cfg,
                Err(e @ ConfigError::NotReady { .. }) => anyhow::bail!("{e}"),
                Err(e) => {
                    eprintln!("vigil: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            vigil_run(cfg, config, status_every, run_for, Vec::new())
                .context("running the daemon")?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Demo {
            scenario,
            protocol,
            speed,
            seed,
        } => demo(scenario, protocol, speed, seed),
        Cmd::Replay {
            file,
            config,
            events,
            speed,
        } => replay_cmd(&file, config.as_deref(), events, speed),
        Cmd::Record {
            command: RecordCmd::Inspect { file },
        } => inspect_cmd(&file),
        Cmd::Record {
            command:
                RecordCmd::Export {
                    file,
                    format,
                    output,
                    every_reading,
                    interval,
                },
        } => {
            let sampling = if every_reading {
                vigil::record::chart::Sampling::EveryReading
            } else {
                vigil::record::chart::Sampling::Interval(interval)
            };
            export_cmd(&file, format, sampling, output.as_deref())
        }
        Cmd::Record {
            command:
                RecordCmd::Send {
                    file,
                    to,
                    every_reading,
                    interval,
                    attempts,
                },
        } => {
            use vigil::record::{chart::Sampling, export::hl7_messages, mllp};
            let sampling = if every_reading {
                Sampling::EveryReading
            } else {
                Sampling::Interval(interval)
            };
            let messages = hl7_messages(&file, sampling, std::time::SystemTime::now())?;
            let opts = mllp::SendOptions {
                attempts,
                ..mllp::SendOptions::default()
            };
            let n = mllp::send_all(&to, &messages, opts)?;
            eprintln!("{n} message(s) sent to {to} and acknowledged");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Record {
            command:
                RecordCmd::Import {
                    csv,
                    output,
                    config,
                    start,
                },
        } => import_cmd(&csv, &output, config.as_deref(), start.as_deref()),
        Cmd::Report(args)
        | Cmd::Record {
            command: RecordCmd::Report(args),
        } => report_cmd(args),
        Cmd::Ports => {
            let ports = serial_ports()?;
            if ports.is_empty() {
                println!("no serial ports found");
            }
            for (name, kind) in ports {
                println!("{name}\t{kind}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Setup {
            site,
            bed,
            protocol,
            serial,
            tcp,
            name,
            output,
            force,
        } => {
            let link = match (serial, tcp) {
                (Some(p), _) => Some(vigil::setup::SetupLink::Serial(p)),
                (None, Some(t)) => Some(vigil::setup::SetupLink::Tcp(t)),
                (None, None) => None,
            };
            setup_cmd(site, bed, protocol, link, name, &output, force)
        }
    }
}

/// The serial ports this machine has: device path and a description.
fn serial_ports() -> anyhow::Result<Vec<(String, String)>> {
    let ports = tokio_serial::available_ports().context("listing serial ports")?;
    Ok(ports
        .into_iter()
        .map(|p| {
            let kind = match p.port_type {
                tokio_serial::SerialPortType::UsbPort(u) => format!(
                    "USB {:04x}:{:04x} {}",
                    u.vid,
                    u.pid,
                    u.product.unwrap_or_default()
                ),
                tokio_serial::SerialPortType::PciPort => "PCI".into(),
                tokio_serial::SerialPortType::BluetoothPort => "Bluetooth".into(),
                tokio_serial::SerialPortType::Unknown => "serial".into(),
            };
            (p.port_name, kind.trim().to_owned())
        })
        .collect())
}

/// Asks on the terminal; `None` when standard input is not one (then the
/// flag is required).
fn ask(question: &str, flag: &str) -> anyhow::Result<String> {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "{flag} is required (standard input is not a terminal, so vigil setup cannot ask)"
    );
    loop {
        eprint!("{question}: ");
        std::io::stderr().flush()?;
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line)? == 0 {
            anyhow::bail!("no answer for {flag}");
        }
        let line = line.trim();
        if !line.is_empty() {
            return Ok(line.to_owned());
        }
    }
}

fn setup_cmd(
    site: Option<String>,
    bed: Option<String>,
    protocol: Option<String>,
    link: Option<vigil::setup::SetupLink>,
    name: String,
    output: &std::path::Path,
    force: bool,
) -> anyhow::Result<ExitCode> {
    use vigil::config::ProtocolKind;
    use vigil::setup::SetupLink;
    // Listed always: the IT person checks the monitor's cable is seen.
    let ports = serial_ports().unwrap_or_default();
    if ports.is_empty() {
        eprintln!("Serial ports on this machine: none found (is the USB adapter plugged in?)");
    } else {
        eprintln!("Serial ports on this machine:");
        for (i, (port, kind)) in ports.iter().enumerate() {
            eprintln!("  {}) {port}\t{kind}", i + 1);
        }
    }
    let site = match site {
        Some(s) => s,
        None => ask(
            "Site (the clinic's name: letters, digits, - and _)",
            "--site",
        )?,
    };
    let bed = match bed {
        Some(b) => b,
        None => ask("Bed or room (e.g. room-2)", "--bed")?,
    };
    let keys: Vec<&str> = ProtocolKind::ALL.iter().map(|p| p.key()).collect();
    let protocol = match protocol {
        Some(p) => p,
        None => ask(
            &format!("Monitor protocol ({})", keys.join(", ")),
            "--protocol",
        )?,
    };
    let protocol = ProtocolKind::ALL
        .into_iter()
        .find(|p| p.key() == protocol)
        .with_context(|| {
            format!(
                "unknown protocol `{protocol}`: expected one of {}",
                keys.join(", ")
            )
        })?;
    let link = match link {
        Some(l) => l,
        None => {
            let answer = ask(
                "Monitor port: a number from the list, a device path, or HOST:PORT of a serial device server",
                "--serial or --tcp",
            )?;
            match answer.parse::<usize>() {
                Ok(n) if (1..=ports.len()).contains(&n) => {
                    SetupLink::Serial(ports[n - 1].0.clone().into())
                }
                _ if answer.starts_with('/') => SetupLink::Serial(answer.into()),
                _ => SetupLink::Tcp(answer),
            }
        }
    };
    if let SetupLink::Serial(path) = &link {
        if !path.exists() {
            eprintln!(
                "warning: {} does not exist now (is the monitor's cable plugged in?)",
                path.display()
            );
        }
    }
    let answers = vigil::setup::Answers {
        site,
        bed,
        source_name: name,
        protocol,
        link,
    };
    let text = match vigil::setup::starting_config(&answers) {
        Ok(text) => text,
        Err(vigil::setup::SetupError::Invalid(e)) => {
            eprintln!("vigil: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    if output.as_os_str() == "-" {
        print!("{text}");
    } else {
        vigil::setup::write_config(output, &text, force)?;
        eprintln!(
            "Wrote {}. Check it as the service user, then start the service:\n  \
             sudo -u vigil vigil check-config {0}\n  sudo systemctl enable --now vigil",
            output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads the named file, or the embedded defaults. Configuration errors are
/// printed here and turned into exit status 2.
fn load_config(path: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    let result = match path {
        Some(p) => config::load(p),
        None => config::parse(config::DEFAULT_TOML, "<embedded defaults>"),
    };
    result.map_err(|e| {
        eprintln!("vigil: {e}");
        ExitCode::from(2)
    })
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match config::load_runnable(file) {
        Ok(cfg) => {
            for w in &config::readiness(&cfg).warnings {
                eprintln!("{}: warning: {w}", file.display());
            }
            println!("# {}: valid. Effective configuration:\n", file.display());
            print!("{}", config::render(&cfg));
            ExitCode::SUCCESS
        }
        Err(e @ ConfigError::NotReady { .. }) => {
            if let ConfigError::NotReady { warnings, .. } = &e {
                for w in warnings {
                    eprintln!("{}: warning: {w}", file.display());
                }
            }
            eprintln!("{e}");
            ExitCode::from(2)
        }
        Err(e @ ConfigError::Io { .. }) => {
            eprintln!("vigil: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn display_cmd(
    feed: vigil::display::FeedOptions,
    listen: std::net::SocketAddr,
    token_file: Option<PathBuf>,
    tls: Option<(PathBuf, PathBuf)>,
    insecure_listen: bool,
) -> anyhow::Result<ExitCode> {
    use vigil::display::web::{Token, WebSettings};
    let token = token_file.as_deref().map(Token::read).transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let web = WebSettings {
        listen,
        token,
        tls,
        insecure_listen,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        tokio::select! {
            r = vigil::display::run_board(&feed, web, |addr| {
                // On stdout, for people and scripts (tests read the port here).
                println!("vigil display: listening on {scheme}://{addr}/");
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
                tracing::info!("alarm board at {scheme}://{addr}/");
            }) => r.context("running the alarm board"),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

fn duration_arg(s: &str) -> Result<std::time::Duration, String> {
    config::parse_duration(s).ok_or_else(|| format!("`{s}` is not a duration (e.g. 30s, 5min)"))
}

/// `vigil demo`: the embedded demo configuration, a simulated monitor, and
/// the session commands a nurse would give, on the scenario's timeline.
fn demo(
    scenario: String,
    protocol: Option<String>,
    speed: f64,
    seed: u64,
) -> anyhow::Result<ExitCode> {
    use vigil::config::{Link, ProtocolKind};
    use vigil::engine::Command;
    use vigil::vitals::ShortText;

    let mut cfg = config::parse(config::DEMO_TOML, "<embedded demo>")
        .context("the embedded demo configuration")?;
    let script = vigil::sim::find_scenario(&scenario).with_context(|| {
        format!(
            "scenario `{scenario}` (built in: {})",
            vigil::sim::Scenario::builtin_names()
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    anyhow::ensure!(
        speed > 0.0 && speed <= 10_000.0,
        "--speed must be between 0 and 10000"
    );
    let source = cfg
        .sources
        .first_mut()
        .context("the demo configuration has a source")?;
    if let Some(p) = protocol {
        source.protocol = ProtocolKind::ALL
            .into_iter()
            .find(|k| k.key() == p)
            .with_context(|| {
                let names: Vec<_> = ProtocolKind::ALL.iter().map(|k| k.key()).collect();
                format!(
                    "unknown protocol `{p}` (expected one of: {})",
                    names.join(", ")
                )
            })?;
    }
    source.link = Link::Simulated {
        scenario: scenario.clone(),
        speed,
        seed,
    };
    let mut commands = vec![(
        std::time::Duration::ZERO,
        Command::StartSession {
            session: ShortText::new("DEMO-0001"),
        },
    )];
    if let Some(dose) = script.dose {
        commands.push((
            dose.at,
            Command::Dose {
                route: ShortText::new("im"),
                note: ShortText::new("ketamine (simulated)"),
            },
        ));
        let recovery =
            dose.at + dose.peak_after + (dose.settle_by.saturating_sub(dose.peak_after)) / 2;
        if recovery < script.duration {
            commands.push((recovery, Command::StartRecovery));
        }
    }
    commands.push((script.duration, Command::EndSession));
    eprintln!(
        "vigil demo: scenario `{}` ({}), {} at {speed}x: {} of session in {:.0} s. Ctrl-C stops.",
        script.name,
        script.description,
        cfg.sources[0].protocol.key(),
        vigil::replay::clock_offset(vigil::time::Instant::from_nanos(
            script.duration.as_nanos() as u64
        )),
        script.duration.as_secs_f64() / speed
    );
    vigil_run(
        cfg,
        None,
        std::time::Duration::from_secs(3600),
        Some(script.duration + std::time::Duration::from_secs(60)),
        commands,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn vigil_run(
    cfg: Config,
    config_path: Option<PathBuf>,
    status_every: std::time::Duration,
    run_for: Option<std::time::Duration>,
    script: Vec<(std::time::Duration, vigil::engine::Command)>,
) -> anyhow::Result<()> {
    use std::sync::Arc;
    use vigil::io::{clock::Clock, driver, sink};
    use vigil::record::file::RecorderSettings;

    let speed = driver::simulation_speed(&cfg).unwrap_or(1.0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let status = runtime.block_on(async {
        let clock = Clock::start(speed);
        let names = Arc::new(cfg.engine.source_names.clone());
        let mut sinks = vec![sink::spawn_log(
            names,
            4096,
            std::time::Duration::from_secs(60),
        )];
        let (commands_tx, commands) = tokio::sync::mpsc::channel(64);
        if !script.is_empty() {
            let start = clock.now();
            let commands_tx = commands_tx.clone();
            tokio::spawn(async move {
                for (at, command) in script {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(
                        clock.real_at(start + at),
                    ))
                    .await;
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    if commands_tx.send((command, tx)).await.is_err() {
                        return;
                    }
                    match rx.await {
                        Ok(Ok(())) => tracing::info!("demo: {} accepted", command.key()),
                        Ok(Err(e)) => tracing::warn!("demo: {} rejected: {e}", command.key()),
                        Err(_) => return,
                    }
                }
            });
        }
        let (system_tx, system) = tokio::sync::mpsc::channel(64);
        if let Some(h) = &cfg.hl7 {
            tracing::info!(
                "HL7: charting every {:?} to {} (the [hl7] section)",
                h.interval,
                h.to
            );
            sinks.push(vigil::io::hl7::spawn(vigil::io::hl7::Hl7Setup {
                config: h.clone(),
                site: cfg.site.clone(),
                bed: cfg.bed.clone(),
                sources: vigil::record::chart::devices(&cfg),
                system: system_tx.clone(),
                queue: 4096,
            }));
        }
        let (live_tx, live_rx) = tokio::sync::watch::channel(driver::LiveState::default());
        let mut live = None;
        if cfg.mqtt.enabled {
            sinks.push(
                vigil::mqtt::spawn(vigil::mqtt::MqttSetup {
                    config: cfg.mqtt.clone(),
                    site: cfg.site.clone(),
                    bed: cfg.bed.clone(),
                    source_names: cfg.engine.source_names.clone(),
                    clock,
                    commands: commands_tx,
                    system: system_tx,
                    live: Some(live_rx),
                    queue: 4096,
                })
                .context("starting MQTT publishing (the [mqtt] section)")?,
            );
            live = Some(live_tx);
        } else {
            drop(commands_tx);
            drop(system_tx);
            tracing::warn!("MQTT is off (mqtt.enabled = false): alarms go to the log only");
        }
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let recording = cfg.recording.enabled.then(|| RecorderSettings {
            dir: cfg.recording.dir.clone(),
            stem: format!("{}-{}", cfg.site, cfg.bed),
            sync_every: cfg.recording.sync_every,
            retention: cfg.recording.retention,
            queue: 8192,
        });
        driver::run(driver::DriverSetup {
            config: cfg,
            config_path,
            clock,
            sinks,
            commands,
            system,
            status_every: status_every.max(std::time::Duration::from_millis(100)),
            run_for,
            stop,
            live,
            recording,
        })
        .await
        .map_err(anyhow::Error::from)
    })?;
    tracing::info!(
        inputs = status.inputs,
        dropped = status.dropped,
        "vigil stopped"
    );
    Ok(())
}

fn replay_cmd(
    file: &std::path::Path,
    other: Option<&std::path::Path>,
    print_events: bool,
    speed: Option<f64>,
) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal as _;
    use vigil::replay;

    let session = replay::load(file)?;
    if let Some((offset, why)) = &session.corrupt_tail {
        tracing::warn!(
            "{}: corrupt or torn tail at byte {offset} ({why}); replaying everything before it",
            file.display()
        );
    }
    if let Some(path) = other {
        let other = match load_config(Some(path)) {
            Ok(c) => c,
            Err(code) => return Ok(code),
        };
        let diff = replay::compare(&session, &other);
        println!(
            "what-if: {} replayed with the alarm settings of {}",
            file.display(),
            path.display()
        );
        if diff.is_empty() {
            println!("no difference: the same alarms start at the same times");
        } else {
            println!(
                "{:<34} {:>20} {:>20}",
                "alarm", "recorded config", "other config"
            );
            let show = |c: Option<replay::AlarmCount>| match c {
                None => "-".to_owned(),
                Some(c) => format!(
                    "{}x {} {}..{}",
                    c.count,
                    c.priority,
                    replay::clock_offset(c.first),
                    replay::clock_offset(c.last)
                ),
            };
            for d in &diff {
                println!(
                    "{:<34} {:>20} {:>20}",
                    d.alarm,
                    show(d.recorded),
                    show(d.other)
                );
            }
            let total = |f: &dyn Fn(&replay::Difference) -> Option<replay::AlarmCount>| {
                diff.iter().filter_map(f).map(|c| c.count).sum::<u32>()
            };
            println!(
                "alarm starts among these: {} recorded, {} with the other configuration",
                total(&|d| d.recorded),
                total(&|d| d.other)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }

    let names = session.config.engine.source_names.clone();
    let tty = std::io::stderr().is_terminal() && session.steps.len() > 50_000;
    let started = std::time::Instant::now();
    let first = session.steps.first().map(|(t, _)| *t);
    let mut starts: std::collections::BTreeMap<String, (u32, vigil::engine::Priority)> =
        Default::default();
    let stats = vigil::replay::run(
        &session,
        None,
        |ev| {
            if let Some(speed) = speed {
                // Pace: wait until this event's time, scaled.
                if let Some(t0) = first {
                    let due = (ev.at - t0).div_f64(speed.max(1e-3));
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
            if let vigil::engine::EventKind::Alarm(a) = ev.kind {
                if a.phase == vigil::engine::Phase::Start {
                    let e = starts.entry(a.id.key(&names)).or_insert((0, a.priority));
                    e.0 += 1;
                }
                if print_events {
                    println!(
                        "{} seq={} {} {} [{}] state={}{}",
                        vigil::replay::clock_offset(vigil::time::Instant::from_nanos(
                            ev.at.as_nanos().saturating_sub(session.start.as_nanos())
                        )),
                        ev.seq,
                        a.phase.key(),
                        a.id.key(&names),
                        a.priority,
                        a.state.key(),
                        a.value
                            .map(|v| format!(" value={v:.1}"))
                            .unwrap_or_default()
                    );
                }
            }
        },
        |f| {
            if tty {
                eprint!("\rreplaying {:>3.0}%", f * 100.0);
                if f >= 1.0 {
                    eprintln!();
                }
            }
        },
    );
    println!(
        "replayed {} input(s) in {:.1} ms: {} event(s), {} command(s) rejected",
        stats.inputs,
        started.elapsed().as_secs_f64() * 1000.0,
        stats.events,
        stats.commands_rejected
    );
    println!("alarm starts:");
    for (id, (n, p)) in &starts {
        println!("  {id:<34} {p:<6} {n}");
    }
    Ok(ExitCode::SUCCESS)
}

fn export_cmd(
    file: &std::path::Path,
    format: ExportFormat,
    sampling: vigil::record::chart::Sampling,
    output: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    use vigil::record::export::{export, export_chart, ChartFormat, Format};
    let now = std::time::SystemTime::now();
    let write = |out: &mut dyn std::io::Write| match format {
        ExportFormat::Csv => export(file, Format::Csv, &mut &mut *out),
        ExportFormat::Jsonl => export(file, Format::Jsonl, &mut &mut *out),
        ExportFormat::Fhir => export_chart(file, ChartFormat::Fhir, sampling, now, &mut &mut *out),
        ExportFormat::Hl7 => export_chart(file, ChartFormat::Hl7, sampling, now, &mut &mut *out),
    };
    let unit = match format {
        ExportFormat::Csv | ExportFormat::Jsonl => "row(s)",
        ExportFormat::Fhir => "observation(s)",
        ExportFormat::Hl7 => "message(s)",
    };
    match output {
        Some(path) => {
            let f = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let n = write(&mut std::io::BufWriter::new(f))?;
            eprintln!("{n} {unit} written to {}", path.display());
        }
        None => {
            let out = std::io::stdout();
            match write(&mut std::io::BufWriter::new(out.lock())) {
                // `| head`: the reader has seen enough.
                Err(vigil::record::export::ExportError::Io(e))
                    if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => {
                    other?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn import_cmd(
    csv: &std::path::Path,
    output: &std::path::Path,
    config: Option<&std::path::Path>,
    start: Option<&str>,
) -> anyhow::Result<ExitCode> {
    use vigil::record::{export::parse_rfc3339, import};
    let cfg = match config {
        Some(path) => match load_config(Some(path)) {
            Ok(c) => c,
            Err(code) => return Ok(code),
        },
        None => Config::default(),
    };
    let start = match start {
        None => std::time::SystemTime::UNIX_EPOCH,
        Some(s) => match parse_rfc3339(s) {
            Some(t) => t,
            None => {
                eprintln!(
                    "vigil: --start `{s}` is not an RFC 3339 time (e.g. 2026-03-01T09:30:00Z)"
                );
                return Ok(ExitCode::from(2));
            }
        },
    };
    let options = import::ImportOptions { config: cfg, start };
    match import::import(csv, output, &options) {
        Ok(n) => {
            println!("{n} reading row(s) imported into {}", output.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(
            e @ (import::ImportError::Rows(_)
            | import::ImportError::MissingColumn(_)
            | import::ImportError::Empty
            | import::ImportError::NoReadings),
        ) => {
            eprintln!("vigil: {}: {e}", csv.display());
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
    }
}

fn report_cmd(args: ReportArgs) -> anyhow::Result<ExitCode> {
    use vigil::report::{report, ReportOptions};
    let zone = match args.utc_offset.as_deref() {
        None => match jiff::tz::TimeZone::try_system() {
            Ok(zone) => zone,
            Err(e) => {
                eprintln!(
                    "vigil: the system's time zone is not known ({e}): \
                     set TZ (e.g. TZ=Europe/Berlin) or give --utc-offset"
                );
                return Ok(ExitCode::from(2));
            }
        },
        Some(text) => {
            let offset = vigil::record::export::parse_utc_offset(text)
                .and_then(|s| jiff::tz::Offset::from_seconds(s as i32).ok());
            let Some(offset) = offset else {
                eprintln!("vigil: --utc-offset `{text}` is not an offset such as +01:00 or -05:00");
                return Ok(ExitCode::from(2));
            };
            jiff::tz::TimeZone::fixed(offset)
        }
    };
    let (file, output) = (&args.file, args.output.as_ref());
    let output = output
        .cloned()
        .unwrap_or_else(|| file.with_extension("html"));
    let a = report(
        file,
        &output,
        &ReportOptions {
            zone,
            interval: args.interval,
            file_name: None,
        },
    )?;
    println!(
        "report written to {} ({} alarm(s), {} reading(s))",
        output.display(),
        a.episodes.len(),
        a.series.iter().map(Vec::len).sum::<usize>() + a.nibp.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn inspect_cmd(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    use vigil::engine::EventKind;
    use vigil::pipeline::Input;
    use vigil::replay::{self, Step};
    use vigil::vitals::{Measurement, Vital};

    let session = replay::load(file)?;
    let duration = session.last() - session.start;
    println!("recording   {}", file.display());
    for key in [
        "vigil_version",
        "site",
        "bed",
        "started",
        "stopped",
        "speed",
    ] {
        if let Some(v) = session.meta(key) {
            println!("{key:<11} {v}");
        }
    }
    println!(
        "duration    {} ({} bytes on disk)",
        replay::clock_offset(vigil::time::Instant::from_nanos(duration.as_nanos() as u64)),
        session.size
    );
    let n = session.config.sources.len();
    let mut bytes = vec![0u64; n];
    let mut last_seen: Vec<Option<vigil::time::Instant>> = vec![None; n];
    let mut gaps = vec![Vec::new(); n];
    let mut commands = 0;
    for (at, step) in &session.steps {
        match step {
            Step::Input(Input::Bytes { source, data }) if source.index() < n => {
                let i = source.index();
                bytes[i] += data.len() as u64;
                if let Some(prev) = last_seen[i] {
                    let gap = *at - prev;
                    if gap > session.config.sources[i].timeout {
                        gaps[i].push((prev, gap));
                    }
                }
                last_seen[i] = Some(*at);
            }
            Step::Input(Input::Command(_)) => commands += 1,
            _ => {}
        }
    }
    println!("sources");
    for (i, s) in session.config.sources.iter().enumerate() {
        println!(
            "  {:<12} {:<20} {} bytes, {} gap(s) longer than its {} timeout",
            s.name,
            s.protocol.key(),
            bytes[i],
            gaps[i].len(),
            vigil::config::format_duration(s.timeout)
        );
        for (from, len) in gaps[i].iter().take(10) {
            println!(
                "      gap at {} for {:.1} s",
                replay::clock_offset(vigil::time::Instant::from_nanos(
                    from.as_nanos().saturating_sub(session.start.as_nanos())
                )),
                len.as_secs_f64()
            );
        }
    }
    let mut readings = [0u64; Vital::COUNT];
    let mut invalid = [0u64; Vital::COUNT];
    let mut by_priority = std::collections::BTreeMap::new();
    replay::run(
        &session,
        None,
        |ev| match ev.kind {
            EventKind::Reading(r) => {
                let samples: Vec<(Vital, bool)> = match r.measurement {
                    Measurement::Nibp(b) => vec![
                        (Vital::NibpSystolic, b.systolic.validity.is_valid()),
                        (Vital::NibpDiastolic, b.diastolic.validity.is_valid()),
                        (Vital::NibpMean, b.mean.validity.is_valid()),
                    ],
                    m => m
                        .continuous()
                        .map(|(v, s)| vec![(v, s.validity.is_valid())])
                        .unwrap_or_default(),
                };
                for (v, ok) in samples {
                    readings[v.index()] += 1;
                    if !ok {
                        invalid[v.index()] += 1;
                    }
                }
            }
            EventKind::Alarm(a) if a.phase == vigil::engine::Phase::Start => {
                *by_priority
                    .entry((a.kind.key(), a.priority))
                    .or_insert(0u32) += 1;
            }
            _ => {}
        },
        |_| {},
    );
    println!("readings per vital (not valid)");
    for v in Vital::ALL {
        println!(
            "  {:<10} {:>8} ({})",
            v.key(),
            readings[v.index()],
            invalid[v.index()]
        );
    }
    println!("alarms started");
    if by_priority.is_empty() {
        println!("  none");
    }
    for ((kind, p), count) in by_priority.iter().rev() {
        println!("  {kind:<14} {p:<6} {count}");
    }
    println!("commands    {commands}");
    match &session.corrupt_tail {
        None => println!("corrupt     none"),
        Some((at, why)) => println!("corrupt     tail from byte {at} ignored ({why})"),
    }
    Ok(ExitCode::SUCCESS)
}
