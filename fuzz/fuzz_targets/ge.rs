//! Fuzz target for the GE S/5 decoder: arbitrary bytes, fed in a few chunks
//! at increasing instants with timer calls in between, must never panic and
//! never yield a valid reading whose value is not a finite number.
//!
//! Depends on the `vigil` library and `libfuzzer-sys` only.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::protocol::ge::GeS5;
use vigil::protocol::{Output, Protocol};
use vigil::time::Instant;
use vigil::vitals::{Measurement, Sample, SourceId};

fn check(s: Sample) {
    assert!(
        !s.validity.is_valid() || s.value.is_finite(),
        "valid sample with non-finite value: {s:?}"
    );
}

fn drain(p: &mut GeS5, tx: &mut Vec<u8>) {
    while let Some(o) = p.poll_output() {
        if let Output::Reading(r) = o {
            match r.measurement {
                Measurement::HeartRate(s)
                | Measurement::PulseRate(s)
                | Measurement::SpO2(s)
                | Measurement::RespRate(s)
                | Measurement::EtCo2(s) => check(s),
                Measurement::Nibp(n) => {
                    check(n.systolic);
                    check(n.diastolic);
                    check(n.mean);
                }
            }
        }
    }
    // Each poll appends one request; the queue is short and must run dry.
    for _ in 0..16 {
        tx.clear();
        if !p.poll_transmit(tx) {
            return;
        }
    }
    panic!("transmit queue does not run dry");
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut p) = GeS5::new(SourceId(0), 10) else {
        return;
    };
    let mut tx = Vec::new();
    let chunk = (data.len() / 4).max(1);
    let mut now = Instant::ZERO;
    for (i, c) in data.chunks(chunk).enumerate() {
        now = Instant::from_millis(700 * (i as u64 + 1));
        p.handle_bytes(now, c);
        p.handle_timeout(now);
        drain(&mut p, &mut tx);
    }
    if let Some(t) = p.poll_timeout() {
        p.handle_timeout(t.max(now));
    }
    p.handle_timeout(Instant::from_secs(3_600));
    drain(&mut p, &mut tx);
    assert_eq!(p.stats().bytes, data.len() as u64);
});
