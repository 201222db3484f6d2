//! vigil-sim: simulated patient monitors for demos, development and load
//! tests.
//!
//! The devices themselves live in the vigil library ([`vigil::sim`]): a
//! seeded patient following a scenario, and a sans-IO [`SimDevice`] per
//! protocol. This crate runs them against real byte streams:
//!
//! - [`run`] / [`run_stream`] drive one device against any
//!   `AsyncRead`/`AsyncWrite` (a pty, a serial port, a TCP connection,
//!   stdout), either in real or accelerated time on a [`Clock`]
//!   ([`Pace::Clock`]) or as fast as the reader takes the bytes
//!   ([`Pace::Fast`], virtual time, for files and load tests);
//! - [`pty_pair`] makes a pseudo-terminal pair: vigil opens one end like a
//!   serial port, the simulator drives the other;
//! - [`serve_tcp`] listens like a serial device server, one client at a
//!   time;
//! - [`capture`]: a monitor emulator that replays a real monitor's bytes
//!   (a raw capture or a vigil recording) and answers the host as the
//!   device does; it runs on the same runners through [`Device`].
//!
//! The `vigil-sim` binary (`src/main.rs`) wires these to the command line.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use vigil::config::ProtocolKind;
use vigil::io::clock::Clock;
use vigil::sim::link::{exchange, next_deadline};
use vigil::sim::{Scenario, SimDevice};
use vigil::time::Instant;

use vigil::sim::ScenarioError;

pub mod capture;

pub use capture::{Capture, CaptureDevice};
/// The monitor side of a link, sans-IO: what the runners drive. Implemented
/// by the scenario devices ([`SimDevice`]) and the capture emulator
/// ([`CaptureDevice`]).
pub use vigil::sim::Device;

/// Errors of the runners and outputs.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Reading or writing the byte stream failed.
    #[error("{context}: {cause}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        cause: io::Error,
    },
    /// The pseudo-terminal pair could not be made.
    #[error("cannot create a pseudo-terminal pair: {0}")]
    Pty(tokio_serial::Error),
    /// The scenario could not be loaded.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
}

/// How simulated time passes.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// On a clock: real time (`speed` 1) or accelerated. The device's
    /// instants are the clock's, so devices sharing a clock share the
    /// session's timeline.
    Clock(Clock),
    /// Virtual time, as fast as the writer accepts the bytes, starting at
    /// the scenario's start.
    Fast,
}

/// Limits of one run.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Stop once simulated time reaches this instant.
    pub until: Option<Instant>,
    /// Paced runs only: a write that cannot complete within this long
    /// (nobody is reading, e.g. a pty vigil has not opened yet) drops the
    /// bytes of that moment, as a serial line would, instead of stalling
    /// the device.
    pub write_timeout: Option<Duration>,
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Simulated time reached [`RunOptions::until`].
    Until,
    /// The host closed its end (end of file).
    HostClosed,
    /// Fast mode with nothing left to do: no host to wait for and no
    /// deadline.
    Idle,
}

/// What one run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Why it ended.
    pub ending: Ending,
    /// Simulated time at the end.
    pub at: Instant,
    /// Bytes written.
    pub written: u64,
    /// Bytes dropped because nobody read them in time.
    pub dropped: u64,
}

/// Parses a protocol name as the configuration spells it (`ge-s5`, ...).
pub fn protocol_by_name(name: &str) -> Result<ProtocolKind, String> {
    ProtocolKind::ALL
        .into_iter()
        .find(|k| k.key() == name)
        .ok_or_else(|| {
            let names: Vec<_> = ProtocolKind::ALL.iter().map(|k| k.key()).collect();
            format!(
                "unknown protocol `{name}` (expected one of: {})",
                names.join(", ")
            )
        })
}

/// What a device and a host said to each other in [`converse`].
#[derive(Debug, Default)]
pub struct Conversation {
    /// Every chunk the device sent, with when.
    pub sent: Vec<(Instant, Vec<u8>)>,
    /// Every output of the host, with when.
    pub outputs: Vec<(Instant, vigil::protocol::Output)>,
}

impl Conversation {
    /// The monitor's side of the cable: a capture of what it sent.
    pub fn monitor_bytes(&self) -> Vec<u8> {
        self.sent
            .iter()
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    }
}

/// A device and a vigil host decoder talking in memory, in virtual time
/// from [`Instant::ZERO`] to `end`: the host hears of the link coming up at
/// the start, and time steps to each next deadline of either side (at most
/// `step` at a time). Makes synthetic captures (e.g. of a Philips monitor,
/// whose real captures are not public) and checks devices against hosts
/// without IO.
pub fn converse(
    device: &mut dyn Device,
    host: &mut dyn vigil::protocol::Protocol,
    end: Instant,
    step: Duration,
) -> Conversation {
    let mut now = Instant::ZERO;
    let mut c = Conversation::default();
    let mut buf = Vec::new();
    host.handle_link(now, true);
    loop {
        device.handle_timeout(now);
        host.handle_timeout(now);
        exchange(device, host, now, &mut buf, |chunk| {
            c.sent.push((now, core::mem::take(chunk)));
        });
        c.outputs
            .extend(std::iter::from_fn(|| host.poll_output()).map(|o| (now, o)));
        if now >= end {
            return c;
        }
        let step_end = now + step;
        now = next_deadline(now, [device.poll_timeout(), host.poll_timeout()])
            .map_or(step_end, |t| t.min(step_end))
            .min(end);
    }
}

/// A device for bed `bed` (0-based) of a multi-bed run: seed + bed.
pub fn device_for_bed(scenario: &Scenario, kind: ProtocolKind, seed: u64, bed: u16) -> SimDevice {
    SimDevice::new(scenario, kind, seed.wrapping_add(u64::from(bed)))
}

fn io_err(context: &str) -> impl FnOnce(io::Error) -> SimError + '_ {
    move |source| SimError::Io {
        context: context.to_owned(),
        cause: source,
    }
}

/// Runs `device` against a duplex byte stream (see [`run`]).
pub async fn run_stream<D, S>(
    device: D,
    stream: S,
    pace: Pace,
    opts: RunOptions,
) -> Result<Summary, SimError>
where
    D: Device,
    S: AsyncRead + AsyncWrite,
{
    let (rx, tx) = tokio::io::split(stream);
    run(device, Some(rx), tx, pace, opts).await
}

/// Runs `device`, writing what it sends to `writer` and handing it what
/// arrives on `reader` (none for stdout), until [`RunOptions::until`], the
/// host's end of file, or (fast mode) nothing left to do.
pub async fn run<D, R, W>(
    mut device: D,
    mut reader: Option<R>,
    mut writer: W,
    pace: Pace,
    opts: RunOptions,
) -> Result<Summary, SimError>
where
    D: Device,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut summary = Summary {
        ending: Ending::Until,
        at: Instant::ZERO,
        written: 0,
        dropped: 0,
    };
    let mut out = Vec::with_capacity(4096);
    let mut buf = [0u8; 512];
    let mut now = match pace {
        Pace::Clock(clock) => clock.now(),
        Pace::Fast => Instant::ZERO,
    };
    let mut steps: u32 = 0;
    loop {
        if let Pace::Clock(clock) = pace {
            now = clock.now();
        }
        summary.at = now;
        if opts.until.is_some_and(|u| now >= u) {
            summary.ending = Ending::Until;
            return Ok(summary);
        }
        device.handle_timeout(now);
        let timeout = match pace {
            Pace::Clock(_) => opts.write_timeout,
            Pace::Fast => None,
        };
        flush(&mut device, &mut writer, &mut out, timeout, &mut summary).await?;

        match pace {
            Pace::Clock(clock) => {
                let deadline = [device.poll_timeout(), opts.until]
                    .into_iter()
                    .flatten()
                    .min()
                    .map(|t| tokio::time::Instant::from_std(clock.real_at(t)));
                let sleep = async {
                    match deadline {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                };
                match reader.as_mut() {
                    Some(r) => tokio::select! {
                        got = r.read(&mut buf) => match got.map_err(io_err("reading from the host"))? {
                            0 => {
                                summary.ending = Ending::HostClosed;
                                return Ok(summary);
                            }
                            n => device.handle_bytes(clock.now(), &buf[..n]),
                        },
                        _ = sleep => {}
                    },
                    None => sleep.await,
                }
            }
            Pace::Fast => {
                // Take whatever the host already sent, without waiting.
                if let Some(r) = reader.as_mut() {
                    loop {
                        let got = tokio::select! {
                            biased;
                            got = r.read(&mut buf) => Some(got.map_err(io_err("reading from the host"))?),
                            _ = std::future::ready(()) => None,
                        };
                        match got {
                            None => break,
                            Some(0) => {
                                summary.ending = Ending::HostClosed;
                                return Ok(summary);
                            }
                            Some(n) => device.handle_bytes(now, &buf[..n]),
                        }
                    }
                    flush(&mut device, &mut writer, &mut out, None, &mut summary).await?;
                }
                match device.poll_timeout() {
                    Some(t) => now = now.max(t),
                    None => match reader.as_mut() {
                        // Nothing scheduled (a GE monitor not yet asked):
                        // wait for the host.
                        Some(r) => match r
                            .read(&mut buf)
                            .await
                            .map_err(io_err("reading from the host"))?
                        {
                            0 => {
                                summary.ending = Ending::HostClosed;
                                return Ok(summary);
                            }
                            n => device.handle_bytes(now, &buf[..n]),
                        },
                        None => {
                            summary.ending = Ending::Idle;
                            return Ok(summary);
                        }
                    },
                }
                steps = steps.wrapping_add(1);
                if steps.is_multiple_of(64) {
                    // Let the reader (and anything else on this runtime) run.
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

/// Writes everything the device has queued; with a timeout, a write that
/// stalls drops the rest of this moment's bytes.
async fn flush<D: Device, W: AsyncWrite + Unpin>(
    device: &mut D,
    writer: &mut W,
    out: &mut Vec<u8>,
    timeout: Option<Duration>,
    summary: &mut Summary,
) -> Result<(), SimError> {
    out.clear();
    while device.poll_transmit(out) {}
    if out.is_empty() {
        return Ok(());
    }
    let n = out.len() as u64;
    let write = async {
        writer.write_all(out).await?;
        writer.flush().await
    };
    match timeout {
        None => write.await.map_err(io_err("writing to the host"))?,
        Some(t) => match tokio::time::timeout(t, write).await {
            Ok(r) => r.map_err(io_err("writing to the host"))?,
            Err(_) => {
                summary.dropped += n;
                tracing::debug!(bytes = n, "nobody is reading: bytes dropped");
                return Ok(());
            }
        },
    }
    summary.written += n;
    Ok(())
}

/// A pseudo-terminal pair: `(driven, opened, path)`. The simulator drives
/// `driven`; vigil opens `path` (the other end) as its serial port. Keep
/// `opened` alive for as long as the simulator runs, so that vigil closing
/// and reopening the port does not hang up the simulator's end.
pub fn pty_pair() -> Result<
    (
        tokio_serial::SerialStream,
        tokio_serial::SerialStream,
        String,
    ),
    SimError,
> {
    use tokio_serial::SerialPort as _;
    let (driven, opened) = tokio_serial::SerialStream::pair().map_err(SimError::Pty)?;
    let path = opened.name().ok_or_else(|| {
        SimError::Pty(tokio_serial::Error::new(
            tokio_serial::ErrorKind::NoDevice,
            "the pseudo-terminal has no name",
        ))
    })?;
    Ok((driven, opened, path))
}

/// Listens on `listener` like a serial device server: one client at a time,
/// each served by a fresh device from `make_device` (on a shared clock it
/// continues the session where it is). Returns when accepting fails.
pub async fn serve_tcp<D, F>(
    listener: TcpListener,
    mut make_device: F,
    pace: Pace,
    opts: RunOptions,
) -> Result<(), SimError>
where
    D: Device,
    F: FnMut() -> D,
{
    loop {
        let (socket, peer) = listener
            .accept()
            .await
            .map_err(io_err("accepting a TCP client"))?;
        let _ = socket.set_nodelay(true);
        tracing::info!(%peer, "client connected");
        match run_stream(make_device(), socket, pace, opts).await {
            Ok(s) => tracing::info!(%peer, ending = ?s.ending, bytes = s.written, "client done"),
            Err(e) => tracing::info!(%peer, "client gone: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil::pipeline::open_protocol;
    use vigil::protocol::Output;
    use vigil::vitals::{Measurement, SourceId};

    fn scenario(name: &str) -> Scenario {
        Scenario::builtin(name).unwrap().unwrap()
    }

    fn spo2_count(outputs: &[Output]) -> usize {
        outputs
            .iter()
            .filter(|o| {
                matches!(o, Output::Reading(r) if matches!(r.measurement, Measurement::SpO2(s) if s.get().is_some()))
            })
            .count()
    }

    /// What a device of `kind` seeded `seed` writes in fast mode, with no
    /// host, for the first `secs` of `scenario`.
    async fn fast_run(
        scenario: &Scenario,
        kind: ProtocolKind,
        seed: u64,
        secs: u64,
    ) -> (Summary, Vec<u8>) {
        let mut bytes = Vec::new();
        let opts = RunOptions {
            until: Some(Instant::ZERO + Duration::from_secs(secs)),
            ..RunOptions::default()
        };
        let device = SimDevice::new(scenario, kind, seed);
        let summary = run(
            device,
            None::<tokio::io::Empty>,
            &mut bytes,
            Pace::Fast,
            opts,
        )
        .await
        .unwrap();
        (summary, bytes)
    }

    #[tokio::test]
    async fn fast_mode_writes_a_whole_session_that_decodes() {
        let s = scenario("typical");
        let (summary, bytes) = fast_run(&s, ProtocolKind::Masimo, 1, 600).await;
        assert_eq!(summary.ending, Ending::Until);
        assert_eq!(summary.written, bytes.len() as u64);
        let mut host = open_protocol(ProtocolKind::Masimo, SourceId(0));
        host.handle_bytes(Instant::ZERO, &bytes);
        let outputs: Vec<Output> = std::iter::from_fn(|| host.poll_output()).collect();
        assert_eq!(spo2_count(&outputs), 600, "one line per second for 10 min");
    }

    #[tokio::test]
    async fn fast_mode_same_seed_same_bytes() {
        let s = scenario("sensor-problems");
        let mut outs = Vec::new();
        for seed in [5, 5, 6] {
            let (_, bytes) = fast_run(&s, ProtocolKind::NoninDf7, seed, 40 * 60).await;
            outs.push(bytes);
        }
        assert_eq!(outs[0], outs[1]);
        assert_ne!(outs[0], outs[2]);
    }

    #[tokio::test]
    async fn fast_mode_answers_a_talking_host_over_a_pipe() {
        // A GE monitor in fast mode waits for the host's request, then plays.
        let s = scenario("typical");
        let (host_end, device_end) = tokio::io::duplex(1 << 16);
        let opts = RunOptions {
            until: Some(Instant::ZERO + Duration::from_secs(300)),
            ..RunOptions::default()
        };
        let device = SimDevice::new(&s, ProtocolKind::Ge, 1);
        let task = tokio::spawn(run_stream(device, device_end, Pace::Fast, opts));
        let mut host = open_protocol(ProtocolKind::Ge, SourceId(0));
        let (mut rx, mut tx) = tokio::io::split(host_end);
        let mut req = Vec::new();
        host.handle_timeout(Instant::ZERO);
        while host.poll_transmit(&mut req) {}
        tx.write_all(&req).await.unwrap();
        let mut all = Vec::new();
        rx.read_to_end(&mut all).await.unwrap();
        let summary = task.await.unwrap().unwrap();
        assert_eq!(summary.ending, Ending::Until);
        host.handle_bytes(Instant::ZERO, &all);
        let outputs: Vec<Output> = std::iter::from_fn(|| host.poll_output()).collect();
        // A record every 5 s for 300 s.
        assert_eq!(spo2_count(&outputs), 60);
    }

    #[tokio::test]
    async fn tcp_server_serves_one_client_at_a_time() {
        let s = scenario("typical");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let clock = Clock::start(300.0);
        let server = tokio::spawn(serve_tcp(
            listener,
            move || SimDevice::new(&s, ProtocolKind::Line, 1),
            Pace::Clock(clock),
            RunOptions::default(),
        ));
        for _ in 0..2 {
            let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while got.len() < 200 {
                let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
                    .await
                    .expect("data within 5 s")
                    .unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            assert!(
                got.starts_with(b"vigil-line 1\n"),
                "{:?}",
                String::from_utf8_lossy(&got)
            );
            let mut host = open_protocol(ProtocolKind::Line, SourceId(0));
            host.handle_bytes(Instant::ZERO, &got);
            let outputs: Vec<Output> = std::iter::from_fn(|| host.poll_output()).collect();
            assert!(spo2_count(&outputs) >= 1);
        }
        server.abort();
    }

    #[tokio::test]
    async fn pty_pair_carries_bytes_to_its_named_end() {
        let Ok((driven, opened, path)) = pty_pair() else {
            // No pseudo-terminals in this environment: nothing to test.
            return;
        };
        assert!(path.starts_with("/dev/"), "{path}");
        // vigil opens the named end like any serial port.
        let settings = ProtocolKind::Line.default_serial();
        let mut port = match vigil::io::source::open_serial(std::path::Path::new(&path), &settings)
        {
            Ok(port) => port,
            Err(e) => panic!("vigil cannot open the pty {path}: {e}"),
        };
        let s = scenario("typical");
        let clock = Clock::start(100.0);
        let opts = RunOptions {
            write_timeout: Some(Duration::from_millis(200)),
            ..RunOptions::default()
        };
        let task = tokio::spawn(async move {
            let _keep = opened;
            run_stream(
                SimDevice::new(&s, ProtocolKind::Line, 1),
                driven,
                Pace::Clock(clock),
                opts,
            )
            .await
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while got.len() < 100 {
            let n = tokio::time::timeout(Duration::from_secs(5), port.read(&mut buf))
                .await
                .expect("data within 5 s")
                .unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"vigil-line 1\n"));
        task.abort();
    }
}
