//! The web alarm board's latency: from an alarm event published on MQTT to
//! its appearance on the page, measured in headless Chromium, for a board
//! of one bed and a board of eight beds side by side in the same run.
//!
//! Mosquitto on loopback, the test publisher of the integration tests, two
//! release `vigil display` processes (one showing one bed, one showing
//! eight: whole beds with sparklines and the limits in force), each page in
//! its own headless Chromium at 1920 x 1080. Every bed sends vitals once a
//! second and heartbeats throughout. The alarms alternate between the two
//! boards (on the eight-bed board, from bed to bed), so both see the same
//! machine load: for each, the publisher notes the wall-clock time just
//! before publishing `alarms` (start, high priority, a unique onset), the
//! page notes `performance.timeOrigin + performance.now()` when it has put
//! the alarm in the DOM (`window.vigilSeen`), and the difference is the
//! latency. Both clocks are the machine's wall clock. Each alarm is then
//! ended, with a 50-150 ms pause before the next.
//!
//! Needs Mosquitto and Chromium (scripts/test installs both).
//! Run: `cargo bench --bench display` (about 1 min).

#[path = "../tests/util/board.rs"]
mod board;
#[path = "../tests/util/browser.rs"]
mod browser;
#[path = "../tests/util/feed.rs"]
mod feed;

use std::time::{Duration, Instant, SystemTime};

/// Alarms per board.
const ALARMS: usize = 100;
/// Beds on the big board.
const BEDS: usize = 8;

fn ms(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// One board under test: its beds' publishers, the display, the page.
struct Rig {
    name: &'static str,
    beds: Vec<(String, feed::Publisher)>,
    _board: board::Board,
    page: browser::Browser,
    lat: Vec<f64>,
}

impl Rig {
    fn start(
        name: &'static str,
        broker: &feed::Broker,
        site: &str,
        beds: usize,
        dir: &std::path::Path,
    ) -> Rig {
        let rules = vigil::engine::EngineConfig::default().vitals;
        let beds: Vec<(String, feed::Publisher)> = (1..=beds)
            .map(|i| {
                let bed = format!("bed-{i}");
                let p = feed::Publisher::start(broker.port, site, &bed, Duration::from_secs(1));
                p.session(&format!("K-{i:04}"), "baseline");
                p.limits(&rules);
                p.vitals(72.0, 97.0, 120.0, 80.0, Duration::from_secs(60));
                (format!("{site}/{bed}"), p)
            })
            .collect();
        let mut args: Vec<&str> = Vec::new();
        for (key, _) in &beds[1..] {
            args.extend(["--bed", key.as_str()]);
        }
        let board = board::Board::start(&broker.addr(), &beds[0].0, &args);
        let mut page = browser::Browser::open(&board.url, &dir.join(format!("chromium-{site}")));
        page.set_viewport(1920, 1080);
        page.wait_for(
            &format!(
                "document.querySelectorAll('#beds [data-vital=hr] .value').length === {n} && \
                 [...document.querySelectorAll('#beds [data-vital=hr] .value')].every(v => v.textContent.startsWith('72'))",
                n = beds.len()
            ),
            Duration::from_secs(30),
        );
        Rig {
            name,
            beds,
            _board: board,
            page,
            lat: Vec::with_capacity(ALARMS),
        }
    }

    /// The vitals of every bed (a slow trend, so sparklines change).
    fn vitals(&self, i: usize) {
        for (_, p) in &self.beds {
            p.vitals(
                72.0 + (i % 7) as f64,
                95.0 + (i % 4) as f64,
                120.0,
                80.0,
                Duration::from_secs(60),
            );
        }
    }

    /// One alarm on bed `i % beds`: published, waited for, ended.
    fn alarm(&mut self, i: usize) {
        let (key, p) = &self.beds[i % self.beds.len()];
        // A unique onset (ms resolution in the payload) names this alarm.
        let onset = SystemTime::now();
        let onset_ms = (ms(onset) as u64).to_string();
        let sent = SystemTime::now();
        p.alarm("spo2.low", "high", "start", "active", None, onset);
        let seen_key = format!("{key}|spo2.low|{onset_ms}");
        self.page.wait_for(
            &format!("window.vigilSeen[{seen_key:?}] !== undefined"),
            Duration::from_secs(10),
        );
        let seen = self.page.eval(&format!("window.vigilSeen[{seen_key:?}]"));
        self.lat.push(seen.as_f64().unwrap() - ms(sent));
        p.alarm("spo2.low", "high", "end", "ended", None, onset);
        self.page.wait_for(
            "document.querySelectorAll('#beds li.alarm').length === 0",
            Duration::from_secs(10),
        );
    }

    fn row(&mut self) -> f64 {
        let lat = &mut self.lat;
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
        println!(
            "| {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
            self.name,
            lat.len(),
            pct(0.50),
            pct(0.90),
            pct(0.99),
            lat[lat.len() - 1],
            lat[0]
        );
        pct(0.99)
    }

    fn p50(&self) -> f64 {
        self.lat[self.lat.len() / 2]
    }
}

fn main() {
    let dir = std::env::temp_dir().join(format!("vigil-bench-display-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let broker = feed::Broker::start(&dir);
    let mut one = Rig::start("1 bed", &broker, "clinic-a", 1, &dir);
    let mut eight = Rig::start("8 beds", &broker, "ward-b", BEDS, &dir);

    let mut last_vitals = Instant::now();
    for i in 0..2 * ALARMS {
        if last_vitals.elapsed() >= Duration::from_secs(1) {
            one.vitals(i);
            eight.vitals(i);
            last_vitals = Instant::now();
        }
        // Alternate, so both boards see the same load over the run.
        if i % 2 == 0 {
            one.alarm(i / 2);
        } else {
            eight.alarm(i / 2);
        }
        std::thread::sleep(Duration::from_millis(50 + (i as u64 * 37) % 100));
    }
    println!(
        "alarm published on MQTT -> shown on the page, {ALARMS} alarms per board, alternating:"
    );
    println!("| board | alarms | p50 | p90 | p99 | max | min |");
    println!("|---|---|---|---|---|---|---|");
    let p99_one = one.row();
    let p99_eight = eight.row();
    println!(
        "8 beds / 1 bed: p50 x{:.2}, p99 x{:.2}",
        eight.p50() / one.p50(),
        p99_eight / p99_one
    );
    println!(
        "target p99 < 250 ms with {BEDS} beds: {}",
        if p99_eight < 250.0 { "met" } else { "NOT met" }
    );
    drop(one);
    drop(eight);
    let _ = std::fs::remove_dir_all(&dir);
}
