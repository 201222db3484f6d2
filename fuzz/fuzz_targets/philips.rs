//! Fuzz target for the Philips IntelliVue decoders: arbitrary bytes, fed in a
//! few chunks at increasing instants with timer calls in between, to both the
//! host session and the monitor-stream decoder. Nothing may panic, no valid
//! reading may carry a non-finite value, and the transmit queue must run dry.
//!
//! Depends on the `vigil` library, `libfuzzer-sys` and this crate's checks.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::protocol::philips::{IntelliVueHost, IntelliVueMonitorStream};
use vigil::protocol::Protocol;
use vigil::time::Instant;
use vigil::vitals::SourceId;
use vigil_fuzz::{drain, Nibp};

fuzz_target!(|data: &[u8]| {
    let mut host = IntelliVueHost::new(SourceId(0));
    let mut stream = IntelliVueMonitorStream::new(SourceId(1));
    let mut tx = Vec::new();
    host.handle_timeout(Instant::ZERO);
    drain(&mut host, &mut tx, Nibp::Checked);
    let chunk = (data.len() / 4).max(1);
    for (i, c) in data.chunks(chunk).enumerate() {
        let now = Instant::from_millis(400 * (i as u64 + 1));
        host.handle_bytes(now, c);
        stream.handle_bytes(now, c);
        if let Some(t) = host.poll_timeout() {
            host.handle_timeout(t.max(now));
        }
        drain(&mut host, &mut tx, Nibp::Checked);
        drain(&mut stream, &mut tx, Nibp::Checked);
    }
    host.handle_timeout(Instant::from_secs(3_600));
    drain(&mut host, &mut tx, Nibp::Checked);
    assert_eq!(stream.stats().bytes, data.len() as u64);
});
