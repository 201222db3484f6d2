//! The `vigil` command line: argument parsing, logging setup, exit codes.
//!
//! Everything of substance lives in the library (the daemon's wiring in
//! `vigil::daemon`); this file parses the arguments (their definitions in
//! `cli::args`), dispatches to the subcommands (`cli::commands`) and turns
//! errors into messages and exit statuses (0 success, 1 runtime failure, 2
//! invalid configuration or usage). A reader that closes standard output
//! early (`vigil check-config FILE | head -1`) is not a failure: the
//! command stops writing and exits 0.

mod cli;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;

use cli::args::{Cli, Cmd, LogFormat, RecordCmd};
use cli::commands;
use vigil::config;

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
        Err(err) if commands::is_broken_pipe(&err) => ExitCode::SUCCESS,
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
        Cmd::CheckConfig { file } => commands::check_config(&file),
        Cmd::Display {
            new_token: Some(file),
            ..
        } => {
            vigil::display::web::Token::write_new(&file)?;
            use std::io::Write as _;
            writeln!(
                std::io::stdout(),
                "wrote a new access token to {0}; serve the board with --token-file {0}",
                file.display()
            )?;
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
        } => commands::display(
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
                Err(e @ config::ConfigError::NotReady { .. }) => anyhow::bail!("{e}"),
                Err(e) => {
                    eprintln!("vigil: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let options = vigil::daemon::Options {
                config_path: config,
                status_every,
                run_for,
                ..vigil::daemon::Options::default()
            };
            vigil::daemon::run(cfg, options).context("running the daemon")?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Demo {
            scenario,
            protocol,
            speed,
            seed,
        } => {
            let demo = vigil::daemon::demo::prepare(&scenario, protocol.as_deref(), speed, seed)?;
            eprintln!("{}", demo.banner);
            let options = vigil::daemon::Options {
                status_every: std::time::Duration::from_secs(3600),
                run_for: Some(demo.run_for),
                script: demo.script,
                ..vigil::daemon::Options::default()
            };
            vigil::daemon::run(demo.config, options).context("running the demo")?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Replay {
            file,
            config,
            events,
            speed,
        } => commands::replay(&file, config.as_deref(), events, speed),
        Cmd::Record {
            command: RecordCmd::Inspect { file },
        } => commands::inspect(&file),
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
            commands::export(&file, format, sampling, output.as_deref())
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
        } => commands::import(&csv, &output, config.as_deref(), start.as_deref()),
        Cmd::Report(args)
        | Cmd::Record {
            command: RecordCmd::Report(args),
        } => commands::report(args),
        Cmd::Ports => commands::ports(),
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
            commands::setup(site, bed, protocol, link, name, &output, force)
        }
    }
}
