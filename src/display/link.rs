//! The displays' MQTT link: subscribes to the beds' topics, feeds every
//! message into the shared [`Board`], reports the connection state, and
//! publishes the displays' commands. Used by the web board and the terminal
//! view alike.
//!
//! The event loop is polled by a task of its own that never awaits the
//! client (rumqttc can deadlock when the polling task publishes): commands
//! are queued with `try_publish`. The broker is reached through the link
//! the daemon uses too ([`crate::mqtt::link`]: `mqtts://`, CA and client
//! certificates, credentials, the shared backoff); every failure marks the
//! board blind at once, with a sentence a nurse can read.
//!
//! MQTT 5 where the broker speaks it ([`LinkSettings::protocol`] `None`:
//! MQTT 5 first, 3.1.1 from the first refusal of it on): each command names
//! a response topic (`cmd/result/<client id>` under the bed's prefix) and
//! carries its request id as correlation data, and a result with
//! correlation data is matched by it. Results on `cmd/result` (a 3.1.1
//! daemon or display) are matched by the `id` in the payload, as before.
//!
//! Depends on [`super::feed`] and [`super::state`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use rumqttc::QoS;
use tokio::sync::watch;

use super::feed::{self, BedCommand, BedKey, Topics};
use super::state::Board;
use crate::mqtt::link as broker;
use crate::mqtt::wire::{self, Client, Happened, Props, Protocol};

/// Errors of the displays' MQTT link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The broker link is misconfigured (URL, credentials, TLS files).
    #[error(transparent)]
    Setup(#[from] broker::LinkError),
    /// The command could not be queued.
    #[error("the command could not be queued for the broker ({0}); try again")]
    Queue(String),
    /// A command for a bed this display does not show.
    #[error("bed {0} is not shown on this display")]
    UnknownBed(String),
    /// Acknowledge all, with nothing to acknowledge.
    #[error("bed {0} has no unacknowledged alarm")]
    NothingToAcknowledge(String),
    /// A bad command argument.
    #[error(transparent)]
    Feed(#[from] feed::FeedError),
}

/// How to reach the broker and what to watch.
#[derive(Clone, Debug)]
pub struct LinkSettings {
    /// The broker, credentials and TLS files (shared with the daemon).
    pub link: broker::LinkConfig,
    /// MQTT client id (also the prefix of command request ids).
    pub client_id: String,
    /// Keep a persistent session on the broker (only with a stable
    /// `client_id`, one the operator chose): alarm events published while
    /// this display is away are queued for it and replayed when it is back,
    /// instead of leaving a gap in its feed.
    pub persistent: bool,
    /// Topic layout.
    pub topics: Topics,
    /// The beds to show; empty: every bed the broker has.
    pub beds: Vec<BedKey>,
    /// The MQTT version; None: MQTT 5, or 3.1.1 when the broker refuses it.
    pub protocol: Option<Protocol>,
}

/// The board, the client and change notifications, shared by the tasks.
pub struct Shared {
    board: Mutex<Board>,
    changed: watch::Sender<u64>,
    client: Mutex<Client>,
    topics: Topics,
    client_id: String,
    next_id: AtomicU64,
    fixed_beds: bool,
}

impl Shared {
    /// The board (poisoning is ignored: the board stays usable).
    pub fn board(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver that wakes on every change of the board.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Publishes an acknowledgement of `alarm` on `bed` by `by` and returns
    /// the request id; the result arrives on the board.
    pub fn acknowledge(&self, bed: &BedKey, alarm: &str, by: &str) -> Result<String, LinkError> {
        let by = feed::check_by(by)?;
        self.send(bed, &format!("acknowledge {alarm} by {by}"), |id, now| {
            feed::acknowledge(id, alarm, &by, now)
        })
    }

    /// Acknowledges every alarm of a bed with one `acknowledge_all`
    /// command (vigil acknowledges each present, unacknowledged alarm and
    /// answers once); refused here when the board shows none to acknowledge.
    pub fn acknowledge_all(&self, bed: &BedKey, by: &str) -> Result<String, LinkError> {
        let by = feed::check_by(by)?;
        let open = self
            .board()
            .view(SystemTime::now())
            .beds
            .into_iter()
            .filter(|b| b.key == bed.to_string())
            .flat_map(|b| b.alarms)
            .any(|a| !a.acknowledged);
        if !open {
            return Err(LinkError::NothingToAcknowledge(bed.to_string()));
        }
        self.send(bed, &format!("acknowledge all by {by}"), |id, now| {
            feed::acknowledge_all(id, &by, now)
        })
    }

    /// Sends a session or audio command for a bed; `by` (name or initials)
    /// is shown with it on the board.
    pub fn command(&self, bed: &BedKey, cmd: BedCommand, by: &str) -> Result<String, LinkError> {
        let by = feed::check_by(by)?;
        let cmd = cmd.checked()?;
        self.send(bed, &format!("{} by {by}", cmd.describe()), |id, now| {
            cmd.payload(id, now)
        })
    }

    /// Publishes one command on the bed's `cmd` topic and records it for
    /// its result.
    fn send(
        &self,
        bed: &BedKey,
        what: &str,
        body: impl FnOnce(&str, SystemTime) -> Vec<u8>,
    ) -> Result<String, LinkError> {
        if self.fixed_beds && !self.board().beds().any(|b| b == bed) {
            return Err(LinkError::UnknownBed(bed.to_string()));
        }
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", self.client_id);
        let now = SystemTime::now();
        let props = Props {
            response_topic: Some(self.topics.reply(bed, &self.client_id)),
            correlation: Some(id.clone().into_bytes()),
            ..Props::default()
        };
        self.client()
            .try_publish(
                self.topics.cmd(bed),
                QoS::AtLeastOnce,
                false,
                body(&id, now),
                &props,
            )
            .map_err(|e| LinkError::Queue(e.to_string()))?;
        self.board().command_sent(bed, &id, what, now);
        self.notify();
        Ok(id)
    }
}

impl Shared {
    /// The client (poisoning is ignored).
    fn client(&self) -> Client {
        self.client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The MQTT version of the link now.
    pub fn protocol(&self) -> Protocol {
        self.client().protocol()
    }

    /// Takes a cleanly stopped bed off the board.
    pub fn remove_bed(&self, bed: &BedKey) -> Result<(), &'static str> {
        let r = self.board().remove(bed);
        self.notify();
        r
    }
}

fn session() -> wire::Session {
    wire::Session {
        persistent: false,
        inflight: 100,
        request_queue: 64,
        max_packet: 1 << 20,
        will: None,
    }
}

/// Connects (in the background) and returns the shared state; the returned
/// task runs until the runtime stops.
pub fn spawn(
    settings: LinkSettings,
    board: Board,
) -> Result<(Arc<Shared>, tokio::task::JoinHandle<()>), LinkError> {
    let session = wire::Session {
        persistent: settings.persistent,
        ..session()
    };
    let mut protocol = settings.protocol.unwrap_or(Protocol::V5);
    let (client, mut eventloop) =
        wire::connect(&settings.link, &settings.client_id, protocol, &session)?;
    let (changed, _) = watch::channel(0);
    let shared = Arc::new(Shared {
        board: Mutex::new(board),
        changed,
        client: Mutex::new(client),
        topics: settings.topics.clone(),
        client_id: settings.client_id.clone(),
        next_id: AtomicU64::new(1),
        fixed_beds: !settings.beds.is_empty(),
    });
    let filters: Vec<String> = if settings.beds.is_empty() {
        vec![settings.topics.filter(None)]
    } else {
        settings
            .beds
            .iter()
            .map(|b| settings.topics.filter(Some(b)))
            .collect()
    };
    let task_shared = Arc::clone(&shared);
    let task = tokio::spawn(async move {
        let shared = task_shared;
        let mut backoff = broker::Backoff::default();
        let mut reported = false;
        // Whether this protocol version ever got a CONNACK (then a refusal
        // is not about the version).
        let mut spoken = false;
        let url = settings.link.url.clone();
        loop {
            match eventloop.poll(&url).await {
                Ok(Happened::ConnAck) => {
                    backoff.reset();
                    spoken = true;
                    tracing::info!(
                        broker = %url,
                        protocol = %protocol,
                        "connected to the MQTT broker"
                    );
                    reported = false;
                    let client = shared.client();
                    for f in &filters {
                        if let Err(e) = client.try_subscribe(f.clone(), QoS::AtLeastOnce) {
                            tracing::warn!("cannot subscribe to {f}: {e}");
                        }
                    }
                    shared.board().link_up();
                    shared.notify();
                }
                Ok(Happened::Publish(p)) => {
                    let now = SystemTime::now();
                    if let Some(site) = shared.topics.bridge_site(&p.topic) {
                        shared
                            .board()
                            .bridge_notice(&site, &p.payload, p.retain, now);
                        shared.notify();
                        continue;
                    }
                    let Some((bed, kind)) = shared.topics.parse(&p.topic) else {
                        continue;
                    };
                    if shared.fixed_beds && !settings.beds.contains(&bed) {
                        continue;
                    }
                    match feed::parse(&p.topic, kind, &p.payload) {
                        Ok((env, mut msg)) => {
                            // A result is matched by its correlation data
                            // when it has some (MQTT 5).
                            if let (feed::Message::Result(r), Some(c)) = (&mut msg, &p.correlation)
                            {
                                if let Ok(id) = std::str::from_utf8(c) {
                                    r.id = Some(id.to_owned());
                                }
                            }
                            shared.board().apply(&bed, &env, msg, p.retain, now);
                            shared.notify();
                        }
                        Err(e) => tracing::warn!("{e}"),
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if settings.protocol.is_none()
                        && protocol == Protocol::V5
                        && !spoken
                        && e.wrong_protocol
                    {
                        tracing::info!(
                            broker = %url,
                            "the MQTT broker does not speak MQTT 5 ({}): using MQTT 3.1.1",
                            e.detail
                        );
                        protocol = Protocol::V311;
                        match wire::connect(&settings.link, &settings.client_id, protocol, &session)
                        {
                            Ok((client, el)) => {
                                *shared.client.lock().unwrap_or_else(|e| e.into_inner()) = client;
                                eventloop = el;
                                continue;
                            }
                            Err(err) => tracing::warn!("cannot set up MQTT 3.1.1: {err}"),
                        }
                    }
                    // The board shows the sentence; the log keeps the detail.
                    if !reported {
                        tracing::warn!(
                            broker = %url,
                            "MQTT broker unreachable: {}; check --broker and that the broker runs (retrying)",
                            e.detail
                        );
                        reported = true;
                    }
                    shared.board().link_down(SystemTime::now(), &e.explained);
                    shared.notify();
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    });
    Ok((shared, task))
}
