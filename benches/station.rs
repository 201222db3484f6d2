//! The station at scale: 64 beds from 4 rooms, each bed with vitals and a
//! heartbeat at 1 Hz plus bursts of alarms (8 beds at the same instant every
//! 5 s, each alarm ended 3 s later), through the bridged topology of
//! docs/topology.md (each room's Mosquitto bridged over TLS, MQTT 5, QoS 1,
//! to a central Mosquitto, from the shipped config/mosquitto/ examples),
//! to the release `vigil display` on the central broker and its page in
//! headless Chromium at 1920 x 1080.
//!
//! Measured over a 60 s window after a 15 s warm-up:
//! - publish-to-DOM per alarm: the ward notes the wall clock just before
//!   publishing each alarm start on its room broker; the page notes when
//!   the alarm was on the page (`window.vigilSeen`); both are this
//!   machine's wall clock;
//! - dropped: alarm starts never shown on the page; vitals published on
//!   the room brokers but never received by a subscriber on the central one;
//! - the board's CPU (user + system, /proc) as % of one core, its memory
//!   (VmRSS at the end, VmHWM); the browser's CPU and memory summed over
//!   its process tree (RSS summed, so shared pages count more than once).
//!
//! Needs Mosquitto, openssl and Chromium (scripts/test installs them).
//! Run: `cargo bench --bench station` (about 2 min). `-- --short` runs a
//! 3 s warm-up and a 10 s window and fails if an alarm or a vitals message
//! was dropped (never on a figure): scripts/test runs it that way, in the
//! test profile, so the bench keeps working; its figures are not the
//! benchmark's.

#[path = "../tests/util/board.rs"]
mod board;
#[path = "../tests/util/browser.rs"]
mod browser;
#[path = "../tests/util/config.rs"]
mod config;
#[path = "../tests/util/feed.rs"]
mod feed;
#[path = "../tests/util/mqtt.rs"]
mod mqtt;
#[path = "../tests/util/tls.rs"]
mod tls;
#[path = "../tests/util/topology.rs"]
mod topology;
#[path = "../tests/util/ward.rs"]
mod ward;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

const ROOMS: [&str; 4] = ["room-1", "room-2", "room-3", "room-4"];
const BEDS_PER_ROOM: usize = 16;
const WARM_UP: Duration = Duration::from_secs(15);
const WINDOW: Duration = Duration::from_secs(60);
/// `--short`: the run scripts/test makes.
const SHORT_WARM_UP: Duration = Duration::from_secs(3);
const SHORT_WINDOW: Duration = Duration::from_secs(10);
const WARD: (&str, &str) = ("ward-sim", "ward-secret");

/// utime + stime of a process, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0)
}

/// A `/proc/PID/status` field in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `pid` and every descendant.
fn tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            if let Some(pp) = rest.split_whitespace().nth(1).and_then(|x| x.parse().ok()) {
                parents.push((p, pp));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let me = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == me).map(|(p, _)| *p));
        i += 1;
    }
    out
}

/// Counts vitals messages arriving on the central broker.
fn count_vitals(port: u16) -> Arc<AtomicU64> {
    let n = Arc::new(AtomicU64::new(0));
    let mut opts = MqttOptions::new("bench-counter", "127.0.0.1", port);
    opts.set_credentials(topology::DISPLAY.0, topology::DISPLAY.1);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut conn) = Client::new(opts, 1024);
    client
        .subscribe("vigil/v1/+/+/vitals", QoS::AtLeastOnce)
        .unwrap();
    let count = n.clone();
    std::thread::spawn(move || {
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::Publish(p))) if !p.retain => {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    });
    n
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn main() {
    let short = std::env::args().any(|a| a == "--short");
    let (warm_up, window_len) = if short {
        (SHORT_WARM_UP, SHORT_WINDOW)
    } else {
        (WARM_UP, WINDOW)
    };
    let dir = std::env::temp_dir().join(format!("vigil-bench-station-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let clinic = topology::Clinic::start(&dir, &ROOMS, WARD);
    let creds = dir.join("station-creds");
    std::fs::write(
        &creds,
        format!("{}\n{}\n", topology::DISPLAY.0, topology::DISPLAY.1),
    )
    .unwrap();
    let central = format!("127.0.0.1:{}", clinic.central.port);
    let counted = count_vitals(clinic.central.port);
    // The bridges connect out a moment after the room brokers start.
    std::thread::sleep(Duration::from_secs(3));
    let board = board::Board::start_args(&[
        "display",
        "--broker",
        &central,
        "--mqtt-credentials-file",
        creds.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--heartbeat-timeout",
        "5s",
    ])
    .expect("vigil display started");
    let mut page = browser::Browser::open(&board.url, &dir.join("chromium"));
    page.call(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": false}),
    );
    let vitals_before = counted.load(Ordering::Relaxed);
    let mut ward = ward::Ward::start(ward::Plan {
        sites: ROOMS
            .iter()
            .zip(&clinic.rooms)
            .map(|(r, b)| ward::SiteLink {
                site: (*r).into(),
                port: b.port,
                credentials: Some((WARD.0.into(), WARD.1.into())),
            })
            .collect(),
        beds_per_site: BEDS_PER_ROOM,
        burst_every: Duration::from_secs(5),
        burst_size: 8,
        hold: Duration::from_secs(3),
    });
    let beds = ROOMS.len() * BEDS_PER_ROOM;
    page.wait_for(
        &format!("document.querySelectorAll('section.bed.tile:not(.nodata)').length === {beds}"),
        Duration::from_secs(30),
    );
    std::thread::sleep(warm_up);

    let board_pid = board.pid().unwrap();
    let browser_pids = tree(page.pid());
    let (b0, c0) = (
        cpu_ticks(board_pid),
        browser_pids.iter().map(|p| cpu_ticks(*p)).sum::<u64>(),
    );
    let from_ms = ward::wall_ms(SystemTime::now());
    let t0 = Instant::now();
    std::thread::sleep(window_len);
    let elapsed = t0.elapsed().as_secs_f64();
    let (b1, c1) = (
        cpu_ticks(board_pid),
        tree(page.pid()).iter().map(|p| cpu_ticks(*p)).sum::<u64>(),
    );
    let board_rss = status_kb(board_pid, "VmRSS:");
    let board_hwm = status_kb(board_pid, "VmHWM:");
    let browser_rss: u64 = tree(page.pid())
        .iter()
        .map(|p| status_kb(*p, "VmRSS:"))
        .sum();
    page.screenshot(&dir.join("station-bench.png"));
    let sent = ward.sent();
    let vitals_sent = ward.vitals_sent();
    ward.stop();
    std::thread::sleep(Duration::from_secs(3));
    let vitals_got = counted.load(Ordering::Relaxed) - vitals_before;

    let window: Vec<&ward::Sent> = sent.iter().filter(|s| s.sent_ms >= from_ms).collect();
    let keys: Vec<String> = window
        .iter()
        .map(|s| format!("{}|{}|{}", s.bed, s.id, s.onset_ms))
        .collect();
    let seen = page.eval(&format!(
        "JSON.stringify({}.map(k => window.vigilSeen[k] ?? null))",
        serde_json::to_string(&keys).unwrap()
    ));
    let seen: Vec<Option<f64>> = serde_json::from_str(seen.as_str().unwrap()).unwrap();
    let mut lat: Vec<f64> = window
        .iter()
        .zip(&seen)
        .filter_map(|(s, t)| t.map(|t| t - s.sent_ms))
        .collect();
    let dropped = seen.iter().filter(|t| t.is_none()).count();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let ticks_s = |t: u64| t as f64 / 100.0;
    let board_cpu = ticks_s(b1 - b0) / elapsed * 100.0;
    let browser_cpu = ticks_s(c1 - c0) / elapsed * 100.0;

    println!(
        "{beds} beds ({} rooms bridged to a central broker), 1 Hz vitals + heartbeat, bursts of 8 alarms every 5 s; {:.0} s window:",
        ROOMS.len(),
        elapsed
    );
    println!("| alarms | p50 | p90 | p99 | max | dropped alarms | vitals sent / at centre |");
    println!("|---|---|---|---|---|---|---|");
    if lat.is_empty() {
        println!(
            "| {} | - | - | - | - | {dropped} | {vitals_sent} / {vitals_got} |",
            window.len()
        );
    } else {
        println!(
            "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {dropped} | {vitals_sent} / {vitals_got} |",
            window.len(),
            pct(&lat, 0.50),
            pct(&lat, 0.90),
            pct(&lat, 0.99),
            lat[lat.len() - 1],
        );
    }
    println!();
    println!("| process | CPU (% of one core) | memory |");
    println!("|---|---|---|");
    println!(
        "| vigil display | {board_cpu:.1} % | RSS {:.1} MiB (peak {:.1} MiB) |",
        board_rss as f64 / 1024.0,
        board_hwm as f64 / 1024.0
    );
    println!(
        "| Chromium ({} processes) | {browser_cpu:.1} % | RSS sum {:.0} MiB |",
        browser_pids.len(),
        browser_rss as f64 / 1024.0
    );
    let p99 = if lat.is_empty() {
        f64::INFINITY
    } else {
        pct(&lat, 0.99)
    };
    let nothing_dropped = dropped == 0 && vitals_got >= vitals_sent;
    if cfg!(debug_assertions) {
        println!("(a debug build: the figures are not the benchmark's; run `cargo bench --bench station`)");
    }
    println!(
        "targets: p99 < 250 ms {}; board < 5 % of a core {}; nothing dropped {}",
        if p99 < 250.0 { "met" } else { "NOT met" },
        if board_cpu < 5.0 { "met" } else { "NOT met" },
        if nothing_dropped { "met" } else { "NOT met" },
    );
    drop(page);
    drop(board);
    drop(clinic);
    let _ = std::fs::remove_dir_all(&dir);
    if short && !nothing_dropped {
        eprintln!(
            "station bench: {dropped} alarm(s) never shown on the page, {vitals_got} of {vitals_sent} vitals messages at the centre"
        );
        std::process::exit(1);
    }
    if short && window.is_empty() {
        eprintln!("station bench: no alarm was published in the window");
        std::process::exit(1);
    }
}
