//! Monitors emulated from real captures (`vigil-sim`'s capture mode) on a
//! pseudo-terminal or a TCP port, for the daemon to read like the device.

use std::time::Duration;

use tokio::task::JoinHandle;
use vigil::config::ProtocolKind;
use vigil::io::clock::Clock;
use vigil_sim::{Capture, CaptureDevice, Pace, RunOptions};

/// A real GE capture from `tests/fixtures/real/ge-s5/`.
pub fn ge_capture(name: &str) -> Capture {
    let path = format!(
        "{}/tests/fixtures/real/ge-s5/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    Capture::load(std::path::Path::new(&path), Some(ProtocolKind::Ge), None)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The options the `vigil-sim` binary runs with: real time, and bytes
/// nobody reads within 250 ms are dropped as on a serial line.
fn paced() -> (Pace, RunOptions) {
    (
        Pace::Clock(Clock::start(1.0)),
        RunOptions {
            until: None,
            write_timeout: Some(Duration::from_millis(250)),
        },
    )
}

/// The emulator on a new pseudo-terminal; returns the path the daemon
/// opens as its serial port, and the emulator's task.
pub fn on_pty(capture: Capture) -> (String, JoinHandle<()>) {
    let (driven, opened, path) = vigil_sim::pty_pair().expect("a pseudo-terminal pair");
    let (pace, opts) = paced();
    let task = tokio::spawn(async move {
        // Held open so the daemon can close and reopen its end.
        let _opened = opened;
        let _ = vigil_sim::run_stream(CaptureDevice::new(capture), driven, pace, opts).await;
    });
    (path, task)
}

/// The emulator listening like a serial device server on a port of the
/// system's choosing (a fresh emulator per connection); returns its address.
pub async fn on_tcp(capture: Capture) -> (std::net::SocketAddr, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let addr = listener.local_addr().expect("bound address");
    let (pace, opts) = paced();
    let task = tokio::spawn(async move {
        let _ = vigil_sim::serve_tcp(
            listener,
            move || CaptureDevice::new(capture.clone()),
            pace,
            opts,
        )
        .await;
    });
    (addr, task)
}
