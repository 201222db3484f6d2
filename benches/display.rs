//! The web alarm board's latency: from an alarm event published on MQTT to
//! its appearance on the page, measured in headless Chromium.
//!
//! Mosquitto on loopback, the test publisher of the integration tests, the
//! release `vigil display`, and the page in Chromium. For each of 100
//! alarms: the publisher notes the wall-clock time just before publishing
//! `alarms` (start, high priority, a unique onset), the page notes
//! `performance.timeOrigin + performance.now()` when it has put the alarm in
//! the DOM (`window.vigilSeen`), and the difference is the latency. Both
//! clocks are the machine's wall clock. Each alarm is then ended and a
//! vitals update sent, with a 50-150 ms pause, before the next.
//!
//! Needs Mosquitto and Chromium (scripts/test installs both).
//! Run: `cargo bench --bench display` (about 30 s).

#[path = "../tests/util/board.rs"]
mod board;
#[path = "../tests/util/browser.rs"]
mod browser;
#[path = "../tests/util/feed.rs"]
mod feed;

use std::time::{Duration, SystemTime};

const ALARMS: usize = 100;
const BED: &str = "clinic-a/bed-2";

fn ms(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

fn main() {
    let dir = std::env::temp_dir().join(format!("vigil-bench-display-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let broker = feed::Broker::start(&dir);
    let publisher =
        feed::Publisher::start(broker.port, "clinic-a", "bed-2", Duration::from_secs(1));
    publisher.vitals(72.0, 97.0, 120.0, 80.0, Duration::from_secs(60));
    let board = board::Board::start(&broker.addr(), BED, &[]);
    let mut page = browser::Browser::open(&board.url, &dir.join("chromium"));
    page.wait_for(
        "document.querySelector('[data-vital=hr] .value')?.textContent.startsWith('72')",
        Duration::from_secs(20),
    );

    let mut lat = Vec::with_capacity(ALARMS);
    for i in 0..ALARMS {
        // A unique onset (ms resolution in the payload) names this alarm.
        let onset = SystemTime::now();
        let onset_ms = (ms(onset) as u64).to_string();
        let sent = SystemTime::now();
        publisher.alarm("spo2.low", "high", "start", "active", None, onset);
        let key = format!("{BED}|spo2.low|{onset_ms}");
        page.wait_for(
            &format!("window.vigilSeen[{key:?}] !== undefined"),
            Duration::from_secs(10),
        );
        let seen = page.eval(&format!("window.vigilSeen[{key:?}]"));
        lat.push(seen.as_f64().unwrap() - ms(sent));
        publisher.alarm("spo2.low", "high", "end", "ended", None, onset);
        page.wait_for(
            "document.querySelectorAll('li.alarm').length === 0",
            Duration::from_secs(10),
        );
        publisher.vitals(
            72.0 + (i % 5) as f64,
            97.0,
            120.0,
            80.0,
            Duration::from_secs(60),
        );
        std::thread::sleep(Duration::from_millis(50 + (i as u64 * 37) % 100));
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    println!("alarm published on MQTT -> shown on the page, {ALARMS} alarms:");
    println!("| p50 | p90 | p99 | max | min |");
    println!("|---|---|---|---|---|");
    println!(
        "| {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        lat[lat.len() - 1],
        lat[0]
    );
    let p99 = pct(0.99);
    println!(
        "target p99 < 250 ms: {}",
        if p99 < 250.0 { "met" } else { "NOT met" }
    );
    drop(page);
    drop(board);
    let _ = std::fs::remove_dir_all(&dir);
}
