//! vigil: watches a patient's vital signs during ketamine-assisted therapy
//! sessions and raises alarms for the staff displays.
//!
//! # Layout
//!
//! ```text
//!  bytes from a monitor (serial, TCP, simulator, recording), stamped on arrival
//!        |
//!        v
//!  protocol   pure decoders + encoders           (bytes -> Readings, device status)
//!        |
//!        v
//!  engine     pure alarm engine                  (handle_* in, poll_* out)
//!        |
//!        v
//!  sinks      MQTT, recording, log               (the only code that awaits)
//!        |
//!        v  (MQTT broker)
//!  display    web alarm board, watch: terminal view (staff displays)
//! ```
//!
//! [`mqtt`] is the MQTT sink: topics, payloads, the durable outbox, commands
//! from displays and the embedded broker.
//!
//! # Dependency rules
//!
//! - [`time`], [`vitals`], [`protocol`], [`engine`] and [`config`] are pure:
//!   no tokio, no clock reads, no unseeded randomness. Time is an argument.
//! - [`vitals`] depends on [`time`] only; [`protocol`] on [`vitals`];
//!   [`engine`] on [`vitals`] and [`config`]; nothing in the pure core
//!   depends on IO modules.
//! - Each module defines its own `thiserror` error type; `anyhow` lives in
//!   `main.rs` only. An error's message is whole: it says its cause (and
//!   the setting to fix), so a log line `{e}` is complete; the cause is
//!   therefore never also its `source()` (no field named `source`, no
//!   `#[from]` beside a `{0}`), or main's `{:#}` would print it twice.

pub mod config;
pub mod display;
pub mod engine;
pub mod io;
pub mod log_limit;
pub mod mqtt;
pub mod pipeline;
pub mod protocol;
pub mod random;
pub mod record;
pub mod replay;
pub mod report;
pub mod setup;
pub mod sim;
pub mod time;
pub mod vitals;
pub mod watch;
