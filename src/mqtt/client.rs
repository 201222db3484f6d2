//! The MQTT thread: the polling task (backoff, forwarding) and the
//! publisher (outbox, snapshots, heartbeat, commands). See the module doc
//! of [`crate::mqtt`] for the delivery design.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use rumqttc::QoS;
use tokio::sync::{mpsc, oneshot, watch};

use super::journal::{Class, EpochMarks, JournalError, SeqFile, SeqStart, Stream};
use super::link::{
    parse_broker_url, Backoff, BrokerUrl, LinkConfig, LinkError, BACKOFF_MAX, CONFIG_KEYS,
};
use super::outbox::Outbox;
use super::payload::{self, Ctx, Delivery, Latest, SessionState};
use super::topics::BedTopics;
use super::wire::{self, Client, EventLoop, Happened, Props, Protocol, SendError};
use super::{command, MqttError};
use crate::config::MqttConfig;
use crate::engine::{EventKind, Priority, SystemCondition};
use crate::io::clock::Clock;
use crate::io::driver::{CommandMsg, LiveState};
use crate::io::sink::{self, Batch, SinkHandle, SinkMsg, SinkRx};
use crate::log_limit::{suppressed_note, LogLimit};
use crate::record::health::{Change, Health, RECOVERY_HOLD};

/// Requests queued in the client at most (its bounded request channel).
const REQUEST_QUEUE: usize = 512;
/// QoS 1 publishes in flight at most (the client's packet id range).
const INFLIGHT: u16 = 200;
/// Publishes the publisher has queued and not yet seen acknowledged, at most.
const WINDOW: usize = 180;
/// How long a command may wait for the engine's verdict.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for the outbox to drain.
const DRAIN_LIMIT: Duration = Duration::from_secs(3);
/// The largest packet the client reads. A larger one cannot be skipped: the
/// client drops the connection (see [`poll`] for the recovery).
pub const LINK_MAX_PACKET: usize = 256 * 1024;
/// The largest command payload vigil reads; a larger one is answered
/// `rejected` on `cmd/result` and counted, never parsed.
pub const COMMAND_MAX_BYTES: usize = 4096;
/// The longest response topic a command may name (bytes).
pub const RESPONSE_TOPIC_MAX: usize = 256;
/// The longest correlation data a command may carry (bytes).
pub const CORRELATION_MAX: usize = 256;
/// A connection that lasted at least this long resets the backoff.
const STABLE_LINK: Duration = Duration::from_secs(10);
/// This many connections lost within [`LOOP_WINDOW`], each soon after it
/// came up, make a reconnect loop (`system.broker_link_unstable`).
const LOOP_DROPS: usize = 4;
/// The window for [`LOOP_DROPS`].
const LOOP_WINDOW: Duration = Duration::from_secs(60);
/// How long the link must stay up before a reconnect loop is over.
const LOOP_CLEARS_AFTER: Duration = Duration::from_secs(30);
/// `system.broker_refused` ends when the broker has refused nothing for this long.
const REFUSAL_CLEARS_AFTER: Duration = Duration::from_secs(60);
/// How often a lost outbox journal is tried again.
const REOPEN_EVERY: Duration = Duration::from_secs(5);

/// Everything the MQTT side needs.
pub struct MqttSetup {
    /// The `[mqtt]` section.
    pub config: MqttConfig,
    /// Site name.
    pub site: String,
    /// Bed name.
    pub bed: String,
    /// Source names (alarm ids, vitals).
    pub source_names: Vec<String>,
    /// The daemon's clock (the driver's), for wall-clock times.
    pub clock: Clock,
    /// Commands to the driver.
    pub commands: mpsc::Sender<CommandMsg>,
    /// Technical conditions to the driver.
    pub system: mpsc::Sender<(SystemCondition, bool)>,
    /// The driver's live state (snapshots, heartbeat).
    pub live: Option<watch::Receiver<LiveState>>,
    /// The sink queue's capacity.
    pub queue: usize,
}

/// What the polling task tells the publisher.
enum Net {
    Up,
    Sent(u16),
    Collision,
    PubAck(u16),
    /// The broker refused the publish with this packet id (the reason).
    Refused(u16, String),
    Message(wire::Message),
    /// The broker sent a packet over [`LINK_MAX_PACKET`] (its size); the
    /// connection is being dropped and comes back with a clean session.
    Oversized(usize),
    Down(String, oneshot::Sender<()>),
}

/// The link to the external broker `mqtt.broker` names.
fn broker_link(cfg: &MqttConfig) -> Result<LinkConfig, LinkError> {
    let url = parse_broker_url(&cfg.broker).map_err(|why| LinkError::Broker {
        key: CONFIG_KEYS.broker,
        url: cfg.broker.clone(),
        why,
    })?;
    Ok(LinkConfig {
        url,
        credentials_file: cfg.credentials_file.clone(),
        ca_file: cfg.ca_file.clone(),
        client_cert: cfg.client_cert.clone(),
        client_key: cfg.client_key.clone(),
        keys: CONFIG_KEYS,
    })
}

/// Reads the files the broker link needs (credentials, CA, client
/// certificate and key) as start-up does, without connecting: what
/// `vigil check-config` adds to the configuration's own checks. Nothing
/// to read for the embedded broker but the credentials file.
pub fn check_link_files(cfg: &MqttConfig) -> Result<(), LinkError> {
    if !cfg.enabled {
        return Ok(());
    }
    let link = if cfg.embedded {
        LinkConfig {
            credentials_file: cfg.credentials_file.clone(),
            ..LinkConfig::new(
                BrokerUrl {
                    tls: false,
                    host: "127.0.0.1".into(),
                    port: cfg.listen.port(),
                },
                CONFIG_KEYS,
            )
        }
    } else {
        broker_link(cfg)?
    };
    link.credentials()?;
    link.tls()?;
    Ok(())
}

/// Starts the MQTT thread (and the embedded broker when configured);
/// returns the sink the driver feeds.
pub fn spawn(setup: MqttSetup) -> Result<SinkHandle, MqttError> {
    let cfg = &setup.config;
    let link = if cfg.embedded {
        #[cfg(feature = "embedded-broker")]
        super::broker::start(cfg.listen)?;
        #[cfg(not(feature = "embedded-broker"))]
        return Err(MqttError::NoEmbeddedBroker);
        #[allow(unreachable_code)]
        {
            let ip = match cfg.listen.ip() {
                ip if ip.is_unspecified() => {
                    if ip.is_ipv4() {
                        std::net::IpAddr::from([127, 0, 0, 1])
                    } else {
                        std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
                    }
                }
                ip => ip,
            };
            let url = BrokerUrl {
                tls: false,
                host: ip.to_string(),
                port: cfg.listen.port(),
            };
            LinkConfig {
                credentials_file: cfg.credentials_file.clone(),
                ..LinkConfig::new(url, CONFIG_KEYS)
            }
        }
    } else {
        broker_link(cfg)?
    };
    let topics = BedTopics::new(&cfg.prefix, &setup.site, &setup.bed);
    let client_id = super::expand(&cfg.client_id, &setup.site, &setup.bed);
    // The embedded broker (rumqttd) speaks MQTT 3.1.1 only.
    let protocol = if cfg.embedded {
        Protocol::V311
    } else {
        cfg.protocol
    };

    // One directory per bed: two daemons never share a journal.
    let state_dir = super::resolve_state_dir(&cfg.state_dir)
        .join(&setup.site)
        .join(&setup.bed);
    // A state directory that cannot be written (read-only, full) does not
    // stop monitoring: the outbox runs in memory with what can be read,
    // system.journal_failure is raised, and the journal is reopened when
    // the directory works again.
    let mut failure = None;
    let mut journal_read = true;
    let (mut outbox, report) = match Outbox::open(Some(&state_dir), cfg.outbox_max as usize) {
        Ok(x) => x,
        Err(e @ JournalError::NotAJournal(_)) => return Err(e.into()),
        Err(e) => {
            let fallback = Outbox::open_read_only(&state_dir, cfg.outbox_max as usize);
            let loaded = fallback.unwrap_or_else(|read| {
                tracing::error!(
                    "the outbox journal cannot be read either ({read}): messages a previous run left undelivered are not sent; the file is set aside, not overwritten, when the state directory works again"
                );
                journal_read = false;
                (Outbox::memory(cfg.outbox_max as usize), Default::default())
            });
            failure = Some(e);
            loaded
        }
    };
    let marks = EpochMarks::from_env();
    let (seq, start) = match SeqFile::open(&state_dir, outbox.seq_floor(), &marks) {
        Ok(x) => x,
        Err(e) => {
            let why = format!("the state directory cannot be written ({e})");
            failure.get_or_insert(e);
            (
                SeqFile::memory(outbox.seq_floor(), &marks),
                SeqStart::Untrusted(why),
            )
        }
    };
    match &start {
        SeqStart::Continued => {}
        SeqStart::Fresh => tracing::info!(
            epoch = seq.epoch(),
            "new state directory {}: a new stream epoch",
            state_dir.display()
        ),
        SeqStart::Untrusted(why) => {
            tracing::error!(
                epoch = seq.epoch(),
                "the sequence file cannot be trusted ({why}): starting a NEW stream epoch at seq {} so displays reset their order instead of dropping vigil's messages as old; if the state directory was restored from a backup, this is expected",
                seq.base()
            );
        }
    }
    if start != SeqStart::Continued && outbox.pending() > 0 {
        if let Err(e) = outbox.restamp(seq.epoch()) {
            failure.get_or_insert(e);
        }
    }
    tracing::info!(
        state_dir = %state_dir.display(),
        durable = failure.is_none(),
        undelivered = outbox.pending(),
        seq_base = seq.base(),
        epoch = seq.epoch(),
        "MQTT outbox journal opened"
    );
    let ctx = Ctx {
        site: &setup.site,
        bed: &setup.bed,
        names: &setup.source_names,
        epoch: seq.epoch(),
    };
    let session = wire::Session {
        persistent: true,
        inflight: INFLIGHT,
        request_queue: REQUEST_QUEUE,
        max_packet: LINK_MAX_PACKET,
        will: Some(wire::Will {
            topic: topics.status.clone(),
            payload: payload::offline(&ctx, 0, SystemTime::now(), "connection_lost"),
            retain: true,
        }),
    };
    if report.torn_bytes > 0 {
        tracing::warn!(
            "the outbox journal had a torn tail of {} byte(s) (a crash mid-write): cut off; the stream numbers it may have held are not used again",
            report.torn_bytes
        );
    }
    if report.corrupt() {
        tracing::error!(
            "the outbox journal {} is DAMAGED: {} unreadable byte(s) in {} place(s) (first at offset {}), up to {} undelivered alarm/session message(s) lost; every readable message after the damage is kept and delivered, numbering continues above anything lost (displays see a stream_seq gap); a copy of the damaged file is at {}; check the disk: raising system.journal_corrupt",
            state_dir.join("outbox.journal").display(),
            report.damaged_bytes(),
            report.damage.len(),
            report.damage[0].offset,
            report.damage.iter().map(|d| d.max_messages()).sum::<u64>(),
            report
                .damaged_copy
                .as_ref()
                .map_or_else(|| "nowhere (it could not be written)".to_owned(), |p| p.display().to_string()),
        );
    }

    let broker = link.url.to_string();
    let url = link.url.clone();
    let (client, eventloop) = wire::connect(&link, &client_id, protocol, &session)?;
    tracing::info!(broker = %broker, protocol = %protocol, "MQTT link");

    let queue = setup.queue.max(16);
    let (tx, rx) = sink::queue(queue);
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let mut publisher = Publisher::new(setup, topics, client, outbox, seq, url, state_dir);
    // Latched in the engine: raised once, it stays until acknowledged.
    publisher.corrupt.want = report.corrupt();
    publisher.journal_read = journal_read;
    if let Some(e) = failure {
        publisher.storage_failure(&e);
    }
    std::thread::Builder::new()
        .name("vigil-mqtt".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(run(publisher, eventloop, rx)),
                Err(e) => tracing::error!("cannot start the MQTT runtime: {e}"),
            }
            let _ = done_tx.send(());
        })
        .map_err(MqttError::Thread)?;
    let task = tokio::spawn(async move {
        let _ = done_rx.await;
    });
    Ok(SinkHandle::new("mqtt", tx, task))
}

async fn run(mut publisher: Publisher, eventloop: EventLoop, mut events: SinkRx) {
    let (net_tx, mut net_rx) = mpsc::channel::<Net>(1024);
    let poller = tokio::spawn(poll(eventloop, net_tx, publisher.url.clone()));
    publisher.serve(&mut events, &mut net_rx).await;
    publisher.shutdown(&mut net_rx).await;
    poller.abort();
}

/// The polling task: drives the connection, reconnects with exponential
/// backoff, and forwards what happens. It never publishes.
///
/// The backoff is reset only by a connection that stayed up for
/// [`STABLE_LINK`], so a link that breaks right after every CONNACK is
/// retried slowly, not ten times a second.
///
/// A packet over [`LINK_MAX_PACKET`] (a huge message on `cmd`) cannot be
/// skipped by the client: it drops the connection, and the broker would
/// send the same message again on the next persistent-session connect (a
/// queued QoS 1 message) or subscribe (a retained one). So the next connect
/// uses a clean session (the queued copy is discarded; the outbox
/// republishes what is undelivered anyway), and the publisher clears a
/// retained `cmd` before it subscribes again.
async fn poll(mut eventloop: EventLoop, tx: mpsc::Sender<Net>, url: BrokerUrl) {
    let mut backoff = Backoff::default();
    let mut failures: u64 = 0;
    let mut last_log: Option<Instant> = None;
    let mut up_since: Option<Instant> = None;
    loop {
        let forwarded = match eventloop.poll(&url).await {
            Ok(Happened::ConnAck) => {
                // Back to a persistent session for the connects after a
                // recovery from an oversized packet.
                eventloop.set_clean(false);
                up_since = Some(Instant::now());
                failures = 0;
                last_log = None;
                Some(Net::Up)
            }
            Ok(Happened::PubAck(pkid)) => Some(Net::PubAck(pkid)),
            Ok(Happened::Refused(pkid, reason)) => Some(Net::Refused(pkid, reason)),
            Ok(Happened::Publish(m)) => Some(Net::Message(m)),
            Ok(Happened::Sent(pkid)) => Some(Net::Sent(pkid)),
            Ok(Happened::AwaitAck) => Some(Net::Collision),
            Ok(Happened::Other) => None,
            Err(e) => {
                failures += 1;
                if up_since.take().is_some_and(|t| t.elapsed() >= STABLE_LINK) {
                    backoff.reset();
                }
                if let Some(size) = e.oversized {
                    eventloop.set_clean(true);
                    if tx.send(Net::Oversized(size)).await.is_err() {
                        return;
                    }
                }
                let (ack_tx, ack_rx) = oneshot::channel();
                if tx.send(Net::Down(e.detail.clone(), ack_tx)).await.is_err() {
                    return;
                }
                // The publisher has stopped queueing; what it queued before
                // goes out again from its outbox after the reconnect.
                let _ = ack_rx.await;
                if last_log.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
                    tracing::warn!(
                        "MQTT broker {url}: {} (attempt {failures}); retrying with backoff up to {BACKOFF_MAX:?}",
                        e.detail
                    );
                    last_log = Some(Instant::now());
                }
                tokio::time::sleep(backoff.next_delay()).await;
                eventloop.forget_pending();
                None
            }
        };
        if let Some(n) = forwarded {
            if tx.send(n).await.is_err() {
                return;
            }
        }
    }
}

/// Where a command's result goes: its MQTT 5 response topic and
/// correlation data, or `cmd/result` (`topic` None).
#[derive(Clone, Debug, Default)]
struct Reply {
    topic: Option<String>,
    correlation: Option<Vec<u8>>,
}

/// A verdict of the engine on a command, with where it is answered.
type Verdict = (Reply, String, &'static str, Result<(), String>);

struct Publisher {
    cfg: MqttConfig,
    site: String,
    bed: String,
    names: Vec<String>,
    topics: BedTopics,
    broker: String,
    url: BrokerUrl,
    clock: Clock,
    client: Client,
    /// Correlation data of queued results, by outbox id.
    correlations: HashMap<u64, Vec<u8>>,
    outbox: Outbox,
    seq: SeqFile,
    commands: mpsc::Sender<CommandMsg>,
    system: mpsc::Sender<(SystemCondition, bool)>,
    live: Option<watch::Receiver<LiveState>>,
    verdict_tx: mpsc::UnboundedSender<Verdict>,
    verdict_rx: mpsc::UnboundedReceiver<Verdict>,
    /// Results of the journal syncs run off this thread (group commit).
    sync_tx: mpsc::UnboundedSender<(u64, Result<(), JournalError>)>,
    sync_rx: mpsc::UnboundedReceiver<(u64, Result<(), JournalError>)>,

    connected: bool,
    ever_connected: bool,
    /// Queued publishes waiting for their packet id, in order: the outbox id
    /// for tracked messages.
    queued: VecDeque<Option<u64>>,
    collided: Option<Option<u64>>,
    /// Packet id to outbox id (None: a QoS 1 message not tracked).
    in_flight: HashMap<u16, Option<u64>>,

    session: SessionState,
    latest: Latest,
    /// The latest vitals wait to be published: the `seq` and time of the
    /// newest reading in them. Published after the alarms, once per input
    /// (a batch from the driver), and held while the window is full.
    vitals_due: Option<(u64, SystemTime)>,
    /// The window was full when the vitals were due: readings coming
    /// meanwhile are coalesced into the next vitals message.
    vitals_waiting: bool,
    /// Readings coalesced that way since start (in the heartbeat).
    vitals_coalesced: u64,
    /// The `alarms/active` snapshot could not be queued (the window was
    /// full): it goes out when there is room.
    snapshot_due: bool,
    last_seq: u64,
    snapshot_version: u64,
    /// The `limits` version last published (see [`Publisher::limits`]).
    limits_version: u64,
    /// The `limits` message could not be queued: it goes out when there is room.
    limits_due: bool,
    beat: u64,
    reconnects: u64,

    down_since: Option<Instant>,
    /// When the current connection came up.
    up_since: Option<Instant>,
    /// Connections lost soon after they came up, within [`LOOP_WINDOW`].
    quick_drops: VecDeque<Instant>,
    /// An oversized packet broke the link: clear a retained `cmd` before
    /// subscribing again.
    clear_retained_cmd: bool,
    /// Commands answered `rejected` (any reason) and, of them, too large.
    commands_rejected: u64,
    commands_oversized: u64,
    /// Rejection warnings (a flood of bad commands logs a few and counts).
    reject_log: LogLimit,
    unreachable: Reported,
    overflow: Reported,
    storage: Reported,
    unstable: Reported,
    /// The journal was found damaged at start-up (a latched alarm: raised,
    /// then let go at once; it stays until acknowledged).
    corrupt: Reported,
    last_eviction: Option<Instant>,
    /// The broker refused messages: how many, when last, and the condition.
    refused: u64,
    last_refusal: Option<Instant>,
    refusal: Reported,
    /// The bed's state directory (journal, `seq`, `epoch`).
    state_dir: PathBuf,
    /// Whether the outbox journal works (see [`crate::record::health`]).
    journal_health: Health,
    /// When to try to reopen the lost journal next.
    reopen_at: Option<Instant>,
    /// Whether the journal on disk was read at start-up (else it is set
    /// aside, never overwritten, when the journal is reopened).
    journal_read: bool,
}

/// A condition the publisher reports to the driver, retried until it fits
/// into the system channel.
#[derive(Default)]
struct Reported {
    want: bool,
    told: bool,
}

impl Publisher {
    fn new(
        s: MqttSetup,
        topics: BedTopics,
        client: Client,
        outbox: Outbox,
        seq: SeqFile,
        url: BrokerUrl,
        state_dir: PathBuf,
    ) -> Publisher {
        let (verdict_tx, verdict_rx) = mpsc::unbounded_channel();
        let (sync_tx, sync_rx) = mpsc::unbounded_channel();
        let last_seq = seq.base();
        Publisher {
            cfg: s.config,
            site: s.site,
            bed: s.bed,
            names: s.source_names,
            topics,
            broker: url.to_string(),
            url,
            clock: s.clock,
            client,
            correlations: HashMap::new(),
            outbox,
            seq,
            commands: s.commands,
            system: s.system,
            live: s.live,
            verdict_tx,
            verdict_rx,
            sync_tx,
            sync_rx,
            connected: false,
            ever_connected: false,
            queued: VecDeque::new(),
            collided: None,
            in_flight: HashMap::new(),
            session: SessionState::default(),
            latest: Latest::default(),
            vitals_due: None,
            vitals_waiting: false,
            vitals_coalesced: 0,
            snapshot_due: false,
            last_seq,
            snapshot_version: 0,
            limits_version: 0,
            limits_due: false,
            beat: 0,
            reconnects: 0,
            down_since: Some(Instant::now()),
            up_since: None,
            quick_drops: VecDeque::new(),
            clear_retained_cmd: false,
            commands_rejected: 0,
            commands_oversized: 0,
            reject_log: LogLimit::default(),
            unreachable: Reported::default(),
            overflow: Reported::default(),
            storage: Reported::default(),
            unstable: Reported::default(),
            corrupt: Reported::default(),
            last_eviction: None,
            refused: 0,
            last_refusal: None,
            refusal: Reported::default(),
            state_dir,
            journal_health: Health::default(),
            reopen_at: None,
            journal_read: true,
        }
    }

    /// Now on vigil's clock, the clock of every event's time: heartbeats,
    /// snapshots and results carry it too, so a display measures every
    /// elapsed time on one clock (accelerated in a demo).
    fn vigil_now(&self) -> SystemTime {
        self.clock.wall(self.clock.now())
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            site: &self.site,
            bed: &self.bed,
            names: &self.names,
            epoch: self.seq.epoch(),
        }
    }

    /// Runs until the driver closes the sink queue.
    async fn serve(&mut self, events: &mut SinkRx, net: &mut mpsc::Receiver<Net>) {
        let mut heartbeat = tokio::time::interval(self.cfg.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut housekeeping = tokio::time::interval(Duration::from_millis(500));
        let mut live = self.live.clone();
        loop {
            tokio::select! {
                batch = events.recv() => {
                    let Some(batch) = batch else { return };
                    self.take(&batch);
                    // The driver updates its live state before it hands
                    // over the iteration's events: a new snapshot goes out
                    // right after the alarm that made it, with no wake-up
                    // of its own.
                    self.live_changed(&mut live);
                }
                Some(n) = net.recv() => self.handle_net(n),
                Some(done) = self.sync_rx.recv() => {
                    if let Err(e) = self.outbox.handle_synced(done) {
                        self.storage_failure(&e);
                    }
                    self.start_sync();
                }
                Some((reply, id, key, verdict)) = self.verdict_rx.recv() => {
                    match &verdict {
                        Ok(()) => tracing::info!(command = key, request = %id, "display command accepted"),
                        Err(e) => {
                            self.commands_rejected += 1;
                            self.warn_rejected(Some(&id), &format!("{e} (engine)"));
                        }
                    }
                    self.result(&reply, Some(&id), Some(key), verdict.as_ref().map_err(String::as_str).copied());
                }
                _ = heartbeat.tick() => self.heartbeat(),
                _ = housekeeping.tick() => {
                    // A change that came with no event (a reload's limits).
                    self.live_changed(&mut live);
                    self.housekeeping();
                }
            }
        }
    }

    /// One hand-off of the driver's events: alarms first, then the
    /// vitals, then the group commit.
    fn take(&mut self, batch: &Batch) {
        for msg in batch.iter() {
            self.handle_event(*msg);
        }
        self.pump();
        self.start_sync();
    }

    /// Publishes the snapshot and the limits if the driver's live state
    /// changed them; stops watching once the driver is gone.
    fn live_changed(&mut self, live: &mut Option<watch::Receiver<LiveState>>) {
        match live.as_mut().map(|l| l.has_changed()) {
            Some(Ok(true)) => {
                if let Some(l) = live.as_mut() {
                    l.mark_unchanged();
                }
                self.snapshot(false);
                self.limits(false);
            }
            Some(Err(_)) => *live = None,
            _ => {}
        }
    }

    fn handle_event(&mut self, msg: SinkMsg) {
        let seq = match self.seq.publish(msg.event.seq) {
            Ok(n) => n,
            Err(e) => {
                self.storage_failure(&e);
                self.seq.base() + msg.event.seq
            }
        };
        self.last_seq = seq;
        let clock = self.clock;
        let wall = move |t| clock.wall(t);
        match msg.event.kind {
            EventKind::Alarm(a) => {
                let class = match a.priority {
                    Priority::High => Class::High,
                    Priority::Medium => Class::Medium,
                    Priority::Low => Class::Low,
                };
                let topic = self.topics.alarms.clone();
                let ctx = Ctx {
                    site: &self.site,
                    bed: &self.bed,
                    names: &self.names,
                    epoch: self.seq.epoch(),
                };
                let pushed = self.outbox.push(class, Stream::Alarms, false, topic, |n| {
                    payload::alarm(&ctx, seq, n, msg.wall, &a, wall)
                });
                self.after_push(pushed);
            }
            EventKind::Session(e) => {
                self.session.apply(&e, msg.wall);
                let topic = self.topics.session.clone();
                let ctx = Ctx {
                    site: &self.site,
                    bed: &self.bed,
                    names: &self.names,
                    epoch: self.seq.epoch(),
                };
                let state = &self.session;
                let pushed = self
                    .outbox
                    .push(Class::Session, Stream::Session, true, topic, |n| {
                        payload::session(&ctx, seq, n, msg.wall, &e, state)
                    });
                self.after_push(pushed);
            }
            EventKind::Reading(r) => {
                self.latest.apply(&r.measurement, msg.wall, r.source.0);
                if self.connected {
                    if self.vitals_waiting {
                        self.vitals_coalesced += 1;
                    }
                    self.vitals_due = Some((seq, msg.wall));
                }
            }
            EventKind::Technical(_) | EventKind::Audio(_) => {}
        }
    }

    fn after_push(&mut self, pushed: Result<super::outbox::Pushed, JournalError>) {
        match pushed {
            Ok(p) => {
                for (class, stream_seq) in &p.evicted {
                    tracing::error!(
                        "MQTT outbox full (mqtt.outbox_max = {}): evicted an undelivered {class:?} message (stream_seq {stream_seq}); displays will see the gap",
                        self.cfg.outbox_max
                    );
                }
                if !p.evicted.is_empty() {
                    self.last_eviction = Some(Instant::now());
                    self.overflow.want = true;
                    self.report();
                }
            }
            Err(e) => self.storage_failure(&e),
        }
    }

    /// A write to the state directory failed: the outbox goes on in memory,
    /// `system.journal_failure` starts (once), and the journal is reopened
    /// every [`REOPEN_EVERY`] until it works.
    fn storage_failure(&mut self, e: &JournalError) {
        self.outbox.lose_journal();
        self.reopen_at
            .get_or_insert_with(|| Instant::now() + REOPEN_EVERY);
        if self.journal_health.failed() == Some(Change::Failed) {
            tracing::error!(
                "MQTT outbox journal failed: {e}; alarms still go out, but undelivered ones are held in memory only and would not survive a restart; retrying every {REOPEN_EVERY:?}: raising system.journal_failure"
            );
            // Messages numbered from now on may exist only in memory: should
            // vigil stop before the journal is back, the next run must not
            // continue this epoch (it would number over them). Removing a
            // file works on a full disk; the reopen writes it back.
            // On a read-only disk even that fails: the epoch is noted in
            // the runtime directory instead (see EpochMarks).
            let epoch_file = self.state_dir.join("epoch");
            if let Err(e) = std::fs::remove_file(&epoch_file) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    match self.seq.distrust() {
                        Ok(note) => tracing::warn!(
                            "cannot remove {} ({e}): noted in {} instead, so a restart in this boot starts a new epoch",
                            epoch_file.display(),
                            note.display()
                        ),
                        Err(why) => tracing::error!(
                            "cannot remove {} ({e}) nor note the epoch in the runtime directory ({why}): a restart before the journal is back may number over messages held in memory",
                            epoch_file.display()
                        ),
                    }
                }
            }
            self.storage.want = true;
            self.report();
        } else {
            tracing::debug!("MQTT outbox journal still failing: {e}");
        }
    }

    /// Writes what the outbox holds into a new journal (and the sequence
    /// reservation, if that was lost too). The condition ends after
    /// [`RECOVERY_HOLD`] without another failure.
    fn reopen_journal(&mut self, now: Instant) {
        self.reopen_at = None;
        let dir = self.state_dir.clone();
        // The journal first, then the epoch: a crash between the two starts
        // a new epoch, never one that misses messages.
        let result = self
            .outbox
            .reattach(&dir, !self.journal_read)
            .and_then(|()| self.seq.attach(&dir, self.last_seq + 1));
        match result {
            Ok(()) => {
                // Journaled again, everything the outbox holds included:
                // the epoch may be continued.
                self.seq.trust();
                if !self.journal_read {
                    tracing::warn!(
                        "the outbox journal that could not be read at start-up is kept as {}",
                        dir.join(super::journal::UNREAD_COPY).display()
                    );
                }
                self.journal_read = true;
                self.journal_health.synced(now);
                tracing::info!(
                    "MQTT outbox journal reopened in {}: {} undelivered message(s) written out; system.journal_failure ends after {RECOVERY_HOLD:?} without a failure",
                    dir.display(),
                    self.outbox.pending()
                );
            }
            Err(e) => self.storage_failure(&e),
        }
    }

    /// Starts a group commit: an fdatasync of everything appended so far,
    /// on a blocking thread (a slow disk never holds an alarm back). Its
    /// result comes back through `sync_rx`; messages appended meanwhile
    /// wait for the next one.
    fn start_sync(&mut self) {
        if let Some(job) = self.outbox.start_sync() {
            let tx = self.sync_tx.clone();
            tokio::task::spawn_blocking(move || {
                let _ = tx.send(job.run());
            });
        }
    }

    /// Hands the outbox's messages to the client (alarms and session
    /// events are appended, not yet synced: see [`Outbox::start_sync`]),
    /// then the latest vitals when the window has room.
    fn pump(&mut self) {
        while self.connected && self.queued.len() + self.in_flight.len() < WINDOW {
            let Some(m) = self.outbox.next_unsent() else {
                break;
            };
            let (id, topic, retain, body) = (m.id, m.topic.clone(), m.retain, m.payload.clone());
            let props = Props {
                correlation: self.correlations.get(&id).cloned(),
                ..Props::default()
            };
            match self
                .client
                .try_publish(topic, QoS::AtLeastOnce, retain, body, &props)
            {
                Ok(()) => self.queued.push_back(Some(id)),
                Err(e) => {
                    self.outbox.unsend(id);
                    if !matches!(e, SendError::Full) {
                        tracing::debug!("MQTT request queue: {e}");
                    }
                    break;
                }
            }
        }
        if self.snapshot_due {
            self.snapshot(true);
        }
        if self.limits_due {
            self.limits(true);
        }
        self.flush_vitals();
    }

    /// Publishes the latest vitals if due and the window has room; else
    /// they stay due and the readings meanwhile are counted as coalesced.
    fn flush_vitals(&mut self) {
        let Some((seq, wall)) = self.vitals_due else {
            return;
        };
        if !self.connected {
            return;
        }
        if self.queued.len() + self.in_flight.len() >= WINDOW {
            self.vitals_waiting = true;
            return;
        }
        let body = payload::vitals(&self.ctx(), seq, wall, &self.latest);
        let topic = self.topics.vitals.clone();
        // A retained vitals message older than this is dropped by the
        // broker, not painted by a display that connects late.
        let props = Props {
            expiry: Some(
                self.cfg
                    .vitals_expiry
                    .as_secs()
                    .clamp(1, u64::from(u32::MAX)) as u32,
            ),
            ..Props::default()
        };
        if self.publish_with(topic, QoS::AtMostOnce, true, body, &props) {
            self.vitals_due = None;
            self.vitals_waiting = false;
        } else {
            self.vitals_waiting = true;
        }
    }

    /// Queues a message the outbox does not track; whether it was queued
    /// (not while disconnected or with the window full).
    fn publish_untracked(&mut self, topic: String, qos: QoS, retain: bool, body: Vec<u8>) -> bool {
        self.publish_with(topic, qos, retain, body, &Props::default())
    }

    /// [`Publisher::publish_untracked`] with MQTT 5 properties.
    fn publish_with(
        &mut self,
        topic: String,
        qos: QoS,
        retain: bool,
        body: Vec<u8>,
        props: &Props,
    ) -> bool {
        if !self.connected || self.queued.len() + self.in_flight.len() >= WINDOW {
            return false;
        }
        let queued = self
            .client
            .try_publish(topic, qos, retain, body, props)
            .is_ok();
        if queued {
            self.queued.push_back(None);
        }
        queued
    }

    fn handle_net(&mut self, n: Net) {
        match n {
            Net::Up => {
                if self.ever_connected {
                    self.reconnects += 1;
                }
                self.ever_connected = true;
                self.connected = true;
                self.down_since = None;
                self.up_since = Some(Instant::now());
                self.unreachable.want = false;
                self.report();
                tracing::info!(
                    broker = %self.broker,
                    undelivered = self.outbox.pending(),
                    "MQTT connected"
                );
                if std::mem::take(&mut self.clear_retained_cmd) {
                    // Deletes a retained oversized command before the
                    // subscription would bring it back (the broker handles
                    // one client's packets in order).
                    let _ = self.client.try_publish(
                        self.topics.cmd.clone(),
                        QoS::AtLeastOnce,
                        true,
                        Vec::new(),
                        &Props::default(),
                    );
                    self.queued.push_back(None);
                }
                let _ = self
                    .client
                    .try_subscribe(self.topics.cmd.clone(), QoS::AtLeastOnce);
                self.heartbeat();
                self.snapshot(true);
                self.limits(true);
                if !self.latest.is_empty() {
                    self.vitals_due = Some((self.last_seq, self.vigil_now()));
                }
                self.pump();
            }
            Net::Sent(pkid) => {
                let entry = match self.collided.take() {
                    Some(e) => e,
                    None => self.queued.pop_front().flatten(),
                };
                if pkid != 0 {
                    self.in_flight.insert(pkid, entry);
                }
            }
            Net::Collision => {
                self.collided = Some(self.queued.pop_front().flatten());
            }
            Net::PubAck(pkid) => {
                if let Some(Some(id)) = self.in_flight.remove(&pkid) {
                    self.correlations.remove(&id);
                    if let Err(e) = self.outbox.delivered(id) {
                        self.storage_failure(&e);
                    }
                }
                self.pump();
            }
            Net::Refused(pkid, reason) => {
                // Sending it again would be refused again, and holding it
                // would block what follows: it leaves the outbox, counted,
                // and the nurses are told the displays miss alarms.
                let topic = match self.in_flight.remove(&pkid) {
                    Some(Some(id)) => {
                        self.correlations.remove(&id);
                        let topic = self.outbox.topic_of(id).unwrap_or_default();
                        if let Err(e) = self.outbox.delivered(id) {
                            self.storage_failure(&e);
                        }
                        self.refused += 1;
                        topic
                    }
                    _ => String::new(),
                };
                if self.last_refusal.is_none() {
                    tracing::error!(
                        "MQTT broker {} refuses vigil's messages ({reason}{}): the displays do not get them; check the broker's ACL for vigil's user (it must write {}#): raising system.broker_refused",
                        self.broker,
                        if topic.is_empty() { String::new() } else { format!(" on {topic}") },
                        self.topics.prefix
                    );
                } else {
                    tracing::debug!("MQTT broker refused a message: {reason} {topic}");
                }
                self.last_refusal = Some(Instant::now());
                self.refusal.want = true;
                self.report();
                self.pump();
            }
            Net::Message(m) => {
                // An empty message is how a retained command is deleted.
                if m.topic == self.topics.cmd && !m.payload.is_empty() {
                    self.command(m);
                }
            }
            Net::Oversized(size) => {
                self.commands_rejected += 1;
                self.commands_oversized += 1;
                self.clear_retained_cmd = true;
                tracing::error!(
                    "MQTT broker {} sent a {size}-byte packet, over vigil's {LINK_MAX_PACKET}-byte limit (probably a huge message on {}): reconnecting with a clean session to drop it; set max_packet_size on the broker (config/mosquitto/mosquitto.conf)",
                    self.broker,
                    self.topics.cmd
                );
            }
            Net::Down(error, ack) => {
                if self.connected {
                    tracing::warn!(broker = %self.broker, "MQTT connection lost: {error}");
                }
                if let Some(up) = self.up_since.take() {
                    let now = Instant::now();
                    if now - up < LOOP_CLEARS_AFTER {
                        self.quick_drops.push_back(now);
                    }
                    while self
                        .quick_drops
                        .front()
                        .is_some_and(|t| now - *t > LOOP_WINDOW)
                    {
                        self.quick_drops.pop_front();
                    }
                    if self.quick_drops.len() >= LOOP_DROPS && !self.unstable.want {
                        tracing::error!(
                            "MQTT broker {}: the connection broke {} times within {LOOP_WINDOW:?}, each soon after it came up (a reconnect loop: another client with the same mqtt.client_id, an ACL or packet size refusal): raising system.broker_link_unstable",
                            self.broker,
                            self.quick_drops.len()
                        );
                        self.unstable.want = true;
                        self.report();
                    }
                }
                self.connected = false;
                self.queued.clear();
                self.in_flight.clear();
                self.collided = None;
                self.outbox.rewind();
                self.down_since.get_or_insert_with(Instant::now);
                let _ = ack.send(());
            }
        }
    }

    /// Where the result of a command goes: its MQTT 5 response topic when
    /// it names one this bed answers on (`cmd/result` or below it), else
    /// `cmd/result`; an unusable response topic or correlation data is the
    /// reason to reject the command.
    fn reply_to(&self, m: &wire::Message) -> (Reply, Result<(), String>) {
        let mut reply = Reply {
            topic: None,
            correlation: m.correlation.clone(),
        };
        if m.correlation
            .as_ref()
            .is_some_and(|c| c.len() > CORRELATION_MAX)
        {
            reply.correlation = None;
            return (
                reply,
                Err(format!(
                    "correlation data over {CORRELATION_MAX} bytes: the command is not carried out"
                )),
            );
        }
        let Some(topic) = &m.response_topic else {
            return (reply, Ok(()));
        };
        let base = &self.topics.cmd_result;
        let below = topic
            .strip_prefix(base.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        let clean = topic.len() <= RESPONSE_TOPIC_MAX
            && !topic.contains(['+', '#', '\0'])
            && !topic.contains("//")
            && !topic.ends_with('/');
        if below && clean {
            reply.topic = Some(topic.clone());
            (reply, Ok(()))
        } else {
            (
                reply,
                Err(format!(
                    "response topic `{}` is not allowed: it must be {base} or a topic below it (at most {RESPONSE_TOPIC_MAX} bytes, no wildcards); the command is not carried out",
                    topic.escape_debug()
                )),
            )
        }
    }

    fn command(&mut self, m: wire::Message) {
        let (reply, route) = self.reply_to(&m);
        let body = &m.payload;
        if body.len() > COMMAND_MAX_BYTES {
            self.commands_rejected += 1;
            self.commands_oversized += 1;
            let reason = format!(
                "command of {} bytes exceeds the {COMMAND_MAX_BYTES}-byte limit: not read",
                body.len()
            );
            self.warn_rejected(None, &reason);
            self.result(&reply, None, None, Err(&reason));
            return;
        }
        let parsed = command::parse(
            body,
            SystemTime::now(),
            self.cfg.command_max_age,
            &self.names,
        );
        match (parsed, route) {
            (Err(r), _) => {
                self.commands_rejected += 1;
                let reason = r.reason.to_string();
                self.warn_rejected(r.id.as_deref(), &reason);
                self.result(&reply, r.id.as_deref(), r.command.as_deref(), Err(&reason));
            }
            (Ok(p), Err(reason)) => {
                self.commands_rejected += 1;
                self.warn_rejected(Some(&p.id), &reason);
                self.result(&reply, Some(&p.id), Some(p.command.key()), Err(&reason));
            }
            (Ok(p), Ok(())) => {
                let key = p.command.key();
                let (tx, rx) = oneshot::channel();
                match self.commands.try_send((p.command, tx)) {
                    Ok(()) => {
                        let verdicts = self.verdict_tx.clone();
                        let id = p.id;
                        tokio::spawn(async move {
                            let verdict = match tokio::time::timeout(VERDICT_TIMEOUT, rx).await {
                                Ok(Ok(r)) => r.map_err(|e| e.to_string()),
                                Ok(Err(_)) => Err("vigil is shutting down".to_owned()),
                                Err(_) => {
                                    Err("no verdict from the engine within 5 s; send it again"
                                        .to_owned())
                                }
                            };
                            let _ = verdicts.send((reply, id, key, verdict));
                        });
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => self.result(
                        &reply,
                        Some(&p.id),
                        Some(key),
                        Err("vigil is busy (command queue full); send it again"),
                    ),
                    Err(mpsc::error::TrySendError::Closed(_)) => self.result(
                        &reply,
                        Some(&p.id),
                        Some(key),
                        Err("vigil is shutting down"),
                    ),
                }
            }
        }
    }

    /// Logs a rejected command, rate-limited.
    fn warn_rejected(&mut self, id: Option<&str>, reason: &str) {
        if let Some(n) = self.reject_log.allow(Instant::now()) {
            tracing::warn!(request = ?id, "display command rejected: {reason}{}", suppressed_note(n));
        }
    }

    /// Queues a result on `cmd/result` or the command's response topic,
    /// with its correlation data (kept until acknowledged, in memory).
    fn result(
        &mut self,
        reply: &Reply,
        id: Option<&str>,
        command: Option<&str>,
        verdict: Result<(), &str>,
    ) {
        let body = payload::command_result(
            &self.ctx(),
            self.last_seq,
            self.vigil_now(),
            id,
            command,
            verdict,
        );
        let topic = reply
            .topic
            .clone()
            .unwrap_or_else(|| self.topics.cmd_result.clone());
        let pushed = self
            .outbox
            .push(Class::Result, Stream::None, false, topic, |_| body);
        if let (Ok(p), Some(c)) = (&pushed, &reply.correlation) {
            self.correlations.insert(p.id, c.clone());
        }
        self.after_push(pushed);
        self.pump();
        self.start_sync();
    }

    /// Publishes `alarms/active` when the driver's snapshot changed (or always).
    fn snapshot(&mut self, always: bool) {
        let Some(live) = &self.live else {
            return;
        };
        let state = live.borrow().clone();
        if !always && state.snapshot_version == self.snapshot_version {
            return;
        }
        if !self.connected {
            return;
        }
        let clock = self.clock;
        let seq = self.seq.base() + state.last_seq;
        let body = payload::active(&self.ctx(), seq, self.vigil_now(), &state, move |t| {
            clock.wall(t)
        });
        let topic = self.topics.active.clone();
        // Not published (the window is full): the retained snapshot would
        // stay stale until the next change, so it goes out once there is
        // room (see `pump`), after the alarms.
        self.snapshot_due = !self.publish_untracked(topic, QoS::AtLeastOnce, true, body);
        if !self.snapshot_due {
            self.snapshot_version = state.snapshot_version;
        }
    }

    /// Publishes `limits` (retained) when the driver's limits changed (a
    /// reload) or always (a connect): the limits in force, never journaled.
    fn limits(&mut self, always: bool) {
        let Some(live) = &self.live else {
            return;
        };
        let (rules, version, last) = {
            let state = live.borrow();
            (state.limits, state.limits_version, state.last_seq)
        };
        let Some(rules) = rules else {
            return;
        };
        if (!always && version == self.limits_version) || !self.connected {
            return;
        }
        let seq = self.seq.base() + last;
        let body = payload::limits(&self.ctx(), seq, self.vigil_now(), &rules);
        let topic = self.topics.limits.clone();
        self.limits_due = !self.publish_untracked(topic, QoS::AtLeastOnce, true, body);
        if !self.limits_due {
            self.limits_version = version;
        }
    }

    fn heartbeat(&mut self) {
        if !self.connected {
            return;
        }
        self.beat += 1;
        let state = self
            .live
            .as_ref()
            .map(|l| l.borrow().clone())
            .unwrap_or_default();
        let delivery = Delivery {
            pending: self.outbox.pending(),
            evicted: self.outbox.evicted_total(),
            max: self.cfg.outbox_max,
            durable: self.outbox.is_durable(),
            reconnects: self.reconnects,
            commands_rejected: self.commands_rejected,
            commands_oversized: self.commands_oversized,
            vitals_coalesced: self.vitals_coalesced,
            refused: self.refused,
        };
        let seq = self.last_seq.max(self.seq.base() + state.last_seq);
        let body = payload::heartbeat(
            &self.ctx(),
            seq,
            self.vigil_now(),
            self.beat,
            &state,
            delivery,
        );
        let topic = self.topics.status.clone();
        // A heartbeat that finds the window full is replaced by the next.
        let _ = self.publish_untracked(topic, QoS::AtLeastOnce, true, body);
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        if self.reopen_at.is_some_and(|t| now >= t) {
            self.reopen_journal(now);
        }
        if self.journal_health.poll(now) == Some(Change::Recovered) {
            tracing::info!(
                "MQTT outbox journal worked for {RECOVERY_HOLD:?}: system.journal_failure ends"
            );
            self.storage.want = false;
        }
        if let Some(since) = self.down_since {
            if since.elapsed() >= self.cfg.unreachable_after && !self.unreachable.want {
                tracing::error!(
                    "MQTT broker {} unreachable for more than {:?} (mqtt.unreachable_after): raising system.broker_unreachable",
                    self.broker,
                    self.cfg.unreachable_after
                );
                self.unreachable.want = true;
            }
        }
        if self.unstable.want
            && self
                .up_since
                .is_some_and(|t| t.elapsed() >= LOOP_CLEARS_AFTER)
        {
            tracing::info!(
                "MQTT link to {} stable for {LOOP_CLEARS_AFTER:?}: system.broker_link_unstable ends",
                self.broker
            );
            self.unstable.want = false;
            self.quick_drops.clear();
        }
        if self
            .last_eviction
            .is_some_and(|t| t.elapsed() > Duration::from_secs(60))
        {
            self.last_eviction = None;
            self.overflow.want = false;
        }
        if self
            .last_refusal
            .is_some_and(|t| t.elapsed() > REFUSAL_CLEARS_AFTER)
        {
            tracing::info!(
                "MQTT broker {} accepted vigil's messages for {REFUSAL_CLEARS_AFTER:?}: system.broker_refused ends",
                self.broker
            );
            self.last_refusal = None;
            self.refusal.want = false;
        }
        self.report();
        self.pump();
        self.start_sync();
    }

    /// Tells the driver about changed conditions (retried when its queue is full).
    fn report(&mut self) {
        for (cond, r) in [
            (SystemCondition::BrokerUnreachable, &mut self.unreachable),
            (SystemCondition::QueueOverflow, &mut self.overflow),
            (SystemCondition::JournalFailure, &mut self.storage),
            (SystemCondition::LinkUnstable, &mut self.unstable),
            (SystemCondition::BrokerRefused, &mut self.refusal),
        ] {
            if r.want != r.told && self.system.try_send((cond, r.want)).is_ok() {
                r.told = r.want;
            }
        }
        let c = &mut self.corrupt;
        if c.want
            && !c.told
            && self
                .system
                .try_send((SystemCondition::JournalCorrupt, true))
                .is_ok()
        {
            c.told = true;
        }
        if c.want
            && c.told
            && self
                .system
                .try_send((SystemCondition::JournalCorrupt, false))
                .is_ok()
        {
            c.want = false;
        }
    }

    /// Drains the outbox (bounded), says goodbye on `status`, disconnects.
    async fn shutdown(&mut self, net: &mut mpsc::Receiver<Net>) {
        let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
        // From here every PUBACK finds its message synced.
        if let Err(e) = self.outbox.sync() {
            self.storage_failure(&e);
        }
        self.pump();
        while self.connected && self.outbox.pending() > 0 {
            match tokio::time::timeout_at(deadline, net.recv()).await {
                Ok(Some(n)) => self.handle_net(n),
                _ => break,
            }
        }
        if self.outbox.pending() > 0 {
            tracing::warn!(
                "{} alarm/session message(s) not yet delivered: kept in the journal for the next start",
                self.outbox.pending()
            );
        }
        if self.connected {
            let body = payload::offline(&self.ctx(), self.last_seq, self.vigil_now(), "shutdown");
            let _ = self.client.try_publish(
                self.topics.status.clone(),
                QoS::AtLeastOnce,
                true,
                body,
                &Props::default(),
            );
            let _ = self.client.try_disconnect();
            let until = tokio::time::Instant::now() + Duration::from_secs(1);
            while let Ok(Some(n)) = tokio::time::timeout_at(until, net.recv()).await {
                if let Net::Down(_, ack) = n {
                    let _ = ack.send(());
                    break;
                }
            }
        }
        if self.outbox.pending() == 0 {
            let _ = self.outbox.compact();
        }
        if let Err(e) = self.outbox.close() {
            tracing::warn!("MQTT outbox journal: {e}");
        }
    }
}
