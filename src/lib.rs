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
//! # Crates and dependency rules
//!
//! - The pure core is the `vigil-core` crate: [`time`], [`vitals`],
//!   [`protocol`], [`engine`], [`pipeline`], the recording format (in
//!   [`record`]) and the simulated monitors (in [`sim`]). It has no tokio,
//!   no clock reads, no IO and no unseeded randomness in its dependencies, so
//!   the compiler keeps it pure; time is an argument. This crate re-exports
//!   its modules under the same names (`vigil::engine`, `crate::pipeline`).
//! - Inside the core: [`vitals`] depends on [`time`]; [`protocol`] on
//!   [`vitals`]; [`engine`] on [`vitals`] and [`protocol`]; [`pipeline`] on
//!   both.
//! - [`config`] (the TOML file) depends on [`engine`] for the typed alarm
//!   settings and on [`protocol`] for protocol names; the core never
//!   depends on [`config`].
//! - [`replay`] depends on the core and [`config`]; the export tools in
//!   [`record`] depend on [`replay`], never the reverse.
//! - [`io`] (sources, driver, sinks, the real clock) depends on everything
//!   below it; [`mqtt`] and [`display`] format times with [`time`], not
//!   through [`io`].
//! - Each module defines its own `thiserror` error type; `anyhow` lives in
//!   the binary only (`main.rs` and its `cli` modules). An error's message
//!   is whole: it says its cause (and the setting to fix), so a log line
//!   `{e}` is complete; the cause is therefore never also its `source()`
//!   (no field named `source`, no `#[from]` beside a `{0}`), or main's
//!   `{:#}` would print it twice.
//! - [`backoff`] is the one reconnect delay of every link (serial ports,
//!   the daemon's and the displays' broker links).
//! - [`daemon`] is the one place the daemon is wired (sinks, channels,
//!   recording, driver): `vigil run`, `vigil demo`, the tests and the
//!   benchmarks all start it there.

pub use vigil_core::{engine, pipeline, protocol, time, vitals};

pub mod alarm_text;
pub mod backoff;
pub mod config;
pub mod daemon;
pub mod display;
pub mod inspect;
pub mod io;
pub mod log_limit;
pub mod mqtt;
pub mod random;
pub mod record;
pub mod replay;
pub mod report;
pub mod setup;
pub mod sim;
pub mod watch;
