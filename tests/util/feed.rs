//! MQTT for the display tests: a Mosquitto broker on a free loopback port,
//! a test publisher that speaks the daemon's feed (payload shapes of the
//! MQTT publisher: see `vigil::display::feed`), with a Last Will, and a
//! subscriber that collects what arrives on a topic filter.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use vigil::time::rfc3339;

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Mosquitto on a loopback port, stopped on drop.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

impl Broker {
    pub fn start(dir: &std::path::Path) -> Broker {
        assert!(
            std::path::Path::new(MOSQUITTO).exists(),
            "Mosquitto is missing: run scripts/test (it installs it) or apt-get install -y mosquitto"
        );
        let port = free_port();
        let conf = dir.join(format!("mosquitto-{port}.conf"));
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker {
            child: Some(child),
            port,
            dir: dir.to_owned(),
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker (the displays lose it).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A client on its own thread and runtime.
struct Client {
    client: AsyncClient,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn client(
    port: u16,
    id: &str,
    will: Option<LastWill>,
    subscribe: Option<String>,
    on_publish: impl Fn(String, Vec<u8>) + Send + 'static,
) -> Client {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    if let Some(w) = will {
        opts.set_last_will(w);
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 256);
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel();
    let sub_client = client.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    ev = eventloop.poll() => match ev {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            if let Some(f) = &subscribe {
                                sub_client.try_subscribe(f.clone(), QoS::AtLeastOnce).unwrap();
                            } else {
                                let _ = ready_tx.send(());
                            }
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            let _ = ready_tx.send(());
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            on_publish(p.topic.clone(), p.payload.to_vec())
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
            // Dropping the event loop closes the socket without DISCONNECT:
            // the broker sends the Last Will.
            drop(eventloop);
        });
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("MQTT client connected");
    Client {
        client,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

impl Client {
    fn kill(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Collects every message on a topic filter.
pub struct Subscriber {
    _client: Client,
    rx: mpsc::Receiver<(String, Vec<u8>)>,
}

impl Subscriber {
    pub fn start(port: u16, filter: &str) -> Subscriber {
        let (tx, rx) = mpsc::channel();
        let id = format!("test-sub-{}", free_port());
        let c = client(port, &id, None, Some(filter.to_owned()), move |t, p| {
            let _ = tx.send((t, p));
        });
        Subscriber { _client: c, rx }
    }

    /// The next message, as JSON, within `within`.
    pub fn next_json(&self, within: Duration) -> (String, Value) {
        let (t, p) = self
            .rx
            .recv_timeout(within)
            .expect("a message on the subscribed topic");
        (t, serde_json::from_slice(&p).expect("JSON payload"))
    }
}

/// A stand-in for the daemon's MQTT publisher: one bed's feed, with the
/// `status` Last Will, and a heartbeat thread that can be paused.
pub struct Publisher {
    client: Client,
    pub prefix: String,
    site: String,
    bed: String,
    seq: Arc<AtomicU64>,
    /// The `alarms` topic's own count (`stream_seq`), as vigil keeps it.
    alarms_stream: AtomicU64,
    beating: Arc<AtomicBool>,
    stop_beat: Arc<AtomicBool>,
    beat_thread: Option<std::thread::JoinHandle<()>>,
}

pub fn head(site: &str, bed: &str, seq: u64) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("schema_version".into(), json!(1));
    m.insert("site".into(), json!(site));
    m.insert("bed".into(), json!(bed));
    m.insert("seq".into(), json!(seq));
    m.insert("time".into(), json!(rfc3339(SystemTime::now())));
    m
}

impl Publisher {
    /// Connects with the Last Will and starts beating every `every`.
    pub fn start(port: u16, site: &str, bed: &str, every: Duration) -> Publisher {
        let prefix = format!("vigil/v1/{site}/{bed}/");
        let will = Value::Object({
            let mut m = head(site, bed, 0);
            m.insert("state".into(), json!("offline"));
            m.insert("reason".into(), json!("connection_lost"));
            m
        });
        let will = LastWill::new(
            format!("{prefix}status"),
            serde_json::to_vec(&will).unwrap(),
            QoS::AtLeastOnce,
            true,
        );
        let id = format!("test-vigil-{site}-{bed}-{}", free_port());
        let client = client(port, &id, Some(will), None, |_, _| {});
        let mut p = Publisher {
            client,
            prefix,
            site: site.into(),
            bed: bed.into(),
            seq: Arc::new(AtomicU64::new(100)),
            alarms_stream: AtomicU64::new(0),
            beating: Arc::new(AtomicBool::new(true)),
            stop_beat: Arc::new(AtomicBool::new(false)),
            beat_thread: None,
        };
        p.heartbeat();
        let (c, pre, site, bed, seq, beating, stop) = (
            p.client.client.clone(),
            p.prefix.clone(),
            p.site.clone(),
            p.bed.clone(),
            Arc::clone(&p.seq),
            Arc::clone(&p.beating),
            Arc::clone(&p.stop_beat),
        );
        p.beat_thread = Some(std::thread::spawn(move || {
            let mut beat = 1;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(every);
                if beating.load(Ordering::Relaxed) {
                    beat += 1;
                    let body = heartbeat_body(&site, &bed, seq.load(Ordering::Relaxed), beat);
                    let _ = c.try_publish(format!("{pre}status"), QoS::AtLeastOnce, true, body);
                }
            }
        }));
        p
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn publish(&self, topic: &str, retain: bool, v: Value) {
        let qos = if topic == "vitals" {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        self.client
            .client
            .try_publish(
                format!("{}{topic}", self.prefix),
                qos,
                retain,
                serde_json::to_vec(&v).unwrap(),
            )
            .expect("queue a publish");
    }

    pub fn heartbeat(&self) {
        let body = heartbeat_body(&self.site, &self.bed, self.seq.load(Ordering::Relaxed), 1);
        self.client
            .client
            .try_publish(
                format!("{}status", self.prefix),
                QoS::AtLeastOnce,
                true,
                body,
            )
            .unwrap();
    }

    /// A clean shutdown: heartbeats stop, retained `offline` / `shutdown`.
    pub fn stop_cleanly(&self) {
        self.set_beating(false);
        let mut m = head(&self.site, &self.bed, self.next_seq());
        m.insert("state".into(), json!("offline"));
        m.insert("reason".into(), json!("shutdown"));
        self.publish("status", true, Value::Object(m));
    }

    /// Pauses or resumes the heartbeat.
    pub fn set_beating(&self, on: bool) {
        self.beating.store(on, Ordering::Relaxed);
    }

    /// `vitals` with HR, SpO2 and an NIBP reading `nibp_age` old.
    pub fn vitals(&self, hr: f64, spo2: f64, sys: f64, dia: f64, nibp_age: Duration) {
        let now = rfc3339(SystemTime::now());
        let nibp_t = rfc3339(SystemTime::now() - nibp_age);
        let v = |value: f64, unit: &str, t: &str| json!({"value": value, "validity": "valid", "unit": unit, "time": t, "source": "monitor"});
        let mut m = head(&self.site, &self.bed, self.next_seq());
        m.insert(
            "vitals".into(),
            json!({
                "hr": v(hr, "/min", &now),
                "spo2": v(spo2, "%", &now),
                "nibp_sys": v(sys, "mmHg", &nibp_t),
                "nibp_dia": v(dia, "mmHg", &nibp_t),
                "nibp_mean": v(((sys + 2.0 * dia) / 3.0).round(), "mmHg", &nibp_t),
            }),
        );
        self.publish("vitals", true, Value::Object(m));
    }

    /// `vitals` with HR and SpO2 only, measured at `at` (for a trend).
    pub fn vitals_at(&self, hr: f64, spo2: f64, at: SystemTime) {
        let t = rfc3339(at);
        let v = |value: f64, unit: &str| json!({"value": value, "validity": "valid", "unit": unit, "time": t, "source": "monitor"});
        let mut m = head(&self.site, &self.bed, self.next_seq());
        m.insert(
            "vitals".into(),
            json!({"hr": v(hr, "/min"), "spo2": v(spo2, "%")}),
        );
        self.publish("vitals", true, Value::Object(m));
    }

    /// `vitals` as the daemon's publisher writes them (its own function)
    /// after `readings`, each arriving at its time; `latest` keeps every
    /// vital seen, as the daemon does.
    pub fn daemon_vitals(
        &self,
        latest: &mut vigil::mqtt::payload::Latest,
        readings: &[(vigil::vitals::Measurement, SystemTime)],
    ) {
        for (m, at) in readings {
            latest.apply(m, *at, 0);
        }
        let body = vitals_body(&self.site, &self.bed, self.next_seq(), latest);
        self.publish("vitals", true, serde_json::from_slice(&body).unwrap());
    }

    /// The retained `limits`, as the daemon's publisher writes them.
    pub fn limits(&self, rules: &[vigil::engine::VitalRules; vigil::vitals::Vital::COUNT]) {
        let ctx = vigil::mqtt::payload::Ctx {
            site: &self.site,
            bed: &self.bed,
            names: &[],
            epoch: "0123456789abcdef",
        };
        let body = vigil::mqtt::payload::limits(&ctx, self.next_seq(), SystemTime::now(), rules);
        self.publish("limits", true, serde_json::from_slice(&body).unwrap());
    }

    /// `session`: a session `code` in `phase` (no dose).
    pub fn session(&self, code: &str, phase: &str) {
        let mut m = head(&self.site, &self.bed, self.next_seq());
        m.insert("stream_seq".into(), json!(1));
        m.insert("event".into(), json!({"type": "phase", "phase": phase}));
        m.insert(
            "state".into(),
            json!({"phase": phase, "session": code, "baselines": {},
                   "doses": [], "discharge_ready": false}),
        );
        self.publish("session", true, Value::Object(m));
    }

    /// `session`: dosing, one dose `since` ago.
    pub fn session_dosing(&self, since: Duration) {
        let mut m = head(&self.site, &self.bed, self.next_seq());
        m.insert("stream_seq".into(), json!(1));
        m.insert(
            "event".into(),
            json!({"type": "dose", "number": 1, "route": "im", "note": ""}),
        );
        m.insert(
            "state".into(),
            json!({"phase": "dosing", "session": "S-0042", "baselines": {"hr": 70},
                   "doses": [{"number": 1, "route": "im", "note": "", "time": rfc3339(SystemTime::now() - since)}],
                   "discharge_ready": false}),
        );
        self.publish("session", true, Value::Object(m));
    }

    /// One `alarms` event. `onset` is also the benchmark's send time.
    pub fn alarm(
        &self,
        id: &str,
        priority: &str,
        phase: &str,
        state: &str,
        ack_by: Option<&str>,
        onset: SystemTime,
    ) {
        self.alarm_event(alarm_object(id, priority, phase, state, ack_by, onset));
    }

    /// The `acknowledge` event of an alarm, acknowledged by `by`.
    pub fn acknowledged(&self, id: &str, priority: &str, by: &str, onset: SystemTime) {
        self.alarm(id, priority, "acknowledge", "acknowledged", Some(by), onset);
    }

    /// One `alarms` event carrying this alarm object.
    pub fn alarm_event(&self, alarm: Value) {
        let mut m = head(&self.site, &self.bed, self.next_seq());
        let stream = self.alarms_stream.fetch_add(1, Ordering::Relaxed) + 1;
        m.insert("stream_seq".into(), json!(stream));
        m.insert("alarm".into(), alarm);
        self.publish("alarms", false, Value::Object(m));
    }

    /// The retained `alarms/active` snapshot: these alarms (id, priority,
    /// onset), all active, and the audio pause.
    pub fn active(
        &self,
        alarms: &[(&str, &str, SystemTime)],
        audio_paused_until: Option<SystemTime>,
    ) {
        let mut m = head(&self.site, &self.bed, self.next_seq());
        let list: Vec<Value> = alarms
            .iter()
            .map(|(id, priority, onset)| {
                alarm_object(id, priority, "update", "active", None, *onset)
            })
            .collect();
        m.insert("alarms".into(), Value::Array(list));
        m.insert(
            "audio_paused_until".into(),
            audio_paused_until.map_or(Value::Null, |t| json!(rfc3339(t))),
        );
        self.publish("alarms/active", true, Value::Object(m));
    }

    /// `cmd/result` for a request id.
    pub fn result(&self, id: &str, accepted: bool, reason: Option<&str>) {
        let mut m = head(&self.site, &self.bed, self.next_seq());
        m.insert("id".into(), json!(id));
        m.insert("command".into(), json!("acknowledge"));
        m.insert(
            "result".into(),
            json!(if accepted { "accepted" } else { "rejected" }),
        );
        m.insert("reason".into(), json!(reason));
        self.publish("cmd/result", false, Value::Object(m));
    }

    /// Dies without a goodbye: the broker publishes the Last Will.
    pub fn kill(&mut self) {
        self.stop_beat.store(true, Ordering::Relaxed);
        if let Some(t) = self.beat_thread.take() {
            let _ = t.join();
        }
        self.client.kill();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The daemon's `vitals` payload (its publisher's function, sent now) of
/// the latest readings of one monitor.
pub fn vitals_body(
    site: &str,
    bed: &str,
    seq: u64,
    latest: &vigil::mqtt::payload::Latest,
) -> Vec<u8> {
    let names = ["monitor".to_owned()];
    let ctx = vigil::mqtt::payload::Ctx {
        site,
        bed,
        names: &names,
        epoch: "0123456789abcdef",
    };
    vigil::mqtt::payload::vitals(&ctx, seq, SystemTime::now(), latest)
}

/// One NIBP measurement of these components (automatic cycle).
pub fn nibp(
    sys: vigil::vitals::Sample,
    dia: vigil::vitals::Sample,
    mean: vigil::vitals::Sample,
) -> vigil::vitals::Measurement {
    vigil::vitals::Measurement::Nibp(vigil::vitals::Nibp {
        systolic: sys,
        diastolic: dia,
        mean,
        measured_at: None,
        mode: vigil::vitals::NibpMode::Auto,
    })
}

pub fn heartbeat_body(site: &str, bed: &str, seq: u64, beat: u64) -> Vec<u8> {
    let mut m = head(site, bed, seq);
    m.insert("state".into(), json!("online"));
    m.insert("beat".into(), json!(beat));
    m.insert("uptime_s".into(), json!(beat));
    m.insert(
        "sources".into(),
        json!([{"name": "monitor", "up": true, "frames_ok": beat, "frames_dropped": 0}]),
    );
    m.insert(
        "latency_us".into(),
        json!({"p50": 40, "p99": 90, "p999": 120, "max": 150}),
    );
    m.insert("events_dropped".into(), json!(0));
    serde_json::to_vec(&Value::Object(m)).unwrap()
}

/// One alarm object as the daemon publishes it.
pub fn alarm_object(
    id: &str,
    priority: &str,
    phase: &str,
    state: &str,
    ack_by: Option<&str>,
    onset: SystemTime,
) -> Value {
    let now = rfc3339(SystemTime::now());
    let (value, limit) = match id.split('.').next() {
        Some("spo2") => (json!(86), json!(90)),
        Some("hr") => (json!(128), json!(120)),
        _ => (Value::Null, Value::Null),
    };
    json!({
        "id": id, "kind": "physiological", "priority": priority, "base_priority": priority,
        "phase": phase, "state": state, "value": value, "limit": limit, "validity": null,
        "delay_ms": 0, "onset": rfc3339(onset), "determined": rfc3339(onset),
        "ack": ack_by.map(|b| json!({"by": b, "at": now})),
    })
}
