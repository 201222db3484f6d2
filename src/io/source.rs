//! Source tasks: open a link (serial port, TCP device server, simulated
//! monitor), stamp every chunk of bytes with its arrival instant, and pass it
//! to the driver loop. Bytes the protocol wants to send come back through a
//! per-source queue and are written to the same link.
//!
//! Writes and connections: each successful open is a new connection,
//! numbered from 1, and announced to the driver as [`SourceEvent::Up`]. The
//! driver tags every [`Write`] with the number of the connection it was
//! meant for (the count of `Up`s it has seen). A write for the current
//! connection is always written, however early it was queued; only a write
//! meant for a connection that has since gone is skipped (and logged): the
//! protocol starts a fresh session when it hears of the new link.
//!
//! A hang-up (a read of 0 bytes, EIO, a TCP reset) is reported as the link
//! going down; the task then reopens the link with exponential backoff, so a
//! dead port never makes it spin. Open errors are described in terms the
//! user can act on (the device path, the `dialout` group, a busy port).
//!
//! Chunks travel inline (no heap allocation per read).

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::clock::Clock;
use crate::config::{Link, Parity, SerialSettings, SourceConfig};
use crate::time::Instant;
use crate::vitals::SourceId;

/// Largest chunk carried in one message; longer reads are split.
pub const CHUNK: usize = 512;

/// Bytes read in one go, stored inline.
#[derive(Clone, Copy)]
pub struct Chunk {
    len: u16,
    bytes: [u8; CHUNK],
}

impl Chunk {
    /// Copies up to [`CHUNK`] bytes.
    pub fn new(data: &[u8]) -> Self {
        let len = data.len().min(CHUNK);
        let mut bytes = [0; CHUNK];
        bytes[..len].copy_from_slice(&data[..len]);
        Chunk {
            len: len as u16,
            bytes,
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chunk({} bytes)", self.len)
    }
}

/// What happened on a source's link.
#[derive(Clone, Copy, Debug)]
// Inline on purpose: a chunk must not cost a heap allocation per read.
#[allow(clippy::large_enum_variant)]
pub enum SourceEvent {
    /// Bytes arrived.
    Bytes(Chunk),
    /// The link opened.
    Up,
    /// The link closed or failed.
    Down,
}

/// One message from a source task to the driver.
#[derive(Clone, Copy, Debug)]
pub struct SourceMsg {
    /// Which source.
    pub source: SourceId,
    /// Arrival, on the core's clock.
    pub at: Instant,
    /// Arrival, on the real monotonic clock (for latency measurement).
    pub real: std::time::Instant,
    /// What happened.
    pub event: SourceEvent,
}

/// Bytes for a source's device, meant for one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The connection (1 = the first successful open) they are meant for.
    pub link: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Errors opening a link, phrased so the user knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No such serial device.
    #[error("serial device {path} does not exist: check the cable or USB adapter and the source's `serial` key (`vigil ports` lists the ports)")]
    NoDevice {
        /// The path.
        path: String,
    },
    /// Permission denied.
    #[error("permission denied opening {path}: add the user running vigil to the `dialout` group (`usermod -aG dialout vigil`), then restart the service")]
    Permission {
        /// The path.
        path: String,
    },
    /// Another program holds the port.
    #[error(
        "serial device {path} is busy: another program has it open (ports are opened exclusively)"
    )]
    Busy {
        /// The path.
        path: String,
    },
    /// Any other serial error.
    #[error("cannot open serial device {path}: {reason}")]
    Serial {
        /// The path.
        path: String,
        /// What the OS said.
        reason: String,
    },
    /// TCP connection failed.
    #[error("cannot connect to device server {address}: {cause} (check the source's `tcp` key and that the device server is on)")]
    Tcp {
        /// `host:port`.
        address: String,
        /// Why.
        cause: io::Error,
    },
    /// A simulated monitor did not start ([`super::simulated`]).
    #[error("{0}")]
    Simulated(String),
}

/// Opens a serial port with the given settings (exclusively).
pub fn open_serial(
    path: &Path,
    settings: &SerialSettings,
) -> Result<tokio_serial::SerialStream, OpenError> {
    use tokio_serial::SerialPortBuilderExt as _;
    let shown = path.display().to_string();
    if !path.exists() {
        return Err(OpenError::NoDevice { path: shown });
    }
    let builder = tokio_serial::new(shown.clone(), settings.baud)
        .data_bits(tokio_serial::DataBits::Eight)
        .parity(match settings.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        })
        .stop_bits(if settings.stop_bits == 2 {
            tokio_serial::StopBits::Two
        } else {
            tokio_serial::StopBits::One
        })
        .flow_control(if settings.rts_cts {
            tokio_serial::FlowControl::Hardware
        } else {
            tokio_serial::FlowControl::None
        });
    builder
        .open_native_async()
        .map_err(|e| describe_serial_error(&shown, e))
}

fn describe_serial_error(path: &str, e: tokio_serial::Error) -> OpenError {
    let path = path.to_owned();
    let text = e.to_string();
    match e.kind {
        tokio_serial::ErrorKind::NoDevice => OpenError::NoDevice { path },
        tokio_serial::ErrorKind::Io(io::ErrorKind::NotFound) => OpenError::NoDevice { path },
        tokio_serial::ErrorKind::Io(io::ErrorKind::PermissionDenied) => {
            OpenError::Permission { path }
        }
        _ if text.contains("Permission denied") => OpenError::Permission { path },
        _ if text.contains("busy") || text.contains("Busy") => OpenError::Busy { path },
        _ => OpenError::Serial { path, reason: text },
    }
}

pub use crate::backoff::Backoff;

/// Writes a source's queue holds; protocols send a few small messages per
/// second at most.
pub const WRITE_QUEUE: usize = 64;

/// Spawns the task of one source; returns the queue for bytes to send to it.
pub fn spawn(
    source: SourceId,
    cfg: SourceConfig,
    clock: Clock,
    out: mpsc::Sender<SourceMsg>,
    shutdown: watch::Receiver<bool>,
) -> mpsc::Sender<Write> {
    let (tx, rx) = mpsc::channel::<Write>(WRITE_QUEUE);
    tokio::spawn(run(source, cfg, clock, out, rx, shutdown));
    tx
}

async fn run(
    source: SourceId,
    cfg: SourceConfig,
    clock: Clock,
    out: mpsc::Sender<SourceMsg>,
    writes: mpsc::Receiver<Write>,
    shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    let mut reported_failure = false;
    let mut pump = Pump {
        source,
        name: &cfg.name,
        clock: &clock,
        out: &out,
        writes,
        shutdown,
        connections: 0,
    };
    loop {
        if *pump.shutdown.borrow() {
            return;
        }
        let outcome = match &cfg.link {
            Link::Serial { device, settings } => match open_serial(device, settings) {
                Ok(stream) => Ok(pump.run(stream).await),
                Err(e) => Err(e),
            },
            Link::Tcp { address } => {
                match tokio::time::timeout(
                    Duration::from_secs(5),
                    tokio::net::TcpStream::connect(address.as_str()),
                )
                .await
                {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        Ok(pump.run(stream).await)
                    }
                    Ok(Err(e)) => Err(OpenError::Tcp {
                        address: address.clone(),
                        cause: e,
                    }),
                    Err(_) => Err(OpenError::Tcp {
                        address: address.clone(),
                        cause: io::Error::new(io::ErrorKind::TimedOut, "connection timed out"),
                    }),
                }
            }
            Link::Simulated { .. } => match super::simulated::open(&cfg, clock) {
                Ok(stream) => Ok(pump.run(stream).await),
                Err(e) => Err(OpenError::Simulated(e.to_string())),
            },
        };
        match outcome {
            Ok(Pumped { got_data, reason }) => {
                reported_failure = false;
                if got_data {
                    backoff.reset();
                }
                if *pump.shutdown.borrow() {
                    return;
                }
                tracing::warn!(source = %cfg.name, "link down: {reason}; reconnecting");
            }
            Err(e) => {
                if !reported_failure {
                    tracing::error!(source = %cfg.name, "{e}");
                    reported_failure = true;
                } else {
                    tracing::debug!(source = %cfg.name, "still failing: {e}");
                }
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = pump.shutdown.changed() => return,
        }
    }
}

struct Pumped {
    got_data: bool,
    reason: String,
}

/// What moving bytes over one connection after another needs.
struct Pump<'a> {
    source: SourceId,
    name: &'a str,
    clock: &'a Clock,
    out: &'a mpsc::Sender<SourceMsg>,
    writes: mpsc::Receiver<Write>,
    shutdown: watch::Receiver<bool>,
    /// Connections opened so far (the current one's number while open).
    connections: u64,
}

impl Pump<'_> {
    fn msg(&self, event: SourceEvent) -> SourceMsg {
        let real = std::time::Instant::now();
        SourceMsg {
            source: self.source,
            at: self.clock.at(real),
            real,
            event,
        }
    }

    /// Moves bytes until the link fails or shutdown; reports Up and Down.
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(&mut self, mut stream: S) -> Pumped {
        self.connections += 1;
        let this = self.connections;
        if self.out.send(self.msg(SourceEvent::Up)).await.is_err() {
            return Pumped {
                got_data: false,
                reason: "driver stopped".into(),
            };
        }
        let mut buf = [0u8; CHUNK];
        let mut got_data = false;
        let reason = loop {
            tokio::select! {
                r = stream.read(&mut buf) => match r {
                    Ok(0) => break "hang-up (end of file)".to_owned(),
                    Ok(n) => {
                        got_data = true;
                        let msg = self.msg(SourceEvent::Bytes(Chunk::new(&buf[..n])));
                        if self.out.send(msg).await.is_err() {
                            return Pumped { got_data, reason: "driver stopped".into() };
                        }
                        // Let the driver take these bytes before this task
                        // reads again: that read usually finds nothing
                        // (EAGAIN), a system call that would otherwise sit
                        // between the bytes' arrival and their alarms.
                        tokio::task::yield_now().await;
                    }
                    Err(e) => break format!("read error: {e}"),
                },
                w = self.writes.recv() => match w {
                    Some(w) if w.link != this => {
                        tracing::debug!(
                            source = %self.name,
                            "{} byte(s) meant for connection {} skipped: connection {this} is open",
                            w.bytes.len(),
                            w.link
                        );
                    }
                    Some(w) => {
                        if let Err(e) = stream.write_all(&w.bytes).await {
                            break format!("write error: {e}");
                        }
                    }
                    None => break "driver stopped".to_owned(),
                },
                _ = self.shutdown.changed() => break "shutting down".to_owned(),
            }
        };
        let _ = self.out.send(self.msg(SourceEvent::Down)).await;
        Pumped { got_data, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_bounded() {
        let big = vec![7u8; 2000];
        assert_eq!(Chunk::new(&big).as_slice().len(), CHUNK);
        assert_eq!(Chunk::new(b"abc").as_slice(), b"abc");
    }

    #[test]
    fn missing_device_says_what_to_check() {
        let e = open_serial(
            Path::new("/dev/does-not-exist-vigil"),
            &crate::config::ProtocolKind::Masimo.default_serial(),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("/dev/does-not-exist-vigil"), "{msg}");
        assert!(msg.contains("vigil ports"), "{msg}");
    }
}
