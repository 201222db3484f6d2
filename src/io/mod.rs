//! The IO edge: everything that touches the outside world and the real
//! clock. Sources read bytes and stamp them, the driver loop runs the pure
//! [`crate::pipeline`], sinks take the events away.
//!
//! Only this module (and `main.rs`) uses tokio.

pub mod clock;
pub mod driver;
pub mod hl7;
pub mod notify;
pub mod simulated;
pub mod sink;
pub mod source;
