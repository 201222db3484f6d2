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
    /// List the serial ports this machine has.
    Ports,
    /// Validate a configuration file and print the effective configuration,
    /// or every error (exit status 2).
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log);
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
        Cmd::Run {
            config,
            status_every,
            run_for,
        } => {
            let cfg = match load_config(config.as_deref()) {
                Ok(cfg) => cfg,
                Err(code) => return Ok(code),
            };
            anyhow::ensure!(
                !cfg.sources.is_empty(),
                "no [[source]] configured: add one to the configuration file (see config/vigil.toml)"
            );
            vigil_run(cfg, config, status_every, run_for).context("running the daemon")?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Ports => {
            let ports = tokio_serial::available_ports().context("listing serial ports")?;
            if ports.is_empty() {
                println!("no serial ports found");
            }
            for p in ports {
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
                println!("{}\t{}", p.port_name, kind.trim());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
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
    match config::load(file) {
        Ok(cfg) => {
            println!("# {}: valid. Effective configuration:\n", file.display());
            print!("{}", config::render(&cfg));
            ExitCode::SUCCESS
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

fn duration_arg(s: &str) -> Result<std::time::Duration, String> {
    config::parse_duration(s).ok_or_else(|| format!("`{s}` is not a duration (e.g. 30s, 5min)"))
}

fn vigil_run(
    cfg: Config,
    config_path: Option<PathBuf>,
    status_every: std::time::Duration,
    run_for: Option<std::time::Duration>,
) -> anyhow::Result<()> {
    use std::sync::Arc;
    use vigil::io::{clock::Clock, driver, sink};

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
        let (system_tx, system) = tokio::sync::mpsc::channel(64);
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
            tracing::warn!("MQTT is off (mqtt.enabled = false): alarms go to the log only");
        }
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
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
