//! What the fuzz targets share: draining a decoder while checking what it
//! gives (no valid sample with a non-finite value, NIBP only from a
//! protocol that has it) and that its transmit queue runs dry.
//!
//! Depends on the `vigil` core library only.

use vigil::protocol::{Output, Protocol};
use vigil::vitals::{Measurement, Sample};

/// Whether the protocol under test sends NIBP readings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nibp {
    /// It may; each component is checked like any other sample.
    Checked,
    /// It has none (an oximeter): an NIBP reading is a bug.
    Never,
}

/// Most messages one drain may find queued: the queues are short, so a
/// queue that does not run dry by then never will.
const MAX_TRANSMIT: usize = 16;

/// Drains `p`'s outputs and checks each reading, then drains its transmit
/// queue into `tx`, which must run dry within [`MAX_TRANSMIT`] messages.
pub fn drain(p: &mut (impl Protocol + ?Sized), tx: &mut Vec<u8>, nibp: Nibp) {
    while let Some(o) = p.poll_output() {
        let Output::Reading(r) = o else { continue };
        match r.measurement {
            Measurement::Nibp(n) => {
                assert_eq!(nibp, Nibp::Checked, "NIBP from an oximeter: {r:?}");
                for s in [n.systolic, n.diastolic, n.mean] {
                    check(s);
                }
            }
            m => {
                let (_, s) = m.continuous().expect("every other reading is continuous");
                check(s);
            }
        }
    }
    for _ in 0..MAX_TRANSMIT {
        tx.clear();
        if !p.poll_transmit(tx) {
            return;
        }
    }
    panic!("transmit queue does not run dry");
}

fn check(s: Sample) {
    assert!(
        !s.validity.is_valid() || s.value.is_finite(),
        "valid sample with non-finite value: {s:?}"
    );
}
