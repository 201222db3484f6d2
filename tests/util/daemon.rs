//! Running the daemon in-process (driver loop + a collecting sink) and
//! pseudo-terminal pairs standing in for monitors' serial ports.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serialport::TTYPort;
use tokio::sync::{mpsc, watch};
use vigil::config::Config;
use vigil::engine::{AlarmEvent, EventKind, Phase};
use vigil::io::clock::Clock;
use vigil::io::driver::{self, DriverSetup, Status};
use vigil::io::sink::{SinkHandle, SinkMsg};

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

    /// Writes bytes as the monitor would.
    pub fn send(&mut self, bytes: &[u8]) {
        let master = self.master.as_mut().expect("plugged in");
        master.write_all(bytes).expect("write to pty master");
        master.flush().expect("flush pty master");
    }

    /// Writes bytes if the daemon has the device side open; false if nobody
    /// has it open yet (a pty master cannot write into the void).
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        let Some(master) = self.master.as_mut() else {
            return false;
        };
        master.write_all(bytes).and_then(|_| master.flush()).is_ok()
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

/// The daemon running in-process with a sink that hands every event to the test.
pub struct Running {
    pub events: mpsc::UnboundedReceiver<SinkMsg>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<Status, driver::DriverError>>,
    pub source_names: Vec<String>,
}

/// Starts the driver on the configuration (real-time clock).
pub fn start(config: Config) -> Running {
    let (tx, mut rx) = mpsc::channel::<SinkMsg>(4096);
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let forward = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let _ = out_tx.send(m);
        }
    });
    let sink = SinkHandle::new("test", tx, 4096, forward);
    let (_cmd_tx, commands) = mpsc::channel(8);
    let (_system_tx, system) = mpsc::channel(8);
    let (stop_tx, stop) = watch::channel(false);
    let source_names = config.engine.source_names.clone();
    let task = tokio::spawn(async move {
        let _keep = (_cmd_tx, _system_tx);
        driver::run(DriverSetup {
            config,
            config_path: None,
            clock: Clock::start(1.0),
            sinks: vec![sink],
            commands,
            system,
            status_every: Duration::from_secs(3600),
            run_for: None,
            stop,
            live: None,
        })
        .await
    });
    Running {
        events: out_rx,
        stop: stop_tx,
        task,
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

    /// Stops the daemon and returns its final status.
    pub async fn stop(self) -> Status {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("daemon stops within 10 s")
            .expect("driver task")
            .expect("driver result")
    }
}
