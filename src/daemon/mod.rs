//! The daemon's wiring, in one place: the sinks (MQTT, log, any the caller
//! adds), the command and system-condition channels, the recording, the
//! clock, and the [driver loop](crate::io::driver) that runs the pipeline.
//!
//! `vigil run` and `vigil demo` call [`run`]; tests and benchmarks call
//! [`start`] on their own runtime and keep the returned [`Daemon`] to send
//! commands, report system conditions, watch the live state and stop it.
//! Nothing else builds a daemon, so what is tested is what runs.

pub mod demo;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::config::Config;
use crate::engine::{Command, SystemCondition};
use crate::io::clock::Clock;
use crate::io::driver::{self, CommandMsg, DriverError, LiveState, Status};
use crate::io::sink::{self, SinkHandle};
use crate::record::file::RecorderSettings;

/// Errors that stop the daemon or keep it from starting.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The async runtime could not be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The live HL7 sink could not start (its TLS settings).
    #[error("cannot start the live HL7 sink: {0}")]
    Hl7(crate::mqtt::link::LinkError),
    /// MQTT publishing could not start (the `[mqtt]` section).
    #[error("cannot start MQTT publishing (check the [mqtt] section)")]
    Mqtt(#[source] crate::mqtt::MqttError),
    /// The driver loop failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The driver task panicked or was cancelled.
    #[error("the driver task ended abnormally: {0}")]
    Task(tokio::task::JoinError),
}

/// Whether and where the session is recorded.
#[derive(Clone, Debug, Default)]
pub enum Recording {
    /// As the configuration's `[recording]` section says.
    #[default]
    AsConfigured,
    /// Not at all, whatever the configuration says.
    Off,
    /// With these settings.
    To(RecorderSettings),
}

/// How to run the daemon, beyond its configuration.
pub struct Options {
    /// Where the configuration came from (reloaded on SIGHUP); `None` = embedded defaults.
    pub config_path: Option<PathBuf>,
    /// How often to log the status line.
    pub status_every: Duration,
    /// Stop after this much session time (demos, tests); `None` = until a signal.
    pub run_for: Option<Duration>,
    /// Commands to give at these session times (the demo's nurse).
    pub script: Vec<(Duration, Command)>,
    /// The log sink (alarms and sessions to the log).
    pub log: bool,
    /// More sinks receiving every event (tests, embedding).
    pub sinks: Vec<SinkHandle>,
    /// More sinks made with the channel on which they report technical
    /// conditions (tests, embedding).
    pub sinks_reporting: Option<SinkMaker>,
    /// The recording.
    pub recording: Recording,
    /// Queue length of the MQTT and log sinks.
    pub sink_queue: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config_path: None,
            status_every: Duration::from_secs(30),
            run_for: None,
            script: Vec::new(),
            log: true,
            sinks: Vec::new(),
            sinks_reporting: None,
            recording: Recording::AsConfigured,
            sink_queue: 4096,
        }
    }
}

/// Makes sinks from the sender of the daemon's technical conditions.
pub type SinkMaker = Box<dyn FnOnce(&mpsc::Sender<(SystemCondition, bool)>) -> Vec<SinkHandle>>;

/// A running daemon.
pub struct Daemon {
    /// Commands, as displays give them over MQTT.
    pub commands: mpsc::Sender<CommandMsg>,
    /// System conditions of vigil itself, as the MQTT side reports them.
    pub system: mpsc::Sender<(SystemCondition, bool)>,
    /// The daemon's state, as the heartbeat publishes it.
    pub live: watch::Receiver<LiveState>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<Status, DriverError>>,
}

impl Daemon {
    /// Gives a command and waits for the engine's verdict; `None` when the
    /// daemon has stopped.
    pub async fn command(
        &self,
        command: Command,
    ) -> Option<Result<(), crate::engine::CommandError>> {
        let (tx, rx) = oneshot::channel();
        self.commands.send((command, tx)).await.ok()?;
        rx.await.ok()
    }

    /// Stops it like SIGTERM (sinks flushed, recording finished) and
    /// returns its final status.
    pub async fn stop(self) -> Result<Status, DaemonError> {
        let _ = self.stop.send(true);
        self.wait().await
    }

    /// Waits until it stops by itself (a signal, `run_for`).
    pub async fn wait(self) -> Result<Status, DaemonError> {
        let _keep = self.stop;
        Ok(self.task.await.map_err(DaemonError::Task)??)
    }
}

/// Starts the daemon on the current tokio runtime.
pub fn start(config: Config, options: Options) -> Result<Daemon, DaemonError> {
    let Options {
        config_path,
        status_every,
        run_for,
        script,
        log,
        sinks: extra,
        sinks_reporting,
        recording,
        sink_queue,
    } = options;
    let speed = driver::simulation_speed(&config).unwrap_or(1.0);
    let clock = Clock::start(speed);
    let (commands_tx, commands) = mpsc::channel(64);
    // One queue of technical conditions per reporting component, so that a
    // condition two of them report (a queue overflow) ends only when both
    // have cleared it. `system_tx` is the embedder's (tests, extra sinks).
    let (system_tx, system) = mpsc::channel(64);
    let mut system = vec![system];
    let mut reporting = || {
        let (tx, rx) = mpsc::channel(64);
        system.push(rx);
        tx
    };
    let (live_tx, live_rx) = watch::channel(LiveState::default());

    // The caller's sinks first (a test's collecting sink sees an event no
    // later than the MQTT side publishes it).
    let mut sinks = extra;
    if let Some(make) = sinks_reporting {
        sinks.extend(make(&system_tx));
    }
    if let Some(h) = &config.hl7 {
        tracing::info!(
            "HL7: charting every {:?} to {} (the [hl7] section)",
            h.interval,
            h.to
        );
        let tls = match (h.tls, &h.ca_file) {
            (true, Some(ca)) => {
                Some(crate::mqtt::link::tls_client("hl7.ca_file", ca).map_err(DaemonError::Hl7)?)
            }
            _ => None,
        };
        sinks.push(crate::io::hl7::spawn(crate::io::hl7::Hl7Setup {
            config: h.clone(),
            site: config.site.clone(),
            bed: config.bed.clone(),
            sources: crate::record::chart::devices(&config),
            system: reporting(),
            queue: sink_queue,
            // The bed's state directory, as the MQTT outbox's.
            state_dir: Some(
                crate::mqtt::resolve_state_dir(&config.mqtt.state_dir)
                    .join(&config.site)
                    .join(&config.bed),
            ),
            tls,
        }));
    }
    if config.mqtt.enabled {
        sinks.push(
            crate::mqtt::spawn(crate::mqtt::MqttSetup {
                config: config.mqtt.clone(),
                site: config.site.clone(),
                bed: config.bed.clone(),
                source_names: config.engine.source_names.clone(),
                clock,
                commands: commands_tx.clone(),
                system: reporting(),
                live: Some(live_rx.clone()),
                queue: sink_queue,
            })
            .map_err(DaemonError::Mqtt)?,
        );
    } else {
        tracing::warn!("MQTT is off (mqtt.enabled = false): alarms go to the log only");
    }
    if log {
        sinks.push(sink::spawn_log(
            Arc::new(config.engine.source_names.clone()),
            sink_queue,
            Duration::from_secs(60),
        ));
    }
    if !script.is_empty() {
        tokio::spawn(give_commands(clock, script, commands_tx.clone()));
    }
    let recording = match recording {
        Recording::Off => None,
        Recording::To(settings) => Some(settings),
        Recording::AsConfigured => config.recording.enabled.then(|| RecorderSettings {
            dir: config.recording.dir.clone(),
            stem: format!("{}-{}", config.site, config.bed),
            sync_every: config.recording.sync_every,
            retention: config.recording.retention,
            queue: 8192,
            wake_when_half_full: true,
        }),
    };
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(driver::run(driver::DriverSetup {
        config,
        config_path,
        clock,
        sinks,
        commands,
        system,
        status_every: status_every.max(Duration::from_millis(100)),
        run_for,
        stop,
        live: Some(live_tx),
        recording,
    }));
    Ok(Daemon {
        commands: commands_tx,
        system: system_tx,
        live: live_rx,
        stop: stop_tx,
        task,
    })
}

/// Runs the daemon on a runtime of its own until a signal or `run_for`:
/// what `vigil run` and `vigil demo` do.
pub fn run(config: Config, options: Options) -> Result<Status, DaemonError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let status = runtime.block_on(async { start(config, options)?.wait().await })?;
    tracing::info!(
        inputs = status.inputs,
        dropped = status.dropped,
        "vigil stopped"
    );
    Ok(status)
}

/// Gives each scripted command at its session time, logging the verdict.
async fn give_commands(
    clock: Clock,
    script: Vec<(Duration, Command)>,
    commands: mpsc::Sender<CommandMsg>,
) {
    let start = clock.now();
    for (at, command) in script {
        tokio::time::sleep_until(tokio::time::Instant::from_std(clock.real_at(start + at))).await;
        let (tx, rx) = oneshot::channel();
        if commands.send((command, tx)).await.is_err() {
            return;
        }
        match rx.await {
            Ok(Ok(())) => tracing::info!("demo: {} accepted", command.key()),
            Ok(Err(e)) => tracing::warn!("demo: {} rejected: {e}", command.key()),
            Err(_) => return,
        }
    }
}
