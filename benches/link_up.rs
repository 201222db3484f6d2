//! Time from link up to first reading, per protocol: the in-process daemon
//! (driver, pipeline, engine, a collecting sink, recording on) connects
//! over TCP to a monitor served by `vigil-sim`. Measured on the daemon's
//! own clock: from the link-up input (the connect completing, as the
//! session recording stores it) to the arrival of the bytes of the first
//! valid heart rate (the reading's event time). A GE monitor says nothing until
//! the daemon's request record; a Philips monitor nothing until the daemon
//! associates and polls. Monitors:
//!
//! - GE S/5, real capture: `tests/fixtures/real/ge-s5/db02.raw` replayed by
//!   the capture emulator;
//! - GE S/5, scenario: vigil-sim's simulated monitor;
//! - Philips IntelliVue, capture: the emulator replaying a capture of the
//!   simulated monitor (real Philips captures are not public);
//! - Philips IntelliVue, scenario: vigil-sim's simulated monitor.
//!
//! Trials are interleaved (one of each monitor in turn, a fresh daemon
//! each), so the four share the machine's load; ratios are of medians.
//!
//! Run: `cargo bench --bench link_up` (about 30 s).

use std::time::Duration;

use vigil::config::{self, ProtocolKind};
use vigil::engine::EventKind;
use vigil::io::clock::Clock;
use vigil::pipeline::{open_protocol, Input};
use vigil::record::file::{self as recfile, RecorderSettings};
use vigil::record::Record;
use vigil::sim::{Scenario, SimDevice};
use vigil::vitals::{Measurement, SourceId};
use vigil_sim::{Capture, CaptureDevice, Device, Pace, RunOptions};

#[allow(dead_code)]
#[path = "../tests/util/daemon.rs"]
mod daemon;

const TRIALS: usize = 15;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run());
}

fn ge_capture() -> Capture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/real/ge-s5/db02.raw"
    );
    Capture::load(std::path::Path::new(path), Some(ProtocolKind::Ge), None).expect("the GE capture")
}

fn scenario() -> Scenario {
    Scenario::builtin("typical").unwrap().unwrap()
}

/// A minute of the simulated Philips monitor answering a vigil host.
fn philips_capture() -> Capture {
    let mut dev = SimDevice::new(&scenario(), ProtocolKind::Philips, 1);
    let mut host = open_protocol(ProtocolKind::Philips, SourceId(0));
    let c = vigil_sim::converse(
        &mut dev,
        host.as_mut(),
        vigil::time::Instant::from_secs(60),
        Duration::from_millis(100),
    );
    Capture::from_raw(ProtocolKind::Philips, &c.monitor_bytes()).expect("a Philips capture")
}

/// One trial: a fresh daemon connects to `device`; link up to first HR.
async fn trial<D: Device + Send + 'static>(kind: ProtocolKind, device: D) -> Duration {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("vigil-bench-link-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = config::parse(
        &format!(
            "[[source]]\nname = \"monitor\"\nprotocol = \"{}\"\ntcp = \"{addr}\"\n",
            kind.key()
        ),
        "bench",
    )
    .unwrap();
    let mut daemon = daemon::start_recording(
        cfg,
        Some(RecorderSettings {
            dir: dir.clone(),
            stem: "bench".into(),
            sync_every: Duration::from_millis(100),
            retention: Duration::from_secs(3600),
            queue: 8192,
            wake_when_half_full: true,
        }),
    );
    let (socket, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("the daemon connects")
        .unwrap();
    let _ = socket.set_nodelay(true);
    let opts = RunOptions {
        until: None,
        write_timeout: Some(Duration::from_millis(250)),
    };
    let monitor = tokio::spawn(vigil_sim::run_stream(
        device,
        socket,
        Pace::Clock(Clock::start(1.0)),
        opts,
    ));
    let reading_at = loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), daemon.events.recv())
            .await
            .expect("a reading within 10 s")
            .expect("daemon running");
        if let EventKind::Reading(r) = msg.event.kind {
            if matches!(r.measurement, Measurement::HeartRate(s) if s.validity.is_valid()) {
                break msg.event.at;
            }
        }
    };
    daemon.stop().await;
    monitor.abort();
    let file = std::fs::read_dir(&dir)
        .expect("the recording directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "vrec"))
        .expect("a recording");
    let link_at = recfile::read(&file)
        .expect("the recording reads")
        .records
        .into_iter()
        .find_map(|t| match t.record {
            Record::Input(Input::Link { up: true, .. }) => Some(t.at),
            _ => None,
        })
        .expect("the link-up input is recorded");
    let _ = std::fs::remove_dir_all(&dir);
    reading_at - link_at
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} us", d.as_micros())
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

async fn run() {
    let ge = ge_capture();
    let philips = philips_capture();
    let s = scenario();
    let names = [
        "GE S/5, real capture (emulator)",
        "GE S/5, scenario (simulator)",
        "Philips IntelliVue, capture (emulator)",
        "Philips IntelliVue, scenario (simulator)",
    ];
    let mut times: [Vec<Duration>; 4] = Default::default();
    for _ in 0..TRIALS {
        times[0].push(trial(ProtocolKind::Ge, CaptureDevice::new(ge.clone())).await);
        times[1].push(trial(ProtocolKind::Ge, SimDevice::new(&s, ProtocolKind::Ge, 1)).await);
        times[2].push(trial(ProtocolKind::Philips, CaptureDevice::new(philips.clone())).await);
        times[3].push(
            trial(
                ProtocolKind::Philips,
                SimDevice::new(&s, ProtocolKind::Philips, 1),
            )
            .await,
        );
    }
    println!("{TRIALS} trials each, interleaved; daemon clock: link-up input to the first valid HR's arrival");
    println!();
    println!("| monitor | fastest | median | slowest | median / GE capture's |");
    println!("|---|---|---|---|---|");
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let base = median(&mut times[0].clone());
    for (name, t) in names.iter().zip(times.iter_mut()) {
        let m = median(t);
        println!(
            "| {name} | {} | {} | {} | {:.2} |",
            fmt(t[0]),
            fmt(m),
            fmt(t[t.len() - 1]),
            m.as_secs_f64() / base.as_secs_f64()
        );
    }
}
