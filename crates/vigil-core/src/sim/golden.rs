//! Golden scenario tests: simulated monitor bytes through the real decoders
//! and the real alarm engine ([`crate::pipeline::Pipeline`], default
//! configuration), on a virtual clock, with what the host sends fed back to
//! the device. Each built-in scenario must raise the alarms its comments
//! promise, at the promised times (with tolerances), and nothing else.
//!
//! No tokio: two hours of session run in well under a second per protocol.

use core::time::Duration;

use super::device::SimDevice;
use super::link::{exchange, next_deadline, Host};
use super::model::Patient;
use super::scenario::{EventKind, Scenario};
use crate::engine::{AlarmEvent, AlarmKind, EngineConfig, Event, EventKind as Out, Phase};
use crate::pipeline::{open_protocol, Pipeline, SourceSpec};
use crate::protocol::{DecodeStats, ProtocolKind};
use crate::time::Instant;
use crate::vitals::{SourceId, Validity};

const SOURCE: &str = "monitor";
const SOURCE_TIMEOUT: Duration = Duration::from_secs(10);

fn builtin(name: &str) -> Scenario {
    Scenario::builtin(name).unwrap().unwrap()
}

fn mmss(m: u64, s: u64) -> Duration {
    Duration::from_secs(m * 60 + s)
}

/// One alarm phase change as the tests see it.
#[derive(Clone, Debug)]
struct Alarm {
    at: Duration,
    key: String,
    phase: Phase,
    event: AlarmEvent,
}

/// The pipeline's source as the host end of a device's link.
impl Host for (&mut Pipeline, SourceId) {
    fn receive(&mut self, now: Instant, bytes: &[u8]) {
        self.0.handle_bytes(now, self.1, bytes);
    }

    fn transmit(&mut self, out: &mut Vec<u8>) -> bool {
        self.0.poll_transmit(self.1, out)
    }
}

/// Runs `scenario` on a device of `kind` into a pipeline until `until`;
/// returns the alarm phase changes and the decoder's counters.
fn run(
    scenario: &Scenario,
    kind: ProtocolKind,
    seed: u64,
    until: Duration,
) -> (Vec<Alarm>, DecodeStats) {
    let engine = EngineConfig {
        source_names: vec![SOURCE.to_owned()],
        ..EngineConfig::default()
    };
    let names = engine.source_names.clone();
    let src = SourceId(0);
    let mut pipeline = Pipeline::new(
        Instant::ZERO,
        engine,
        vec![SourceSpec {
            protocol: open_protocol(kind, src),
            timeout: SOURCE_TIMEOUT,
        }],
    );
    let mut device = SimDevice::new(scenario, kind, seed);
    let end = Instant::ZERO + until;
    let mut now = Instant::ZERO;
    let mut buf = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    // The serial line is there from the start, as a cable is.
    pipeline.handle_link(now, src, true);
    loop {
        device.handle_timeout(now);
        pipeline.handle_timeout(now);
        exchange(
            &mut device,
            &mut (&mut pipeline, src),
            now,
            &mut buf,
            |_| {},
        );
        events.extend(std::iter::from_fn(|| pipeline.poll_event()));
        match next_deadline(now, [device.poll_timeout(), pipeline.poll_timeout()]) {
            Some(t) if t < end => now = t,
            _ => break,
        }
    }
    let stats = pipeline.source_stats(src).unwrap_or_default();
    let alarms = events
        .into_iter()
        .filter_map(|e| match e.kind {
            Out::Alarm(a) => Some(Alarm {
                at: e.at.since_origin(),
                key: a.id.key(&names),
                phase: a.phase,
                event: a,
            }),
            _ => None,
        })
        .collect();
    (alarms, stats)
}

/// An expected alarm phase change: key, phase, and the window it must fall in.
struct Expect(&'static str, Phase, Duration, Duration);

/// Every expected change must match exactly one actual change of the same
/// key and phase inside its window, and every actual start or end of a
/// physiological alarm, or of a key that is expected at all, must be
/// expected: nothing missing, nothing extra. Keys in `loose` are checked by
/// the caller instead.
fn assert_golden(label: &str, actual: &[Alarm], expected: &[Expect], loose: &[&str]) {
    let relevant: Vec<&Alarm> = actual
        .iter()
        .filter(|a| matches!(a.phase, Phase::Start | Phase::End))
        .filter(|a| !loose.contains(&a.key.as_str()))
        .filter(|a| {
            a.event.kind == AlarmKind::Physiological
                || expected.iter().any(|Expect(k, ..)| *k == a.key)
        })
        .collect();
    let mut used = vec![false; relevant.len()];
    for Expect(key, phase, from, to) in expected {
        let hit = relevant.iter().enumerate().position(|(i, a)| {
            !used[i] && a.key == *key && a.phase == *phase && a.at >= *from && a.at <= *to
        });
        match hit {
            Some(i) => used[i] = true,
            None => panic!(
                "{label}: expected {key} {phase:?} between {from:?} and {to:?}; got:\n{}",
                show(&relevant)
            ),
        }
    }
    let extra: Vec<&Alarm> = relevant
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(a, _)| *a)
        .collect();
    assert!(extra.is_empty(), "{label}: unexpected:\n{}", show(&extra));
}

fn show(alarms: &[&Alarm]) -> String {
    alarms
        .iter()
        .map(|a| {
            let s = a.at.as_secs();
            format!("  {:02}:{:02} {} {:?}\n", s / 60, s % 60, a.key, a.phase)
        })
        .collect()
}

fn starts<'a>(alarms: &'a [Alarm], key: &str) -> Vec<&'a Alarm> {
    alarms
        .iter()
        .filter(|a| a.key == key && a.phase == Phase::Start)
        .collect()
}

#[test]
fn typical_session_raises_no_alarm_at_all() {
    let s = builtin("typical");
    for kind in [ProtocolKind::Line, ProtocolKind::Ge] {
        let (alarms, _) = run(&s, kind, 1, s.duration);
        assert!(alarms.is_empty(), "{kind:?}: {alarms:#?}");
    }
}

#[test]
fn hypertensive_alarms_on_the_second_reading_above_180_110_and_not_before() {
    let s = builtin("hypertensive");
    let seed = 4;
    // From the model: the NIBP readings above 180 systolic.
    let p = Patient::new(&s, seed);
    let cycle = s.nibp.unwrap();
    let high: Vec<Duration> = (0..)
        .map(|k| cycle.first_at + cycle.every * k)
        .take_while(|t| *t < s.duration)
        .filter(|t| p.nibp(*t).unwrap().systolic.value > 180.0)
        .collect();
    assert_eq!(high[..2], [mmss(25, 0), mmss(30, 0)], "{high:?}");

    for kind in [ProtocolKind::Line, ProtocolKind::Ge, ProtocolKind::Philips] {
        let (alarms, _) = run(&s, kind, seed, s.duration);
        let label = format!("hypertensive via {kind:?}");
        // A reading reaches the host within a second (line, Philips polls)
        // or within the 5 s GE interval.
        let second = high[1];
        assert_golden(
            &label,
            &alarms,
            &[
                // Systolic and diastolic over their limits: one condition.
                Expect("nibp.high", Phase::Start, second, second + mmss(0, 5)),
                Expect("nibp.high", Phase::End, mmss(40, 0), mmss(40, 5)),
            ],
            &[],
        );
        let first = &starts(&alarms, "nibp.high")[0];
        assert_eq!(
            first.event.value,
            Some(p.nibp(second).unwrap().systolic.value)
        );
        assert_eq!(first.event.limit, Some(180.0));
    }
}

#[test]
fn hypertensive_story_holds_for_every_seed() {
    let s = builtin("hypertensive");
    let cycle = s.nibp.unwrap();
    for seed in 0..300 {
        let p = Patient::new(&s, seed);
        let readings: Vec<(Duration, f32, f32)> = (0..)
            .map(|k| cycle.first_at + cycle.every * k)
            .take_while(|t| *t < s.duration)
            .map(|t| {
                let n = p.nibp(t).unwrap();
                (t, n.systolic.value, n.diastolic.value)
            })
            .collect();
        for &(t, sys, dia) in &readings {
            assert!(
                sys <= 200.0 && dia <= 120.0,
                "seed {seed} at {t:?}: {sys}/{dia}"
            );
            let above = sys > 180.0 && dia > 110.0;
            let expected = t == mmss(25, 0) || t == mmss(30, 0);
            if t < mmss(35, 0) {
                assert_eq!(above, expected, "seed {seed} at {t:?}: {sys}/{dia}");
            } else if t >= mmss(40, 0) {
                assert!(
                    sys < 175.0 && dia < 105.0,
                    "seed {seed} at {t:?}: {sys}/{dia}"
                );
            }
        }
    }
}

#[test]
fn desaturation_alarms_after_the_delay_and_critical_at_once() {
    let s = builtin("desaturation");
    let e = *s.events_of("desaturation").next().unwrap();
    assert_eq!(e.start, mmss(35, 0));
    let seed = 2;
    let p = Patient::new(&s, seed);
    for kind in [
        ProtocolKind::Line,
        ProtocolKind::Masimo,
        ProtocolKind::NoninDf2,
    ] {
        let label = format!("desaturation via {kind:?}");
        let (alarms, _) = run(&s, kind, seed, mmss(60, 0));
        assert_golden(
            &label,
            &alarms,
            &[
                Expect("spo2.low", Phase::Start, mmss(35, 50), mmss(36, 50)),
                Expect(
                    "spo2.critical_low",
                    Phase::Start,
                    mmss(36, 20),
                    mmss(37, 20),
                ),
                Expect("spo2.critical_low", Phase::End, mmss(38, 5), mmss(38, 55)),
                Expect("spo2.low", Phase::End, mmss(38, 45), mmss(39, 35)),
            ],
            // The rate rule has neither delay nor hysteresis: with SpO2
            // quantised to whole percent it may flap at its threshold
            // while the fall begins. Checked below by its envelope.
            &["spo2.rate_fall"],
        );
        let rate: Vec<&Alarm> = alarms
            .iter()
            .filter(|a| a.key == "spo2.rate_fall" && matches!(a.phase, Phase::Start | Phase::End))
            .collect();
        let (first, last) = (rate.first().unwrap(), rate.last().unwrap());
        assert!(
            first.phase == Phase::Start && first.at >= mmss(35, 20) && first.at <= mmss(36, 30),
            "{label}: rate fall starts while SpO2 falls:\n{}",
            show(&rate)
        );
        assert!(
            last.phase == Phase::End && last.at >= mmss(37, 0) && last.at <= mmss(38, 40),
            "{label}: and is over once it stops falling:\n{}",
            show(&rate)
        );
        // The low alarm waited its 15 s condition delay, with SpO2 below 90
        // on every displayed value meanwhile.
        let low = starts(&alarms, "spo2.low")[0];
        assert_eq!(low.event.delay, Duration::from_secs(15), "{label}");
        let onset = low.event.onset.since_origin();
        assert_eq!(low.at - onset, Duration::from_secs(15), "{label}");
        for i in 0..15 {
            let v = p.snapshot(onset + Duration::from_secs(i)).spo2.value;
            assert!(v < 90.0, "{label}: {v} at onset + {i} s");
        }
        // Not a frame early: just before the onset SpO2 was still >= 90.
        let period = match kind {
            ProtocolKind::NoninDf2 => Duration::from_nanos(333_333_333),
            _ => Duration::from_secs(1),
        };
        let before = p.snapshot(onset - period).spo2.value;
        assert!(before >= 90.0, "{label}: {before} before the onset");
        // The critical tier has no delay: it starts on the first value below 85.
        let crit = starts(&alarms, "spo2.critical_low")[0];
        assert_eq!(crit.event.delay, Duration::ZERO);
        assert!(p.snapshot(crit.at).spo2.value < 85.0);
        let first_below = (0..)
            .map(|i| e.start + Duration::from_millis(i * 1000 / 3))
            .find(|t| p.snapshot(*t).spo2.value < 85.0)
            .unwrap();
        assert!(
            crit.at >= first_below && crit.at - first_below <= Duration::from_secs(1),
            "{label}: critical at {:?}, first value below 85 at {first_below:?}",
            crit.at
        );
    }
}

#[test]
fn sensor_problems_raise_technical_alarms_only() {
    let s = builtin("sensor-problems");
    let until = mmss(60, 0);
    let reboot = *s.events_of("reboot").next().unwrap();
    for kind in ProtocolKind::ALL {
        let label = format!("sensor-problems via {kind:?}");
        let (alarms, stats) = run(&s, kind, 6, until);
        // IntelliVue has no artifact state: motion shows as questionable
        // values, which by the questionable policy still alarm, marked
        // questionable. Nothing physiological starts from a value the
        // monitor stands behind.
        let physiological: Vec<&Alarm> = alarms
            .iter()
            .filter(|a| a.event.kind == AlarmKind::Physiological)
            .filter(|a| {
                kind != ProtocolKind::Philips
                    || (a.phase == Phase::Start && a.event.validity != Some(Validity::Questionable))
            })
            .collect();
        assert!(
            physiological.is_empty(),
            "{label}:\n{}",
            show(&physiological)
        );
        // The probe off the finger: sensor off where the protocol can say
        // so, "invalid" where it cannot (Philips exports it as unavailable).
        let off = if kind == ProtocolKind::Philips {
            "spo2.invalid"
        } else {
            "spo2.sensor_off"
        };
        let off_start = starts(&alarms, off);
        assert!(
            off_start
                .iter()
                .any(|a| a.at >= mmss(15, 5) && a.at <= mmss(15, 7)),
            "{label}: {off} after its 5 s technical delay:\n{}",
            show(&alarms.iter().collect::<Vec<_>>())
        );
        // Motion: artifact where the protocol flags it, questionable where
        // the monitor says so (IntelliVue), invalid elsewhere.
        let motion = match kind {
            ProtocolKind::Ge => "spo2.invalid",
            ProtocolKind::Philips => "spo2.questionable",
            _ => "spo2.artifact",
        };
        assert!(
            starts(&alarms, motion)
                .iter()
                .any(|a| a.at >= mmss(22, 5) && a.at <= mmss(22, 7)),
            "{label}: {motion}"
        );
        // The restart: the monitor disconnected, and back.
        let down = format!("source.{SOURCE}.disconnected");
        let d = starts(&alarms, &down);
        assert_eq!(d.len(), 1, "{label}: one disconnection");
        assert!(
            d[0].at > Instant::ZERO.since_origin() + reboot.start
                && d[0].at <= reboot.start + SOURCE_TIMEOUT + Duration::from_secs(5),
            "{label}: disconnected at {:?}\n{}",
            d[0].at,
            show(&alarms.iter().collect::<Vec<_>>())
        );
        assert!(alarms
            .iter()
            .any(|a| a.key == down && a.phase == Phase::End && a.at >= reboot.end()));
        // The noise and the cut frame were seen and thrown away.
        assert!(stats.dropped_total() >= 3, "{label}: {stats:?}");
        // Every technical alarm raised also ended: the problems were passing.
        for a in alarms.iter().filter(|a| a.phase == Phase::Start) {
            assert!(
                alarms
                    .iter()
                    .any(|b| b.key == a.key && b.phase == Phase::End && b.at > a.at),
                "{label}: {} never ended\n{}",
                a.key,
                show(&alarms.iter().collect::<Vec<_>>())
            );
        }
    }
}

#[test]
fn comm_loss_raises_disconnected_within_the_timeout_and_ends_on_reconnection() {
    let s = builtin("comm-loss");
    let cuts: Vec<_> = s.events_of("cable-unplugged").copied().collect();
    assert_eq!(cuts.len(), 2);
    for e in &cuts {
        assert_eq!(e.kind, EventKind::CableUnplugged);
        assert!(
            e.duration > SOURCE_TIMEOUT,
            "longer than the source timeout"
        );
    }
    let down = "source.monitor.disconnected";
    for (kind, period) in [
        (ProtocolKind::Line, Duration::from_secs(1)),
        (ProtocolKind::Ge, Duration::from_secs(5)),
        (ProtocolKind::NoninDf7, Duration::from_secs(1)),
    ] {
        let (alarms, _) = run(&s, kind, 3, mmss(60, 0));
        let mut expected = Vec::new();
        for e in &cuts {
            // Raised once the silence exceeds the timeout (counted from the
            // last frame before the cut), ended by the first frame after it.
            expected.push(Expect(
                down,
                Phase::Start,
                e.start + SOURCE_TIMEOUT - period,
                e.start + SOURCE_TIMEOUT,
            ));
            expected.push(Expect(down, Phase::End, e.end(), e.end() + period));
        }
        assert_golden(&format!("comm-loss via {kind:?}"), &alarms, &expected, &[]);
    }
}

#[test]
fn demo_shows_desaturation_confirmed_hypertension_and_a_probe_off_early() {
    let s = builtin("demo");
    for kind in [ProtocolKind::Ge, ProtocolKind::Line] {
        let (alarms, _) = run(&s, kind, 1, s.duration);
        let first = |key: &str| {
            starts(&alarms, key)
                .first()
                .map(|a| a.at)
                .unwrap_or_else(|| {
                    panic!(
                        "{kind:?}: no {key} in\n{}",
                        show(&alarms.iter().collect::<Vec<_>>())
                    )
                })
        };
        // The desaturation at 16 min: critical at once, low after its delay.
        let critical = first("spo2.critical_low");
        assert!(
            (mmss(16, 0)..mmss(19, 0)).contains(&critical),
            "{critical:?}"
        );
        let low = first("spo2.low");
        assert!(
            low >= mmss(16, 15) && low <= critical + mmss(0, 20),
            "{low:?}"
        );
        // NIBP above 180/110 at 25 and 30 min: the alarm on the second reading.
        let high = first("nibp.high");
        assert!((mmss(30, 0)..mmss(30, 6)).contains(&high), "{high:?}");
        // The probe off at 42 min: technical, after the 5 s technical delay.
        let off = first("spo2.sensor_off");
        assert!((mmss(42, 5)..mmss(42, 15)).contains(&off), "{off:?}");
        // Every physiological alarm of the session comes from the script:
        // no SpO2 alarm outside the desaturation.
        for a in starts(&alarms, "spo2.low") {
            assert!(a.at < mmss(20, 0), "{:?}", a.at);
        }
    }
}
