//! Property tests: random input streams against the engine's invariants.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::vitals::{DeviceTime, NibpMode};

#[derive(Clone, Debug)]
enum Input {
    Continuous {
        vital: usize,
        value: f32,
        validity: usize,
    },
    Nibp {
        sys: f32,
        dia: f32,
        validity: usize,
        new: bool,
    },
    Command(u8, u8),
    Device(u8, u8),
    System(u8, bool),
    Timeout,
}

fn input() -> impl Strategy<Value = (u64, Input)> {
    let dt = prop_oneof![0u64..2_000, 0u64..120_000, Just(0u64)];
    let inp = prop_oneof![
        6 => (0usize..5, -50.0f32..450.0, 0usize..8)
            .prop_map(|(vital, value, validity)| Input::Continuous { vital, value, validity }),
        2 => (40.0f32..260.0, 20.0f32..160.0, 0usize..8, any::<bool>())
            .prop_map(|(sys, dia, validity, new)| Input::Nibp { sys, dia, validity, new }),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Input::Command(a, b)),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Input::Device(a, b)),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(a, b)| Input::System(a, b)),
        2 => Just(Input::Timeout),
    ];
    (dt, inp)
}

/// The continuous vitals.
const CONTINUOUS: [Vital; 5] = [
    Vital::HeartRate,
    Vital::PulseRate,
    Vital::SpO2,
    Vital::RespRate,
    Vital::EtCo2,
];

/// Readings of continuous vitals that must never start a physiological
/// alarm: a value the device flags (every validity but valid; questionable
/// with the policy off), or a "valid" value outside the plausible range (an
/// artifact). For the respiration rate `unavailable` is excluded: from a
/// measuring module it means no breath was found, the apnoea rule's input.
fn flagged_continuous() -> impl Strategy<Value = Vec<(u64, usize, f32, usize)>> {
    let one = (0u64..20_000, 0usize..5, -50.0f32..450.0, 0usize..9);
    prop::collection::vec(one, 1..200)
}

fn validity(i: usize) -> Validity {
    // Valid half of the time.
    if i < 4 {
        Validity::Valid
    } else {
        Validity::ALL[i]
    }
}

/// Alarms that random streams raise often: acknowledgement targets. (Chosen
/// from a fixed list, not from the engine's state, so that the input does not
/// depend on when timeouts ran.)
const ACK_TARGETS: [&str; 14] = [
    "hr.artifact",
    "hr.invalid",
    "hr.high",
    "hr.critical_high",
    "hr.stale",
    "spo2.low",
    "spo2.critical_low",
    "spo2.sensor_off",
    "spo2.rate_fall",
    "nibp_sys.critical_high",
    "nibp.invalid",
    "nibp.cycle_overdue",
    "source.a.disconnected",
    "system.queue_overflow",
];

fn command(a: u8, b: u8) -> Command {
    let names = ["a".to_owned(), "b".to_owned()];
    match a % 9 {
        0 if b.is_multiple_of(4) => Command::AcknowledgeAll {
            by: ShortText::new("RN"),
        },
        0 | 1 => Command::Acknowledge {
            alarm: AlarmId::parse(ACK_TARGETS[b as usize % ACK_TARGETS.len()], &names)
                .expect("valid id"),
            by: ShortText::new("RN"),
        },
        2 => Command::PauseAudio {
            duration: Duration::from_secs(u64::from(b)),
        },
        3 => Command::ResumeAudio,
        4 => Command::StartSession {
            session: ShortText::new("S-1"),
        },
        5 => Command::Dose {
            route: ShortText::new("im"),
            amount: None,
            note: ShortText::empty(),
        },
        6 => Command::SetBaseline {
            vital: Vital::ALL[b as usize % Vital::COUNT],
            value: f32::from(b),
        },
        7 => Command::StartRecovery,
        _ => Command::EndSession,
    }
}

/// Runs the inputs; with `timeouts` false, `Timeout` inputs are skipped.
fn run(inputs: &[(u64, Input)], timeouts: bool) -> (Vec<Event>, Engine) {
    let mut e = Engine::new(EngineConfig {
        source_names: vec!["a".into(), "b".into()],
        ..EngineConfig::default()
    });
    let mut events = Vec::new();
    let mut clock = 1_000_000u64; // nanoseconds
    let mut nibp_time = 0i64;
    for (dt, input) in inputs {
        clock += dt * 1_000_000;
        let now = Instant::from_nanos(clock);
        let reading = |m| Reading {
            source: SourceId(0),
            arrival: now,
            device_time: None,
            measurement: m,
        };
        match *input {
            Input::Continuous {
                vital,
                value,
                validity: v,
            } => {
                let s = Sample::new(value, validity(v));
                let m =
                    Measurement::of_continuous(CONTINUOUS[vital], s).expect("a continuous vital");
                e.handle_reading(now, reading(m));
            }
            Input::Nibp {
                sys,
                dia,
                validity: v,
                new,
            } => {
                if new {
                    nibp_time += 1;
                }
                let m = Measurement::Nibp(Nibp {
                    systolic: Sample::new(sys, validity(v)),
                    diastolic: Sample::new(dia, validity(v)),
                    mean: Sample::new((sys + 2.0 * dia) / 3.0, validity(v)),
                    measured_at: Some(DeviceTime(nibp_time)),
                    mode: NibpMode::Auto,
                });
                e.handle_reading(now, reading(m));
            }
            Input::Command(a, b) => {
                let c = command(a, b);
                let _ = e.handle_command(now, c);
            }
            Input::Device(a, b) => {
                let source = SourceId(u16::from(a % 3));
                let input = match b % 4 {
                    0 => DeviceInput::Health(SourceHealth::ALL[usize::from(a) % 7]),
                    1 => DeviceInput::Note(DeviceNote::MonitorRestarted),
                    2 => DeviceInput::Frames {
                        good: u32::from(a),
                        dropped: u32::from(b),
                    },
                    _ => DeviceInput::Note(DeviceNote::LowBattery(a % 2 == 0)),
                };
                e.handle_device(now, source, input);
            }
            Input::System(a, present) => {
                let c = [
                    SystemCondition::QueueOverflow,
                    SystemCondition::BrokerUnreachable,
                    SystemCondition::StorageFailure,
                    SystemCondition::JournalFailure,
                    SystemCondition::JournalCorrupt,
                    SystemCondition::LinkUnstable,
                    SystemCondition::InputOverload,
                    SystemCondition::Hl7Undelivered,
                    SystemCondition::Hl7BacklogFailure,
                    SystemCondition::BrokerRefused,
                ][a as usize % 10];
                e.handle_system(now, c, present);
            }
            Input::Timeout => {
                if timeouts {
                    // Just before the clock: never exactly at a deadline.
                    e.handle_timeout(Instant::from_nanos(clock - 1));
                }
            }
        }
        events.extend(std::iter::from_fn(|| e.poll_event()));
        if let Some(t) = e.poll_timeout() {
            assert!(t > e.now || timeouts, "nothing due is left behind");
        }
    }
    e.handle_timeout(Instant::from_nanos(clock + 1));
    events.extend(std::iter::from_fn(|| e.poll_event()));
    (events, e)
}

/// NIBP measurements with one implausible component (a value far outside
/// every NIBP plausibility range, flagged valid by the device), the others
/// anywhere from hypotension to a hypertensive crisis, each a new
/// determination or a repeat, with time passing.
fn tainted_nibp() -> impl Strategy<Value = Vec<(u64, [f32; 3], bool)>> {
    let one = (
        0u64..900_000,
        40.0f32..260.0,
        20.0f32..160.0,
        0usize..3,
        prop_oneof![Just(5.0f32), Just(400.0f32)],
        any::<bool>(),
    )
        .prop_map(|(dt, sys, dia, bad, taint, new)| {
            let mut v = [sys, dia, (sys + 2.0 * dia) / 3.0];
            v[bad] = taint;
            (dt, v, new)
        });
    prop::collection::vec(one, 1..60)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn an_nibp_with_an_implausible_component_never_alarms_physiologically(
        stream in tainted_nibp()
    ) {
        let mut e = Engine::new(EngineConfig::default());
        let mut clock = 1_000_000u64;
        let mut measured = 0i64;
        let mut events = Vec::new();
        for (dt, [sys, dia, mean], new) in stream {
            clock += dt * 1_000_000;
            let now = Instant::from_nanos(clock);
            e.handle_timeout(now);
            if new {
                measured += 1;
            }
            let m = Measurement::Nibp(Nibp {
                systolic: Sample::new(sys, Validity::Valid),
                diastolic: Sample::new(dia, Validity::Valid),
                mean: Sample::new(mean, Validity::Valid),
                measured_at: Some(DeviceTime(measured)),
                mode: NibpMode::Auto,
            });
            e.handle_reading(now, Reading {
                source: SourceId(0),
                arrival: now,
                device_time: None,
                measurement: m,
            });
            events.extend(std::iter::from_fn(|| e.poll_event()));
        }
        for ev in &events {
            if let EventKind::Alarm(a) = ev.kind {
                prop_assert!(
                    a.kind != AlarmKind::Physiological,
                    "a tainted measurement started {:?} at {:?}", a.id, a.value
                );
            }
        }
    }

    #[test]
    fn no_flagged_or_implausible_continuous_value_alarms_physiologically(
        stream in flagged_continuous()
    ) {
        let mut cfg = EngineConfig::default();
        for r in &mut cfg.vitals {
            r.questionable = QuestionablePolicy::Off;
        }
        let mut e = Engine::new(cfg.clone());
        let mut clock = 1_000_000u64;
        let mut events = Vec::new();
        for (dt, vital, value, v) in stream {
            clock += dt * 1_000_000;
            let now = Instant::from_nanos(clock);
            let vital = CONTINUOUS[vital];
            let r = cfg.rules(vital);
            let sample = match Validity::ALL[v] {
                // Valid but implausible: beyond either end of the range.
                Validity::Valid if value < 200.0 => {
                    Sample::valid(r.plausible_min - 1.0 - value.abs())
                }
                Validity::Valid => Sample::valid(r.plausible_max + 1.0 + value.abs()),
                Validity::Unavailable if vital == Vital::RespRate => {
                    Sample::new(value, Validity::Invalid)
                }
                flag => Sample::new(value, flag),
            };
            e.handle_timeout(now);
            e.handle_reading(now, Reading {
                source: SourceId(0),
                arrival: now,
                device_time: None,
                measurement: Measurement::of_continuous(vital, sample).expect("continuous"),
            });
            events.extend(std::iter::from_fn(|| e.poll_event()));
        }
        e.handle_timeout(Instant::from_nanos(clock + 60_000_000_000));
        events.extend(std::iter::from_fn(|| e.poll_event()));
        for ev in &events {
            if let EventKind::Alarm(a) = ev.kind {
                prop_assert!(
                    a.kind != AlarmKind::Physiological,
                    "a flagged value started {:?} at {:?}", a.id, a.value
                );
            }
        }
    }

    #[test]
    fn random_streams_keep_the_invariants(inputs in prop::collection::vec(input(), 0..400)) {
        let (events, engine) = run(&inputs, true);

        // Sequence numbers strictly increase, times never go backwards.
        for w in events.windows(2) {
            prop_assert!(w[0].seq < w[1].seq);
            prop_assert!(w[0].at <= w[1].at);
        }

        // Every started alarm ends or is still present; nothing ends twice.
        let mut open = BTreeSet::new();
        for ev in &events {
            if let EventKind::Alarm(a) = ev.kind {
                match a.phase {
                    Phase::Start => prop_assert!(open.insert(a.id), "started twice: {:?}", a.id),
                    Phase::End => prop_assert!(open.remove(&a.id), "ended unstarted: {:?}", a.id),
                    _ => prop_assert!(open.contains(&a.id), "{:?} of unstarted {:?}", a.phase, a.id),
                }
                // Technical data never raises a physiological alarm with a non-valid value.
                if a.kind == AlarmKind::Physiological && a.phase == Phase::Start {
                    prop_assert!(a.value.is_some_and(f32::is_finite));
                }
            }
        }
        let present: BTreeSet<_> = engine.present_alarms().iter().map(|a| a.id).collect();
        prop_assert_eq!(open, present);
    }

    #[test]
    fn same_input_same_events_whenever_timeouts_are_called(
        inputs in prop::collection::vec(input(), 0..300)
    ) {
        let (a, _) = run(&inputs, true);
        let (b, _) = run(&inputs, true);
        prop_assert_eq!(&a, &b);
        // Without any intermediate handle_timeout the stream is the same:
        // timer events carry their deadlines and run before later inputs.
        let (c, _) = run(&inputs, false);
        prop_assert_eq!(&a, &c);
    }
}
