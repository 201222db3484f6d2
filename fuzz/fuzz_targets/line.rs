//! Fuzz target for the vigil-line decoder: arbitrary bytes, fed in a few
//! chunks with increasing arrival times, must never panic, and no valid
//! reading (including each NIBP component) may carry a non-finite value.
//! Depends on `vigil`, `libfuzzer-sys` and this crate's checks.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::protocol::line::VigilLine;
use vigil::protocol::Protocol;
use vigil::time::Instant;
use vigil::vitals::SourceId;
use vigil_fuzz::{drain, Nibp};

fuzz_target!(|data: &[u8]| {
    let mut decoder = VigilLine::new(SourceId(0));
    let mut tx = Vec::new();
    let n = data.len();
    let cuts = [0, n / 3, n / 2, n - n / 6, n];
    for (i, w) in cuts.windows(2).enumerate() {
        let now = Instant::from_millis(250 * i as u64);
        decoder.handle_bytes(now, data.get(w[0]..w[1]).unwrap_or(&[]));
        drain(&mut decoder, &mut tx, Nibp::Checked);
    }
    decoder.handle_timeout(Instant::from_secs(60));
    drain(&mut decoder, &mut tx, Nibp::Checked);
    assert_eq!(decoder.stats().bytes, n as u64);
});
