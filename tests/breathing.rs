//! Breathing end to end: the daemon reading a simulated capnograph monitor
//! that plays the `apnoea` scenario raises and ends the apnoea and
//! respiratory-depression alarms when the scenario says, and the
//! recording of that session replays to the very same events.

use std::time::Duration;

use vigil::config;
use vigil::engine::{Event, EventKind, Phase};
use vigil::record::file::RecorderSettings;
use vigil::replay;
use vigil::sim::Scenario;

use crate::replay::{assert_same_events, recording_in};
use crate::util::daemon::{start_recording, temp_dir};

/// Session time played per real second.
const SPEED: u64 = 60;

/// The alarm events (id, phase, session time) among `events`.
fn alarms(events: &[Event], names: &[String]) -> Vec<(String, Phase, Duration)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Alarm(a) => Some((a.id.key(names), a.phase, e.at.since_origin())),
            _ => None,
        })
        .collect()
}

/// When the one `id` alarm of `phase` happened.
fn when(alarms: &[(String, Phase, Duration)], id: &str, phase: Phase) -> Duration {
    let at: Vec<Duration> = alarms
        .iter()
        .filter(|(i, p, _)| i == id && *p == phase)
        .map(|(_, _, t)| *t)
        .collect();
    assert_eq!(at.len(), 1, "one {id} {phase:?}: {alarms:?}");
    at[0]
}

#[tokio::test(flavor = "current_thread")]
async fn a_simulated_capnograph_raises_apnoea_and_depression_alarms_and_replays() {
    let scenario = Scenario::builtin("apnoea").unwrap().unwrap();
    let apnoea = *scenario.events_of("apnoea").next().unwrap();
    let depression = *scenario.events_of("respiratory-depression").next().unwrap();
    let dir = temp_dir("breathing");
    let rec_dir = dir.join("recordings");
    // A generous source timeout: at 60x a scheduling hiccup of 0.2 s is
    // 12 s of session.
    let cfg = config::parse(
        &format!(
            "[[source]]\nname = \"monitor\"\nprotocol = \"vigil-line\"\nsimulated = \"apnoea\"\nspeed = {SPEED}\ntimeout = \"60s\"\n"
        ),
        "test",
    )
    .unwrap();
    let names = cfg.engine.source_names.clone();
    let mut daemon = start_recording(
        cfg,
        Some(RecorderSettings {
            dir: rec_dir.clone(),
            stem: "breathing".into(),
            sync_every: Duration::from_millis(50),
            retention: Duration::from_secs(86_400),
            queue: 8192,
            wake_when_half_full: true,
        }),
    );
    // Until the depression has ended (its ramp back included) and a
    // minute more, in session time.
    let until = depression.end() + Duration::from_secs(3 * 60);
    let mut live: Vec<Event> = Vec::new();
    while live.last().is_none_or(|e| e.at.since_origin() < until) {
        let batch = daemon.events_during(Duration::from_millis(200)).await;
        live.extend(batch.iter().map(|m| m.event));
    }
    let (_, rest) = daemon.stop_and_drain().await;
    live.extend(rest.iter().map(|m| m.event));

    // Live: the alarms where the scenario puts them. Lower bounds are
    // exact (a rule cannot fire before its delay); upper bounds allow for
    // the daemon reading the simulated monitor late under load.
    let slack = Duration::from_secs(12);
    let seen = alarms(&live, &names);
    let delay = Duration::from_secs(20);
    let start = when(&seen, "rr.apnoea", Phase::Start);
    assert!(
        start >= apnoea.start + delay && start <= apnoea.start + delay + slack,
        "rr.apnoea at {start:?}, the apnoea began at {:?}",
        apnoea.start
    );
    let end = when(&seen, "rr.apnoea", Phase::End);
    assert!(
        end >= apnoea.end() && end <= apnoea.end() + slack,
        "rr.apnoea ended at {end:?}, breathing resumed at {:?}",
        apnoea.end()
    );
    // One alarm per condition: an RR of 0 is apnoea, not also RR low.
    assert!(
        seen.iter()
            .all(|(id, _, t)| !(id == "rr.low" && *t < depression.start)),
        "{seen:?}"
    );
    for id in ["rr.low", "etco2.high"] {
        let start = when(&seen, id, Phase::Start);
        let end = when(&seen, id, Phase::End);
        assert!(
            start > depression.start && start < depression.start + Duration::from_secs(3 * 60),
            "{id} at {start:?}"
        );
        assert!(
            end > depression.end() && end < depression.end() + Duration::from_secs(3 * 60),
            "{id} ended at {end:?}"
        );
    }

    // Replay: the recording gives the same events, field by field.
    let session = replay::load(&recording_in(&rec_dir)).unwrap();
    assert!(session.corrupt_tail.is_none());
    let mut replayed = Vec::new();
    replay::run(&session, None, |e| replayed.push(*e), |_| {});
    assert_same_events(&live, &replayed);
    assert_eq!(alarms(&replayed, &names), seen);
}

/// A 20-minute recording, one reading a second, from a monitor with a
/// capnograph: RR 14 and etCO2 38, no breath (RR 0) for 45 s from 5 min,
/// RR 5 and etCO2 56 from 10 min for 200 s; HR and SpO2 steady.
fn breathing_csv() -> String {
    let mut rows = vec!["time,vital,value,validity".to_owned()];
    for s in 0..1200u32 {
        let (rr, etco2) = match s {
            300..345 => (0, 38),
            600..800 => (5, 56),
            _ => (14, 38 + s % 3),
        };
        rows.push(format!("{s},hr,72,"));
        rows.push(format!("{s},spo2,97,"));
        rows.push(format!("{s},rr,{rr},"));
        rows.push(format!("{s},etco2,{etco2},"));
    }
    rows.join("\n") + "\n"
}

/// [`breathing_csv`] as a recording in `dir`, with a session started at
/// once and ended 10 s before the end.
fn breathing_recording(dir: &std::path::Path) -> std::path::PathBuf {
    use vigil::record::export::parse_rfc3339;
    use vigil::record::file;
    use vigil::record::import::{self, ImportOptions};

    let rows = import::parse_csv(&breathing_csv()).unwrap();
    let options = ImportOptions {
        start: parse_rfc3339("2026-03-01T09:30:00Z").unwrap(),
        ..ImportOptions::default()
    };
    let records = crate::record_tools::with_commands(
        import::build(&rows, &options).unwrap(),
        &[
            (
                0.5,
                vigil::engine::Command::StartSession {
                    session: vigil::vitals::ShortText::new("KT-0077"),
                },
            ),
            (1190.5, vigil::engine::Command::EndSession),
        ],
    );
    let vrec = dir.join("session.vrec");
    file::write_all(&vrec, &records).unwrap();
    vrec
}

/// A report with the breathing panel still prints every chart on the
/// first page (Letter and A4), the tables after it, and no series spills.
#[test]
fn a_report_with_breathing_prints_its_charts_on_the_first_page() {
    use crate::record_tools::{check_no_chart, check_paper, colour_count, printed_report};
    use vigil::report::colour;

    let vrec = breathing_recording(&temp_dir("print-breathing"));
    let series = [
        ("heart rate line", colour::HR),
        ("SpO2 line", colour::SPO2),
        ("RR line", colour::RR),
        ("etCO2 line", colour::ETCO2),
    ];
    for (paper, pages) in printed_report(&vrec, "report-print-breathing") {
        assert!(pages.len() >= 2, "{paper}: {} page(s)", pages.len());
        check_paper(paper, &pages[0]);
        let first = &pages[0].2;
        for (what, hex) in series
            .iter()
            .chain(&[("high priority alarm", colour::HIGH)])
        {
            let n = colour_count(first, hex);
            assert!(
                n >= 100,
                "{paper}: {what} ({hex}) on the first page: {n} pixels"
            );
        }
        // etCO2's dark brown is within the tolerance of anti-aliased
        // table text, so the spill check takes the three clear hues.
        for page in &pages[1..] {
            check_no_chart(paper, page, &series[..3]);
        }
    }
}

#[test]
fn the_report_shows_rr_etco2_their_limits_and_the_apnoea() {
    use vigil::report::{self, ReportOptions};

    let dir = temp_dir("report-breathing");
    let vrec = breathing_recording(&dir);
    let html_path = dir.join("session.html");
    let a = report::report(&vrec, &html_path, &ReportOptions::default()).unwrap();
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(a.has_breathing());
    assert_eq!((a.series[3].len(), a.series[4].len()), (1200, 1200));

    // The chart: a breathing panel with both series and the default
    // limits (alarms.md: RR 8-30 /min, etCO2 30-50 mmHg).
    for needle in [
        "Breathing: respiration rate (RR), /min, and end-tidal CO2 (etCO2), mmHg",
        "class=\"series rr\"",
        "class=\"series etco2\"",
        "<title>RR low limit 8</title>",
        "<title>RR high limit 30</title>",
        "<title>etCO2 low limit 30</title>",
        "<title>etCO2 high limit 50</title>",
        // The apnoea 20 s after the last breath, ended by the next one;
        // the depression's alarms after their 10 s delays, escalated to
        // high when nobody acknowledged them for 2 min.
        "<title>rr.apnoea (high physiological) 09:35:20–09:35:45</title>",
        "<title>rr.low (medium physiological) 09:40:10–09:42:10</title>",
        "<title>rr.low (high physiological) 09:42:10–09:43:20</title>",
        "<title>etco2.high (medium physiological) 09:40:10–09:42:10</title>",
        // Peaks, the readings count, the vitals table's columns.
        "<tr id=\"peak-rr\"><td>Lowest RR</td><td>0 /min</td><td>09:35:00</td></tr>",
        "<tr id=\"peak-etco2\"><td>Highest etCO2</td><td>56 mmHg</td><td>09:40:00</td></tr>",
        "RR 1200, etCO2 1200, NIBP 0",
        "<th>RR /min</th><th>etCO2 mmHg</th>",
        // Time outside the limits: RR below 8 in the apnoea and the
        // depression (45 s + 200 s), etCO2 above 50 in the depression.
        "<tr data-vital=\"rr\"><td>rr (/min)</td><td>8</td><td>4 min 05 s</td><td>30</td><td>0 s</td><td>19 min 59 s</td></tr>",
        "<tr data-vital=\"etco2\"><td>etco2 (mmHg)</td><td>30</td><td>0 s</td><td>50</td><td>3 min 20 s</td><td>19 min 59 s</td></tr>",
    ] {
        assert!(html.contains(needle), "{needle}");
    }
    // The list of alarms names the apnoea.
    assert!(
        html.contains("<td title=\"rr.apnoea\">"),
        "in the list of alarms"
    );
}
