//! The driver loop: the only code that awaits on the core's behalf.
//!
//! One iteration: take one input (bytes from a source, a link change, a
//! command, a timeout), stamp it, hand it to the [`Pipeline`], drain every
//! event into the sinks' bounded queues (`try_send`: a full queue drops the
//! event, counts it, and raises the queue-overflow technical alarm), write
//! what the protocols want to send (after every input, a link coming up
//! included, tagged with the connection it is for: see
//! [`super::source::Write`]), then sleep until the next input or the
//! pipeline's next deadline. The arrival-to-emission latency of every input
//! that produced events goes into an HDR histogram reported in the status.
//!
//! Signals: SIGTERM/SIGINT stop the loop, flush the sinks and exit; SIGHUP
//! reloads the configuration (an invalid one, or one start-up would refuse,
//! such as an emptied file, is rejected with its reasons and the running one
//! stays; monitoring never pauses). systemd: READY=1 once running, STATUS=
//! every status period, WATCHDOG=1 from this loop itself so a stuck loop
//! gets the service restarted.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::{mpsc, oneshot, watch};

use super::clock::Clock;
use super::notify;
use super::sink::{Batch, SinkHandle, SinkMsg};
use super::source::{self, SourceEvent, SourceMsg};
use crate::config::{self, Config, Link};
use crate::engine::{Command, CommandError, SystemCondition};
use crate::pipeline::{Feed, Input, Journal, Pipeline};
use crate::record::file::{Recorder, RecorderSettings};
use crate::record::{Record, Timed};

use crate::vitals::SourceId;

/// A command with a channel for its result.
pub type CommandMsg = (Command, oneshot::Sender<Result<(), CommandError>>);

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Everything the loop needs from outside.
pub struct DriverSetup {
    /// The validated configuration.
    pub config: Config,
    /// Where it came from (reloaded on SIGHUP); `None` = embedded defaults.
    pub config_path: Option<PathBuf>,
    /// The clock (accelerated for simulations).
    pub clock: Clock,
    /// Sinks receiving every event.
    pub sinks: Vec<SinkHandle>,
    /// Commands from displays.
    pub commands: mpsc::Receiver<CommandMsg>,
    /// How often to report status.
    pub status_every: Duration,
    /// Stop after this long of core time (demos, tests); `None` = until a signal.
    pub run_for: Option<Duration>,
    /// Stops the daemon like SIGTERM when it becomes true (embedding, tests).
    pub stop: watch::Receiver<bool>,
    /// Receives the daemon's state: after every alarm or session event and
    /// at least once a second.
    pub live: Option<watch::Sender<LiveState>>,
    /// Problems of vigil itself reported by other tasks (the MQTT side's
    /// broker unreachable, storage failure, outbox overflow), one queue per
    /// reporting component: raised and cleared as technical alarms. A
    /// condition that several components report (a queue overflow) stays
    /// raised until every one of them has cleared it.
    pub system: Vec<mpsc::Receiver<(SystemCondition, bool)>>,
    /// Where to record the session's inputs; `None` = no recording.
    pub recording: Option<RecorderSettings>,
}

// The published state is pure data: it lives with the pipeline so the wire
// format (`mqtt::payload`) need not depend on this loop.
pub use crate::pipeline::{LiveState, SourceState};

/// Latency and throughput figures for the status report.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// Inputs handled.
    pub inputs: u64,
    /// Events dropped because a sink queue was full.
    pub dropped: u64,
    /// Arrival-to-emission latency percentiles in microseconds: p50, p99, p99.9, max.
    pub latency_us: [u64; 4],
    /// Number of latency samples.
    pub samples: u64,
}

/// Runs the daemon until SIGTERM/SIGINT (or `run_for`). Returns the final status.
pub async fn run(setup: DriverSetup) -> Result<Status, DriverError> {
    let DriverSetup {
        mut config,
        config_path,
        clock,
        sinks,
        mut commands,
        status_every,
        run_for,
        mut stop,
        live,
        mut system,
        recording,
    } = setup;

    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(DriverError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DriverError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(DriverError::Signals)?;

    let start = clock.now();
    let mut pipeline = crate::pipeline::for_sources(start, config.engine.clone(), &config.sources);

    // Storage reports from the recorder's thread join the other system conditions.
    let (storage_tx, mut storage_rx) = mpsc::channel::<(SystemCondition, bool)>(16);
    let mut reports = Reports::default();
    // A recording that cannot start (read-only or full recording.dir) is a
    // storage failure like a write that fails: raised, and retried.
    let mut recording_retry = None;
    let mut recorder = None;
    if let Some(settings) = recording {
        match start_recorder(&settings, &config, &clock, start, storage_tx.clone(), false) {
            Some(r) => recorder = Some(r),
            None => {
                if let Some(input) = reports.report(RECORDER, SystemCondition::StorageFailure, true)
                {
                    let _ = feed(&mut pipeline, None, start, &input);
                }
                recording_retry = Some(settings);
            }
        }
    }
    let mut retry_tick = tokio::time::interval_at(
        tokio::time::Instant::now() + RECORDING_RETRY,
        RECORDING_RETRY,
    );
    retry_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (src_tx, mut src_rx) = mpsc::channel::<SourceMsg>(1024);
    let writers: Vec<_> = config
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            source::spawn(
                SourceId(i as u16),
                s.clone(),
                clock,
                src_tx.clone(),
                shutdown_rx.clone(),
            )
        })
        .collect();
    drop(src_tx);
    // Per source: the connection the pipeline was last told is up.
    let mut connection = vec![0u64; writers.len()];
    // Per source: why its lines were dropped, logged at a bounded rate.
    let mut rejects = vec![RejectLog::default(); writers.len()];

    let names = Arc::new(config.engine.source_names.clone());
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .expect("static histogram bounds are valid");
    let mut status = Status::default();
    // The recorder's queue overflowing: the input outruns what vigil records.
    let mut overload = Overload::default();
    let mut overload_tick = tokio::time::interval(Duration::from_secs(1));
    overload_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut overflow_since: Option<std::time::Instant> = None;
    let mut transmit = Vec::with_capacity(1024);
    // This iteration's events and the arrival times of the inputs that made them.
    let mut out: Vec<SinkMsg> = Vec::with_capacity(256);
    let mut arrivals: Vec<std::time::Instant> = Vec::with_capacity(MAX_BURST);
    let mut state_changed = false;
    let mut scratch = Vec::with_capacity(source::CHUNK);
    let mut status_tick = tokio::time::interval(status_every);
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watchdog = notify::watchdog_interval();
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let stop_at = run_for.map(|d| clock.real_at(start + d));
    let stop_timer = sleep_until(stop_at.map(tokio::time::Instant::from_std));
    tokio::pin!(stop_timer);
    let timer = tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_secs(3600));
    tokio::pin!(timer);
    let mut armed: Option<tokio::time::Instant> = None;
    let mut live_tick = tokio::time::interval(Duration::from_secs(1));
    live_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut live_state = LiveState {
        sources: config
            .sources
            .iter()
            .map(|s| SourceState {
                name: s.name.clone(),
                ..SourceState::default()
            })
            .collect(),
        // The limits in force, published at start and after every reload.
        limits: Some(config.engine.vitals),
        limits_version: 1,
        ..LiveState::default()
    };

    notify::ready(&format!(
        "monitoring {} source(s) for {}/{}",
        config.sources.len(),
        config.site,
        config.bed
    ));
    tracing::info!(
        site = %config.site,
        bed = %config.bed,
        sources = config.sources.len(),
        speed = clock.speed(),
        "vigil running"
    );

    loop {
        // One timer for the pipeline's deadline, reset only when it moves
        // (registering a new timer on every input costs latency).
        let deadline = pipeline
            .poll_timeout()
            .map(|t| tokio::time::Instant::from_std(clock.real_at(t)));
        if deadline != armed {
            if let Some(t) = deadline {
                timer.as_mut().reset(t);
            }
            armed = deadline;
        }
        let mut input_real = None;
        tokio::select! {
            biased;
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            Ok(_) = stop.wait_for(|s| *s) => { tracing::info!("stop requested: shutting down"); break; }
            _ = hup.recv() => {
                if let Some(new) = reload(&config_path, &config) {
                    config = new;
                    let mut journal = Recording(recorder.as_ref());
                    let _ = pipeline.feed(&mut journal, clock.now(), Feed::Settings(&config));
                    live_state.limits = Some(config.engine.vitals);
                    live_state.limits_version += 1;
                    if let Some(tx) = &live { tx.send_replace(live_state.clone()); }
                }
            }
            (who, condition, present) = next_condition(&mut system, &mut storage_rx) => {
                if let Some(input) = reports.report(who, condition, present) {
                    let _ = feed(&mut pipeline, recorder.as_ref(), clock.now(), &input);
                }
            }
            msg = src_rx.recv() => {
                let Some(mut msg) = msg else { break };
                // Take every source message already waiting (a burst of
                // monitors at once), up to MAX_BURST: their events leave in
                // one hand-off below, not one wake-up of each sink per input.
                let mut taken = 0;
                loop {
                    status.inputs += 1;
                    let real = source_input(
                        msg,
                        &mut pipeline,
                        recorder.as_ref(),
                        &mut scratch,
                        &mut rejects,
                        &mut connection,
                        &names,
                    );
                    let before = out.len();
                    state_changed |= drain(&mut pipeline, &clock, &mut out, &mut live_state);
                    if let (Some(real), true) = (real, out.len() > before) {
                        arrivals.push(real);
                    }
                    taken += 1;
                    if taken == MAX_BURST {
                        break;
                    }
                    match src_rx.try_recv() {
                        Ok(m) => msg = m,
                        Err(_) => break,
                    }
                }
            }
            cmd = commands.recv(), if !commands.is_closed() => {
                if let Some((command, reply)) = cmd {
                    let received = std::time::Instant::now();
                    let at = clock.at(received);
                    let result = feed(&mut pipeline, recorder.as_ref(), at, &Input::Command(command));
                    if let Err(e) = &result {
                        tracing::warn!("command {} rejected: {e}", command.key());
                    }
                    let _ = reply.send(result);
                    input_real = Some(received);
                }
            }
            _ = timer.as_mut(), if armed.is_some() => {
                armed = None;
                let _ = feed(&mut pipeline, recorder.as_ref(), clock.now(), &Input::Tick);
            }
            _ = status_tick.tick() => {
                fill_latency(&mut status, &latency);
                report_status(&status, &pipeline, &config);
            }
            _ = overload_tick.tick(), if recorder.is_some() || overload.since.is_some() => {
                let dropped = recorder.as_ref().map_or(overload.seen, |r| r.dropped());
                if let Some(input) = overload.check(dropped, std::time::Instant::now()) {
                    let _ = feed(&mut pipeline, recorder.as_ref(), clock.now(), &input);
                }
            }
            _ = retry_tick.tick(), if recording_retry.is_some() => {
                if let Some(settings) = &recording_retry {
                    recorder = start_recorder(settings, &config, &clock, clock.now(), storage_tx.clone(), true);
                    // A new recorder counts its drops from 0.
                    overload.seen = 0;
                    if recorder.is_some() {
                        recording_retry = None;
                    }
                }
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => notify::watchdog(),
            _ = live_tick.tick(), if live.is_some() => {
                fill_latency(&mut status, &latency);
                refresh_live(&mut live_state, &pipeline, &status, &clock, start, false);
                if let Some(tx) = &live { tx.send_replace(live_state.clone()); }
            }
            _ = &mut stop_timer, if stop_at.is_some() => {
                tracing::info!("run time elapsed: stopping");
                break;
            }
        }

        // Every event of this iteration, then one hand-off: the live state
        // first (its watch is how the MQTT side learns of a new snapshot),
        // then the events, so each sink is woken once per iteration.
        let before = out.len();
        state_changed |= drain(&mut pipeline, &clock, &mut out, &mut live_state);
        if let (true, Some(real)) = (out.len() > before, input_real) {
            arrivals.push(real);
        }
        if let (true, Some(tx)) = (state_changed, &live) {
            refresh_live(&mut live_state, &pipeline, &status, &clock, start, true);
            tx.send_replace(live_state.clone());
        }
        state_changed = false;
        let mut dropped_now = false;
        if !out.is_empty() {
            let batch: Batch = out.as_slice().into();
            out.clear();
            for sink in &sinks {
                let dropped = sink.offer(&batch);
                if dropped > 0 {
                    status.dropped += dropped as u64;
                    dropped_now = true;
                }
            }
        }
        if !arrivals.is_empty() {
            let now = std::time::Instant::now();
            for real in arrivals.drain(..) {
                let us = now.saturating_duration_since(real).as_micros().max(1) as u64;
                let _ = latency.record(us.min(60_000_000));
            }
        }
        if dropped_now {
            if overflow_since.is_none() {
                tracing::error!("a sink queue is full: events were dropped");
                if let Some(input) = reports.report(DRIVER, SystemCondition::QueueOverflow, true) {
                    let _ = feed(&mut pipeline, recorder.as_ref(), clock.now(), &input);
                }
            }
            overflow_since = Some(std::time::Instant::now());
        } else if overflow_since.is_some_and(|t| t.elapsed() > Duration::from_secs(30)) {
            overflow_since = None;
            if let Some(input) = reports.report(DRIVER, SystemCondition::QueueOverflow, false) {
                let _ = feed(&mut pipeline, recorder.as_ref(), clock.now(), &input);
            }
        }

        // Write what the protocols want to send.
        for (i, writer) in writers.iter().enumerate() {
            transmit.clear();
            while pipeline.poll_transmit(SourceId(i as u16), &mut transmit) {
                let write = source::Write {
                    link: connection[i],
                    bytes: transmit.clone(),
                };
                if writer.try_send(write).is_err() {
                    tracing::warn!(
                        source = %names[i],
                        "write queue full ({} messages): a message to the device was dropped; the link is stuck",
                        source::WRITE_QUEUE
                    );
                }
                transmit.clear();
            }
        }
    }

    // Shutdown: stop reading, flush every sink, report.
    notify::stopping();
    let _ = shutdown_tx.send(true);
    drain(&mut pipeline, &clock, &mut out, &mut live_state);
    let batch: Batch = out.as_slice().into();
    for sink in &sinks {
        sink.offer(&batch);
    }
    for sink in sinks {
        sink.close(Duration::from_secs(5)).await;
    }
    fill_latency(&mut status, &latency);
    report_status(&status, &pipeline, &config);
    if let Some(r) = recorder {
        let path = r.path().display().to_string();
        let stopped = clock.now();
        r.finish(
            stopped,
            vec![("stopped".into(), crate::time::rfc3339(clock.wall(stopped)))],
        );
        tracing::info!("session recorded to {path}");
    }
    Ok(status)
}

/// How long the recorder must keep up before `system.input_overload` ends.
const OVERLOAD_CLEARS_AFTER: Duration = Duration::from_secs(30);

/// `system.input_overload` from the recorder's drop counter: the sources
/// send more than vigil records (a byte flood, a chattering monitor). It is
/// not a storage failure: the disk works (its failures raise
/// `system.storage_failure` from the recorder itself); the input outruns it.
#[derive(Clone, Debug, Default)]
struct Overload {
    /// The recorder's drop counter when last looked at.
    seen: u64,
    /// When inputs were last dropped, while the condition is present.
    since: Option<std::time::Instant>,
}

impl Overload {
    /// Looks at the counter at `now`; returns the input that starts or ends
    /// the condition, if it changes.
    fn check(&mut self, dropped: u64, now: std::time::Instant) -> Option<Input> {
        if dropped > self.seen {
            let new = dropped - self.seen;
            self.seen = dropped;
            let started = self.since.is_none();
            self.since = Some(now);
            if started {
                tracing::error!(
                    "the recording fell behind the input: {new} input(s) not recorded (a source sends more than vigil can record): raising system.input_overload"
                );
                return Some(Input::System {
                    condition: SystemCondition::InputOverload,
                    present: true,
                });
            }
            tracing::debug!("the recording is still behind: {new} more input(s) not recorded");
            return None;
        }
        if self
            .since
            .is_some_and(|t| now.saturating_duration_since(t) >= OVERLOAD_CLEARS_AFTER)
        {
            self.since = None;
            tracing::info!(
                "the recording has kept up for {OVERLOAD_CLEARS_AFTER:?}: system.input_overload ends"
            );
            return Some(Input::System {
                condition: SystemCondition::InputOverload,
                present: false,
            });
        }
        None
    }
}

/// Logs why a source's lines were dropped (the protocols that can say:
/// the line protocol, Masimo), a few lines per window and a count of the
/// rest, so a sender can fix what it writes without a flood of warnings.
#[derive(Clone, Debug, Default)]
struct RejectLog {
    /// The source's drop counter when last looked at.
    seen: u64,
    limit: crate::log_limit::LogLimit,
}

impl RejectLog {
    fn check(
        &mut self,
        pipeline: &Pipeline,
        source: SourceId,
        names: &[String],
        now: std::time::Instant,
    ) {
        let Some(dropped) = pipeline.source_stats(source).map(|s| s.dropped_total()) else {
            return;
        };
        if dropped <= self.seen {
            return;
        }
        let new = dropped - self.seen;
        self.seen = dropped;
        let Some(why) = pipeline.source_drop_detail(source) else {
            return;
        };
        if let Some(suppressed) = self.limit.allow(now) {
            let name = names.get(source.index()).map_or("?", String::as_str);
            let lines = if new == 1 {
                "a line".to_owned()
            } else {
                format!("{new} lines")
            };
            tracing::warn!(
                source = %name,
                "dropped {lines} from the device: {why}{}",
                crate::log_limit::suppressed_note(suppressed)
            );
        }
    }
}

/// Source messages taken in one driver iteration at most.
const MAX_BURST: usize = 64;

/// One message from a source into the pipeline (recorded first); returns
/// the bytes' arrival time on the real clock (latency), `None` for a link
/// change.
fn source_input(
    msg: SourceMsg,
    pipeline: &mut Pipeline,
    recorder: Option<&Recorder>,
    scratch: &mut Vec<u8>,
    rejects: &mut [RejectLog],
    connection: &mut [u64],
    names: &[String],
) -> Option<std::time::Instant> {
    match msg.event {
        SourceEvent::Bytes(chunk) => {
            // The input owns its bytes; the buffer is reused.
            let mut data = std::mem::take(scratch);
            data.clear();
            data.extend_from_slice(chunk.as_slice());
            let input = Input::Bytes {
                source: msg.source,
                data,
            };
            let _ = feed(pipeline, recorder, msg.at, &input);
            if let Input::Bytes { data, .. } = input {
                *scratch = data;
            }
            if let Some(r) = rejects.get_mut(msg.source.index()) {
                r.check(pipeline, msg.source, names, msg.real);
            }
            Some(msg.real)
        }
        SourceEvent::Up | SourceEvent::Down => {
            let up = matches!(msg.event, SourceEvent::Up);
            if up {
                connection[msg.source.index()] += 1;
            }
            let input = Input::Link {
                source: msg.source,
                up,
            };
            let _ = feed(pipeline, recorder, msg.at, &input);
            None
        }
    }
}

/// Moves the pipeline's events into `out` with their wall-clock times;
/// true when one of them changes the published snapshot (an alarm, a
/// session or an audio event).
fn drain(
    pipeline: &mut Pipeline,
    clock: &Clock,
    out: &mut Vec<SinkMsg>,
    live: &mut LiveState,
) -> bool {
    let mut changed = false;
    while let Some(event) = pipeline.poll_event() {
        live.last_seq = event.seq;
        changed |= matches!(
            event.kind,
            crate::engine::EventKind::Alarm(_)
                | crate::engine::EventKind::Session(_)
                | crate::engine::EventKind::Audio(_)
        );
        out.push(SinkMsg {
            event,
            wall: clock.wall(event.at),
        });
    }
    changed
}

/// An input enters the pipeline through [`Pipeline::feed`], recorded
/// first (when recording), so a replay of the recording sees exactly what
/// the live pipeline saw. A command's verdict is returned (the replay
/// reaches the same one).
fn feed(
    pipeline: &mut Pipeline,
    recorder: Option<&Recorder>,
    at: crate::time::Instant,
    input: &Input,
) -> Result<(), CommandError> {
    pipeline.feed(&mut Recording(recorder), at, Feed::Input(input))
}

/// The session recording as the pipeline's journal (none while a
/// recording cannot start): inputs as they are, new settings as the whole
/// effective configuration, as replay reads them back.
struct Recording<'a>(Option<&'a Recorder>);

impl Journal<Config> for Recording<'_> {
    fn input(&mut self, at: crate::time::Instant, input: &Input) {
        if let Some(r) = self.0 {
            r.input(at, input);
        }
    }

    fn settings(&mut self, at: crate::time::Instant, config: &Config) {
        if let Some(r) = self.0 {
            r.record(at, Record::Config(config::render(config)));
        }
    }
}

/// Who reports a technical condition: the driver itself, the recorder,
/// or the component behind `DriverSetup::system[i]` (`FIRST_QUEUE + i`).
type Reporter = usize;
const DRIVER: Reporter = 0;
const RECORDER: Reporter = 1;
const FIRST_QUEUE: Reporter = 2;

/// The next system condition from the components' queues and the
/// recorder's, with who reported it; a closed queue is ignored.
async fn next_condition(
    queues: &mut [mpsc::Receiver<(SystemCondition, bool)>],
    recorder: &mut mpsc::Receiver<(SystemCondition, bool)>,
) -> (Reporter, SystemCondition, bool) {
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(Some((c, p))) = recorder.poll_recv(cx) {
            return std::task::Poll::Ready((RECORDER, c, p));
        }
        for (i, q) in queues.iter_mut().enumerate() {
            if let std::task::Poll::Ready(Some((c, p))) = q.poll_recv(cx) {
                return std::task::Poll::Ready((FIRST_QUEUE + i, c, p));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Which components hold each technical condition. Several can report the
/// same one (the driver, the MQTT outbox and the HL7 backlog each report a
/// queue overflow): it is raised when the first reports it and ends only
/// when the last has cleared it, so one component's recovery never hides
/// another's drops.
#[derive(Default)]
struct Reports {
    holders: std::collections::HashMap<SystemCondition, u64>,
}

impl Reports {
    /// `who` says `condition` is present or gone; returns the input that
    /// raises or ends it when its overall state changes.
    fn report(
        &mut self,
        who: Reporter,
        condition: SystemCondition,
        present: bool,
    ) -> Option<Input> {
        let bit = 1u64 << who.min(63);
        let held = self.holders.entry(condition).or_default();
        let before = *held != 0;
        if present {
            *held |= bit;
        } else {
            *held &= !bit;
        }
        let after = *held != 0;
        (before != after).then_some(Input::System {
            condition,
            present: after,
        })
    }
}

/// How often a recording that could not start is tried again.
const RECORDING_RETRY: Duration = Duration::from_secs(30);

/// Starts the recording at `start`; `retry`: earlier attempts failed and
/// raised the storage failure, which the recorder ends once it works.
fn start_recorder(
    settings: &RecorderSettings,
    config: &Config,
    clock: &Clock,
    start: crate::time::Instant,
    report: mpsc::Sender<(SystemCondition, bool)>,
    retry: bool,
) -> Option<Recorder> {
    let started = clock.wall(start);
    let meta = vec![
        (
            "vigil_version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
        ("site".to_owned(), config.site.clone()),
        ("bed".to_owned(), config.bed.clone()),
        ("started".to_owned(), crate::time::rfc3339(started)),
        ("speed".to_owned(), clock.speed().to_string()),
    ];
    let first = vec![
        Timed {
            at: start,
            record: Record::Meta(meta),
        },
        Timed {
            at: start,
            record: Record::Config(config::render(config)),
        },
    ];
    let report = Box::new(move |failing: bool| {
        let _ = report.try_send((SystemCondition::StorageFailure, failing));
    });
    let result = if retry {
        Recorder::start_after_failure(settings, started, first, report)
    } else {
        Recorder::start(settings, started, first, report)
    };
    match result {
        Ok(r) => {
            tracing::info!(path = %r.path().display(), "recording the session");
            Some(r)
        }
        Err(e) if retry => {
            tracing::debug!("the recording still cannot start: {e}");
            None
        }
        Err(e) => {
            tracing::error!(
                "cannot start the recording: {e}; check recording.dir (it must be writable, with free space); monitoring goes on, the recording is tried again every {RECORDING_RETRY:?}: raising system.storage_failure"
            );
            None
        }
    }
}

async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn refresh_live(
    live: &mut LiveState,
    pipeline: &Pipeline,
    status: &Status,
    clock: &Clock,
    start: crate::time::Instant,
    snapshot_changed: bool,
) {
    let engine = pipeline.engine();
    live.uptime = clock.now() - start;
    for (i, s) in live.sources.iter_mut().enumerate() {
        let id = SourceId(i as u16);
        s.up = pipeline.source_down(id) == Some(false);
        s.health = pipeline.source_health(id).unwrap_or_default();
        s.associated = pipeline.source_associated(id);
        if let Some(st) = pipeline.source_stats(id) {
            s.frames_ok = st.frames_ok;
            s.frames_ignored = st.ignored;
            s.frames_dropped = st.dropped_total();
        }
    }
    live.latency_us = status.latency_us;
    live.events_dropped = status.dropped;
    if snapshot_changed {
        live.present_alarms = engine.present_alarms();
        live.session = engine.session();
        for v in crate::vitals::Vital::ALL {
            live.baselines[v.index()] = engine.baseline(v);
        }
        live.audio_paused_until = engine.audio_paused_until();
        live.snapshot_version += 1;
    }
}

fn fill_latency(status: &mut Status, h: &Histogram<u64>) {
    status.samples = h.len();
    status.latency_us = [
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
    ];
}

fn report_status(status: &Status, pipeline: &Pipeline, config: &Config) {
    let present = pipeline.engine().present_alarms().len();
    let sources = source_summary(pipeline, config);
    let [p50, p99, p999, max] = status.latency_us;
    let line = format!(
        "{} alarm(s) present; sources: {sources}; latency us p50={p50} p99={p99} p99.9={p999} max={max}; events dropped: {}",
        present, status.dropped
    );
    tracing::info!(inputs = status.inputs, "status: {line}");
    notify::status(&line);
}

/// Each source as the status line gives it: `monitor: valid data
/// (associated), oximeter: no valid data (invalid values only)`.
fn source_summary(pipeline: &Pipeline, config: &Config) -> String {
    let parts: Vec<String> = config
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let id = SourceId(i as u16);
            let health = pipeline.source_health(id).unwrap_or_default();
            let mut part = format!("{}: {}", s.name, health.text());
            match (health, pipeline.source_associated(id)) {
                (crate::engine::SourceHealth::NotAssociated, _) | (_, None) => {}
                (_, Some(true)) => part.push_str(" (associated)"),
                (_, Some(false)) => part.push_str(" (not associated)"),
            }
            part
        })
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

/// The configuration a SIGHUP would switch to, checked by the one check
/// start-up and `vigil check-config` use ([`config::load_runnable`]): a file
/// start-up would refuse is refused here too, with every reason, so an
/// emptied or half-written file never returns the alarm settings to the
/// defaults.
fn reload_candidate(path: &Option<PathBuf>) -> Result<Config, String> {
    let Some(p) = path else {
        return Err(
            "vigil was started without a configuration file (-c); there is nothing to \
             reload"
                .into(),
        );
    };
    config::load_runnable(p).map_err(|e| e.to_string())
}

/// The configuration a SIGHUP switches to: the running one with the new
/// file's alarm settings, or `None` when the file is refused. What else
/// changed in the file needs a restart, and the log says which sections.
fn reload(path: &Option<PathBuf>, current: &Config) -> Option<Config> {
    match reload_candidate(path) {
        Err(e) => {
            tracing::error!("SIGHUP: new configuration rejected, the running one stays: {e}");
            None
        }
        Ok(new) => {
            let changed = restart_needed(current, &new);
            if !changed.is_empty() {
                tracing::warn!(
                    "SIGHUP: {} changed; these changes need a restart of vigil (alarm settings are applied now)",
                    changed.join(", ")
                );
            }
            let mut next = current.clone();
            next.engine = new.engine;
            next.engine.source_names = current.engine.source_names.clone();
            tracing::info!("SIGHUP: configuration reloaded");
            Some(next)
        }
    }
}

/// The parts of the configuration a reload does not apply that differ
/// between `current` and `new`, by the keys the file uses.
fn restart_needed(current: &Config, new: &Config) -> Vec<&'static str> {
    [
        (current.site != new.site || current.bed != new.bed, "[site]"),
        (current.sources != new.sources, "[[source]]"),
        (current.recording != new.recording, "[recording]"),
        (current.mqtt != new.mqtt, "[mqtt]"),
        (current.hl7 != new.hl7, "[hl7]"),
    ]
    .into_iter()
    .filter_map(|(changed, key)| changed.then_some(key))
    .collect()
}

/// Whether any source is simulated (the clock speed then comes from it).
pub fn simulation_speed(config: &Config) -> Option<f64> {
    config.sources.iter().find_map(|s| match s.link {
        Link::Simulated { speed, .. } => Some(speed),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vigil-reload-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vigil.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn overload_present(input: Option<Input>) -> Option<bool> {
        match input? {
            Input::System {
                condition: SystemCondition::InputOverload,
                present,
            } => Some(present),
            other => panic!("not an overload input: {other:?}"),
        }
    }

    #[test]
    fn input_overload_starts_on_drops_and_ends_after_the_recorder_kept_up() {
        let t0 = std::time::Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut o = Overload::default();
        assert_eq!(overload_present(o.check(0, at(0))), None);
        assert_eq!(overload_present(o.check(5, at(1))), Some(true));
        // More drops: still present, not raised again.
        assert_eq!(overload_present(o.check(9, at(2))), None);
        assert_eq!(overload_present(o.check(9, at(20))), None);
        // Keeps up for 30 s after the last drop: ends, once.
        assert_eq!(overload_present(o.check(9, at(32))), Some(false));
        assert_eq!(overload_present(o.check(9, at(40))), None);
        // A new burst starts it again.
        assert_eq!(overload_present(o.check(10, at(41))), Some(true));
    }

    fn present(input: Option<Input>) -> Option<bool> {
        match input? {
            Input::System {
                condition: SystemCondition::QueueOverflow,
                present,
            } => Some(present),
            other => panic!("not a queue overflow: {other:?}"),
        }
    }

    /// The MQTT outbox and the HL7 backlog both report a queue overflow
    /// through their own queues; one of them recovering used to end the
    /// alarm while the other still dropped.
    #[tokio::test(flavor = "current_thread")]
    async fn a_condition_two_components_report_ends_when_both_cleared_it() {
        let (mqtt_tx, mqtt) = mpsc::channel(4);
        let (hl7_tx, hl7) = mpsc::channel(4);
        let (_rec_tx, mut rec) = mpsc::channel(4);
        let mut queues = vec![mqtt, hl7];
        let mut reports = Reports::default();
        // Sends on `tx`, then takes the next report as the driver does.
        macro_rules! next {
            ($tx:expr, $present:expr) => {{
                $tx.send((SystemCondition::QueueOverflow, $present))
                    .await
                    .unwrap();
                let (who, c, p) = next_condition(&mut queues, &mut rec).await;
                present(reports.report(who, c, p))
            }};
        }
        assert_eq!(next!(mqtt_tx, true), Some(true));
        assert_eq!(next!(hl7_tx, true), None, "raised once");
        assert_eq!(next!(mqtt_tx, false), None, "HL7 still drops");
        assert_eq!(next!(mqtt_tx, false), None);
        assert_eq!(next!(hl7_tx, false), Some(false));
        assert_eq!(next!(hl7_tx, true), Some(true));
        // The driver's own overflow counts as one more holder.
        let driver =
            |r: &mut Reports, p| present(r.report(DRIVER, SystemCondition::QueueOverflow, p));
        assert_eq!(driver(&mut reports, true), None);
        assert_eq!(next!(hl7_tx, false), None);
        assert_eq!(driver(&mut reports, false), Some(false));
    }

    const READY: &str = r#"
[site]
site = "test-clinic"
bed = "bed-1"

[[source]]
name = "monitor"
protocol = "vigil-line"
serial = "/dev/ttyS0"
"#;

    #[test]
    fn an_empty_file_is_refused_like_at_start_up() {
        let e = reload_candidate(&Some(file("empty", ""))).unwrap_err();
        assert!(e.contains("not ready to run"), "{e}");
        assert!(e.contains("no [[source]] configured"), "{e}");
    }

    #[test]
    fn a_file_without_a_source_is_refused() {
        let text = &READY[..READY.find("[[source]]").unwrap()];
        let e = reload_candidate(&Some(file("nosource", text))).unwrap_err();
        assert!(e.contains("no [[source]] configured"), "{e}");
    }

    #[test]
    fn a_reload_applies_the_alarm_settings_and_names_what_needs_a_restart() {
        let current = reload_candidate(&Some(file("current", READY))).unwrap();
        let edited =
            format!("{READY}\n[recording]\ndir = \"elsewhere\"\n\n[alarms.spo2]\nlow = \"off\"\n");
        let new = config::parse(&edited, "edited").unwrap();
        assert_eq!(restart_needed(&current, &new), ["[recording]"]);
        assert!(restart_needed(&current, &current).is_empty());
        let mut other = current.clone();
        other.bed = "bed-9".into();
        other.mqtt.heartbeat = Duration::from_secs(99);
        assert_eq!(restart_needed(&current, &other), ["[site]", "[mqtt]"]);
        // A reload keeps everything but the alarm settings, which it takes
        // from the file.
        let next = reload(&Some(file("edited", &edited)), &current).unwrap();
        assert_eq!(next.recording, current.recording);
        assert_ne!(next.engine, current.engine);
        let mut applied = new.engine.clone();
        applied.source_names = current.engine.source_names.clone();
        assert_eq!(next.engine, applied);
    }

    #[test]
    fn a_ready_file_is_accepted_and_no_file_is_not_reloaded() {
        let cfg = reload_candidate(&Some(file("ready", READY))).unwrap();
        assert_eq!(cfg.sources.len(), 1);
        let e = reload_candidate(&None).unwrap_err();
        assert!(e.contains("without a configuration file"), "{e}");
    }
}
