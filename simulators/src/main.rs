//! `vigil-sim`: run simulated patient monitors for vigil.
//!
//! ```text
//! vigil-sim --protocol masimo --scenario desaturation --speed 60 --pty
//! vigil-sim --protocol ge-s5 --scenario hypertensive --tcp 127.0.0.1:4001 --beds 4
//! vigil-sim --protocol vigil-line --scenario typical --fast --stdout > session.txt
//! vigil-sim --capture tests/fixtures/real/ge-s5/db02.raw --protocol ge-s5 --pty
//! vigil-sim --capture session.vrec --source monitor --tcp 127.0.0.1:4001
//! vigil-sim --list-scenarios
//! ```
//!
//! Parses the command line, builds the devices (scenario monitors, or
//! emulators replaying a capture) and their outputs, and runs them until
//! Ctrl-C (or, with `--fast`, until the scenario's end).

use std::path::Path;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use tokio::task::JoinSet;
use vigil::config::ProtocolKind;
use vigil::io::clock::Clock;
use vigil::sim::Scenario;
use vigil::time::Instant;
use vigil_sim::{
    device_for_bed, protocol_by_name, Capture, CaptureDevice, Device, Pace, RunOptions,
};

/// Runs simulated patient monitors (GE S/5, Philips IntelliVue, Masimo,
/// Nonin, vigil-line) that play a scenario, for vigil to read like real ones.
#[derive(Parser, Debug)]
#[command(name = "vigil-sim", version)]
struct Args {
    /// Protocol: ge-s5, philips-intellivue, masimo, nonin-df2, nonin-df7,
    /// nonin-df8 or vigil-line. With --capture: the protocol of a raw
    /// capture (a recording names its own).
    #[arg(long, value_parser = protocol_by_name, required_unless_present_any = ["list_scenarios", "capture"])]
    protocol: Option<ProtocolKind>,

    /// Emulate a monitor from a capture instead of playing a scenario: a
    /// raw capture of what a GE or Philips monitor sent (with --protocol),
    /// or a vigil recording (.vrec). The emulator waits for the host's GE
    /// request or Philips association like the device, then replays.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["scenario", "seed"])]
    capture: Option<PathBuf>,

    /// With a recording: the source to replay (by name), when it has
    /// several GE or Philips sources.
    #[arg(long, value_name = "NAME", requires = "capture")]
    source: Option<String>,

    /// With --capture: start again from the beginning at the capture's end
    /// instead of falling silent.
    #[arg(long = "loop", requires = "capture")]
    looping: bool,

    /// A built-in scenario (see --list-scenarios) or a scenario file.
    #[arg(long, default_value = "typical")]
    scenario: String,

    /// Random seed: the same seed plays the same session, byte for byte.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Time acceleration: 1 is real time, 60 plays an hour per minute.
    #[arg(long, conflicts_with = "fast")]
    speed: Option<f64>,

    /// As fast as the reader takes the bytes (virtual time), and stop at
    /// the scenario's end. For files, pipes and load tests.
    #[arg(long)]
    fast: bool,

    /// Create a pseudo-terminal and print the path vigil should open
    /// (`serial = "PATH"`); one per bed.
    #[arg(long, group = "output")]
    pty: bool,

    /// Write to an existing serial device (e.g. one end of a null-modem
    /// cable), with the protocol's usual line settings.
    #[arg(long, group = "output", value_name = "PATH")]
    serial: Option<PathBuf>,

    /// Listen on ADDR like a serial device server (one client at a time);
    /// bed i listens on ADDR's port + i (port 0: ports the system picks).
    /// The addresses are printed, one per line.
    #[arg(long, group = "output", value_name = "ADDR")]
    tcp: Option<String>,

    /// Write to standard output (no host input: GE and Philips monitors
    /// stay silent without a host).
    #[arg(long, group = "output")]
    stdout: bool,

    /// Simulate this many beds at once, bed i with seed + i (--pty and --tcp).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    beds: u16,

    /// List the built-in scenarios and exit.
    #[arg(long)]
    list_scenarios: bool,

    /// Log filter (tracing env-filter syntax), e.g. `info` or `debug`.
    #[arg(long, env = "VIGIL_SIM_LOG", default_value = "info")]
    log: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();

    if args.list_scenarios {
        for name in Scenario::builtin_names() {
            let s = Scenario::builtin(name)
                .context("a built-in scenario")?
                .with_context(|| format!("built-in scenario {name}"))?;
            println!("{name:16} {}", s.description);
        }
        return Ok(());
    }
    if !(args.pty || args.stdout || args.serial.is_some() || args.tcp.is_some()) {
        bail!("choose an output: --pty, --serial PATH, --tcp ADDR or --stdout");
    }
    if args.beds > 1 && (args.stdout || args.serial.is_some()) {
        bail!("--beds needs --pty or --tcp (one output per bed)");
    }
    let pace = match (args.fast, args.speed) {
        (true, _) => Pace::Fast,
        (false, speed) => {
            let speed = speed.unwrap_or(1.0);
            if !(speed > 0.0 && speed <= 10_000.0) {
                bail!("--speed {speed}: expected 0 < speed <= 10000");
            }
            Pace::Clock(Clock::start(speed))
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;

    if let Some(path) = &args.capture {
        if args.stdout {
            bail!("--capture emulates a monitor that waits for its host: choose --pty, --serial PATH or --tcp ADDR (standard output has no host)");
        }
        let capture = load_capture(path, &args)?;
        let kind = capture.kind();
        let looping = args.looping;
        let opts = RunOptions {
            until: None,
            write_timeout: Some(Duration::from_millis(250)),
        };
        let make = move |_bed: u16| CaptureDevice::new(capture.clone()).looping(looping);
        return runtime.block_on(interruptible(serve(&args, kind, make, pace, opts)));
    }

    let Some(kind) = args.protocol else {
        bail!("--protocol is required");
    };
    let scenario = vigil::sim::find_scenario(&args.scenario)?;
    let opts = RunOptions {
        until: args.fast.then(|| Instant::ZERO + scenario.duration),
        write_timeout: Some(Duration::from_millis(250)),
    };
    tracing::info!(
        protocol = kind.key(),
        scenario = %scenario.name,
        seed = args.seed,
        beds = args.beds,
        "{}",
        scenario.description
    );
    let seed = args.seed;
    let make = move |bed: u16| device_for_bed(&scenario, kind, seed, bed);
    runtime.block_on(interruptible(serve(&args, kind, make, pace, opts)))
}

/// Loads `--capture` and says what it holds.
fn load_capture(path: &Path, args: &Args) -> anyhow::Result<Capture> {
    let capture = Capture::load(path, args.protocol, args.source.as_deref())?;
    let (accept, create) = capture.synthesized();
    tracing::info!(
        protocol = capture.kind().key(),
        frames = capture.frames().len(),
        skipped_bytes = capture.skipped(),
        timed = capture.timed(),
        "capture loaded: {}",
        path.display()
    );
    if capture.kind() == ProtocolKind::Philips && (accept || create) {
        tracing::warn!(
            "the capture has no {}: vigil-sim sends its own (the capture began after the association)",
            match (accept, create) {
                (true, true) => "association accept nor MDS Create",
                (true, false) => "association accept",
                _ => "MDS Create",
            }
        );
    }
    Ok(capture)
}

/// Runs `serve` until it ends or Ctrl-C.
async fn interruptible(
    serve: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::select! {
        r = serve => r,
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted");
            Ok(())
        }
    }
}

/// Builds the outputs and runs the devices `make(bed)` builds.
async fn serve<D, F>(
    args: &Args,
    kind: ProtocolKind,
    make: F,
    pace: Pace,
    opts: RunOptions,
) -> anyhow::Result<()>
where
    D: Device + Send + 'static,
    F: Fn(u16) -> D + Clone + Send + 'static,
{
    if args.stdout {
        let device = make(0);
        let summary = vigil_sim::run(
            device,
            None::<tokio::io::Empty>,
            tokio::io::stdout(),
            pace,
            RunOptions {
                write_timeout: None,
                ..opts
            },
        )
        .await?;
        tracing::info!(ending = ?summary.ending, bytes = summary.written, "done");
        return Ok(());
    }
    if let Some(path) = &args.serial {
        let port = vigil::io::source::open_serial(path, &kind.default_serial())?;
        let device = make(0);
        println!("{}", path.display());
        let summary = vigil_sim::run_stream(device, port, pace, opts).await?;
        tracing::info!(ending = ?summary.ending, bytes = summary.written, "done");
        return Ok(());
    }
    let mut beds = JoinSet::new();
    if args.pty {
        for bed in 0..args.beds {
            let (driven, opened, path) = vigil_sim::pty_pair()?;
            println!("{path}");
            tracing::info!(bed = bed + 1, %path, "pseudo-terminal ready: point vigil's serial source at it");
            let device = make(bed);
            beds.spawn(async move {
                // Held open so vigil can close and reopen its end.
                let _opened = opened;
                vigil_sim::run_stream(device, driven, pace, opts)
                    .await
                    .map(|_| ())
            });
        }
    } else if let Some(addr) = &args.tcp {
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .with_context(|| format!("--tcp {addr}: expected host:port, e.g. 127.0.0.1:4001"))?;
        for bed in 0..args.beds {
            // Port 0: every bed gets a port of the system's choosing.
            let port = if port == 0 {
                0
            } else {
                port.checked_add(bed).with_context(|| {
                    format!("bed {}: port {port} + {bed} is past 65535", bed + 1)
                })?
            };
            let listen = format!("{host}:{port}");
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            let bound = listener.local_addr()?;
            println!("{bound}");
            tracing::info!(bed = bed + 1, address = %bound, "listening: point vigil's tcp source at it");
            let make = make.clone();
            beds.spawn(vigil_sim::serve_tcp(
                listener,
                move || make(bed),
                pace,
                opts,
            ));
        }
    }
    while let Some(done) = beds.join_next().await {
        done.context("a bed's task failed")??;
    }
    Ok(())
}
