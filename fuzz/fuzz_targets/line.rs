//! Fuzz target for the vigil-line decoder: arbitrary bytes, fed in a few
//! chunks with increasing arrival times, must never panic, and no valid
//! reading (including each NIBP component) may carry a non-finite value.
//! Depends on `vigil` and `libfuzzer-sys` only.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::protocol::line::VigilLine;
use vigil::protocol::{Output, Protocol};
use vigil::time::Instant;
use vigil::vitals::{Measurement, SourceId};

fn drain(decoder: &mut VigilLine, tx: &mut Vec<u8>) {
    while let Some(output) = decoder.poll_output() {
        if let Output::Reading(r) = output {
            let samples = match r.measurement {
                Measurement::Nibp(n) => [n.systolic, n.diastolic, n.mean],
                m => {
                    let (_, s) = m.continuous().expect("continuous");
                    [s; 3]
                }
            };
            for s in samples {
                assert!(!s.validity.is_valid() || s.value.is_finite(), "{r:?}");
            }
        }
    }
    while decoder.poll_transmit(tx) {}
    tx.clear();
}

fuzz_target!(|data: &[u8]| {
    let mut decoder = VigilLine::new(SourceId(0));
    let mut tx = Vec::new();
    let n = data.len();
    let cuts = [0, n / 3, n / 2, n - n / 6, n];
    for (i, w) in cuts.windows(2).enumerate() {
        let now = Instant::from_millis(250 * i as u64);
        decoder.handle_bytes(now, data.get(w[0]..w[1]).unwrap_or(&[]));
        drain(&mut decoder, &mut tx);
    }
    decoder.handle_timeout(Instant::from_secs(60));
    drain(&mut decoder, &mut tx);
    assert_eq!(decoder.stats().bytes, n as u64);
});
