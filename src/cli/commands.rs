//! The subcommands' implementations: each turns its arguments into library
//! calls and prints the results. Standard output is written through
//! `writeln!`, so a reader that stops early (`| head`) ends the command
//! with a broken pipe that `main` treats as success, never a panic.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::args::{ExportFormat, ReportArgs};
use vigil::config::{self, Config, ConfigError};

/// Whether the error is standard output's reader having gone away
/// (`| head`): the reader has seen enough, which is not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `vigil ports`: the serial ports, one a line.
pub fn ports() -> anyhow::Result<ExitCode> {
    let ports = serial_ports()?;
    let mut out = std::io::stdout().lock();
    if ports.is_empty() {
        writeln!(out, "no serial ports found")?;
    }
    for (name, kind) in ports {
        writeln!(out, "{name}\t{kind}")?;
    }
    Ok(ExitCode::SUCCESS)
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

pub fn setup(
    site: Option<String>,
    bed: Option<String>,
    protocol: Option<String>,
    link: Option<vigil::setup::SetupLink>,
    name: String,
    output: &Path,
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
        write!(std::io::stdout(), "{text}")?;
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
pub fn load_config(path: Option<&Path>) -> Result<Config, ExitCode> {
    let result = match path {
        Some(p) => config::load(p),
        None => config::parse(config::DEFAULT_TOML, "<embedded defaults>"),
    };
    result.map_err(|e| {
        eprintln!("vigil: {e}");
        ExitCode::from(2)
    })
}

pub fn check_config(file: &Path) -> anyhow::Result<ExitCode> {
    match config::load_runnable(file) {
        Ok(cfg) => {
            for w in &config::readiness(&cfg).warnings {
                eprintln!("{}: warning: {w}", file.display());
            }
            // The files start-up reads and refuses to run without.
            let mut unreadable = Vec::new();
            if let Err(e) = vigil::mqtt::check_link_files(&cfg.mqtt) {
                unreadable.push(e.to_string());
            }
            if let Some(ca) = cfg
                .hl7
                .as_ref()
                .filter(|h| h.tls)
                .and_then(|h| h.ca_file.as_ref())
            {
                if let Err(e) = vigil::mqtt::link::tls_client("hl7.ca_file", ca) {
                    unreadable.push(e.to_string());
                }
            }
            if !unreadable.is_empty() {
                eprintln!(
                    "{}: not ready to run: {} file(s) it names cannot be used:",
                    file.display(),
                    unreadable.len()
                );
                for e in &unreadable {
                    eprintln!("  {e}");
                }
                return Ok(ExitCode::from(2));
            }
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "# {}: valid. Effective configuration:\n",
                file.display()
            )?;
            write!(out, "{}", config::render(&cfg))?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ ConfigError::NotReady { .. }) => {
            if let ConfigError::NotReady { warnings, .. } = &e {
                for w in warnings {
                    eprintln!("{}: warning: {w}", file.display());
                }
            }
            eprintln!("{e}");
            Ok(ExitCode::from(2))
        }
        Err(e @ ConfigError::Io { .. }) => {
            eprintln!("vigil: {e}");
            Ok(ExitCode::from(2))
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(2))
        }
    }
}

pub fn display(
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
                let mut out = std::io::stdout();
                let _ = writeln!(out, "vigil display: listening on {scheme}://{addr}/");
                let _ = out.flush();
                tracing::info!("alarm board at {scheme}://{addr}/");
            }) => r.context("running the alarm board"),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn replay(
    file: &Path,
    other: Option<&Path>,
    print_events: bool,
    speed: Option<f64>,
) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal as _;
    use vigil::replay;

    let session = replay::load(file)?;
    let mut out = std::io::stdout().lock();
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
        writeln!(
            out,
            "what-if: {} replayed with the alarm settings of {}",
            file.display(),
            path.display()
        )?;
        if diff.is_empty() {
            writeln!(
                out,
                "no difference: the same alarms start at the same times"
            )?;
        } else {
            writeln!(
                out,
                "{:<34} {:>20} {:>20}",
                "alarm", "recorded config", "other config"
            )?;
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
                writeln!(
                    out,
                    "{:<34} {:>20} {:>20}",
                    d.alarm,
                    show(d.recorded),
                    show(d.other)
                )?;
            }
            let total = |f: &dyn Fn(&replay::Difference) -> Option<replay::AlarmCount>| {
                diff.iter().filter_map(f).map(|c| c.count).sum::<u32>()
            };
            writeln!(
                out,
                "alarm starts among these: {} recorded, {} with the other configuration",
                total(&|d| d.recorded),
                total(&|d| d.other)
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }

    let names = session.config.engine.source_names.clone();
    let tty = std::io::stderr().is_terminal() && session.steps.len() > 50_000;
    let started = std::time::Instant::now();
    let first = session.steps.first().map(|(t, _)| *t);
    let mut starts: std::collections::BTreeMap<String, (u32, vigil::engine::Priority)> =
        Default::default();
    let mut write_error = None;
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
                if print_events && write_error.is_none() {
                    let written = writeln!(
                        out,
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
                    write_error = written.err();
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
    if let Some(e) = write_error {
        return Err(e.into());
    }
    writeln!(
        out,
        "replayed {} input(s) in {:.1} ms: {} event(s), {} command(s) rejected",
        stats.inputs,
        started.elapsed().as_secs_f64() * 1000.0,
        stats.events,
        stats.commands_rejected
    )?;
    writeln!(out, "alarm starts:")?;
    for (id, (n, p)) in &starts {
        writeln!(out, "  {id:<34} {p:<6} {n}")?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn export(
    file: &Path,
    format: ExportFormat,
    sampling: vigil::record::chart::Sampling,
    output: Option<&Path>,
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

pub fn import(
    csv: &Path,
    output: &Path,
    config: Option<&Path>,
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
            writeln!(
                std::io::stdout(),
                "{n} reading row(s) imported into {}",
                output.display()
            )?;
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

pub fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
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
    writeln!(
        std::io::stdout(),
        "report written to {} ({} alarm(s), {} reading(s))",
        output.display(),
        a.episodes.len(),
        a.series.iter().map(Vec::len).sum::<usize>() + a.nibp.len()
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn inspect(file: &Path) -> anyhow::Result<ExitCode> {
    let session = vigil::replay::load(file)?;
    let summary = vigil::inspect::summarise(&session);
    summary.write_to(&file.display().to_string(), &mut std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}
