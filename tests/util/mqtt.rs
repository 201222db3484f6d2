//! MQTT test helpers: real Mosquitto processes on free loopback ports
//! (killed and restarted by the tests), a gate that holds the daemon off a
//! restarted broker until the test's subscriber is back, a rumqttc
//! subscriber, and JSON Schema checks against `schemas/`.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

/// The Mosquitto binary; the tests FAIL (not skip) without it.
pub fn mosquitto_binary() -> PathBuf {
    let sbin = Path::new("/usr/sbin/mosquitto");
    if sbin.exists() {
        return sbin.to_owned();
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("mosquitto");
            if p.exists() {
                return p;
            }
        }
    }
    panic!("mosquitto is not installed: apt-get install mosquitto (scripts/test does it)");
}

/// A Mosquitto process with its configuration in a temp dir.
pub struct Mosquitto {
    pub port: u16,
    conf: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// Starts Mosquitto on a free loopback port; `extra` is appended to the
    /// configuration (ACL, passwords). No persistence: a restart forgets
    /// every session and retained message, the worst case for delivery.
    pub fn start(dir: &Path, extra: &str) -> Mosquitto {
        Self::start_on(dir, free_port(), extra)
    }

    /// Like [`Mosquitto::start`], on a given port.
    pub fn start_on(dir: &Path, port: u16, extra: &str) -> Mosquitto {
        let config = format!(
            "listener {port} 127.0.0.1\nset_tcp_nodelay true\npersistence false\nuser root\nlog_dest none\n{}\n",
            if extra.is_empty() {
                "allow_anonymous true"
            } else {
                extra
            }
        );
        Self::start_with(dir, port, &format!("mosquitto-{port}"), &config)
    }

    /// Starts Mosquitto with `config` as its whole configuration (which must
    /// listen on `port`), written to `dir`.
    pub fn start_with(dir: &Path, port: u16, name: &str, config: &str) -> Mosquitto {
        let conf = dir.join(format!("{name}.conf"));
        std::fs::write(&conf, config).expect("write mosquitto.conf");
        let mut m = Mosquitto {
            port,
            conf,
            child: None,
        };
        m.restart();
        m
    }

    /// Starts (again) on the same port and waits until it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: no goodbye, no saving.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP forwarder in front of the broker for the daemon. Closed, it drops
/// every connection; open, it forwards. Lets a test bring its subscriber
/// back onto a restarted broker before the daemon reconnects (a broker
/// without persistence only forwards to subscribers it knows).
pub struct Gate {
    pub port: u16,
    /// Connections accepted so far (forwarded or dropped).
    pub accepted: Arc<std::sync::atomic::AtomicU64>,
    open: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

impl Gate {
    pub async fn start(upstream: u16) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let (cut, cut_rx) = watch::channel(0u64);
        let is_open = open.clone();
        let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                if !is_open.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut_rx = cut_rx.clone();
                cut_rx.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Gate {
            port,
            accepted,
            open,
            cut,
        }
    }

    /// Drops every connection and refuses new ones.
    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// One received message.
#[derive(Clone, Debug)]
pub struct Msg {
    pub topic: String,
    pub retained: bool,
    pub json: Value,
}

/// After an event-loop error of a test client: false once the test has
/// dropped the receiver (the client stops), else true after a short pause
/// (rumqttc reconnects on the next poll).
async fn retry<M>(tx: &mpsc::UnboundedSender<M>) -> bool {
    if tx.is_closed() {
        return false;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    true
}

/// A rumqttc subscriber that resubscribes after every reconnect.
pub struct Subscriber {
    pub client: AsyncClient,
    pub rx: mpsc::UnboundedReceiver<Msg>,
    subscribed: watch::Receiver<u64>,
    /// Messages received but not yet asked for, in arrival order.
    backlog: std::collections::VecDeque<Msg>,
}

impl Subscriber {
    pub async fn connect(port: u16, id: &str, filter: &str) -> Subscriber {
        Self::connect_as(port, id, filter, None).await
    }

    pub async fn connect_as(
        port: u16,
        id: &str,
        filter: &str,
        credentials: Option<(&str, &str)>,
    ) -> Subscriber {
        Self::connect_with(port, id, filter, credentials, true).await
    }

    /// Like [`Subscriber::connect_as`]; `clean` false keeps a persistent
    /// session on the broker (messages are queued while it is away).
    pub async fn connect_with(
        port: u16,
        id: &str,
        filter: &str,
        credentials: Option<(&str, &str)>,
        clean: bool,
    ) -> Subscriber {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_clean_session(clean);
        if let Some((u, p)) = credentials {
            opts.set_credentials(u, p);
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let (sub_tx, subscribed) = watch::channel(0u64);
        let filter = filter.to_owned();
        let c = client.clone();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        let _ = c.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        sub_tx.send_modify(|n| *n += 1);
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let json = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        let msg = Msg {
                            topic: p.topic.clone(),
                            retained: p.retain,
                            json,
                        };
                        if tx.send(msg).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) if !retry(&tx).await => return,
                    Err(_) => {}
                }
            }
        });
        let mut s = Subscriber {
            client,
            rx,
            subscribed,
            backlog: Default::default(),
        };
        s.wait_subscribed(0).await;
        s
    }

    /// How many times the subscription was confirmed so far.
    pub fn subscriptions(&self) -> u64 {
        *self.subscribed.borrow()
    }

    /// Waits until the subscription count exceeds `seen`.
    pub async fn wait_subscribed(&mut self, seen: u64) {
        tokio::time::timeout(
            Duration::from_secs(10),
            self.subscribed.wait_for(|n| *n > seen),
        )
        .await
        .expect("subscribed within 10 s")
        .expect("subscriber running");
    }

    /// The first message (kept back or new) on a topic ending in `suffix`
    /// that satisfies `pred`; the others stay for later calls.
    pub async fn next(
        &mut self,
        suffix: &str,
        within: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Msg {
        if let Some(i) = self
            .backlog
            .iter()
            .position(|m| m.topic.ends_with(suffix) && pred(&m.json))
        {
            return self.backlog.remove(i).expect("index is valid");
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let m = recv_by(&mut self.rx, deadline, suffix, within).await;
            if m.topic.ends_with(suffix) && pred(&m.json) {
                return m;
            }
            self.backlog.push_back(m);
        }
    }

    /// The next heartbeat (or retained status) saying the daemon is online.
    pub async fn online(&mut self, within: Duration) -> Msg {
        self.next("/status", within, |j| j["state"] == "online")
            .await
    }

    /// Forgets what was kept back; returns every message arriving within `wait`.
    pub async fn drain(&mut self, wait: Duration) -> Vec<Msg> {
        self.backlog.clear();
        drain_for(&mut self.rx, wait).await
    }

    /// Publishes a JSON command as a display would.
    pub async fn publish(&self, topic: &str, payload: &Value) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_string())
            .await
            .expect("queue publish");
    }
}

/// The next message from a client's task, waiting for a topic ending in
/// `suffix` until `deadline` (`within` after the wait began).
async fn recv_by<T>(
    rx: &mut mpsc::UnboundedReceiver<T>,
    deadline: tokio::time::Instant,
    suffix: &str,
    within: Duration,
) -> T {
    tokio::time::timeout_at(deadline, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no message on …{suffix} within {within:?}"))
        .expect("client running")
}

/// Every message from a client's task arriving within `wait`.
async fn drain_for<T>(rx: &mut mpsc::UnboundedReceiver<T>, wait: Duration) -> Vec<T> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        out.push(m);
    }
    out
}

/// Collects alarm events on topics ending in `suffix` until every one of
/// `raised` (the daemon's own list: seq, id, phase) arrived or `within`
/// passed, and asserts [`once_in_order`] on them.
pub async fn assert_alarms_once_in_order(
    sub: &mut Subscriber,
    suffix: &str,
    raised: &[(u64, String, &'static str)],
    within: Duration,
) {
    assert_alarms_once(sub, suffix, raised, within, Order::Arrival).await;
}

/// What order [`assert_alarms_once`] asks of the events it receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// In arrival order (one broker keeps a topic's order).
    Arrival,
    /// In `stream_seq` order once placed by it, as a display places them:
    /// for a path that may reorder (a Mosquitto bridge after a reconnect).
    Stream,
}

/// [`assert_alarms_once_in_order`] with the order to check.
pub async fn assert_alarms_once(
    sub: &mut Subscriber,
    suffix: &str,
    raised: &[(u64, String, &'static str)],
    within: Duration,
    order: Order,
) -> InOrder {
    let mut got: Vec<Value> = Vec::new();
    let mut keys = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + within;
    while keys.len() < raised.len() && tokio::time::Instant::now() < deadline {
        let left = deadline - tokio::time::Instant::now();
        let m = sub.next(suffix, left, |_| true).await;
        keys.insert((m.json["epoch"].to_string(), m.json["seq"].as_u64()));
        got.push(m.json);
    }
    match check_once(&got, raised, order) {
        Ok(r) => {
            eprintln!(
                "{} alarm events raised, {} messages received ({} duplicates dropped by epoch and seq, {} arrived after a later one), epochs {:?}",
                raised.len(),
                got.len(),
                r.duplicates,
                r.reordered,
                r.epochs
            );
            r
        }
        Err(why) => panic!("alarm events not once in order ({order:?}): {why}"),
    }
}

/// What [`once_in_order`] found.
#[derive(Debug, PartialEq)]
pub struct InOrder {
    /// The stream epochs, in the order they appeared.
    pub epochs: Vec<String>,
    /// Messages dropped as repeats of one already received.
    pub duplicates: usize,
    /// Events that arrived after one with a higher `stream_seq` of their
    /// epoch (only [`Order::Stream`] accepts any).
    pub reordered: usize,
}

/// Checks alarm events as a display reads them: a message is named by its
/// stream epoch and `seq` (vigil delivers at least once, so a repeat is
/// dropped, but a repeat must be the same event); within an epoch `seq`
/// only rises and `stream_seq` counts up without a gap; a new epoch (a
/// restart with a new state directory) starts its own count, so a restart
/// is told from a gap. The events kept must be exactly `raised`.
pub fn once_in_order(
    received: &[Value],
    raised: &[(u64, String, &'static str)],
) -> Result<InOrder, String> {
    check_once(received, raised, Order::Arrival)
}

/// [`once_in_order`], or with [`Order::Stream`] after placing the events
/// of each epoch by `stream_seq` (counting those that came late).
pub fn check_once(
    received: &[Value],
    raised: &[(u64, String, &'static str)],
    order: Order,
) -> Result<InOrder, String> {
    let mut firsts: Vec<&Value> = Vec::new();
    let mut seen: std::collections::BTreeMap<(String, u64), &Value> = Default::default();
    let mut duplicates = 0;
    for j in received {
        let epoch = j["epoch"]
            .as_str()
            .ok_or_else(|| format!("an event without its epoch: {j}"))?
            .to_owned();
        let seq = j["seq"].as_u64().ok_or_else(|| format!("no seq: {j}"))?;
        match seen.get(&(epoch.clone(), seq)) {
            Some(first) => {
                if first["stream_seq"] != j["stream_seq"] || first["alarm"] != j["alarm"] {
                    return Err(format!(
                        "two different events under epoch {epoch} seq {seq}: {first} and {j}"
                    ));
                }
                duplicates += 1;
            }
            None => {
                seen.insert((epoch, seq), j);
                firsts.push(j);
            }
        }
    }
    let mut reordered = 0;
    let mut top: std::collections::BTreeMap<&str, u64> = Default::default();
    for j in &firsts {
        let epoch = j["epoch"].as_str().unwrap_or_default();
        let stream = j["stream_seq"].as_u64().unwrap_or(0);
        let t = top.entry(epoch).or_insert(stream);
        if stream < *t {
            reordered += 1;
        }
        *t = (*t).max(stream);
    }
    if order == Order::Stream {
        // Epochs in the order they first appeared, events by stream_seq.
        let mut rank: Vec<&str> = Vec::new();
        for j in &firsts {
            let e = j["epoch"].as_str().unwrap_or_default();
            if !rank.contains(&e) {
                rank.push(e);
            }
        }
        firsts.sort_by_key(|j| {
            let e = j["epoch"].as_str().unwrap_or_default();
            (
                rank.iter().position(|r| *r == e),
                j["stream_seq"].as_u64().unwrap_or(0),
            )
        });
    }
    let mut epochs: Vec<String> = Vec::new();
    let mut last: Option<(u64, u64)> = None;
    for j in &firsts {
        let epoch = j["epoch"].as_str().unwrap_or_default();
        let (seq, stream) = (
            j["seq"].as_u64().unwrap_or(0),
            j["stream_seq"]
                .as_u64()
                .ok_or_else(|| format!("no stream_seq: {j}"))?,
        );
        if epochs.last().map(String::as_str) != Some(epoch) {
            if epochs.iter().any(|e| e == epoch) {
                return Err(format!("epoch {epoch} came back after another: {j}"));
            }
            epochs.push(epoch.to_owned());
        } else if let Some((s, n)) = last {
            if seq <= s {
                return Err(format!(
                    "seq {seq} after {s} in epoch {epoch}: out of order"
                ));
            }
            if stream != n + 1 {
                return Err(format!(
                    "stream_seq {stream} after {n} in epoch {epoch}: {} event(s) missing",
                    stream.saturating_sub(n + 1)
                ));
            }
        }
        last = Some((seq, stream));
    }
    let kept: Vec<(u64, String, String)> = firsts
        .iter()
        .map(|j| {
            (
                j["seq"].as_u64().unwrap_or(0),
                j["alarm"]["id"].as_str().unwrap_or("").to_owned(),
                j["alarm"]["phase"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let want: Vec<(u64, String, String)> = raised
        .iter()
        .map(|(s, id, p)| (*s, id.clone(), (*p).to_owned()))
        .collect();
    if kept != want {
        let extra: Vec<_> = kept.iter().filter(|k| !want.contains(k)).collect();
        let missing: Vec<_> = want.iter().filter(|k| !kept.contains(k)).collect();
        return Err(format!(
            "received events differ from those raised: missing {missing:?}, not raised {extra:?}"
        ));
    }
    Ok(InOrder {
        epochs,
        duplicates,
        reordered,
    })
}

#[test]
fn a_restart_is_told_from_a_gap() {
    let ev = |epoch: &str, seq: u64, stream: u64| {
        serde_json::json!({"epoch": epoch, "seq": seq, "stream_seq": stream,
            "alarm": {"id": "spo2.low", "phase": if stream % 2 == 1 { "start" } else { "end" }}})
    };
    let raised = |list: &[(u64, u64)]| -> Vec<(u64, String, &'static str)> {
        list.iter()
            .map(|(seq, stream)| {
                (
                    *seq,
                    "spo2.low".to_owned(),
                    if stream % 2 == 1 { "start" } else { "end" },
                )
            })
            .collect()
    };
    // A restart under a new epoch: seq and stream_seq start again; a repeat
    // (at least once) is dropped.
    let got = [
        ev("a", 10, 1),
        ev("a", 12, 2),
        ev("a", 12, 2),
        ev("b", 3, 1),
        ev("b", 4, 2),
    ];
    let r = once_in_order(&got, &raised(&[(10, 1), (12, 2), (3, 1), (4, 2)])).unwrap();
    assert_eq!(
        r,
        InOrder {
            epochs: vec!["a".into(), "b".into()],
            duplicates: 1,
            reordered: 0,
        }
    );
    // Reordered on the way (a bridge after a reconnect): refused in arrival
    // order, accepted and counted in stream order; a gap is a gap in both.
    let got = [
        ev("a", 10, 1),
        ev("a", 14, 4),
        ev("a", 12, 2),
        ev("a", 13, 3),
    ];
    let want = raised(&[(10, 1), (12, 2), (13, 3), (14, 4)]);
    assert!(once_in_order(&got, &want).is_err());
    let r = check_once(&got, &want, Order::Stream).unwrap();
    assert_eq!(r.reordered, 2);
    let got = [ev("a", 10, 1), ev("a", 14, 4), ev("a", 13, 3)];
    let err = check_once(&got, &raised(&[(10, 1), (13, 3), (14, 4)]), Order::Stream).unwrap_err();
    assert!(err.contains("1 event(s) missing"), "{err}");
    // The same numbers under one epoch: out of order, not a restart.
    let got = [ev("a", 10, 1), ev("a", 12, 2), ev("a", 3, 1)];
    let err = once_in_order(&got, &raised(&[(10, 1), (12, 2), (3, 1)])).unwrap_err();
    assert!(err.contains("out of order"), "{err}");
    // A gap within an epoch.
    let got = [ev("a", 10, 1), ev("a", 13, 3)];
    let err = once_in_order(&got, &raised(&[(10, 1), (13, 3)])).unwrap_err();
    assert!(err.contains("1 event(s) missing"), "{err}");
    // Two different events under one epoch and seq are not a repeat.
    let got = [ev("a", 10, 1), ev("a", 10, 2)];
    let err = once_in_order(&got, &raised(&[(10, 1)])).unwrap_err();
    assert!(err.contains("two different events"), "{err}");
    // An event without its epoch cannot be placed.
    let err = once_in_order(&[serde_json::json!({"seq": 1})], &[]).unwrap_err();
    assert!(err.contains("without its epoch"), "{err}");
}

/// The payload's schema from `schemas/`, compiled with format checks on.
pub fn schema(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(format!("{name}.schema.json"));
    let text = std::fs::read_to_string(&path).expect("read schema");
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{name}: invalid schema: {e}"))
}

/// Panics with every violation when `value` does not match the schema.
pub fn assert_valid(name: &str, value: &Value) {
    let v = schema(name);
    let errors: Vec<String> = v.iter_errors(value).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{name}: {value}\nviolates its schema:\n{}",
        errors.join("\n")
    );
}

/// RFC 3339 UTC now with milliseconds, as displays stamp commands.
pub fn now_rfc3339() -> String {
    vigil::time::rfc3339(std::time::SystemTime::now())
}

/// The daemon in-process with the MQTT sink and a collecting sink.
pub struct MqttDaemon {
    pub events: mpsc::UnboundedReceiver<vigil::io::sink::SinkMsg>,
    pub source_names: Vec<String>,
    daemon: vigil::daemon::Daemon,
}

/// Starts the daemon (`vigil::daemon::start`) with MQTT publishing as
/// configured, no recording and no log sink.
pub fn start_with_mqtt(config: vigil::config::Config) -> MqttDaemon {
    use vigil::daemon::{Options, Recording};
    let (collect, events) = vigil::io::sink::collecting(4096);
    let source_names = config.engine.source_names.clone();
    let options = Options {
        status_every: Duration::from_secs(3600),
        log: false,
        sinks: vec![collect],
        recording: Recording::Off,
        ..Options::default()
    };
    let daemon = vigil::daemon::start(config, options).expect("start the daemon with MQTT");
    MqttDaemon {
        events,
        source_names,
        daemon,
    }
}

impl MqttDaemon {
    /// Every alarm event emitted so far (engine seq, id, phase), without waiting.
    pub fn alarms_so_far(&mut self) -> Vec<(u64, String, &'static str)> {
        let mut out = Vec::new();
        while let Ok(m) = self.events.try_recv() {
            if let vigil::engine::EventKind::Alarm(a) = m.event.kind {
                out.push((m.event.seq, a.id.key(&self.source_names), a.phase.key()));
            }
        }
        out
    }

    /// Stops the daemon (flushing the MQTT sink).
    pub async fn stop(self) {
        tokio::time::timeout(Duration::from_secs(15), self.daemon.stop())
            .await
            .expect("daemon stops within 15 s")
            .expect("daemon result");
    }
}

/// A daemon configuration: one vigil-line source on `tty`, MQTT to `port`
/// with a 300 ms heartbeat.
pub fn daemon_config(tty: &Path, port: u16, state: &Path, bed: &str, extra: &str) -> String {
    super::config::line_daemon(
        &format!("serial = \"{}\"", tty.display()),
        port,
        state,
        "test-clinic",
        bed,
        &format!("heartbeat = \"300ms\"\n{extra}"),
    )
}

/// Makes a throwaway PKI in `dir`: `ca.pem`, `server.pem`/`server.key`
/// (for 127.0.0.1 and localhost) and `client.pem`/`client.key`.
pub fn test_pki(dir: &Path) {
    let pki = super::tls::Pki::new(dir);
    pki.server("server");
    pki.client("client", "vigil-bed-tls");
}

/// Writes a Mosquitto password file for `users` (user, password).
pub fn password_file(path: &Path, users: &[(&str, &str)]) {
    for (i, (user, pass)) in users.iter().enumerate() {
        let mut cmd = std::process::Command::new("mosquitto_passwd");
        if i == 0 {
            cmd.arg("-c");
        }
        let ok = cmd.arg("-b").arg(path).arg(user).arg(pass).status();
        assert!(
            ok.is_ok_and(|s| s.success()),
            "mosquitto_passwd failed (apt-get install mosquitto)"
        );
    }
}

/// One message received over MQTT 5, with the properties the tests check.
#[derive(Clone, Debug)]
pub struct Msg5 {
    pub topic: String,
    pub retained: bool,
    pub json: Value,
    /// Message expiry interval left, seconds.
    pub expiry: Option<u32>,
    pub response_topic: Option<String>,
    pub correlation: Option<Vec<u8>>,
}

/// An MQTT 5 client (a display that speaks MQTT 5): subscribes to one
/// filter and publishes with response topic and correlation data.
pub struct Client5 {
    pub client: rumqttc::v5::AsyncClient,
    pub rx: mpsc::UnboundedReceiver<Msg5>,
}

impl Client5 {
    /// Connects with a clean session and waits for the subscription.
    pub async fn connect(port: u16, id: &str, filter: &str) -> Client5 {
        use rumqttc::v5::mqttbytes::v5::Packet;
        use rumqttc::v5::mqttbytes::QoS as Q5;
        use rumqttc::v5::{AsyncClient as C5, Event as E5, MqttOptions as O5};
        let mut opts = O5::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = C5::new(opts, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let (sub_tx, mut subscribed) = watch::channel(false);
        let filter = filter.to_owned();
        let c = client.clone();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(E5::Incoming(Packet::ConnAck(_))) => {
                        let _ = c.try_subscribe(filter.clone(), Q5::AtLeastOnce);
                    }
                    Ok(E5::Incoming(Packet::SubAck(_))) => {
                        let _ = sub_tx.send(true);
                    }
                    Ok(E5::Incoming(Packet::Publish(p))) => {
                        let props = p.properties.clone().unwrap_or_default();
                        let msg = Msg5 {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            retained: p.retain,
                            json: serde_json::from_slice(&p.payload).unwrap_or(Value::Null),
                            expiry: props.message_expiry_interval,
                            response_topic: props.response_topic,
                            correlation: props.correlation_data.map(|b| b.to_vec()),
                        };
                        if tx.send(msg).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) if !retry(&tx).await => return,
                    Err(_) => {}
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed.wait_for(|s| *s))
            .await
            .expect("subscribed within 10 s")
            .expect("client running");
        Client5 { client, rx }
    }

    /// The first message on a topic ending in `suffix` that satisfies `pred`.
    pub async fn next(
        &mut self,
        suffix: &str,
        within: Duration,
        mut pred: impl FnMut(&Msg5) -> bool,
    ) -> Msg5 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let m = recv_by(&mut self.rx, deadline, suffix, within).await;
            if m.topic.ends_with(suffix) && pred(&m) {
                return m;
            }
        }
    }

    /// The next heartbeat (or retained status) saying the daemon is online.
    pub async fn online(&mut self, within: Duration) -> Msg5 {
        self.next("/status", within, |m| m.json["state"] == "online")
            .await
    }

    /// Every message arriving within `wait`.
    pub async fn drain(&mut self, wait: Duration) -> Vec<Msg5> {
        drain_for(&mut self.rx, wait).await
    }

    /// Publishes a command with MQTT 5 response topic and correlation data.
    pub async fn request(&self, topic: &str, payload: &Value, response: &str, correlation: &[u8]) {
        let props = rumqttc::v5::mqttbytes::v5::PublishProperties {
            response_topic: Some(response.to_owned()),
            correlation_data: Some(correlation.to_vec().into()),
            ..Default::default()
        };
        self.client
            .publish_with_properties(
                topic,
                rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                false,
                payload.to_string(),
                props,
            )
            .await
            .expect("queue publish");
    }
}
