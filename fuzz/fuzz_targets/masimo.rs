//! Fuzz target for the Masimo ASCII decoder: arbitrary bytes, fed in a few
//! chunks with increasing arrival times (some gaps longer than the partial
//! line timeout), must never panic, and no valid reading may carry a
//! non-finite value. Depends on `vigil`, `libfuzzer-sys` and this crate's
//! checks.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::protocol::masimo::Masimo;
use vigil::protocol::Protocol;
use vigil::time::Instant;
use vigil::vitals::SourceId;
use vigil_fuzz::{drain, Nibp};

fuzz_target!(|data: &[u8]| {
    let mut decoder = Masimo::new(SourceId(0));
    let mut tx = Vec::new();
    let n = data.len();
    let cuts = [0, n / 4, n / 2, n - n / 5, n];
    let times_ms = [0u64, 500, 3_000, 3_100];
    for (w, ms) in cuts.windows(2).zip(times_ms) {
        let now = Instant::from_millis(ms);
        decoder.handle_bytes(now, data.get(w[0]..w[1]).unwrap_or(&[]));
        drain(&mut decoder, &mut tx, Nibp::Never);
        if let Some(t) = decoder.poll_timeout() {
            assert!(t > now);
        }
    }
    decoder.handle_timeout(Instant::from_secs(60));
    drain(&mut decoder, &mut tx, Nibp::Never);
    assert_eq!(decoder.poll_timeout(), None);
    assert_eq!(decoder.stats().bytes, n as u64);
});
