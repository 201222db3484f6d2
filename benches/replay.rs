//! Replay speed: a two-hour session (SpO2 and HR every second, NIBP every
//! 5 minutes) built by `record import`, so its bytes are vigil-line text made
//! by the line encoder and replay runs them through the real decoder, the
//! pipeline and the alarm engine. The session has a dose, a desaturation,
//! a tachycardia and a sensor-off spell, so alarms start, escalate and end.
//!
//! Budget: under 100 ms for the whole session (`replay_two_hours`);
//! `load_and_replay_two_hours` adds reading and parsing the file.
//!
//! Run: `cargo bench --bench replay`.

use std::path::PathBuf;

use divan::counter::ItemsCount;
use divan::Bencher;
use vigil::engine::{Command, EventKind};
use vigil::pipeline::Input;
use vigil::record::import::{self, ImportOptions};
use vigil::record::{file, Record, Timed};
use vigil::replay::{self, Session};
use vigil::time::Instant;
use vigil::vitals::ShortText;

fn main() {
    divan::main();
}

const SECONDS: u32 = 2 * 3600;

fn csv() -> String {
    let mut rows = vec!["time,vital,value,validity".to_owned()];
    for s in 0..SECONDS {
        let wave = [0, 1, 2, 1, 0, -1, -2, -1][(s / 20 % 8) as usize];
        let hr = if (2400..2700).contains(&s) {
            125
        } else {
            74 + wave
        };
        if (4000..4030).contains(&s) {
            rows.push(format!("{s},spo2,,sensor_off"));
        } else {
            let spo2 = if (1800..1900).contains(&s) { 88 } else { 97 };
            rows.push(format!("{s},spo2,{spo2},"));
        }
        rows.push(format!("{s},hr,{hr},"));
        if s % 300 == 0 {
            rows.push(format!("{s},nibp,{}/{}/{},", 120 + s / 600, 78, 92));
        }
    }
    rows.join("\n") + "\n"
}

/// Writes the recording; returns its path.
fn recording() -> PathBuf {
    let rows = import::parse_csv(&csv()).expect("scenario parses");
    let mut records = import::build(&rows, &ImportOptions::default()).expect("import");
    let command = |secs: u64, command: Command| Timed {
        at: Instant::from_secs(secs) + core::time::Duration::from_millis(500),
        record: Record::Input(Input::Command(command)),
    };
    records.push(command(
        0,
        Command::StartSession {
            session: ShortText::new("BENCH-1"),
        },
    ));
    records.push(command(
        900,
        Command::Dose {
            route: ShortText::new("im"),
            amount: None,
            note: ShortText::new("bench"),
        },
    ));
    // Keep time order (stable: the metadata and configuration stay first).
    records.sort_by_key(|r| (r.at, matches!(r.record, Record::End(_))));
    let path = std::env::temp_dir().join(format!("vigil-bench-replay-{}.vrec", std::process::id()));
    file::write_all(&path, &records).expect("write the recording");
    path
}

fn session() -> (Session, PathBuf) {
    let path = recording();
    let session = replay::load(&path).expect("load");
    // The replay must really decode and alarm.
    let (mut readings, mut alarms) = (0u64, 0u64);
    replay::run(
        &session,
        None,
        |e| match e.kind {
            EventKind::Reading(_) => readings += 1,
            EventKind::Alarm(_) => alarms += 1,
            _ => {}
        },
        |_| {},
    );
    assert_eq!(readings, u64::from(SECONDS) * 2 + u64::from(SECONDS / 300));
    assert!(alarms >= 6, "{alarms} alarm events");
    (session, path)
}

#[divan::bench(sample_count = 20)]
fn replay_two_hours(bencher: Bencher) {
    let (session, path) = session();
    bencher
        .counter(ItemsCount::new(session.steps.len()))
        .bench(|| {
            let mut events = 0u64;
            let stats = replay::run(&session, None, |_| events += 1, |_| {});
            divan::black_box((stats, events))
        });
    let _ = std::fs::remove_file(path);
}

#[divan::bench(sample_count = 20)]
fn load_and_replay_two_hours(bencher: Bencher) {
    let (session, path) = session();
    bencher
        .counter(ItemsCount::new(session.steps.len()))
        .bench(|| {
            let s = replay::load(&path).expect("load");
            divan::black_box(replay::run(&s, None, |_| {}, |_| {}))
        });
    let _ = std::fs::remove_file(path);
}
