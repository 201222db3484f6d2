//! The displays' MQTT link: subscribes to the beds' topics, feeds every
//! message into the shared [`Board`], reports the connection state, and
//! publishes the displays' commands. Used by the web board and the terminal
//! view alike.
//!
//! The event loop is polled by a task of its own that never awaits the
//! client (rumqttc can deadlock when the polling task publishes): commands
//! are queued with `try_publish`. A lost connection is retried with a
//! backoff doubling from 100 ms to 5 s, and every failure marks the board
//! blind at once.
//!
//! Depends on [`super::feed`] and [`super::state`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::watch;

use super::feed::{self, BedKey, Topics};
use super::state::Board;

/// Errors of the MQTT link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The broker address does not parse.
    #[error("broker {0:?} is not HOST:PORT or mqtt://HOST:PORT (e.g. 127.0.0.1:1883)")]
    Broker(String),
    /// The credentials file cannot be read.
    #[error("cannot read MQTT credentials from {path} (--mqtt-credentials-file): {source}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The credentials file lacks the username line.
    #[error("{0} (--mqtt-credentials-file) must hold the username on its first line and the password on its second")]
    CredentialsFormat(PathBuf),
    /// The command could not be queued.
    #[error("the command could not be queued for the broker ({0}); try again")]
    Queue(String),
    /// A command for a bed this display does not show.
    #[error("bed {0} is not shown on this display")]
    UnknownBed(String),
    /// A bad command argument.
    #[error(transparent)]
    Feed(#[from] feed::FeedError),
}

/// How to reach the broker and what to watch.
#[derive(Clone, Debug)]
pub struct LinkSettings {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// MQTT client id (also the prefix of command request ids).
    pub client_id: String,
    /// Username and password.
    pub credentials: Option<(String, String)>,
    /// Topic layout.
    pub topics: Topics,
    /// The beds to show; empty: every bed the broker has.
    pub beds: Vec<BedKey>,
}

/// Parses `HOST:PORT` or `mqtt://HOST:PORT` (port 1883 when absent).
pub fn parse_broker(s: &str) -> Result<(String, u16), LinkError> {
    let rest = s
        .strip_prefix("mqtt://")
        .or_else(|| s.strip_prefix("tcp://"))
        .unwrap_or(s);
    let rest = rest.trim_end_matches('/');
    let bad = || LinkError::Broker(s.to_owned());
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => (h, p.parse::<u16>().map_err(|_| bad())?),
        _ => (rest, 1883),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('/') {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// Reads a credentials file: username on the first line, password on the second.
pub fn read_credentials(path: &Path) -> Result<(String, String), LinkError> {
    let text = std::fs::read_to_string(path).map_err(|source| LinkError::Credentials {
        path: path.to_owned(),
        source,
    })?;
    let mut lines = text.lines();
    let user = lines
        .next()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| LinkError::CredentialsFormat(path.to_owned()))?;
    Ok((user.to_owned(), lines.next().unwrap_or("").to_owned()))
}

/// The board, the client and change notifications, shared by the tasks.
pub struct Shared {
    board: Mutex<Board>,
    changed: watch::Sender<u64>,
    client: AsyncClient,
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
        if self.fixed_beds && !self.board().beds().any(|b| b == bed) {
            return Err(LinkError::UnknownBed(bed.to_string()));
        }
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", self.client_id);
        let now = SystemTime::now();
        let body = feed::acknowledge(&id, alarm, &by, now);
        self.client
            .try_publish(self.topics.cmd(bed), QoS::AtLeastOnce, false, body)
            .map_err(|e| LinkError::Queue(e.to_string()))?;
        self.board()
            .command_sent(bed, &id, &format!("acknowledge {alarm} by {by}"), now);
        self.notify();
        Ok(id)
    }
}

/// Connects (in the background) and returns the shared state; the returned
/// task runs until the runtime stops.
pub fn spawn(settings: LinkSettings, board: Board) -> (Arc<Shared>, tokio::task::JoinHandle<()>) {
    let mut opts = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_clean_session(true);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    if let Some((u, p)) = &settings.credentials {
        opts.set_credentials(u, p);
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let (changed, _) = watch::channel(0);
    let shared = Arc::new(Shared {
        board: Mutex::new(board),
        changed,
        client,
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
        let mut backoff = Duration::from_millis(100);
        let mut reported = false;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = Duration::from_millis(100);
                    tracing::info!(
                        broker = %format!("{}:{}", settings.host, settings.port),
                        "connected to the MQTT broker"
                    );
                    reported = false;
                    for f in &filters {
                        if let Err(e) = shared.client.try_subscribe(f.clone(), QoS::AtLeastOnce) {
                            tracing::warn!("cannot subscribe to {f}: {e}");
                        }
                    }
                    shared.board().link_up();
                    shared.notify();
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
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
                        Ok((env, msg)) => {
                            shared.board().apply(&bed, &env, msg, p.retain, now);
                            shared.notify();
                        }
                        Err(e) => tracing::warn!("{e}"),
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let why = e.to_string();
                    if !reported {
                        tracing::warn!(
                            broker = %format!("{}:{}", settings.host, settings.port),
                            "MQTT broker unreachable: {why}; check --broker and that the broker runs (retrying)"
                        );
                        reported = true;
                    }
                    shared.board().link_down(SystemTime::now(), &why);
                    shared.notify();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
    (shared, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses_parse() {
        assert_eq!(
            parse_broker("127.0.0.1:1884").unwrap(),
            ("127.0.0.1".into(), 1884)
        );
        assert_eq!(
            parse_broker("mqtt://broker.local").unwrap(),
            ("broker.local".into(), 1883)
        );
        assert_eq!(parse_broker("[::1]:1883").unwrap(), ("::1".into(), 1883));
        assert!(parse_broker("host:port").is_err());
        assert!(parse_broker("").is_err());
    }
}
