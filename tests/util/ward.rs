//! A ward of simulated beds for the station's tests and benchmark: several
//! sites of beds speaking the daemon's feed (the payloads of
//! [`super::feed`]), one MQTT connection per site (a site's broker). Every
//! bed sends its heartbeat and vitals once a second, the beds spread evenly
//! over the second; every `burst_every` the next `burst_size` beds raise an
//! alarm at the same instant (high `spo2.low` and medium `hr.high` in
//! turn), each ended `hold` later. Every alarm start is logged with its
//! send time (the board's page notes when it showed it: latency, drops).

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use vigil::time::rfc3339;

use super::feed::{alarm_object, head, heartbeat_body};

/// One site's broker.
#[derive(Clone, Debug)]
pub struct SiteLink {
    /// Site name (the topics' `{site}`).
    pub site: String,
    /// The broker's loopback port.
    pub port: u16,
    /// Username and password, when the broker asks for them.
    pub credentials: Option<(String, String)>,
}

/// What the ward plays.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The sites, each with `beds_per_site` beds `bed-01`, `bed-02`, ...
    pub sites: Vec<SiteLink>,
    pub beds_per_site: usize,
    /// Time between alarm bursts.
    pub burst_every: Duration,
    /// Beds alarming in one burst.
    pub burst_size: usize,
    /// How long a burst's alarms last.
    pub hold: Duration,
}

impl Plan {
    /// `sites` of `beds_per_site` beds, all on one broker without
    /// credentials; a burst of 6 alarms every 3 s, each lasting 5 s.
    pub fn on_one_broker(port: u16, sites: &[&str], beds_per_site: usize) -> Plan {
        Plan {
            sites: sites
                .iter()
                .map(|s| SiteLink {
                    site: (*s).into(),
                    port,
                    credentials: None,
                })
                .collect(),
            beds_per_site,
            burst_every: Duration::from_secs(3),
            burst_size: 6,
            hold: Duration::from_secs(5),
        }
    }
}

/// An alarm start the ward published.
#[derive(Clone, Debug)]
pub struct Sent {
    /// `site/bed`.
    pub bed: String,
    pub id: String,
    pub priority: &'static str,
    /// The alarm's onset, ms since the Unix epoch (names the alarm).
    pub onset_ms: u64,
    /// Wall-clock time just before the publish, ms since the Unix epoch.
    pub sent_ms: f64,
}

/// The running ward; stops on drop.
pub struct Ward {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    log: Arc<Mutex<Vec<Sent>>>,
    vitals: Arc<AtomicU64>,
    /// Every bed, `site/bed`.
    pub beds: Vec<String>,
}

/// ms since the Unix epoch, fractional.
pub fn wall_ms(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

struct BedState {
    site: usize,
    name: String,
    seq: u64,
    /// The `alarms` topic's own count (`stream_seq`, no gaps).
    stream: u64,
    beat: u64,
    alarm: Option<(&'static str, &'static str, SystemTime, Instant)>,
}

impl Ward {
    /// Connects to every site and starts playing.
    pub fn start(plan: Plan) -> Ward {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let vitals = Arc::new(AtomicU64::new(0));
        let beds: Vec<String> = plan
            .sites
            .iter()
            .flat_map(|s| (1..=plan.beds_per_site).map(move |i| format!("{}/bed-{i:02}", s.site)))
            .collect();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (s, l, v) = (stop.clone(), log.clone(), vitals.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(play(plan, s, l, v, ready_tx));
        });
        ready_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the ward connected to every site's broker");
        Ward {
            stop,
            thread: Some(thread),
            log,
            vitals,
            beds,
        }
    }

    /// Every alarm start published so far.
    pub fn sent(&self) -> Vec<Sent> {
        self.log.lock().unwrap().clone()
    }

    /// Vitals messages published so far.
    pub fn vitals_sent(&self) -> u64 {
        self.vitals.load(Ordering::Relaxed)
    }

    /// Stops publishing (the connections close cleanly).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Ward {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn connect(link: &SiteLink, ready: std::sync::mpsc::Sender<()>) -> AsyncClient {
    let mut opts = MqttOptions::new(
        format!("ward-{}-{}", link.site, std::process::id()),
        "127.0.0.1",
        link.port,
    );
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    opts.set_inflight(200);
    if let Some((u, p)) = &link.credentials {
        opts.set_credentials(u, p);
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    tokio::spawn(async move {
        let mut ready = Some(ready);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    client
}

async fn play(
    plan: Plan,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Sent>>>,
    vitals: Arc<AtomicU64>,
    ready: std::sync::mpsc::Sender<()>,
) {
    let (each_tx, each_rx) = std::sync::mpsc::channel();
    let mut clients = Vec::new();
    for s in &plan.sites {
        clients.push(connect(s, each_tx.clone()).await);
    }
    for _ in &plan.sites {
        while each_rx.try_recv().is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut beds: Vec<BedState> = plan
        .sites
        .iter()
        .enumerate()
        .flat_map(|(si, _)| {
            (1..=plan.beds_per_site).map(move |i| BedState {
                site: si,
                name: format!("bed-{i:02}"),
                seq: 1000,
                stream: 0,
                beat: 0,
                alarm: None,
            })
        })
        .collect();
    let n = beds.len();
    let slot = Duration::from_secs(1) / n.max(1) as u32;
    let start = Instant::now();
    let mut next_burst = start + plan.burst_every;
    let mut bursts = 0usize;
    let mut tick = tokio::time::interval(slot);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut i = 0usize;
    let _ = ready.send(());
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let now = Instant::now();
        if now >= next_burst {
            let id_prio = if bursts.is_multiple_of(2) {
                ("spo2.low", "high")
            } else {
                ("hr.high", "medium")
            };
            for j in 0..plan.burst_size.min(n) {
                let k = (bursts * plan.burst_size + j) % n;
                if beds[k].alarm.is_some() {
                    continue;
                }
                let onset = SystemTime::now();
                let b = &mut beds[k];
                b.alarm = Some((id_prio.0, id_prio.1, onset, now + plan.hold));
                let site = &plan.sites[b.site].site;
                let sent_ms = wall_ms(SystemTime::now());
                publish_alarm(&clients[b.site], site, b, "start", "active").await;
                log.lock().unwrap().push(Sent {
                    bed: format!("{site}/{}", b.name),
                    id: id_prio.0.to_owned(),
                    priority: id_prio.1,
                    onset_ms: (wall_ms(onset) as u64),
                    sent_ms,
                });
            }
            bursts += 1;
            next_burst += plan.burst_every;
        }
        let b = &mut beds[i];
        let site = plan.sites[b.site].site.clone();
        let c = &clients[b.site];
        if b.alarm.is_some_and(|a| a.3 <= now) {
            publish_alarm(c, &site, b, "end", "ended").await;
            b.alarm = None;
        }
        b.beat += 1;
        let prefix = format!("vigil/v1/{site}/{}/", b.name);
        let _ = c
            .publish(
                format!("{prefix}status"),
                QoS::AtLeastOnce,
                true,
                heartbeat_body(&site, &b.name, b.seq, b.beat),
            )
            .await;
        b.seq += 1;
        let mut m = head(&site, &b.name, b.seq);
        let t = rfc3339(SystemTime::now());
        let nibp_t = rfc3339(SystemTime::now() - Duration::from_secs(150));
        let wobble = ((b.beat + i as u64) % 5) as f64;
        let hr = 62.0 + (i * 7 % 30) as f64 + wobble;
        let spo2 = if b.alarm.is_some_and(|a| a.0 == "spo2.low") {
            86.0
        } else {
            97.0 - (i % 3) as f64
        };
        let r = |value: f64, unit: &str, t: &str| json!({"value": value, "validity": "valid", "unit": unit, "time": t, "source": "monitor"});
        m.insert(
            "vitals".into(),
            json!({
                "hr": r(hr, "/min", &t),
                "spo2": r(spo2, "%", &t),
                "nibp_sys": r(110.0 + (i % 20) as f64, "mmHg", &nibp_t),
                "nibp_dia": r(70.0 + (i % 10) as f64, "mmHg", &nibp_t),
            }),
        );
        let _ = c
            .publish(
                format!("{prefix}vitals"),
                QoS::AtMostOnce,
                true,
                serde_json::to_vec(&Value::Object(m)).unwrap(),
            )
            .await;
        vitals.fetch_add(1, Ordering::Relaxed);
        i = (i + 1) % n;
    }
    for c in clients {
        let _ = c.disconnect().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

async fn publish_alarm(c: &AsyncClient, site: &str, b: &mut BedState, phase: &str, state: &str) {
    let Some((id, priority, onset, _)) = b.alarm else {
        return;
    };
    b.seq += 1;
    b.stream += 1;
    let mut m = head(site, &b.name, b.seq);
    m.insert("stream_seq".into(), json!(b.stream));
    m.insert(
        "alarm".into(),
        alarm_object(id, priority, phase, state, None, onset),
    );
    let _ = c
        .publish(
            format!("vigil/v1/{site}/{}/alarms", b.name),
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&Value::Object(m)).unwrap(),
        )
        .await;
}
