//! Running the daemon in-process (driver loop + a collecting sink) and
//! pseudo-terminal pairs standing in for monitors' serial ports.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serialport::TTYPort;
use tokio::sync::mpsc;
use vigil::config::Config;
use vigil::daemon::{Daemon, Options, Recording};
use vigil::engine::{AlarmEvent, EventKind, Phase, SystemCondition};
use vigil::io::driver::Status;
use vigil::io::sink::{SinkHandle, SinkMsg};
use vigil::record::file::RecorderSettings;

/// A fresh, empty temporary directory for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "vigil-test-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Writes the configuration `text` to `dir/vigil.toml`; returns its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("vigil.toml");
    std::fs::write(&path, text).expect("write vigil.toml");
    path
}

/// A pseudo-terminal pair whose device side is reachable at a stable path
/// (a symlink), like a USB serial adapter that may be unplugged and
/// plugged back in.
pub struct Monitor {
    link: PathBuf,
    master: Option<TTYPort>,
}

impl Monitor {
    /// Creates the pair and points `link` at its device side.
    pub fn plug_in(link: &Path) -> Monitor {
        let mut m = Monitor {
            link: link.to_owned(),
            master: None,
        };
        m.replug();
        m
    }

    /// Writes bytes as the monitor would. A pty master cannot write until
    /// someone has the device side open, so this waits (up to 5 s) for the
    /// daemon to open the port.
    pub fn send(&mut self, bytes: &[u8]) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !self.try_send(bytes) {
            assert!(
                std::time::Instant::now() < deadline,
                "nobody opened the pty within 5 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes bytes if the daemon has the device side open; false if nobody
    /// has it open yet (a pty master cannot write into the void).
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        let Some(master) = self.master.as_mut() else {
            return false;
        };
        master.write_all(bytes).and_then(|_| master.flush()).is_ok()
    }

    /// Reads what the daemon wrote to the device, waiting up to `within`
    /// for at least `min` bytes.
    pub fn receive(&mut self, min: usize, within: Duration) -> Vec<u8> {
        use std::io::Read;
        let master = self.master.as_mut().expect("plugged in");
        serialport::SerialPort::set_timeout(master, Duration::from_millis(50))
            .expect("set timeout");
        let deadline = std::time::Instant::now() + within;
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        while out.len() < min && std::time::Instant::now() < deadline {
            match master.read(&mut buf) {
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        out
    }

    /// Pulls the cable: the device side hangs up.
    pub fn unplug(&mut self) {
        self.master = None;
    }

    /// Plugs a new device in at the same path.
    pub fn replug(&mut self) {
        let (master, slave) = TTYPort::pair().expect("create a pseudo-terminal pair");
        // posix_openpt does not set close-on-exec: without it every child
        // process spawned meanwhile (other tests start `vigil`) would inherit
        // the master and keep the "cable" plugged in after unplug().
        use std::os::fd::AsRawFd as _;
        // SAFETY: plain fcntl on a descriptor we own.
        let rc = unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        assert_eq!(rc, 0, "set FD_CLOEXEC on the pty master");
        let name = serialport::SerialPort::name(&slave).expect("pty has a name");
        // The daemon opens the device side by its path; the test keeps only
        // the master so that every byte goes to the daemon.
        drop(slave);
        let _ = std::fs::remove_file(&self.link);
        std::os::unix::fs::symlink(&name, &self.link).expect("symlink to the pty");
        self.master = Some(master);
    }
}

/// The daemon running in-process (`vigil::daemon::start`) with a sink that
/// hands every event to the test.
pub struct Running {
    pub events: mpsc::UnboundedReceiver<SinkMsg>,
    pub daemon: Daemon,
    pub source_names: Vec<String>,
}

/// Starts the daemon on the configuration (real-time clock), without
/// recording, MQTT or log sink.
pub fn start(config: Config) -> Running {
    start_recording(config, None)
}

/// Starts the daemon without MQTT or log sink, recording into `recording`
/// when given.
pub fn start_recording(config: Config, recording: Option<RecorderSettings>) -> Running {
    start_with(config, recording, |_| Vec::new())
}

/// Like [`start_recording`], with more sinks made from the daemon's channel
/// for technical conditions.
pub fn start_with(
    mut config: Config,
    recording: Option<RecorderSettings>,
    sinks: impl FnOnce(&mpsc::Sender<(SystemCondition, bool)>) -> Vec<SinkHandle> + 'static,
) -> Running {
    config.mqtt.enabled = false;
    let (sink, events) = vigil::io::sink::collecting(4096);
    let source_names = config.engine.source_names.clone();
    let options = Options {
        status_every: Duration::from_secs(3600),
        log: false,
        sinks: vec![sink],
        sinks_reporting: Some(Box::new(sinks)),
        recording: recording.map_or(Recording::Off, Recording::To),
        ..Options::default()
    };
    let daemon = vigil::daemon::start(config, options).expect("start the daemon");
    Running {
        events,
        daemon,
        source_names,
    }
}

impl Running {
    /// Waits for an alarm event with the given id and phase; returns it.
    pub async fn alarm(&mut self, id: &str, phase: Phase, within: Duration) -> AlarmEvent {
        let names = self.source_names.clone();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no {id} {phase:?} within {within:?}"))
                .expect("daemon running");
            if let EventKind::Alarm(a) = msg.event.kind {
                if a.phase == phase && a.id.key(&names) == id {
                    return a;
                }
            }
        }
    }

    /// Every alarm event that arrives within `wait`, as (id, phase).
    pub async fn alarms_during(&mut self, wait: Duration) -> Vec<(String, Phase)> {
        let names = self.source_names.clone();
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            if let EventKind::Alarm(a) = msg.event.kind {
                out.push((a.id.key(&names), a.phase));
            }
        }
        out
    }

    /// Sends a command and waits for the engine's verdict.
    pub async fn command(
        &self,
        command: vigil::engine::Command,
    ) -> Result<(), vigil::engine::CommandError> {
        self.daemon
            .command(command)
            .await
            .expect("daemon running, command answered")
    }

    /// Everything that arrives within `wait`.
    pub async fn events_during(&mut self, wait: Duration) -> Vec<SinkMsg> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            out.push(msg);
        }
        out
    }

    /// Stops the daemon and returns its final status.
    pub async fn stop(self) -> Status {
        self.stop_and_drain().await.0
    }

    /// Stops the daemon; returns its final status and every event not yet
    /// taken (the sinks are flushed on shutdown).
    pub async fn stop_and_drain(mut self) -> (Status, Vec<SinkMsg>) {
        let status = tokio::time::timeout(Duration::from_secs(10), self.daemon.stop())
            .await
            .expect("daemon stops within 10 s")
            .expect("daemon result");
        let mut rest = Vec::new();
        while let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(200), self.events.recv()).await
        {
            rest.push(m);
        }
        (status, rest)
    }
}
