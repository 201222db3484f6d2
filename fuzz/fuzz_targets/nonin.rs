//! Fuzz target for the Nonin decoder: the same arbitrary bytes go to a
//! decoder for each data format (one of them with a format select request
//! pending, so ACK/NAK handling and the format switch are exercised), fed in a
//! few chunks with increasing arrival times. Nothing may panic, and no valid
//! reading may carry a non-finite value. Depends on `vigil`,
//! `libfuzzer-sys` and this crate's checks.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::protocol::nonin::{Nonin, NoninFormat};
use vigil::protocol::Protocol;
use vigil::time::Instant;
use vigil::vitals::SourceId;
use vigil_fuzz::{drain, Nibp};

fn run(data: &[u8], format: NoninFormat, request: Option<NoninFormat>) {
    let mut decoder = Nonin::new(SourceId(0), format);
    let mut tx = Vec::new();
    if let Some(next) = request {
        decoder.request_format(Instant::ZERO, next);
    }
    let n = data.len();
    let cuts = [0, n / 5, n / 2, n - n / 7, n];
    let times_ms = [0u64, 400, 1_000, 2_500];
    for (w, ms) in cuts.windows(2).zip(times_ms) {
        decoder.handle_bytes(
            Instant::from_millis(ms),
            data.get(w[0]..w[1]).unwrap_or(&[]),
        );
        drain(&mut decoder, &mut tx, Nibp::Never);
    }
    decoder.handle_timeout(Instant::from_secs(60));
    drain(&mut decoder, &mut tx, Nibp::Never);
    assert_eq!(decoder.poll_timeout(), None);
    assert_eq!(decoder.stats().bytes, n as u64);
}

fuzz_target!(|data: &[u8]| {
    run(data, NoninFormat::Df2, None);
    run(data, NoninFormat::Df7, None);
    run(data, NoninFormat::Df8, None);
    run(data, NoninFormat::Df2, Some(NoninFormat::Df8));
});
