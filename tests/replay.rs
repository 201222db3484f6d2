//! Record and replay: a live session through a pseudo-terminal, recorded,
//! replays to the very same events; what-if replays with other limits.

use std::time::Duration;

use vigil::config;
use vigil::engine::{Command, Event};
use vigil::record::file::RecorderSettings;
use vigil::replay;
use vigil::vitals::ShortText;

use crate::util::daemon::{start_recording, temp_dir, Monitor, Running};

pub(crate) fn recording_in(dir: &std::path::Path) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "vrec"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.pop().unwrap()
}

/// A daemon recording into `dir/recordings`, reading one vigil-line
/// monitor on a pty in `dir` (timeout 1 s, technical delay 200 ms, more
/// `[alarms]` settings in `alarms`).
fn recording_daemon(dir: &std::path::Path, alarms: &str) -> (Running, Monitor) {
    let port = dir.join("ttyMON");
    let monitor = Monitor::plug_in(&port);
    let cfg = config::parse(
        &format!(
            "[[source]]\nname = \"monitor\"\nprotocol = \"vigil-line\"\nserial = \"{}\"\ntimeout = \"1s\"\n[alarms]\ntechnical_delay = \"200ms\"\n{alarms}",
            port.display()
        ),
        "test",
    )
    .unwrap();
    let daemon = start_recording(
        cfg,
        Some(RecorderSettings {
            dir: dir.join("recordings"),
            stem: "test".into(),
            sync_every: Duration::from_millis(50),
            retention: Duration::from_secs(86_400),
            queue: 8192,
            wake_when_half_full: true,
        }),
    );
    (daemon, monitor)
}

/// Sends once the daemon has the port open, waiting (up to 10 s) without
/// blocking the runtime the daemon runs on.
async fn send_when_open(monitor: &mut Monitor, bytes: &[u8]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !monitor.try_send(bytes) {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon opened the port"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lets the last inputs settle, stops the daemon and collects every event
/// still coming into `live`.
async fn finish(mut daemon: Running, live: &mut Vec<Event>) -> vigil::io::driver::Status {
    tokio::time::sleep(Duration::from_millis(300)).await;
    live.extend(
        daemon
            .events_during(Duration::from_millis(100))
            .await
            .iter()
            .map(|m| m.event),
    );
    let (status, rest) = daemon.stop_and_drain().await;
    live.extend(rest.iter().map(|m| m.event));
    status
}

/// Live and replayed events equal field by field, timing included. (Debug
/// form: invalid values are NaN, which never compare equal as floats.)
pub(crate) fn assert_same_events(live: &[Event], replayed: &[Event]) -> Vec<String> {
    let show = |v: &[Event]| v.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>();
    let (l, r) = (show(live), show(replayed));
    for (i, (a, b)) in l.iter().zip(&r).enumerate() {
        assert_eq!(a, b, "event {i} differs");
    }
    assert_eq!(l.len(), r.len(), "same number of events");
    l
}

#[tokio::test(flavor = "current_thread")]
async fn a_live_session_replays_to_identical_events() {
    let dir = temp_dir("golden");
    let rec_dir = dir.join("recordings");
    let (mut daemon, mut monitor) = recording_daemon(
        &dir,
        "[alarms.spo2]\ndelay = \"300ms\"\n[alarms.hr]\ndelay = \"300ms\"\n",
    );
    let mut live: Vec<Event> = Vec::new();
    tokio::time::sleep(Duration::from_millis(300)).await;

    daemon
        .command(Command::StartSession {
            session: ShortText::new("S-7"),
        })
        .await
        .unwrap();
    for i in 0..6 {
        monitor.send(format!("hr {}\nspo2 {}\n", 70 + i, 97 - i % 2).as_bytes());
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    monitor.send(b"nibp 124/80/95 at=1000\n");
    daemon
        .command(Command::Dose {
            route: ShortText::new("im"),
            amount: None,
            note: ShortText::new("test"),
        })
        .await
        .unwrap();
    // A desaturation, split across writes, with garbage in between.
    monitor.send(b"spo2 8");
    tokio::time::sleep(Duration::from_millis(20)).await;
    monitor.send(b"8\nthis is noise\n");
    for _ in 0..8 {
        monitor.send(b"spo2 84\nhr 131\n");
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    live.extend(
        daemon
            .events_during(Duration::from_millis(200))
            .await
            .iter()
            .map(|m| m.event),
    );
    // Acknowledge whatever SpO2 alarm is up; a rejected command replays as rejected.
    let _ = daemon
        .command(Command::Acknowledge {
            alarm: vigil::engine::AlarmId::parse("spo2.critical_low", &["monitor".into()]).unwrap(),
            by: ShortText::new("RN"),
        })
        .await;
    let _ = daemon.command(Command::StartRecovery).await;
    monitor.send(b"spo2 - sensor_off\n");
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Unplug: hang-up, then silence; plug back in.
    monitor.unplug();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    monitor.replug();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut back = false;
    while !back && std::time::Instant::now() < deadline {
        back = monitor.try_send(b"hr 72\nspo2 97\n");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(back, "the daemon reopened the port");
    let status = finish(daemon, &mut live).await;
    assert!(status.inputs >= 10, "{status:?}");

    let file = recording_in(&rec_dir);
    let session = replay::load(&file).unwrap();
    assert!(session.corrupt_tail.is_none());
    let mut replayed = Vec::new();
    replay::run(&session, None, |e| replayed.push(*e), |_| {});

    let l = assert_same_events(&live, &replayed);
    assert!(l.len() > 30, "a rich session: {} events", l.len());
    let kinds: String = l.join("\n");
    for needle in ["CriticalLow", "Disconnected", "Dose", "Baseline"] {
        assert!(kinds.contains(needle), "the session exercised {needle}");
    }
}

#[test]
fn what_if_replay_with_longer_delays_shows_fewer_alarms() {
    use vigil::pipeline::Input;
    use vigil::record::{file, Record, Timed};
    use vigil::time::Instant;

    // A recording made by hand: SpO2 dips below 90 for 20 s twice and for
    // 40 s once, one reading a second.
    let cfg = config::parse(
        "[[source]]\nname = \"ox\"\nprotocol = \"vigil-line\"\ntcp = \"127.0.0.1:1\"\n",
        "x",
    )
    .unwrap();
    let mut records = vec![
        Timed {
            at: Instant::ZERO,
            record: Record::Meta(vec![("site".into(), "t".into())]),
        },
        Timed {
            at: Instant::ZERO,
            record: Record::Config(config::render(&cfg)),
        },
    ];
    let dips = [(60u64, 20u64), (200, 20), (400, 40)];
    for s in 0..600u64 {
        let low = dips.iter().any(|&(from, len)| s >= from && s < from + len);
        let line = format!("spo2 {}\n", if low { 88 } else { 96 });
        records.push(Timed {
            at: Instant::from_secs(s),
            record: Record::Input(Input::Bytes {
                source: vigil::vitals::SourceId(0),
                data: line.into_bytes(),
            }),
        });
    }
    let dir = temp_dir("whatif");
    let path = dir.join("dips.vrec");
    file::write_all(&path, &records).unwrap();
    let session = replay::load(&path).unwrap();

    let (recorded, _) = replay::summarise(&session, None);
    assert_eq!(
        recorded["spo2.low"].count, 3,
        "15 s delay: every dip alarms"
    );

    let mut other = cfg.clone();
    other.engine.vitals[vigil::vitals::Vital::SpO2.index()].delay = Duration::from_secs(30);
    let diff = replay::compare(&session, &other);
    let row = diff
        .iter()
        .find(|d| d.alarm == "spo2.low")
        .expect("spo2.low differs");
    assert_eq!(row.recorded.unwrap().count, 3);
    assert_eq!(row.other.unwrap().count, 1, "30 s delay: only the long dip");
    assert_eq!(row.other.unwrap().first, Instant::from_secs(430));
}

/// Every kind of input the driver takes (bytes, link down and up, accepted
/// and rejected commands, system conditions, timer ticks) goes through one
/// `feed`: each kind shows up in the recording, and the replay reproduces
/// the live events one for one. An input kind handed to the pipeline
/// without being recorded makes the replay diverge (and its kind missing).
#[tokio::test(flavor = "current_thread")]
async fn every_input_kind_is_recorded_and_replays_the_same() {
    use std::collections::BTreeSet;
    use vigil::engine::SystemCondition;
    use vigil::pipeline::Input;

    let dir = temp_dir("every-input");
    let rec_dir = dir.join("recordings");
    let (daemon, mut monitor) = recording_daemon(&dir, "");
    let mut live: Vec<Event> = Vec::new();
    send_when_open(&mut monitor, b"hr 72\nspo2 97\n").await;
    daemon
        .command(Command::StartSession {
            session: ShortText::new("S-9"),
        })
        .await
        .unwrap();
    // Rejected: nothing to acknowledge. The replay must reject it too.
    assert!(daemon
        .command(Command::AcknowledgeAll {
            by: ShortText::new("RN")
        })
        .await
        .is_err());
    let system = daemon.daemon.system.clone();
    system
        .send((SystemCondition::BrokerUnreachable, true))
        .await
        .unwrap();
    monitor.send(b"spo2 84\n");
    tokio::time::sleep(Duration::from_millis(400)).await;
    system
        .send((SystemCondition::BrokerUnreachable, false))
        .await
        .unwrap();
    // Down, silence past the timeout (ticks), up again.
    monitor.unplug();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    monitor.replug();
    send_when_open(&mut monitor, b"hr 70\nspo2 96\n").await;
    finish(daemon, &mut live).await;

    let session = replay::load(&recording_in(&rec_dir)).unwrap();
    let kinds: BTreeSet<&str> = session
        .steps
        .iter()
        .filter_map(|(_, step)| match step {
            replay::Step::Input(Input::Bytes { .. }) => Some("bytes"),
            replay::Step::Input(Input::Link { up: true, .. }) => Some("link up"),
            replay::Step::Input(Input::Link { up: false, .. }) => Some("link down"),
            replay::Step::Input(Input::Command(_)) => Some("command"),
            replay::Step::Input(Input::System { .. }) => Some("system"),
            replay::Step::Input(Input::Tick) => Some("tick"),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["bytes", "command", "link down", "link up", "system", "tick"]),
        "every input kind fed live is in the recording"
    );
    let mut replayed = Vec::new();
    let stats = replay::run(&session, None, |e| replayed.push(*e), |_| {});
    assert_eq!(
        stats.commands_rejected, 1,
        "the rejected command replays as rejected"
    );
    let l = assert_same_events(&live, &replayed);
    let all = l.join("\n");
    for needle in ["BrokerUnreachable", "Disconnected", "Session"] {
        assert!(all.contains(needle), "the run exercised {needle}");
    }
}
