//! The live daemon against monitors emulated from real captures
//! (`vigil-sim --capture`): a GE S/5 that sends nothing until it receives
//! the request record, then its recorded records at the requested pace,
//! over a pseudo-terminal and over TCP. The daemon must show the first
//! reading within 2 s of the link coming up and raise no link alarm.

use std::time::{Duration, SystemTime};

use vigil::config::{self, Config};
use vigil::engine::{EventKind, Phase};
use vigil::vitals::Measurement;

use crate::util::daemon::{start, Running};
use crate::util::emulator;

/// A GE source with the default timeout (10 s, the moment a late request
/// used to raise a false `disconnected`) and request interval (5 s).
fn ge_source(link: &str) -> Config {
    let text = format!("[[source]]\nname = \"monitor\"\nprotocol = \"ge-s5\"\n{link}\n");
    config::parse(&text, "test").expect("valid test configuration")
}

/// The HR column of a fixture's independent values.
fn expected_hr(csv: &str) -> Vec<f32> {
    let path = format!(
        "{}/tests/fixtures/real/ge-s5/{csv}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .nth(1)
                .and_then(|v| v.parse().ok())
                .expect("an HR")
        })
        .collect()
}

/// What the daemon did during `watch` after `started`: the valid HR
/// readings with when the daemon took them (since `started`), and every
/// source alarm.
async fn observe(
    daemon: &mut Running,
    started: SystemTime,
    watch: Duration,
) -> (Vec<(Duration, f32)>, Vec<(String, Phase)>) {
    let names = daemon.source_names.clone();
    let mut hr = Vec::new();
    let mut source_alarms = Vec::new();
    for msg in daemon.events_during(watch).await {
        match msg.event.kind {
            EventKind::Reading(r) => {
                if let Measurement::HeartRate(s) = r.measurement {
                    if s.validity.is_valid() {
                        let at = msg.wall.duration_since(started).unwrap_or_default();
                        hr.push((at, s.value));
                    }
                }
            }
            EventKind::Alarm(a) => {
                let id = a.id.key(&names);
                if id.starts_with("source.") {
                    source_alarms.push((id, a.phase));
                }
            }
            _ => {}
        }
    }
    (hr, source_alarms)
}

/// First reading within 2 s of start (the link comes up after start, so
/// this is stricter than "of the link coming up"), the capture's values in
/// its order, one record per requested 5 s, and no link alarm for 12 s:
/// past the 10 s source timeout.
fn check(csv: &str, hr: &[(Duration, f32)], source_alarms: &[(String, Phase)]) {
    assert!(
        source_alarms.is_empty(),
        "no disconnected, link_errors or other source alarm: {source_alarms:?}"
    );
    let first = hr.first().expect("a reading");
    assert!(
        first.0 < Duration::from_secs(2),
        "first reading {:?} after start",
        first.0
    );
    let want = expected_hr(csv);
    let got: Vec<f32> = hr.iter().map(|h| h.1).collect();
    // Records at about 0, 5 and 10 s.
    assert!(got.len() >= 2 && got.len() <= 4, "{hr:?}");
    assert_eq!(got, want[..got.len()], "the capture's HR, record by record");
    for w in hr.windows(2) {
        let gap = w[1].0 - w[0].0;
        assert!(
            gap > Duration::from_secs(4) && gap < Duration::from_secs(6),
            "one record per requested 5 s: {hr:?}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn real_ge_capture_on_a_pty_first_reading_at_once_and_no_link_alarm() {
    let (path, monitor) = emulator::on_pty(emulator::ge_capture("db02.raw"));
    let started = SystemTime::now();
    let mut daemon = start(ge_source(&format!("serial = \"{path}\"")));
    let (hr, alarms) = observe(&mut daemon, started, Duration::from_secs(12)).await;
    daemon.stop().await;
    monitor.abort();
    check("db02.expected.csv", &hr, &alarms);
}

#[tokio::test(flavor = "current_thread")]
async fn real_ge_capture_over_tcp_first_reading_at_once_and_no_link_alarm() {
    // db00: a waveform record after every physiological one.
    let (addr, monitor) = emulator::on_tcp(emulator::ge_capture("db00.raw")).await;
    let started = SystemTime::now();
    let mut daemon = start(ge_source(&format!("tcp = \"{addr}\"")));
    let (hr, alarms) = observe(&mut daemon, started, Duration::from_secs(12)).await;
    daemon.stop().await;
    monitor.abort();
    check("db00.expected.csv", &hr, &alarms);
}

/// The device server drops the connection; the daemon reconnects and the
/// new connection's monitor (which forgot the request, as a power-cycled
/// S/5 does) is asked again at once: the next reading within 2 s of the
/// new link, and the `disconnected` alarm of the real drop ends with it.
#[tokio::test(flavor = "current_thread")]
async fn real_ge_capture_over_tcp_reconnects_and_is_asked_again() {
    use vigil::io::clock::Clock;
    use vigil_sim::{CaptureDevice, Pace, RunOptions};

    let capture = emulator::ge_capture("raw.raw");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let started = SystemTime::now();
    let mut daemon = start(ge_source(&format!("tcp = \"{addr}\"")));
    let opts = RunOptions {
        until: None,
        write_timeout: Some(Duration::from_millis(250)),
    };
    let pace = Pace::Clock(Clock::start(1.0));
    let (first, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("the daemon connects")
        .unwrap();
    // One record, then the device server goes away.
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        vigil_sim::run_stream(CaptureDevice::new(capture.clone()), first, pace, opts),
    )
    .await;
    daemon
        .alarm(
            "source.monitor.disconnected",
            Phase::Start,
            Duration::from_secs(5),
        )
        .await;
    let (second, _) = tokio::time::timeout(Duration::from_secs(15), listener.accept())
        .await
        .expect("the daemon reconnects")
        .unwrap();
    let relinked = SystemTime::now();
    let serving = tokio::spawn(vigil_sim::run_stream(
        CaptureDevice::new(capture),
        second,
        pace,
        opts,
    ));
    let (hr, alarms) = observe(&mut daemon, started, Duration::from_secs(3)).await;
    daemon.stop().await;
    serving.abort();
    let since_relink = relinked.duration_since(started).unwrap();
    let next = hr
        .iter()
        .find(|h| h.0 >= since_relink)
        .unwrap_or_else(|| panic!("no reading after the reconnection: {hr:?}"));
    assert!(
        next.0 - since_relink < Duration::from_secs(2),
        "reading {:?} after the new link",
        next.0 - since_relink
    );
    assert_eq!(
        next.1,
        expected_hr("raw.expected.csv")[0],
        "the capture from its start"
    );
    assert_eq!(
        alarms,
        [("source.monitor.disconnected".to_owned(), Phase::End)],
        "only the end of the real drop's alarm"
    );
}
