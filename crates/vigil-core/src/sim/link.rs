//! An in-memory link between a simulated monitor and a host: the monitor
//! side as a trait ([`Device`]: a scenario device or `vigil-sim`'s capture
//! emulator), the host side as [`Host`] (any [`Protocol`], or a pipeline's
//! source), and one instant of a conversation: [`exchange`] passes bytes
//! both ways until both sides are quiet, [`next_deadline`] says when either
//! side wants time next. The golden tests, the device tests and
//! `vigil-sim`'s in-memory conversations step with these.
//!
//! Pure: time is an argument. Depends on [`crate::protocol`] and
//! [`crate::time`].

use crate::protocol::Protocol;
use crate::time::Instant;

/// The monitor side of a link, sans-IO: what the runners drive.
pub trait Device {
    /// Time passed: build what is due by `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// Bytes from the host arrived at `now`.
    fn handle_bytes(&mut self, now: Instant, bytes: &[u8]);
    /// Appends the next chunk to send to `out`; false when there is none.
    fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool;
    /// When to call `handle_timeout` next; `None`: only host bytes can make
    /// the device send (a GE monitor not yet asked).
    fn poll_timeout(&self) -> Option<Instant>;
}

/// The host side of a link as [`exchange`] sees it.
pub trait Host {
    /// Bytes from the device arrived at `now`.
    fn receive(&mut self, now: Instant, bytes: &[u8]);
    /// Appends the next message for the device to `out`; false when there
    /// is none.
    fn transmit(&mut self, out: &mut Vec<u8>) -> bool;
}

impl<P: Protocol + ?Sized> Host for P {
    fn receive(&mut self, now: Instant, bytes: &[u8]) {
        self.handle_bytes(now, bytes);
    }

    fn transmit(&mut self, out: &mut Vec<u8>) -> bool {
        self.poll_transmit(out)
    }
}

/// Passes bytes at `now` from `device` to `host` and back until neither has
/// more to send, through `buf` (left empty). `sent` sees each chunk the
/// device sent, after the host has it; it may take it.
pub fn exchange(
    device: &mut (impl Device + ?Sized),
    host: &mut (impl Host + ?Sized),
    now: Instant,
    buf: &mut Vec<u8>,
    mut sent: impl FnMut(&mut Vec<u8>),
) {
    loop {
        let mut moved = false;
        while device.poll_transmit(buf) {
            host.receive(now, buf);
            sent(buf);
            buf.clear();
            moved = true;
        }
        while host.transmit(buf) {
            device.handle_bytes(now, buf);
            buf.clear();
            moved = true;
        }
        if !moved {
            break;
        }
    }
}

/// The earliest of `deadlines` after `now`, if any.
pub fn next_deadline(
    now: Instant,
    deadlines: impl IntoIterator<Item = Option<Instant>>,
) -> Option<Instant> {
    deadlines.into_iter().flatten().filter(|t| *t > now).min()
}
