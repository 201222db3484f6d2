//! Unit tests of every engine rule, driven by a manual clock.

use super::*;
use crate::vitals::{DeviceTime, NibpMode};

const SEC: u64 = 1_000;

fn ms(t: u64) -> Instant {
    Instant::from_millis(t)
}

fn config() -> EngineConfig {
    EngineConfig {
        source_names: vec!["monitor".into(), "oximeter".into()],
        ..EngineConfig::default()
    }
}

fn engine() -> Engine {
    Engine::new(config())
}

fn reading(t: u64, measurement: Measurement) -> Reading {
    Reading {
        source: SourceId(0),
        arrival: ms(t),
        device_time: None,
        measurement,
    }
}

fn hr(t: u64, v: f32) -> Reading {
    reading(t, Measurement::HeartRate(Sample::valid(v)))
}

fn spo2(t: u64, v: f32) -> Reading {
    reading(t, Measurement::SpO2(Sample::valid(v)))
}

fn spo2_flag(t: u64, validity: Validity) -> Reading {
    reading(t, Measurement::SpO2(Sample::new(0.0, validity)))
}

fn nibp(t: u64, sys: f32, dia: f32, at: i64) -> Reading {
    reading(
        t,
        Measurement::Nibp(Nibp {
            systolic: Sample::valid(sys),
            diastolic: Sample::valid(dia),
            mean: Sample::valid((sys + 2.0 * dia) / 3.0),
            measured_at: Some(DeviceTime(at)),
            mode: NibpMode::Auto,
        }),
    )
}

fn feed(e: &mut Engine, r: Reading) {
    e.handle_reading(r.arrival, r);
}

fn drain(e: &mut Engine) -> Vec<Event> {
    std::iter::from_fn(|| e.poll_event()).collect()
}

/// Alarm events as (key, phase, time in ms).
fn alarms(e: &mut Engine) -> Vec<(String, Phase, u64)> {
    let names = e.config().source_names.clone();
    drain(e)
        .into_iter()
        .filter_map(|ev| match ev.kind {
            EventKind::Alarm(a) => Some((a.id.key(&names), a.phase, ev.at.as_nanos() / 1_000_000)),
            _ => None,
        })
        .collect()
}

fn key(k: &str, phase: Phase, t: u64) -> (String, Phase, u64) {
    (k.to_owned(), phase, t)
}

/// Feeds one reading per second from `from` (inclusive) to `to` (exclusive).
fn every_second(e: &mut Engine, from: u64, to: u64, make: impl Fn(u64) -> Reading) {
    let mut t = from;
    while t < to {
        feed(e, make(t));
        t += SEC;
    }
}

fn id(k: &str) -> AlarmId {
    AlarmId::parse(k, &config().source_names).expect(k)
}

#[test]
fn alarm_starts_exactly_when_its_delay_elapses() {
    let mut e = engine();
    feed(&mut e, spo2(0, 89.0));
    assert!(alarms(&mut e).is_empty());
    // SpO2 low has a 15 s condition delay; keep the value below the limit.
    every_second(&mut e, SEC, 15 * SEC, |t| spo2(t, 89.0));
    assert!(alarms(&mut e).is_empty());
    assert_eq!(e.poll_timeout(), Some(ms(15 * SEC)));
    e.handle_timeout(Instant::from_nanos(15 * SEC * 1_000_000 - 1));
    assert!(alarms(&mut e).is_empty(), "one nanosecond early");
    e.handle_timeout(ms(15 * SEC));
    let ev = drain(&mut e);
    assert_eq!(ev.len(), 1);
    let EventKind::Alarm(a) = ev[0].kind else {
        panic!("{ev:?}")
    };
    assert_eq!(ev[0].at, ms(15 * SEC));
    assert_eq!(a.id, id("spo2.low"));
    assert_eq!((a.phase, a.state), (Phase::Start, AlarmState::Active));
    assert_eq!((a.onset, a.determined), (ms(0), ms(15 * SEC)));
    assert_eq!((a.value, a.limit), (Some(89.0), Some(90.0)));
    assert_eq!(a.delay, Duration::from_secs(15));
    assert_eq!(a.kind, AlarmKind::Physiological);
    assert_eq!(a.priority, Priority::Medium);
}

#[test]
fn timer_events_carry_their_deadline_even_when_the_caller_wakes_late() {
    let mut e = engine();
    every_second(&mut e, 0, 14 * SEC, |t| spo2(t, 89.0));
    // Nobody calls handle_timeout; the next reading arrives at 20 s.
    feed(&mut e, spo2(20 * SEC, 89.0));
    let a = alarms(&mut e);
    assert!(
        a.contains(&key("spo2.low", Phase::Start, 15 * SEC)),
        "{a:?}"
    );
}

#[test]
fn critical_tier_has_no_delay() {
    let mut e = engine();
    feed(&mut e, spo2(0, 84.0));
    assert_eq!(
        alarms(&mut e),
        vec![key("spo2.critical_low", Phase::Start, 0)]
    );
    every_second(&mut e, SEC, 16 * SEC, |t| spo2(t, 84.0));
    assert_eq!(
        alarms(&mut e),
        vec![key("spo2.low", Phase::Start, 15 * SEC)]
    );
}

#[test]
fn a_normal_reading_during_the_delay_cancels_the_condition() {
    let mut e = engine();
    every_second(&mut e, 0, 6 * SEC, |t| hr(t, 130.0));
    feed(&mut e, hr(6 * SEC, 100.0));
    every_second(&mut e, 7 * SEC, 30 * SEC, |t| hr(t, 100.0));
    assert!(alarms(&mut e).is_empty());
}

#[test]
fn hysteresis_keeps_an_alarm_until_the_value_is_clearly_back() {
    let mut e = engine();
    every_second(&mut e, 0, 11 * SEC, |t| hr(t, 130.0));
    assert_eq!(alarms(&mut e), vec![key("hr.high", Phase::Start, 10 * SEC)]);
    // High limit 120, hysteresis 3: 118 is inside the band, 116 is out.
    feed(&mut e, hr(11 * SEC, 118.0));
    assert!(alarms(&mut e).is_empty());
    feed(&mut e, hr(12 * SEC, 116.0));
    assert_eq!(alarms(&mut e), vec![key("hr.high", Phase::End, 12 * SEC)]);
}

#[test]
fn latching_alarm_waits_for_acknowledgement() {
    let mut cfg = config();
    cfg.vitals[Vital::HeartRate.index()].latching = true;
    let mut e = Engine::new(cfg);
    every_second(&mut e, 0, 11 * SEC, |t| hr(t, 130.0));
    assert_eq!(alarms(&mut e), vec![key("hr.high", Phase::Start, 10 * SEC)]);
    feed(&mut e, hr(11 * SEC, 100.0));
    let ev = drain(&mut e);
    let EventKind::Alarm(a) = ev[0].kind else {
        panic!()
    };
    assert_eq!((a.phase, a.state), (Phase::Update, AlarmState::Latched));
    assert_eq!(e.present_alarms().len(), 1, "still listed");
    e.handle_command(
        ms(20 * SEC),
        Command::Acknowledge {
            alarm: id("hr.high"),
            by: ShortText::new("RN-JD"),
        },
    )
    .unwrap();
    let ev = drain(&mut e);
    let phases: Vec<_> = ev
        .iter()
        .map(|e| match e.kind {
            EventKind::Alarm(a) => (a.phase, a.state, a.ack.map(|k| k.by)),
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        phases,
        vec![
            (
                Phase::Acknowledge,
                AlarmState::Latched,
                Some(ShortText::new("RN-JD"))
            ),
            (Phase::End, AlarmState::Ended, Some(ShortText::new("RN-JD"))),
        ]
    );
    assert!(e.present_alarms().is_empty());
}

#[test]
fn non_latching_alarm_ends_by_itself() {
    let mut e = engine();
    every_second(&mut e, 0, 11 * SEC, |t| hr(t, 130.0));
    feed(&mut e, hr(11 * SEC, 100.0));
    assert_eq!(
        alarms(&mut e),
        vec![
            key("hr.high", Phase::Start, 10 * SEC),
            key("hr.high", Phase::End, 11 * SEC)
        ]
    );
}

#[test]
fn acknowledged_alarm_re_alerts_after_the_interval_if_still_present() {
    let mut e = engine();
    every_second(&mut e, 0, 11 * SEC, |t| hr(t, 130.0));
    alarms(&mut e);
    e.handle_command(
        ms(11 * SEC),
        Command::Acknowledge {
            alarm: id("hr.high"),
            by: ShortText::new("AB"),
        },
    )
    .unwrap();
    assert_eq!(
        alarms(&mut e),
        vec![key("hr.high", Phase::Acknowledge, 11 * SEC)]
    );
    // Acknowledging again is harmless (displays may resend).
    e.handle_command(
        ms(12 * SEC),
        Command::Acknowledge {
            alarm: id("hr.high"),
            by: ShortText::new("AB"),
        },
    )
    .unwrap();
    assert!(alarms(&mut e).is_empty());
    every_second(&mut e, 12 * SEC, 140 * SEC, |t| hr(t, 130.0));
    // Re-alert 2 min after the acknowledgement.
    assert_eq!(
        alarms(&mut e),
        vec![key("hr.high", Phase::ReAlert, 131 * SEC)]
    );
}

#[test]
fn unacknowledged_alarm_escalates_step_by_step() {
    let mut e = engine();
    every_second(&mut e, 0, 11 * SEC, |t| hr(t, 130.0));
    alarms(&mut e);
    e.handle_timeout(ms(400 * SEC));
    // Escalation every 2 min: medium -> high at 130 s, then it stays high.
    // (HR went stale at 20 s, which is a separate technical alarm.)
    let ev = drain(&mut e);
    let esc: Vec<_> = ev
        .iter()
        .filter_map(|ev| match ev.kind {
            EventKind::Alarm(a) if a.phase == Phase::Escalate => {
                Some((a.id, a.base_priority, a.priority, ev.at))
            }
            _ => None,
        })
        .collect();
    assert!(esc.contains(&(
        id("hr.high"),
        Priority::Medium,
        Priority::High,
        ms(130 * SEC)
    )));
    assert_eq!(
        esc.iter().filter(|x| x.0 == id("hr.high")).count(),
        1,
        "{esc:?}"
    );
}

#[test]
fn audio_pause_is_bounded_and_broken_through_by_higher_priority() {
    let mut e = engine();
    every_second(&mut e, 0, 11 * SEC, |t| hr(t, 130.0));
    drain(&mut e);
    assert!(matches!(
        e.handle_command(
            ms(11 * SEC),
            Command::PauseAudio {
                duration: Duration::from_secs(121)
            }
        ),
        Err(CommandError::PauseTooLong { .. })
    ));
    e.handle_command(
        ms(11 * SEC),
        Command::PauseAudio {
            duration: Duration::from_secs(60),
        },
    )
    .unwrap();
    let ev = drain(&mut e);
    assert_eq!(
        ev[0].kind,
        EventKind::Audio(AudioEvent::Paused {
            until: ms(71 * SEC),
            ceiling: Priority::Medium
        })
    );
    assert_eq!(e.audio_paused_until(), Some(ms(71 * SEC)));
    // A high-priority alarm (critical HR) breaks through.
    feed(&mut e, hr(12 * SEC, 160.0));
    let ev = drain(&mut e);
    assert!(ev.iter().any(|ev| ev.kind
        == EventKind::Audio(AudioEvent::Resumed {
            reason: ResumeReason::BreakThrough(id("hr.critical_high"))
        })));
    assert_eq!(e.audio_paused_until(), None);

    // A pause that is not broken runs out at exactly its end.
    e.handle_command(
        ms(13 * SEC),
        Command::PauseAudio {
            duration: Duration::from_secs(30),
        },
    )
    .unwrap();
    drain(&mut e);
    e.handle_timeout(ms(60 * SEC));
    let ev = drain(&mut e);
    let resumed: Vec<_> = ev
        .iter()
        .filter(|ev| matches!(ev.kind, EventKind::Audio(_)))
        .collect();
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].at, ms(43 * SEC));
    assert_eq!(
        resumed[0].kind,
        EventKind::Audio(AudioEvent::Resumed {
            reason: ResumeReason::Expired
        })
    );
}

fn start_session(e: &mut Engine, t: u64) {
    e.handle_command(
        ms(t),
        Command::StartSession {
            session: ShortText::new("S-0042"),
        },
    )
    .unwrap();
}

fn dose(e: &mut Engine, t: u64) {
    e.handle_command(
        ms(t),
        Command::Dose {
            route: ShortText::new("im"),
            amount: DoseAmount::new(0.75, DoseUnit::MgPerKg),
            note: ShortText::new("ketamine"),
        },
    )
    .unwrap();
}

#[test]
fn baseline_is_the_median_of_the_baseline_phase_and_arms_trend_alarms() {
    let mut e = engine();
    start_session(&mut e, 0);
    // Baseline HR: mostly 70, one outlier that the median ignores.
    every_second(&mut e, 0, 60 * SEC, |t| {
        hr(t, if t == 30 * SEC { 110.0 } else { 70.0 })
    });
    drain(&mut e);
    dose(&mut e, 60 * SEC);
    let ev = drain(&mut e);
    assert!(ev.iter().any(|ev| ev.kind
        == EventKind::Session(SessionEvent::Baseline {
            vital: Vital::HeartRate,
            value: 70.0,
            readings: 60
        })));
    assert!(ev.iter().any(|ev| matches!(
        ev.kind,
        EventKind::Session(SessionEvent::Dose { number: 1, .. })
    )));
    assert_eq!(e.baseline(Vital::HeartRate), Some(70.0));
    // +30 % of 70 is 91: 95 for longer than the 10 s delay raises the trend alarm.
    every_second(&mut e, 61 * SEC, 72 * SEC, |t| hr(t, 95.0));
    let a = alarms(&mut e);
    assert!(
        a.contains(&key("hr.baseline_rise", Phase::Start, 71 * SEC)),
        "{a:?}"
    );
}

#[test]
fn a_dose_keeps_its_amount_and_a_nonsense_amount_is_refused() {
    let mut e = engine();
    start_session(&mut e, 0);
    let bad = Command::Dose {
        route: ShortText::new("im"),
        amount: Some(DoseAmount {
            value: f32::NAN,
            unit: DoseUnit::Mg,
        }),
        note: ShortText::empty(),
    };
    assert!(matches!(
        e.handle_command(ms(1_000), bad),
        Err(CommandError::BadDoseAmount { .. })
    ));
    drain(&mut e);
    dose(&mut e, 2_000);
    let ev = drain(&mut e);
    assert!(
        ev.iter().any(|ev| matches!(
            ev.kind,
            EventKind::Session(SessionEvent::Dose { number: 1, amount: Some(a), .. })
                if a == DoseAmount { value: 0.75, unit: DoseUnit::MgPerKg }
        )),
        "{ev:?}"
    );
}

#[test]
fn baseline_trends_stay_quiet_before_the_dose() {
    let mut e = engine();
    start_session(&mut e, 0);
    e.handle_command(
        ms(0),
        Command::SetBaseline {
            vital: Vital::HeartRate,
            value: 70.0,
        },
    )
    .unwrap();
    every_second(&mut e, 0, 60 * SEC, |t| hr(t, 100.0));
    assert!(!alarms(&mut e).iter().any(|a| a.0 == "hr.baseline_rise"));
}

#[test]
fn nibp_baseline_rise_uses_the_nearer_threshold() {
    let mut e = engine();
    start_session(&mut e, 0);
    feed(&mut e, nibp(0, 120.0, 80.0, 1));
    feed(&mut e, nibp(300 * SEC, 124.0, 80.0, 2));
    feed(&mut e, nibp(600 * SEC, 116.0, 78.0, 3));
    dose(&mut e, 601 * SEC);
    alarms(&mut e);
    // Baseline 120/80: systolic threshold min(+20 %, +40) = 144; diastolic +25 = 105.
    feed(&mut e, nibp(900 * SEC, 143.0, 90.0, 4));
    assert!(alarms(&mut e).is_empty());
    feed(&mut e, nibp(1200 * SEC, 146.0, 106.0, 5));
    assert_eq!(
        alarms(&mut e),
        vec![
            key("nibp_sys.baseline_rise", Phase::Start, 1200 * SEC),
            key("nibp_dia.baseline_rise", Phase::Start, 1200 * SEC),
        ]
    );
}

#[test]
fn rate_of_change_alarms() {
    let mut e = engine();
    // SpO2 falling 97 -> 92 within a minute: a fall of more than 4 points.
    every_second(&mut e, 0, 10 * SEC, |t| spo2(t, 97.0));
    feed(&mut e, spo2(10 * SEC, 95.0));
    feed(&mut e, spo2(20 * SEC, 93.0));
    assert!(alarms(&mut e).is_empty());
    feed(&mut e, spo2(30 * SEC, 92.5));
    assert_eq!(
        alarms(&mut e),
        vec![key("spo2.rate_fall", Phase::Start, 30 * SEC)]
    );

    // HR rising 30+ bpm within 5 minutes.
    let mut e = engine();
    every_second(&mut e, 0, 60 * SEC, |t| hr(t, 70.0));
    every_second(&mut e, 60 * SEC, 240 * SEC, |t| {
        hr(t, 70.0 + ((t - 60 * SEC) / (6 * SEC)) as f32)
    });
    let a = alarms(&mut e);
    // 70 + 31 is first reached at 60 s + 31 * 6 s = 246 s: not yet.
    assert!(a.is_empty(), "{a:?}");
    every_second(&mut e, 240 * SEC, 250 * SEC, |t| {
        hr(t, 70.0 + ((t - 60 * SEC) / (6 * SEC)) as f32)
    });
    assert_eq!(
        alarms(&mut e),
        vec![key("hr.rate_rise", Phase::Start, 246 * SEC)]
    );
}

#[test]
fn stale_data_raises_a_technical_alarm_and_clears_on_new_data() {
    let mut e = engine();
    every_second(&mut e, 0, 6 * SEC, |t| hr(t, 72.0));
    drain(&mut e);
    // Last reading at 5 s; HR goes stale after 10 s of silence.
    assert_eq!(
        e.poll_timeout(),
        Some(ms(10 * SEC)),
        "early wake-up is allowed"
    );
    e.handle_timeout(ms(10 * SEC));
    assert!(alarms(&mut e).is_empty());
    e.handle_timeout(ms(16 * SEC));
    let ev = drain(&mut e);
    let EventKind::Alarm(a) = ev[0].kind else {
        panic!()
    };
    assert_eq!((a.id, ev[0].at), (id("hr.stale"), ms(15 * SEC)));
    assert_eq!(a.kind, AlarmKind::Technical);
    feed(&mut e, hr(20 * SEC, 72.0));
    assert_eq!(alarms(&mut e), vec![key("hr.stale", Phase::End, 20 * SEC)]);
}

#[test]
fn invalid_values_raise_technical_alarms_never_physiological_ones() {
    let mut e = engine();
    every_second(&mut e, 0, 60 * SEC, |t| spo2_flag(t, Validity::SensorOff));
    let a = alarms(&mut e);
    assert_eq!(a, vec![key("spo2.sensor_off", Phase::Start, 5 * SEC)]);
    // Unavailable / under range replace it with the invalid alarm.
    every_second(&mut e, 60 * SEC, 70 * SEC, |t| {
        spo2_flag(t, Validity::UnderRange)
    });
    assert_eq!(
        alarms(&mut e),
        vec![
            key("spo2.sensor_off", Phase::End, 60 * SEC),
            key("spo2.invalid", Phase::Start, 65 * SEC)
        ]
    );
    // Implausible values are artifacts, counted, not physiology.
    let mut t = 70 * SEC;
    while t < 80 * SEC {
        feed(&mut e, spo2(t, 120.0));
        feed(&mut e, hr(t, 400.0));
        t += SEC;
    }
    let a = alarms(&mut e);
    assert!(
        a.contains(&key("spo2.artifact", Phase::Start, 75 * SEC)),
        "{a:?}"
    );
    assert!(
        a.contains(&key("hr.artifact", Phase::Start, 75 * SEC)),
        "{a:?}"
    );
    assert!(!a
        .iter()
        .any(|(k, _, _)| k.ends_with(".high") || k.ends_with(".low") || k.contains("critical")));
    assert_eq!(e.stats().implausible, 20);
    // Reading events carry the engine's verdict.
    feed(&mut e, hr(80 * SEC, 400.0));
    let ev = drain(&mut e);
    assert!(ev.iter().any(|ev| matches!(
        ev.kind,
        EventKind::Reading(Reading {
            measurement: Measurement::HeartRate(Sample {
                validity: Validity::Artifact,
                ..
            }),
            ..
        })
    )));
}

#[test]
fn an_invalid_value_neither_confirms_nor_ends_a_physiological_alarm() {
    let mut e = engine();
    every_second(&mut e, 0, 16 * SEC, |t| spo2(t, 88.0));
    assert_eq!(
        alarms(&mut e),
        vec![key("spo2.low", Phase::Start, 15 * SEC)]
    );
    // Sensor off: the low alarm stays (we don't know the patient recovered).
    every_second(&mut e, 16 * SEC, 30 * SEC, |t| {
        spo2_flag(t, Validity::SensorOff)
    });
    assert_eq!(
        alarms(&mut e),
        vec![key("spo2.sensor_off", Phase::Start, 21 * SEC)]
    );
    // A pending condition interrupted by invalid data restarts its delay.
    let mut e = engine();
    every_second(&mut e, 0, 10 * SEC, |t| spo2(t, 88.0));
    feed(&mut e, spo2_flag(10 * SEC, Validity::Artifact));
    every_second(&mut e, 11 * SEC, 20 * SEC, |t| spo2(t, 88.0));
    assert!(alarms(&mut e).is_empty());
    every_second(&mut e, 20 * SEC, 27 * SEC, |t| spo2(t, 88.0));
    assert_eq!(
        alarms(&mut e),
        vec![key("spo2.low", Phase::Start, 26 * SEC)]
    );
}

#[test]
fn nibp_high_needs_two_readings_within_the_window_hard_limit_needs_one() {
    let mut e = engine();
    feed(&mut e, nibp(0, 185.0, 100.0, 1));
    assert!(
        alarms(&mut e).is_empty(),
        "one reading above 180 is not enough"
    );
    feed(&mut e, nibp(300 * SEC, 186.0, 100.0, 2));
    assert_eq!(
        alarms(&mut e),
        vec![key("nibp.high", Phase::Start, 300 * SEC)]
    );
    feed(&mut e, nibp(600 * SEC, 150.0, 90.0, 3));
    // Unacknowledged for 2 min, the high-priority alarm is flagged for
    // escalation (it cannot go higher), then ends with the normal reading.
    assert_eq!(
        alarms(&mut e),
        vec![
            key("nibp.high", Phase::Escalate, 420 * SEC),
            key("nibp.high", Phase::End, 600 * SEC)
        ]
    );

    // Readings further apart than the confirmation window do not confirm.
    let mut e = engine();
    feed(&mut e, nibp(0, 185.0, 100.0, 1));
    feed(&mut e, nibp(1000 * SEC, 186.0, 100.0, 2));
    assert!(alarms(&mut e).is_empty());

    // A normal reading in between breaks the pair.
    let mut e = engine();
    feed(&mut e, nibp(0, 185.0, 100.0, 1));
    feed(&mut e, nibp(300 * SEC, 150.0, 100.0, 2));
    feed(&mut e, nibp(600 * SEC, 185.0, 100.0, 3));
    assert!(alarms(&mut e).is_empty());

    // One reading above the hard limit alarms at once.
    let mut e = engine();
    feed(&mut e, nibp(0, 205.0, 121.0, 1));
    assert_eq!(
        alarms(&mut e),
        vec![
            key("nibp_sys.critical_high", Phase::Start, 0),
            key("nibp_dia.critical_high", Phase::Start, 0),
        ]
    );
}

#[test]
fn nibp_repeats_are_not_new_measurements_and_overdue_cycles_alarm() {
    let mut e = engine();
    feed(&mut e, nibp(0, 120.0, 80.0, 1000));
    // The monitor resends the same measurement with every update.
    every_second(&mut e, SEC, 10 * SEC, |t| nibp(t, 120.0, 80.0, 1000));
    let readings = drain(&mut e)
        .iter()
        .filter(|ev| matches!(ev.kind, EventKind::Reading(_)))
        .count();
    assert_eq!(readings, 1);
    assert_eq!(e.stats().nibp_repeats, 9);
    // Cycle 15 min + grace 3 min.
    e.handle_timeout(ms(2000 * SEC));
    assert_eq!(
        alarms(&mut e),
        vec![
            key("nibp.cycle_overdue", Phase::Start, 1080 * SEC),
            key("nibp.cycle_overdue", Phase::Escalate, 1200 * SEC)
        ]
    );
    feed(&mut e, nibp(2001 * SEC, 121.0, 80.0, 3001));
    assert_eq!(
        alarms(&mut e),
        vec![key("nibp.cycle_overdue", Phase::End, 2001 * SEC)]
    );
}

#[test]
fn invalid_nibp_is_a_technical_alarm() {
    let mut e = engine();
    let mut r = nibp(0, 120.0, 80.0, 1);
    if let Measurement::Nibp(n) = &mut r.measurement {
        n.systolic = Sample::missing(Validity::Invalid);
        n.diastolic = Sample::missing(Validity::Invalid);
        n.mean = Sample::missing(Validity::Invalid);
    }
    feed(&mut e, r);
    assert_eq!(alarms(&mut e), vec![key("nibp.invalid", Phase::Start, 0)]);
}

#[test]
fn source_disconnection_is_a_technical_alarm() {
    let mut e = engine();
    e.handle_device(
        ms(1000),
        SourceId(1),
        DeviceInput::Health(SourceHealth::LinkDown),
    );
    let ev = drain(&mut e);
    assert!(ev.iter().any(|ev| ev.kind
        == EventKind::Technical(TechnicalStatus::Source {
            source: SourceId(1),
            health: SourceHealth::LinkDown
        })));
    let a: Vec<_> = ev
        .iter()
        .filter_map(|ev| match ev.kind {
            EventKind::Alarm(a) => Some((a.id, a.phase, a.priority)),
            _ => None,
        })
        .collect();
    assert_eq!(
        a,
        vec![(
            id("source.oximeter.disconnected"),
            Phase::Start,
            Priority::High
        )]
    );
    e.handle_device(ms(5000), SourceId(1), DeviceInput::Health(SourceHealth::Ok));
    assert_eq!(
        alarms(&mut e),
        vec![key("source.oximeter.disconnected", Phase::End, 5000)]
    );
    // Unknown sources are ignored, not a panic.
    e.handle_device(
        ms(6000),
        SourceId(9),
        DeviceInput::Health(SourceHealth::Silent),
    );
    assert!(drain(&mut e).is_empty());
}

#[test]
fn each_kind_of_blindness_is_its_own_source_alarm_and_one_replaces_the_other() {
    let mut e = engine();
    let src = SourceId(1);
    e.handle_device(ms(0), src, DeviceInput::Health(SourceHealth::Silent));
    assert_eq!(
        alarms(&mut e),
        vec![key("source.oximeter.disconnected", Phase::Start, 0)]
    );
    // Bytes start to arrive but none decodes: no longer silent, still blind.
    e.handle_device(ms(100), src, DeviceInput::Health(SourceHealth::Garbage));
    assert_eq!(
        alarms(&mut e),
        vec![
            key("source.oximeter.disconnected", Phase::End, 100),
            key("source.oximeter.no_valid_data", Phase::Start, 100),
        ]
    );
    // Another reason of the same alarm changes nothing on the board.
    e.handle_device(ms(200), src, DeviceInput::Health(SourceHealth::NoReadings));
    assert!(alarms(&mut e).is_empty());
    e.handle_device(
        ms(300),
        src,
        DeviceInput::Health(SourceHealth::NotAssociated),
    );
    assert_eq!(
        alarms(&mut e),
        vec![
            key("source.oximeter.not_associated", Phase::Start, 300),
            key("source.oximeter.no_valid_data", Phase::End, 300),
        ]
    );
    e.handle_device(ms(400), src, DeviceInput::Health(SourceHealth::Ok));
    assert_eq!(
        alarms(&mut e),
        vec![key("source.oximeter.not_associated", Phase::End, 400)]
    );
    assert_eq!(e.config().technical.no_valid_data, Priority::High);
    // Invalid values only: each raises its vital's own technical alarm, so
    // the source adds none.
    e.handle_device(ms(500), src, DeviceInput::Health(SourceHealth::InvalidOnly));
    assert!(alarms(&mut e).is_empty());
}

#[test]
fn a_monitor_restart_latches_until_acknowledged() {
    let mut e = engine();
    let src = SourceId(1);
    e.handle_device(
        ms(700),
        src,
        DeviceInput::Note(DeviceNote::MonitorRestarted),
    );
    let a = alarms(&mut e);
    assert_eq!(
        a[0],
        key("source.oximeter.monitor_restarted", Phase::Start, 700)
    );
    assert!(e
        .present_alarms()
        .iter()
        .any(|p| p.id == id("source.oximeter.monitor_restarted")));
    e.handle_command(
        ms(900),
        Command::Acknowledge {
            alarm: id("source.oximeter.monitor_restarted"),
            by: ShortText::new("RN"),
        },
    )
    .unwrap();
    assert!(e.present_alarms().is_empty());
}

#[test]
fn link_errors_alarm_when_the_drop_rate_is_high() {
    let mut e = engine();
    e.handle_device(
        ms(1000),
        SourceId(0),
        DeviceInput::Frames {
            good: 100,
            dropped: 4,
        },
    );
    assert!(alarms(&mut e).is_empty(), "4 drops is below the minimum");
    e.handle_device(
        ms(2000),
        SourceId(0),
        DeviceInput::Frames {
            good: 0,
            dropped: 30,
        },
    );
    assert_eq!(
        alarms(&mut e),
        vec![key("source.monitor.link_errors", Phase::Start, 2000)]
    );
    // A later window with a clean link ends it.
    e.handle_device(
        ms(40_000),
        SourceId(0),
        DeviceInput::Frames {
            good: 50,
            dropped: 0,
        },
    );
    assert!(alarms(&mut e).is_empty(), "the bad window is judged first");
    e.handle_device(
        ms(75_000),
        SourceId(0),
        DeviceInput::Frames {
            good: 50,
            dropped: 0,
        },
    );
    assert_eq!(
        alarms(&mut e),
        vec![key("source.monitor.link_errors", Phase::End, 75_000)]
    );
}

#[test]
fn system_conditions_are_technical_alarms() {
    let mut e = engine();
    e.handle_system(ms(10), SystemCondition::BrokerUnreachable, true);
    e.handle_system(ms(20), SystemCondition::QueueOverflow, true);
    e.handle_system(ms(30), SystemCondition::BrokerUnreachable, false);
    assert_eq!(
        alarms(&mut e),
        vec![
            key("system.broker_unreachable", Phase::Start, 10),
            key("system.queue_overflow", Phase::Start, 20),
            key("system.broker_unreachable", Phase::End, 30),
        ]
    );
}

#[test]
fn session_lifecycle_and_discharge_readiness() {
    let mut e = engine();
    assert!(matches!(
        e.handle_command(ms(0), Command::StartRecovery),
        Err(CommandError::WrongPhase { .. })
    ));
    start_session(&mut e, 0);
    every_second(&mut e, 0, 60 * SEC, |t| hr(t, 70.0));
    dose(&mut e, 60 * SEC);
    // Heart rate up after the dose: not ready.
    every_second(&mut e, 60 * SEC, 600 * SEC, |t| hr(t, 95.0));
    e.handle_command(ms(600 * SEC), Command::StartRecovery)
        .unwrap();
    drain(&mut e);
    // Back within 15 % of baseline from 600 s; ready after 15 min.
    every_second(&mut e, 600 * SEC, 1600 * SEC, |t| hr(t, 74.0));
    let ev = drain(&mut e);
    let ready: Vec<_> = ev
        .iter()
        .filter(|ev| {
            matches!(
                ev.kind,
                EventKind::Session(SessionEvent::DischargeReadiness { .. })
            )
        })
        .collect();
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].at, ms(1500 * SEC));
    // Leaving the bounds revokes it.
    feed(&mut e, hr(1600 * SEC, 95.0));
    assert!(
        drain(&mut e)
            .iter()
            .any(|ev| ev.kind
                == EventKind::Session(SessionEvent::DischargeReadiness { ready: false }))
    );
    e.handle_command(ms(1601 * SEC), Command::EndSession)
        .unwrap();
    let ev = drain(&mut e);
    assert!(ev.iter().any(|ev| matches!(
        ev.kind,
        EventKind::Session(SessionEvent::Phase {
            phase: SessionPhase::Ended,
            ..
        })
    )));
    assert_eq!(e.session().0, SessionPhase::Ended);
}

#[test]
fn bad_commands_are_rejected_and_change_nothing() {
    let mut e = engine();
    let before = e.stats();
    assert!(matches!(
        e.handle_command(
            ms(0),
            Command::Acknowledge {
                alarm: id("spo2.low"),
                by: ShortText::new("x")
            }
        ),
        Err(CommandError::NotActive { .. })
    ));
    assert!(e
        .handle_command(
            ms(0),
            Command::StartSession {
                session: ShortText::empty()
            }
        )
        .is_err());
    assert!(e
        .handle_command(
            ms(0),
            Command::Dose {
                route: ShortText::new("im"),
                amount: None,
                note: ShortText::empty()
            }
        )
        .is_err());
    start_session(&mut e, 0);
    assert!(matches!(
        e.handle_command(
            ms(0),
            Command::SetBaseline {
                vital: Vital::SpO2,
                value: f32::NAN
            }
        ),
        Err(CommandError::BadBaseline { .. })
    ));
    assert!(e.handle_command(ms(0), Command::ResumeAudio).is_err());
    assert!(e
        .handle_command(
            ms(0),
            Command::PauseAudio {
                duration: Duration::ZERO
            }
        )
        .is_err());
    assert_eq!(e.stats().readings, before.readings);
    assert_eq!(drain(&mut e).len(), 1, "only the session start");
}

#[test]
fn sequence_numbers_strictly_increase() {
    let mut e = engine();
    every_second(&mut e, 0, 30 * SEC, |t| spo2(t, 84.0));
    e.handle_timeout(ms(500 * SEC));
    let ev = drain(&mut e);
    assert!(ev.len() > 30);
    for w in ev.windows(2) {
        assert!(w[0].seq < w[1].seq);
        assert!(w[0].at <= w[1].at);
    }
}

#[test]
fn reconfiguring_keeps_present_alarms_and_applies_new_limits() {
    let mut e = engine();
    every_second(&mut e, 0, 11 * SEC, |t| hr(t, 130.0));
    assert_eq!(alarms(&mut e), vec![key("hr.high", Phase::Start, 10 * SEC)]);
    let mut cfg = config();
    cfg.vitals[Vital::HeartRate.index()].high = Some(Limit::new(140.0, Priority::High));
    e.reconfigure(ms(11 * SEC), cfg);
    let present = e.present_alarms();
    assert_eq!(present.len(), 1);
    assert_eq!(present[0].priority, Priority::High, "new priority applies");
    // 130 is now below the new limit (minus hysteresis): the alarm ends.
    feed(&mut e, hr(12 * SEC, 130.0));
    assert_eq!(alarms(&mut e), vec![key("hr.high", Phase::End, 12 * SEC)]);
}

#[test]
fn a_rate_alarm_hovering_at_its_threshold_does_not_flap() {
    let mut e = engine();
    every_second(&mut e, 0, 10 * SEC, |t| spo2(t, 97.0));
    // A fall of 5 (over the limit of 4), then 4 and 3.5 within the window:
    // inside the 1-point hysteresis band, the alarm stays.
    feed(&mut e, spo2(10 * SEC, 92.0));
    feed(&mut e, spo2(11 * SEC, 93.0));
    feed(&mut e, spo2(12 * SEC, 93.5));
    feed(&mut e, spo2(13 * SEC, 92.5));
    assert_eq!(
        alarms(&mut e),
        vec![key("spo2.rate_fall", Phase::Start, 10 * SEC)]
    );
    // Only a fall back below 3 ends it.
    feed(&mut e, spo2(14 * SEC, 94.5));
    assert_eq!(
        alarms(&mut e),
        vec![key("spo2.rate_fall", Phase::End, 14 * SEC)]
    );
}

fn with_confirm(confirm: NibpConfirm) -> Engine {
    let mut cfg = config();
    cfg.nibp.confirm = confirm;
    Engine::new(cfg)
}

#[test]
fn a_single_low_nibp_alarms_at_once_by_default() {
    // 87/46 on the first reading (real data): hypotension must not wait a cycle.
    let mut e = engine();
    feed(&mut e, nibp(0, 87.0, 46.0, 1));
    assert_eq!(
        alarms(&mut e),
        vec![
            key("nibp_sys.low", Phase::Start, 0),
            key("nibp_dia.low", Phase::Start, 0),
            key("nibp_mean.low", Phase::Start, 0),
        ]
    );
    // The high side still waits for a second reading.
    let mut e = engine();
    feed(&mut e, nibp(0, 185.0, 100.0, 1));
    assert!(alarms(&mut e).is_empty());
}

#[test]
fn nibp_confirmation_can_cover_both_sides_or_none() {
    let mut e = with_confirm(NibpConfirm::Both);
    feed(&mut e, nibp(0, 87.0, 60.0, 1));
    assert!(alarms(&mut e).is_empty(), "both: the low side waits");
    feed(&mut e, nibp(300 * SEC, 88.0, 60.0, 2));
    assert_eq!(
        alarms(&mut e),
        vec![key("nibp_sys.low", Phase::Start, 300 * SEC)]
    );

    let mut e = with_confirm(NibpConfirm::Off);
    feed(&mut e, nibp(0, 185.0, 100.0, 1));
    assert_eq!(alarms(&mut e), vec![key("nibp.high", Phase::Start, 0)]);
}

#[test]
fn nibp_confirmation_window_is_inclusive() {
    // The second reading exactly confirm_window (15 min) after the first confirms...
    let mut e = engine();
    feed(&mut e, nibp(0, 185.0, 100.0, 1));
    feed(&mut e, nibp(900 * SEC, 185.0, 100.0, 2));
    assert_eq!(
        alarms(&mut e),
        vec![key("nibp.high", Phase::Start, 900 * SEC)]
    );
    // ... one millisecond later it does not.
    let mut e = engine();
    feed(&mut e, nibp(0, 185.0, 100.0, 1));
    feed(&mut e, nibp(900 * SEC + 1, 185.0, 100.0, 2));
    assert!(alarms(&mut e).is_empty());
}

// ----- boundaries: every rule is strict ("below", "above", "more than") -----

/// The alarms that started, as keys.
fn started(e: &mut Engine) -> Vec<String> {
    alarms(e)
        .into_iter()
        .filter(|a| a.1 == Phase::Start)
        .map(|a| a.0)
        .collect()
}

fn continuous(vital: Vital, t: u64, v: f32) -> Reading {
    let s = Sample::valid(v);
    reading(
        t,
        Measurement::of_continuous(vital, s).expect("a continuous vital"),
    )
}

/// Holds a continuous vital at `v` for 40 s: long enough for any delay.
fn held(vital: Vital, v: f32) -> Vec<String> {
    let mut e = engine();
    every_second(&mut e, 0, 40 * SEC, |t| continuous(vital, t, v));
    started(&mut e)
}

#[test]
fn continuous_limits_alarm_beyond_the_limit_never_at_it() {
    for (k, vital, limit, outside) in [
        ("hr.low", Vital::HeartRate, 50.0, -0.5),
        ("hr.high", Vital::HeartRate, 120.0, 0.5),
        ("hr.critical_low", Vital::HeartRate, 40.0, -0.5),
        ("hr.critical_high", Vital::HeartRate, 150.0, 0.5),
        ("pr.low", Vital::PulseRate, 50.0, -0.5),
        ("pr.high", Vital::PulseRate, 120.0, 0.5),
        ("pr.critical_low", Vital::PulseRate, 40.0, -0.5),
        ("pr.critical_high", Vital::PulseRate, 150.0, 0.5),
        ("spo2.low", Vital::SpO2, 90.0, -0.5),
        ("spo2.critical_low", Vital::SpO2, 85.0, -0.5),
        ("rr.low", Vital::RespRate, 8.0, -0.5),
        ("rr.high", Vital::RespRate, 30.0, 0.5),
        ("etco2.low", Vital::EtCo2, 30.0, -0.5),
        ("etco2.high", Vital::EtCo2, 50.0, 0.5),
    ] {
        assert!(
            !held(vital, limit).contains(&k.to_owned()),
            "{k} at {limit}"
        );
        let beyond = held(vital, limit + outside);
        assert!(
            beyond.contains(&k.to_owned()),
            "{k} at {limit}{outside:+}: {beyond:?}"
        );
    }
}

fn nibp_full(t: u64, sys: f32, dia: f32, mean: f32, at: i64) -> Reading {
    let mut r = nibp(t, sys, dia, at);
    if let Measurement::Nibp(n) = &mut r.measurement {
        n.mean = Sample::valid(mean);
    }
    r
}

#[test]
fn nibp_limits_alarm_beyond_the_limit_never_at_it() {
    // Normal: 120/80/93. Each row moves one component to (or past) its limit.
    let normal = [120.0, 80.0, 93.0];
    for (k, component, limit, outside) in [
        ("nibp_sys.low", 0, 90.0, -0.5),
        ("nibp.high", 0, 180.0, 0.5),
        ("nibp_sys.critical_high", 0, 200.0, 0.5),
        ("nibp_dia.low", 1, 50.0, -0.5),
        ("nibp.high", 1, 110.0, 0.5),
        ("nibp_dia.critical_high", 1, 120.0, 0.5),
        ("nibp_mean.low", 2, 60.0, -0.5),
    ] {
        for (v, expect) in [(limit, false), (limit + outside, true)] {
            let mut e = with_confirm(NibpConfirm::Off);
            let mut vals = normal;
            vals[component] = v;
            feed(&mut e, nibp_full(0, vals[0], vals[1], vals[2], 1));
            let s = started(&mut e);
            assert_eq!(s.contains(&k.to_owned()), expect, "{k} at {v}: {s:?}");
        }
    }
}

#[test]
fn rate_rules_alarm_on_more_than_their_amount() {
    // "SpO2 falling more than 4 points within 60 s": 97.3 -> 93.3 is exactly
    // 4 and must not alarm.
    for (to, expect) in [(93.3, false), (93.2, true)] {
        let mut e = engine();
        feed(&mut e, spo2(0, 97.3));
        feed(&mut e, spo2(10 * SEC, to));
        let s = started(&mut e);
        assert_eq!(
            s.contains(&"spo2.rate_fall".to_owned()),
            expect,
            "{to}: {s:?}"
        );
    }
    // HR rising more than 30 /min within 5 min.
    for (to, expect) in [(100.0, false), (100.5, true)] {
        let mut e = engine();
        feed(&mut e, hr(0, 70.0));
        feed(&mut e, hr(10 * SEC, to));
        let s = started(&mut e);
        assert_eq!(
            s.contains(&"hr.rate_rise".to_owned()),
            expect,
            "{to}: {s:?}"
        );
    }
}

fn set_baseline(e: &mut Engine, t: u64, vital: Vital, value: f32) {
    e.handle_command(ms(t), Command::SetBaseline { vital, value })
        .unwrap();
}

#[test]
fn baseline_rules_alarm_on_more_than_their_rise() {
    // HR baseline 70: + 30 % = 91.
    for (v, expect) in [(91.0, false), (91.5, true)] {
        let mut e = engine();
        start_session(&mut e, 0);
        set_baseline(&mut e, 0, Vital::HeartRate, 70.0);
        dose(&mut e, SEC);
        every_second(&mut e, 2 * SEC, 40 * SEC, |t| hr(t, v));
        let s = started(&mut e);
        assert_eq!(
            s.contains(&"hr.baseline_rise".to_owned()),
            expect,
            "{v}: {s:?}"
        );
    }
    // Systolic baseline 120: min(+20 %, +40) = 144; diastolic 80: + 25 = 105.
    for (sys, dia, expect) in [(144.0, 105.0, false), (144.5, 105.5, true)] {
        let mut e = engine();
        start_session(&mut e, 0);
        set_baseline(&mut e, 0, Vital::NibpSystolic, 120.0);
        set_baseline(&mut e, 0, Vital::NibpDiastolic, 80.0);
        dose(&mut e, SEC);
        feed(&mut e, nibp(2 * SEC, sys, dia, 1));
        let s = started(&mut e);
        for k in ["nibp_sys.baseline_rise", "nibp_dia.baseline_rise"] {
            assert_eq!(s.contains(&k.to_owned()), expect, "{sys}/{dia}: {s:?}");
        }
    }
}

#[test]
fn a_computed_threshold_counts_a_value_on_it_as_at_it() {
    // Baseline 73: + 30 % = 94.9, a computed threshold; a value on it is at it.
    let mut e = engine();
    start_session(&mut e, 0);
    set_baseline(&mut e, 0, Vital::HeartRate, 73.0);
    dose(&mut e, SEC);
    every_second(&mut e, 2 * SEC, 40 * SEC, |t| hr(t, 94.9));
    assert!(!started(&mut e).contains(&"hr.baseline_rise".to_owned()));
    assert!(!below(94.9 - 1e-4, 94.9) && !above(94.9 + 1e-4, 94.9));
    assert!(below(94.9 - 2e-3, 94.9) && above(94.9 + 2e-3, 94.9));
}

#[test]
fn an_active_alarm_ends_when_the_value_is_hysteresis_back_inside() {
    // SpO2 low 90, hysteresis 1: 90.9 keeps the alarm, 91 ends it.
    let mut e = engine();
    every_second(&mut e, 0, 20 * SEC, |t| spo2(t, 89.0));
    assert_eq!(started(&mut e), vec!["spo2.low".to_owned()]);
    feed(&mut e, spo2(20 * SEC, 90.9));
    assert!(alarms(&mut e).is_empty());
    feed(&mut e, spo2(21 * SEC, 91.0));
    assert_eq!(alarms(&mut e), vec![key("spo2.low", Phase::End, 21 * SEC)]);
}

fn old(r: Reading) -> Reading {
    let measurement = match r.measurement {
        Measurement::Nibp(n) => Measurement::Nibp(n.into_old()),
        Measurement::HeartRate(s) => Measurement::HeartRate(s.into_old()),
        Measurement::PulseRate(s) => Measurement::PulseRate(s.into_old()),
        Measurement::SpO2(s) => Measurement::SpO2(s.into_old()),
        Measurement::RespRate(s) => Measurement::RespRate(s.into_old()),
        Measurement::EtCo2(s) => Measurement::EtCo2(s.into_old()),
    };
    Reading { measurement, ..r }
}

#[test]
fn an_old_value_starts_no_physiological_alarm() {
    let mut e = engine();
    // A critically high NIBP measured long ago, as a monitor keeps it.
    feed(&mut e, old(nibp(0, 240.0, 140.0, 1_000)));
    // HR far beyond every limit, but old: never judged, and no sign of a
    // live measurement, so HR goes stale.
    every_second(&mut e, 0, 30 * SEC, |t| old(hr(t, 250.0)));
    e.handle_timeout(ms(30 * SEC));
    let events = drain(&mut e);
    let names = e.config().source_names.clone();
    let started: Vec<String> = events
        .iter()
        .filter_map(|ev| match ev.kind {
            EventKind::Alarm(a) if a.phase == Phase::Start => Some(a.id.key(&names)),
            _ => None,
        })
        .collect();
    assert_eq!(started, vec!["hr.stale".to_owned()]);
    // Both are shown, as the old values they are.
    let shown: Vec<Validity> = events
        .iter()
        .filter_map(|ev| match ev.kind {
            EventKind::Reading(Reading {
                measurement: Measurement::Nibp(n),
                ..
            }) => Some(n.systolic.validity),
            EventKind::Reading(r) => r.measurement.continuous().map(|(_, s)| s.validity),
            _ => None,
        })
        .collect();
    assert_eq!(shown.len(), 31);
    assert!(shown.iter().all(|v| *v == Validity::Old), "{shown:?}");
    // The same values measured now alarm at once (critical tier).
    feed(&mut e, nibp(31 * SEC, 240.0, 140.0, 2_000));
    feed(&mut e, hr(31 * SEC, 250.0));
    let now: Vec<String> = alarms(&mut e)
        .into_iter()
        .filter(|(_, p, _)| *p == Phase::Start)
        .map(|(k, _, _)| k)
        .collect();
    assert!(
        now.contains(&"nibp_sys.critical_high".to_owned()),
        "{now:?}"
    );
    assert!(now.contains(&"hr.critical_high".to_owned()), "{now:?}");
}

#[test]
fn an_old_nibp_is_no_new_measurement_for_the_cycle() {
    // The cycle watch starts at an old NIBP when nothing else started it,
    // so a missing fresh measurement is overdue after cycle + grace.
    let mut e = engine();
    feed(&mut e, old(nibp(0, 120.0, 80.0, 1_000)));
    e.handle_timeout(ms(1_100 * SEC));
    assert_eq!(
        alarms(&mut e),
        vec![key("nibp.cycle_overdue", Phase::Start, 1_080 * SEC)]
    );
    // An old NIBP does not end it; a fresh one does.
    feed(&mut e, old(nibp(1_101 * SEC, 121.0, 80.0, 900)));
    assert!(alarms(&mut e).is_empty());
    feed(&mut e, nibp(1_102 * SEC, 122.0, 80.0, 3_000));
    assert_eq!(
        alarms(&mut e),
        vec![key("nibp.cycle_overdue", Phase::End, 1_102 * SEC)]
    );
    // Nor does an old one reset the running cycle.
    feed(&mut e, old(nibp(1_500 * SEC, 123.0, 80.0, 2_500)));
    e.handle_timeout(ms(2_200 * SEC));
    assert_eq!(
        alarms(&mut e),
        vec![key("nibp.cycle_overdue", Phase::Start, 2_182 * SEC)]
    );
}

fn nibp_parts(t: u64, parts: [Sample; 3], at: i64) -> Reading {
    reading(
        t,
        Measurement::Nibp(Nibp {
            systolic: parts[0],
            diastolic: parts[1],
            mean: parts[2],
            measured_at: Some(DeviceTime(at)),
            mode: NibpMode::Auto,
        }),
    )
}

/// The NIBP components of the reading event the engine emitted last.
fn judged_nibp(events: &[Event]) -> [Validity; 3] {
    events
        .iter()
        .rev()
        .find_map(|ev| match ev.kind {
            EventKind::Reading(Reading {
                measurement: Measurement::Nibp(n),
                ..
            }) => Some([n.systolic, n.diastolic, n.mean].map(|s| s.validity)),
            _ => None,
        })
        .expect("an nibp reading event")
}

#[test]
fn an_nibp_with_an_implausible_component_is_an_artifact_as_a_whole() {
    // 87/10: the diastolic is below its plausible range (20), so the
    // systolic of 87 (below the low limit of 90) is no reading either.
    let mut e = engine();
    let m = Sample::valid(60.0);
    feed(
        &mut e,
        nibp_parts(0, [Sample::valid(87.0), Sample::valid(10.0), m], 1),
    );
    let ev = drain(&mut e);
    assert_eq!(judged_nibp(&ev), [Validity::Artifact; 3]);
    let names = e.config().source_names.clone();
    let started: Vec<String> = ev
        .iter()
        .filter_map(|ev| match ev.kind {
            EventKind::Alarm(a) if a.phase == Phase::Start => Some(a.id.key(&names)),
            _ => None,
        })
        .collect();
    assert_eq!(started, ["nibp.artifact"]);
    // A component the monitor flags (with its value) taints the rest too:
    // marked invalid, or questionable with the questionable policy off.
    for (flag, policy) in [
        (Validity::Invalid, QuestionablePolicy::Alarm),
        (Validity::Questionable, QuestionablePolicy::Off),
    ] {
        let mut cfg = config();
        for v in [Vital::NibpSystolic, Vital::NibpDiastolic, Vital::NibpMean] {
            cfg.vitals[v.index()].questionable = policy;
        }
        let mut e = Engine::new(cfg);
        feed(
            &mut e,
            nibp_parts(
                0,
                [
                    Sample::valid(87.0),
                    Sample::new(46.0, flag),
                    Sample::missing(Validity::Unavailable),
                ],
                1,
            ),
        );
        assert_eq!(
            alarms(&mut e),
            vec![key("nibp.invalid", Phase::Start, 0)],
            "{flag}"
        );
    }
}

/// The Masimo line of a real Rad-8 (the decoder's test vector 1) with the
/// SpO2 and the exception word replaced.
fn masimo_line(spo2: u32, exc: u32) -> Vec<u8> {
    format!(
        "02/22/16 22:47:45 SN=0000056661 SPO2={spo2:03}% BPM=097 PI=00.30% SPCO=--.-% \
         SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC={exc:06X}\r\n"
    )
    .into_bytes()
}

/// Decodes Masimo lines (one a second from `from`) and feeds their readings.
fn feed_masimo(e: &mut Engine, from: u64, lines: &[Vec<u8>]) {
    use crate::protocol::{masimo::Masimo, Output, Protocol};
    let mut d = Masimo::new(SourceId(1));
    for (i, line) in lines.iter().enumerate() {
        let now = ms(from + i as u64 * SEC);
        d.handle_bytes(now, line);
        while let Some(out) = d.poll_output() {
            if let Output::Reading(r) = out {
                e.handle_reading(now, r);
            }
        }
    }
}

#[test]
fn a_questionable_desaturation_still_alarms_marked_questionable() {
    // A Rad-8 in SET mode with low signal IQ (0x400) reads 82 %: below the
    // critical limit of 85, which has no delay. A desaturation with a poor
    // signal is possibly a desaturation.
    let mut e = engine();
    feed_masimo(&mut e, 0, &[masimo_line(82, 0x800 | 0x400)]);
    let ev = drain(&mut e);
    let names = e.config().source_names.clone();
    let started: Vec<(String, Option<f32>, Option<Validity>, AlarmKind)> = ev
        .iter()
        .filter_map(|ev| match ev.kind {
            EventKind::Alarm(a) if a.phase == Phase::Start => {
                Some((a.id.key(&names), a.value, a.validity, a.kind))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        started,
        vec![(
            "spo2.critical_low".to_owned(),
            Some(82.0),
            Some(Validity::Questionable),
            AlarmKind::Physiological
        )]
    );
    // The reading is shown as it came: questionable, with its number.
    let shown = ev.iter().find_map(|ev| match ev.kind {
        EventKind::Reading(Reading {
            measurement: Measurement::SpO2(s),
            ..
        }) => Some(s),
        _ => None,
    });
    assert_eq!(shown, Some(Sample::new(82.0, Validity::Questionable)));
    // The technical condition that says why has the technical delay (5 s)
    // like every data alarm; the ordinary low limit its 15 s. (The Rad-8's
    // exception word holds for its pulse rate too.)
    let lines: Vec<Vec<u8>> = (0..20).map(|_| masimo_line(82, 0x800 | 0x400)).collect();
    feed_masimo(&mut e, SEC, &lines);
    e.handle_timeout(ms(21 * SEC));
    let got = alarms(&mut e);
    assert_eq!(
        got,
        vec![
            key("pr.questionable", Phase::Start, 5 * SEC),
            key("spo2.questionable", Phase::Start, 5 * SEC),
            key("spo2.low", Phase::Start, 15 * SEC),
        ]
    );
    // A valid value clears the mark and the technical condition; the
    // desaturation stays.
    feed_masimo(&mut e, 21 * SEC, &[masimo_line(83, 0x800)]);
    let ev = drain(&mut e);
    let phases: Vec<(String, Phase)> = ev
        .iter()
        .filter_map(|ev| match ev.kind {
            EventKind::Alarm(a) => Some((a.id.key(&names), a.phase)),
            _ => None,
        })
        .collect();
    assert_eq!(
        phases,
        vec![
            ("spo2.questionable".to_owned(), Phase::End),
            ("pr.questionable".to_owned(), Phase::End)
        ]
    );
    let present: Vec<(String, Option<Validity>, Option<f32>)> = e
        .present_alarms()
        .into_iter()
        .map(|a| (a.id.key(&names), a.validity, a.value))
        .collect();
    assert_eq!(
        present,
        vec![
            ("spo2.critical_low".to_owned(), None, Some(83.0)),
            ("spo2.low".to_owned(), None, Some(83.0)),
        ]
    );
}

#[test]
fn with_the_questionable_policy_off_a_questionable_value_is_technical_only() {
    let mut cfg = config();
    cfg.vitals[Vital::SpO2.index()].questionable = QuestionablePolicy::Off;
    let mut e = Engine::new(cfg);
    let lines: Vec<Vec<u8>> = (0..20).map(|_| masimo_line(82, 0x800 | 0x400)).collect();
    feed_masimo(&mut e, 0, &lines);
    e.handle_timeout(ms(20 * SEC));
    assert_eq!(
        alarms(&mut e),
        vec![
            key("pr.questionable", Phase::Start, 5 * SEC),
            key("spo2.invalid", Phase::Start, 5 * SEC)
        ]
    );
}

#[test]
fn a_questionable_value_outside_the_plausible_range_is_an_artifact() {
    // Pulse search (0x8) with an SpO2 of 12: not credible whatever the flag.
    let mut e = engine();
    let lines: Vec<Vec<u8>> = (0..6).map(|_| masimo_line(12, 0x800 | 0x8)).collect();
    feed_masimo(&mut e, 0, &lines);
    assert_eq!(
        alarms(&mut e),
        vec![
            key("pr.questionable", Phase::Start, 5 * SEC),
            key("spo2.artifact", Phase::Start, 5 * SEC)
        ]
    );
    assert_eq!(e.stats().implausible, 6);
}

#[test]
fn questionable_values_are_no_baseline() {
    let mut e = engine();
    e.handle_command(
        ms(0),
        Command::StartSession {
            session: ShortText::new("s1"),
        },
    )
    .unwrap();
    // 70 s of low-signal-IQ values only, then a dose: no SpO2 or pulse-rate
    // baseline, and the advisory names the pulse rate (which has a trend
    // rule to arm).
    let lines: Vec<Vec<u8>> = (0..70).map(|_| masimo_line(97, 0x800 | 0x400)).collect();
    feed_masimo(&mut e, 0, &lines);
    drain(&mut e);
    e.handle_command(
        ms(70 * SEC),
        Command::Dose {
            route: ShortText::new("in"),
            amount: None,
            note: ShortText::empty(),
        },
    )
    .unwrap();
    assert_eq!(e.baseline(Vital::SpO2), None);
    assert_eq!(e.baseline(Vital::PulseRate), None);
    let missing: Vec<Vital> = drain(&mut e)
        .iter()
        .flat_map(|ev| match ev.kind {
            EventKind::Session(s) => s.missing_baselines().collect(),
            _ => Vec::new(),
        })
        .collect();
    assert!(missing.contains(&Vital::PulseRate), "{missing:?}");
}

#[test]
fn a_questionable_nibp_alarms_as_a_whole_marked_questionable() {
    // 87/46 with the diastolic flagged questionable: the measurement alarms
    // (a low systolic at once), every alarm marked questionable, and
    // nibp.questionable says why.
    let mut e = engine();
    feed(
        &mut e,
        nibp_parts(
            0,
            [
                Sample::valid(87.0),
                Sample::new(46.0, Validity::Questionable),
                Sample::missing(Validity::Unavailable),
            ],
            1,
        ),
    );
    let ev = drain(&mut e);
    assert_eq!(
        judged_nibp(&ev),
        [
            Validity::Questionable,
            Validity::Questionable,
            Validity::Unavailable
        ]
    );
    let names = e.config().source_names.clone();
    let started: Vec<(String, Option<Validity>)> = ev
        .iter()
        .filter_map(|ev| match ev.kind {
            EventKind::Alarm(a) if a.phase == Phase::Start => Some((a.id.key(&names), a.validity)),
            _ => None,
        })
        .collect();
    assert_eq!(
        started,
        vec![
            ("nibp_sys.low".to_owned(), Some(Validity::Questionable)),
            ("nibp_dia.low".to_owned(), Some(Validity::Questionable)),
            ("nibp.questionable".to_owned(), Some(Validity::Questionable)),
        ]
    );
}

#[test]
fn systolic_and_diastolic_alarm_without_a_mean() {
    // The mean missing (for any reason) while systolic and diastolic are
    // valid: the commonest shape of real NIBP data. No technical alarm.
    for reason in [
        Validity::Unavailable,
        Validity::Invalid,
        Validity::SensorOff,
    ] {
        let mut e = engine();
        let parts = [
            Sample::valid(87.0),
            Sample::valid(46.0),
            Sample::missing(reason),
        ];
        feed(&mut e, nibp_parts(0, parts, 1));
        let ev = drain(&mut e);
        assert_eq!(
            judged_nibp(&ev),
            [Validity::Valid, Validity::Valid, reason],
            "{reason}"
        );
        let names = e.config().source_names.clone();
        let started: Vec<String> = ev
            .iter()
            .filter_map(|ev| match ev.kind {
                EventKind::Alarm(a) => Some(a.id.key(&names)),
                _ => None,
            })
            .collect();
        assert_eq!(started, ["nibp_sys.low", "nibp_dia.low"], "{reason}");
    }
    // The mean alone alarms on its own.
    let mut e = engine();
    let unavailable = Sample::missing(Validity::Unavailable);
    feed(
        &mut e,
        nibp_parts(0, [unavailable, unavailable, Sample::valid(55.0)], 1),
    );
    assert_eq!(alarms(&mut e), vec![key("nibp_mean.low", Phase::Start, 0)]);
    // Nothing at all: a technical alarm says why.
    let mut e = engine();
    let off = Sample::missing(Validity::SensorOff);
    feed(&mut e, nibp_parts(0, [off, off, unavailable], 1));
    assert_eq!(
        alarms(&mut e),
        vec![key("nibp.sensor_off", Phase::Start, 0)]
    );
}

/// The validity an alarm event names.
type AlarmValidity = Option<Validity>;

#[test]
fn technical_alarms_carry_no_physiological_value() {
    // Monitors send the last valid value beside "sensor off"; the alarm
    // event must not show it as a reading. Nor an implausible one.
    let mut e = engine();
    every_second(&mut e, 0, 5 * SEC, |t| spo2(t, 98.0));
    every_second(&mut e, 5 * SEC, 20 * SEC, |t| {
        reading(t, Measurement::SpO2(Sample::new(98.0, Validity::SensorOff)))
    });
    every_second(&mut e, 20 * SEC, 40 * SEC, |t| {
        reading(t, Measurement::PulseRate(Sample::valid(320.0)))
    });
    feed(
        &mut e,
        nibp_parts(40 * SEC, [Sample::new(93.0, Validity::Artifact); 3], 1),
    );
    let names = e.config().source_names.clone();
    let technical: Vec<(String, Option<f32>, Option<f32>, AlarmValidity)> = drain(&mut e)
        .into_iter()
        .filter_map(|ev| match ev.kind {
            EventKind::Alarm(a) if a.kind == AlarmKind::Technical => {
                Some((a.id.key(&names), a.value, a.limit, a.validity))
            }
            _ => None,
        })
        .collect();
    let keys: Vec<&str> = technical.iter().map(|t| t.0.as_str()).collect();
    for k in ["spo2.sensor_off", "pr.artifact", "nibp.artifact"] {
        assert!(keys.contains(&k), "{k} in {keys:?}");
    }
    for (k, value, limit, validity) in technical {
        assert_eq!((value, limit), (None, None), "{k}");
        if !k.ends_with(".stale") {
            assert!(validity.is_some(), "{k} says why");
        }
    }
}

#[test]
fn acknowledge_all_acknowledges_every_waiting_alarm_highest_priority_first() {
    let mut cfg = config();
    cfg.vitals[Vital::HeartRate.index()].latching = true;
    let mut e = Engine::new(cfg);
    // hr.high (medium) latches after the tachycardia ends ...
    every_second(&mut e, 0, 11 * SEC, |t| hr(t, 130.0));
    feed(&mut e, hr(11 * SEC, 100.0));
    // ... spo2.critical_low (high) is active, a storage failure (medium) too.
    feed(&mut e, spo2(12 * SEC, 80.0));
    e.handle_system(ms(13 * SEC), SystemCondition::StorageFailure, true);
    drain(&mut e);
    let by = ShortText::new("RN-JD");
    e.handle_command(ms(20 * SEC), Command::AcknowledgeAll { by })
        .unwrap();
    let names = e.config().source_names.clone();
    let got: Vec<(String, Phase, AlarmState, Option<ShortText<32>>)> = drain(&mut e)
        .into_iter()
        .filter_map(|ev| match ev.kind {
            EventKind::Alarm(a) => Some((a.id.key(&names), a.phase, a.state, a.ack.map(|k| k.by))),
            _ => None,
        })
        .collect();
    let ack = |k: &str, phase, state| (k.to_owned(), phase, state, Some(by));
    assert_eq!(
        got,
        vec![
            ack(
                "spo2.critical_low",
                Phase::Acknowledge,
                AlarmState::Acknowledged
            ),
            // Equal priority: the older one first. A latched alarm ends.
            ack("hr.high", Phase::Acknowledge, AlarmState::Latched),
            ack("hr.high", Phase::End, AlarmState::Ended),
            ack(
                "system.storage_failure",
                Phase::Acknowledge,
                AlarmState::Acknowledged
            ),
        ]
    );
    // Again: everything present is acknowledged already; accepted, no events.
    e.handle_command(ms(20 * SEC + 500), Command::AcknowledgeAll { by })
        .unwrap();
    assert!(alarms(&mut e).is_empty());
    // The acknowledged alarms re-alert as single acknowledgements do.
    e.handle_timeout(ms(20 * SEC + e.config().realert_after.as_millis() as u64));
    let realerted: Vec<String> = alarms(&mut e)
        .into_iter()
        .filter(|(_, p, _)| *p == Phase::ReAlert)
        .map(|(k, _, _)| k)
        .collect();
    assert_eq!(realerted, ["spo2.critical_low", "system.storage_failure"]);
}

#[test]
fn acknowledge_all_with_no_alarm_present_is_rejected() {
    let mut e = engine();
    every_second(&mut e, 0, 5 * SEC, |t| hr(t, 70.0));
    drain(&mut e);
    assert_eq!(
        e.handle_command(
            ms(5 * SEC),
            Command::AcknowledgeAll {
                by: ShortText::new("RN")
            }
        ),
        Err(CommandError::NothingToAcknowledge)
    );
    assert!(
        drain(&mut e).is_empty(),
        "a rejected command changes nothing"
    );
}

fn incomplete(events: &[Event]) -> Option<Vec<Vital>> {
    events.iter().find_map(|ev| match ev.kind {
        EventKind::Session(s @ SessionEvent::BaselineIncomplete { .. }) => {
            Some(s.missing_baselines().collect())
        }
        _ => None,
    })
}

#[test]
fn a_dose_without_enough_baseline_readings_is_accepted_with_an_advisory() {
    // One second after start_session: nothing collected at all.
    let mut e = engine();
    start_session(&mut e, 0);
    feed(&mut e, hr(500, 70.0));
    dose(&mut e, SEC);
    let ev = drain(&mut e);
    assert!(ev.iter().any(|ev| matches!(
        ev.kind,
        EventKind::Session(SessionEvent::Dose { number: 1, .. })
    )));
    // HR had a reading (too short), PR and NIBP have trend rules but no data;
    // SpO2 and the mean have neither: not named.
    assert_eq!(
        incomplete(&ev),
        Some(vec![
            Vital::HeartRate,
            Vital::PulseRate,
            Vital::NibpSystolic,
            Vital::NibpDiastolic
        ])
    );
    assert_eq!(e.baseline(Vital::HeartRate), None, "no median of 1 reading");
}

#[test]
fn baseline_minimums_hold_at_their_boundary() {
    // 60 s of HR (first reading at 0, dose at 60 s) and 2 NIBP: complete.
    let run = |dose_at: u64, nibps: usize| {
        let mut e = engine();
        start_session(&mut e, 0);
        // In time order: HR and PR every second, NIBP every 10 s.
        let mut t = 0;
        while t < dose_at {
            if t % (10 * SEC) == 0 && t / (10 * SEC) < nibps as u64 {
                feed(&mut e, nibp(t, 120.0, 80.0, (t / SEC) as i64 + 1));
            }
            feed(&mut e, hr(t, 70.0));
            feed(&mut e, continuous(Vital::PulseRate, t, 70.0));
            t += SEC;
        }
        drain(&mut e);
        dose(&mut e, dose_at);
        let ev = drain(&mut e);
        (
            incomplete(&ev),
            e.baseline(Vital::HeartRate),
            e.baseline(Vital::NibpSystolic),
        )
    };
    assert_eq!(run(60 * SEC, 2), (None, Some(70.0), Some(120.0)));
    // One millisecond short of a minute: HR and PR are missing.
    assert_eq!(
        run(60 * SEC - 1, 2),
        (
            Some(vec![Vital::HeartRate, Vital::PulseRate]),
            None,
            Some(120.0)
        )
    );
    // One NIBP measurement: no NIBP baseline (the mean, with no trend rule
    // but a reading, is named too: discharge would have used it).
    assert_eq!(
        run(60 * SEC, 1),
        (
            Some(vec![
                Vital::NibpSystolic,
                Vital::NibpDiastolic,
                Vital::NibpMean
            ]),
            Some(70.0),
            None
        )
    );
    // A baseline set by command needs no readings.
    let mut e = engine();
    start_session(&mut e, 0);
    for v in [
        Vital::HeartRate,
        Vital::PulseRate,
        Vital::NibpSystolic,
        Vital::NibpDiastolic,
    ] {
        set_baseline(&mut e, 0, v, if v.is_nibp() { 100.0 } else { 70.0 });
    }
    drain(&mut e);
    dose(&mut e, SEC);
    assert_eq!(incomplete(&drain(&mut e)), None);
}

#[test]
fn discharge_readiness_is_judged_only_in_recovery() {
    let mut e = engine();
    start_session(&mut e, 0);
    every_second(&mut e, 0, 60 * SEC, |t| hr(t, 70.0));
    dose(&mut e, 60 * SEC);
    // Back near baseline during dosing, far longer than the hold: not ready.
    every_second(&mut e, 60 * SEC, 2000 * SEC, |t| hr(t, 71.0));
    let readiness = |ev: &[Event]| -> Vec<(bool, u64)> {
        ev.iter()
            .filter_map(|ev| match ev.kind {
                EventKind::Session(SessionEvent::DischargeReadiness { ready }) => {
                    Some((ready, ev.at.as_nanos() / 1_000_000))
                }
                _ => None,
            })
            .collect()
    };
    assert!(readiness(&drain(&mut e)).is_empty());
    // In recovery the hold starts at once (the latest values are near
    // baseline) and readiness comes after it.
    e.handle_command(ms(2000 * SEC), Command::StartRecovery)
        .unwrap();
    let hold = e.config().discharge.hold.as_millis() as u64;
    every_second(&mut e, 2000 * SEC, 2000 * SEC + hold + SEC, |t| hr(t, 71.0));
    assert_eq!(readiness(&drain(&mut e)), vec![(true, 2000 * SEC + hold)]);
}

/// Alarm starts and ends only (no escalation, acknowledgement, re-alert).
fn starts_and_ends(e: &mut Engine) -> Vec<(String, Phase, u64)> {
    alarms(e)
        .into_iter()
        .filter(|a| matches!(a.1, Phase::Start | Phase::End))
        .collect()
}

/// A dosed session with NIBP baselines 120/70 (mean 87), set by hand.
fn dosed_with_bp_baseline(cfg: EngineConfig) -> Engine {
    let mut e = Engine::new(cfg);
    start_session(&mut e, 0);
    for (vital, value) in [
        (Vital::NibpSystolic, 120.0),
        (Vital::NibpDiastolic, 70.0),
        (Vital::NibpMean, 87.0),
    ] {
        e.handle_command(ms(0), Command::SetBaseline { vital, value })
            .unwrap();
    }
    dose(&mut e, 0);
    drain(&mut e);
    e
}

#[test]
fn one_high_bp_reading_is_one_alarm_with_both_values_and_limits() {
    // 187/114 (a real reading) against baselines 120/70: both components
    // over their high limits and far above baseline. One condition, one
    // alarm to acknowledge: nibp.high, covering both baseline rises.
    let mut cfg = config();
    cfg.nibp.confirm = NibpConfirm::Off;
    let mut e = dosed_with_bp_baseline(cfg);
    feed(&mut e, nibp(SEC, 187.0, 114.0, 1));
    let ev = drain(&mut e);
    let names = e.config().source_names.clone();
    let starts: Vec<AlarmEvent> = ev
        .iter()
        .filter_map(|ev| match ev.kind {
            EventKind::Alarm(a) if a.phase == Phase::Start => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 1, "{starts:?}");
    let a = starts[0];
    assert_eq!(a.id.key(&names), "nibp.high");
    assert_eq!(a.priority, Priority::High);
    assert_eq!(a.kind, AlarmKind::Physiological);
    assert_eq!((a.value, a.limit), (Some(187.0), Some(180.0)));
    assert_eq!(
        a.components,
        Some([
            ComponentValue {
                vital: Vital::NibpSystolic,
                value: Some(187.0),
                limit: Some(180.0)
            },
            ComponentValue {
                vital: Vital::NibpDiastolic,
                value: Some(114.0),
                limit: Some(110.0)
            },
        ])
    );
    // The diastolic alone over its limit: the same alarm, led by it.
    let mut cfg = config();
    cfg.nibp.confirm = NibpConfirm::Off;
    let mut e = Engine::new(cfg);
    feed(&mut e, nibp(0, 150.0, 112.0, 1));
    let a = drain(&mut e)
        .into_iter()
        .find_map(|ev| match ev.kind {
            EventKind::Alarm(a) => Some(a),
            _ => None,
        })
        .expect("an alarm");
    assert_eq!(a.id.key(&names), "nibp.high");
    assert_eq!((a.value, a.limit), (Some(112.0), Some(110.0)));
}

#[test]
fn combined_high_needs_confirmation_per_component_and_ends_with_hysteresis() {
    // Default: the high side needs two consecutive readings beyond it.
    let mut e = engine();
    feed(&mut e, nibp(0, 187.0, 100.0, 1));
    assert!(started(&mut e).is_empty());
    // The second reading has only the diastolic over: not a confirmation
    // of either component.
    feed(&mut e, nibp(300 * SEC, 170.0, 114.0, 2));
    assert!(started(&mut e).is_empty());
    feed(&mut e, nibp(600 * SEC, 172.0, 113.0, 3));
    assert_eq!(started(&mut e), ["nibp.high"]);
    // Active: it holds while either component is within the hysteresis
    // (5 mmHg) below its limit, and ends once both are further back.
    feed(&mut e, nibp(900 * SEC, 176.0, 104.0, 4));
    assert_eq!(starts_and_ends(&mut e), vec![]);
    feed(&mut e, nibp(1200 * SEC, 175.0, 105.0, 5));
    assert_eq!(
        starts_and_ends(&mut e),
        vec![key("nibp.high", Phase::End, 1200 * SEC)]
    );
}

#[test]
fn components_apart_when_configured() {
    let mut cfg = config();
    cfg.nibp.confirm = NibpConfirm::Off;
    cfg.nibp.combined_high = false;
    let mut e = dosed_with_bp_baseline(cfg);
    feed(&mut e, nibp(SEC, 187.0, 114.0, 1));
    // Apart, but each baseline rise is still covered by its own vital's
    // high alarm.
    assert_eq!(started(&mut e), ["nibp_sys.high", "nibp_dia.high"]);
}

#[test]
fn a_baseline_rise_is_inhibited_while_the_limit_alarm_is_active() {
    let mut cfg = config();
    cfg.nibp.confirm = NibpConfirm::Off;
    let mut e = dosed_with_bp_baseline(cfg);
    // 165/100: above baseline + 20 % (144) and + 25 (95), under the limits.
    feed(&mut e, nibp(SEC, 165.0, 100.0, 1));
    assert_eq!(
        started(&mut e),
        ["nibp_sys.baseline_rise", "nibp_dia.baseline_rise"]
    );
    // Over the limits: the more severe condition takes over.
    feed(&mut e, nibp(300 * SEC, 187.0, 114.0, 2));
    assert_eq!(
        starts_and_ends(&mut e),
        vec![
            key("nibp.high", Phase::Start, 300 * SEC),
            key("nibp_sys.baseline_rise", Phase::End, 300 * SEC),
            key("nibp_dia.baseline_rise", Phase::End, 300 * SEC),
        ]
    );
    // Back under the limits but still above baseline: the trend alarms
    // return as the limit alarm ends.
    feed(&mut e, nibp(600 * SEC, 160.0, 98.0, 3));
    assert_eq!(
        starts_and_ends(&mut e),
        vec![
            key("nibp.high", Phase::End, 600 * SEC),
            key("nibp_sys.baseline_rise", Phase::Start, 600 * SEC),
            key("nibp_dia.baseline_rise", Phase::Start, 600 * SEC),
        ]
    );
}

#[test]
fn a_continuous_baseline_rise_is_covered_by_its_limit_alarm_of_higher_priority() {
    // HR baseline 70 (+30 %: 91). 125 /min is over the high limit (120,
    // medium) and over the baseline threshold (low): after the shared
    // 10 s delay only hr.high starts. (The rate rule is off: it is not a
    // baseline alarm and is not covered.)
    let mut cfg = config();
    cfg.vitals[Vital::HeartRate.index()].rate = None;
    let mut e = Engine::new(cfg.clone());
    start_session(&mut e, 0);
    every_second(&mut e, 0, 60 * SEC, |t| hr(t, 70.0));
    dose(&mut e, 60 * SEC);
    drain(&mut e);
    every_second(&mut e, 60 * SEC, 80 * SEC, |t| hr(t, 125.0));
    assert_eq!(started(&mut e), ["hr.high"]);
    // Under the limit (by more than the hysteresis), still over baseline.
    every_second(&mut e, 80 * SEC, 100 * SEC, |t| hr(t, 110.0));
    assert_eq!(
        starts_and_ends(&mut e),
        vec![
            key("hr.high", Phase::End, 80 * SEC),
            key("hr.baseline_rise", Phase::Start, 90 * SEC),
        ]
    );
    // A trend alarm of HIGHER priority than the limit alarm is not covered.
    cfg.vitals[Vital::HeartRate.index()].baseline.priority = Some(Priority::High);
    let mut e = Engine::new(cfg);
    start_session(&mut e, 0);
    every_second(&mut e, 0, 60 * SEC, |t| hr(t, 70.0));
    dose(&mut e, 60 * SEC);
    drain(&mut e);
    every_second(&mut e, 60 * SEC, 80 * SEC, |t| hr(t, 125.0));
    assert_eq!(started(&mut e), ["hr.high", "hr.baseline_rise"]);
}

// ----- breathing: respiration rate, etCO2, apnoea ---------------------------

fn rr(t: u64, v: f32) -> Reading {
    reading(t, Measurement::RespRate(Sample::valid(v)))
}

fn rr_flag(t: u64, validity: Validity) -> Reading {
    reading(t, Measurement::RespRate(Sample::missing(validity)))
}

#[test]
fn breathing_limits_start_exactly_when_their_delay_elapses() {
    // RR below 8 and etCO2 above 50, both held: each alarms 10 s after
    // the first value beyond its limit, with priority medium.
    let mut e = engine();
    every_second(&mut e, 0, 10 * SEC, |t| rr(t, 7.0));
    assert!(alarms(&mut e).is_empty());
    feed(&mut e, rr(10 * SEC, 7.0));
    assert_eq!(alarms(&mut e), vec![key("rr.low", Phase::Start, 10 * SEC)]);
    assert_eq!(
        e.present_alarms()[0].priority,
        Priority::Medium,
        "rr.low is medium"
    );
    let mut e = engine();
    every_second(&mut e, 0, 11 * SEC, |t| {
        reading(t, Measurement::EtCo2(Sample::valid(51.0)))
    });
    assert_eq!(
        alarms(&mut e),
        vec![key("etco2.high", Phase::Start, 10 * SEC)]
    );
}

#[test]
fn apnoea_starts_exactly_when_no_breath_lasted_the_delay() {
    // RR 0 every second: rr.apnoea (high, physiological) at 20 s, and not
    // also rr.low (one alarm per condition).
    let mut e = engine();
    every_second(&mut e, 0, 20 * SEC, |t| rr(t, 0.0));
    assert!(alarms(&mut e).is_empty());
    assert_eq!(e.poll_timeout(), Some(ms(20 * SEC)));
    e.handle_timeout(ms(20 * SEC - 1));
    assert!(alarms(&mut e).is_empty());
    e.handle_timeout(ms(20 * SEC));
    let events = drain(&mut e);
    let started: Vec<&AlarmEvent> = events
        .iter()
        .filter_map(|ev| match &ev.kind {
            EventKind::Alarm(a) if a.phase == Phase::Start => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 1, "{started:?}");
    let a = started[0];
    assert_eq!(a.id, id("rr.apnoea"));
    assert_eq!(a.kind, AlarmKind::Physiological);
    assert_eq!(a.priority, Priority::High);
    assert_eq!(a.value, Some(0.0));
    assert_eq!(a.delay, Duration::from_secs(20));
    every_second(&mut e, 21 * SEC, 60 * SEC, |t| rr(t, 0.0));
    assert!(!started_any(&mut e, "rr.low"));
    // A breath ends it, and the end carries the rate that resumed.
    feed(&mut e, rr(60 * SEC, 12.0));
    let ended: Vec<AlarmEvent> = drain(&mut e)
        .into_iter()
        .filter_map(|ev| match ev.kind {
            EventKind::Alarm(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0].id, id("rr.apnoea"));
    assert_eq!(ended[0].phase, Phase::End);
    assert_eq!(ended[0].value, Some(12.0));
}

fn started_any(e: &mut Engine, k: &str) -> bool {
    started(e).iter().any(|s| s == k)
}

#[test]
fn apnoea_boundary_is_below_one_breath_per_minute() {
    // A rate of 1 /min is a (very slow) breath: rr.low, never apnoea;
    // 0.9 is no breath.
    let s = held(Vital::RespRate, 1.0);
    assert_eq!(s, vec!["rr.low".to_owned()]);
    let s = held(Vital::RespRate, 0.9);
    assert_eq!(s, vec!["rr.apnoea".to_owned()]);
}

#[test]
fn a_measuring_module_with_no_rate_is_apnoea_not_missing_data() {
    // `unavailable` from a module that measures: no breath found. It is
    // apnoea after the delay, and no technical rr.invalid.
    let mut e = engine();
    every_second(&mut e, 0, 40 * SEC, |t| rr_flag(t, Validity::Unavailable));
    assert_eq!(started(&mut e), vec!["rr.apnoea".to_owned()]);
    let a = e.present_alarms();
    assert_eq!(a.len(), 1);
    // Its value is the rate: none found is 0 /min.
    assert_eq!(
        (a[0].value, a[0].kind),
        (Some(0.0), AlarmKind::Physiological)
    );
}

#[test]
fn a_module_or_sensor_that_is_off_is_technical_never_apnoea() {
    for validity in [
        Validity::SensorOff,
        Validity::Invalid,
        Validity::Artifact,
        Validity::OverRange,
    ] {
        let mut e = engine();
        every_second(&mut e, 0, 60 * SEC, |t| rr_flag(t, validity));
        let s = started(&mut e);
        let want = Condition::for_validity(validity).unwrap();
        assert_eq!(s, vec![format!("rr.{}", want.key())], "{validity:?}");
    }
    // An implausible rate is an artifact, not a breath and not apnoea.
    let s = held(Vital::RespRate, 400.0);
    assert_eq!(s, vec!["rr.artifact".to_owned()]);
}

#[test]
fn a_flagged_reading_restarts_a_pending_apnoea_and_keeps_an_active_one() {
    let mut e = engine();
    every_second(&mut e, 0, 10 * SEC, |t| rr(t, 0.0));
    feed(&mut e, rr_flag(10 * SEC, Validity::SensorOff));
    // No breath again from 11 s: the delay counts from there.
    every_second(&mut e, 11 * SEC, 31 * SEC, |t| rr(t, 0.0));
    assert!(!started_any(&mut e, "rr.apnoea"));
    e.handle_timeout(ms(31 * SEC));
    assert!(started_any(&mut e, "rr.apnoea"));
    // Active: a sensor-off reading does not end it.
    feed(&mut e, rr_flag(32 * SEC, Validity::SensorOff));
    assert!(!alarms(&mut e)
        .iter()
        .any(|a| a.0 == "rr.apnoea" && a.1 == Phase::End));
}

#[test]
fn apnoea_can_be_configured_and_switched_off() {
    let mut cfg = config();
    cfg.apnoea.delay = Duration::from_secs(10);
    cfg.apnoea.priority = Priority::Medium;
    let mut e = Engine::new(cfg.clone());
    every_second(&mut e, 0, 11 * SEC, |t| rr(t, 0.0));
    assert_eq!(
        alarms(&mut e),
        vec![key("rr.apnoea", Phase::Start, 10 * SEC)]
    );
    // Off: an RR of 0 is only below the low limit.
    cfg.apnoea.enabled = false;
    let mut e = Engine::new(cfg);
    every_second(&mut e, 0, 40 * SEC, |t| rr(t, 0.0));
    assert_eq!(started(&mut e), vec!["rr.low".to_owned()]);
}

#[test]
fn breathing_baselines_are_taken_but_do_not_hold_off_discharge() {
    let mut e = engine();
    start_session(&mut e, 0);
    for t in (0..61).map(|s| s * SEC) {
        feed(&mut e, hr(t, 70.0));
        feed(&mut e, rr(t + 500, 14.0));
    }
    dose(&mut e, 61 * SEC);
    let events = drain(&mut e);
    let baselines: Vec<(Vital, f32)> = events
        .iter()
        .filter_map(|ev| match ev.kind {
            EventKind::Session(SessionEvent::Baseline { vital, value, .. }) => Some((vital, value)),
            _ => None,
        })
        .collect();
    assert!(
        baselines.contains(&(Vital::RespRate, 14.0)),
        "{baselines:?}"
    );
    assert_eq!(e.baseline(Vital::RespRate), Some(14.0));
    e.handle_command(ms(62 * SEC), Command::StartRecovery)
        .unwrap();
    // HR back at baseline, RR 20 (43 % above its baseline): ready anyway,
    // since breathing is no discharge criterion by default.
    let hold = e.config().discharge.hold.as_millis() as u64;
    let end = 62 * SEC + hold + SEC;
    let mut t = 62 * SEC;
    while t < end {
        feed(&mut e, hr(t, 70.0));
        feed(&mut e, rr(t + 500, 20.0));
        t += SEC;
    }
    let ready = drain(&mut e).iter().any(|ev| {
        matches!(
            ev.kind,
            EventKind::Session(SessionEvent::DischargeReadiness { ready: true })
        )
    });
    assert!(ready);
}
