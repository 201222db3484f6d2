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
