//! Fuzz target for the GE S/5 decoder: arbitrary bytes, fed in a few chunks
//! at increasing instants with timer calls in between, must never panic and
//! never yield a valid reading whose value is not a finite number.
//!
//! Depends on the `vigil` library, `libfuzzer-sys` and this crate's checks.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::protocol::ge::GeS5;
use vigil::protocol::Protocol;
use vigil::time::Instant;
use vigil::vitals::SourceId;
use vigil_fuzz::{drain, Nibp};

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
        drain(&mut p, &mut tx, Nibp::Checked);
    }
    if let Some(t) = p.poll_timeout() {
        p.handle_timeout(t.max(now));
    }
    p.handle_timeout(Instant::from_secs(3_600));
    drain(&mut p, &mut tx, Nibp::Checked);
    assert_eq!(p.stats().bytes, data.len() as u64);
});
