//! Fuzz target for the Philips IntelliVue decoders: arbitrary bytes, fed in a
//! few chunks at increasing instants with timer calls in between, to both the
//! host session and the monitor-stream decoder. Nothing may panic, no valid
//! reading may carry a non-finite value, and the transmit queue must run dry.
//!
//! Depends on the `vigil` library and `libfuzzer-sys` only.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::protocol::philips::{IntelliVueHost, IntelliVueMonitorStream};
use vigil::protocol::{Output, Protocol};
use vigil::time::Instant;
use vigil::vitals::{Measurement, Sample, SourceId};

fn check(s: Sample) {
    assert!(
        !s.validity.is_valid() || s.value.is_finite(),
        "valid sample with non-finite value: {s:?}"
    );
}

fn drain(p: &mut impl Protocol, tx: &mut Vec<u8>) {
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
    for _ in 0..16 {
        tx.clear();
        if !p.poll_transmit(tx) {
            return;
        }
    }
    panic!("transmit queue does not run dry");
}

fuzz_target!(|data: &[u8]| {
    let mut host = IntelliVueHost::new(SourceId(0));
    let mut stream = IntelliVueMonitorStream::new(SourceId(1));
    let mut tx = Vec::new();
    host.handle_timeout(Instant::ZERO);
    drain(&mut host, &mut tx);
    let chunk = (data.len() / 4).max(1);
    for (i, c) in data.chunks(chunk).enumerate() {
        let now = Instant::from_millis(400 * (i as u64 + 1));
        host.handle_bytes(now, c);
        stream.handle_bytes(now, c);
        if let Some(t) = host.poll_timeout() {
            host.handle_timeout(t.max(now));
        }
        drain(&mut host, &mut tx);
        drain(&mut stream, &mut tx);
    }
    host.handle_timeout(Instant::from_secs(3_600));
    drain(&mut host, &mut tx);
    assert_eq!(stream.stats().bytes, data.len() as u64);
});
