//! vigil-core: the pure core of vigil, the vital-signs watcher.
//!
//! Everything here is sans-IO: bytes and commands go in through `handle_*`
//! with the [`time::Instant`] they arrived at, readings, events and bytes to
//! write come out through `poll_*`. Nothing in this crate awaits, reads a
//! clock, touches a file or a socket, or draws unseeded randomness; its
//! dependencies (`thiserror`, `serde`, `toml`) cannot either. The compiler
//! enforces what the `vigil` crate's docs used to promise: `.ci/run` fails
//! when `cargo tree -e normal -p vigil-core` shows tokio.
//!
//! # Modules, lowest first
//!
//! - [`time`]: the injected monotonic instant, calendar arithmetic and
//!   RFC 3339 formatting of wall-clock times handed in by the caller;
//! - [`vitals`]: readings, samples, vitals, source ids;
//! - [`protocol`]: one decoder/encoder module per monitor family;
//! - [`engine`]: the alarm engine (rules, alarms, session, events);
//! - [`pipeline`]: decoders plus engine plus the source watchdog, the one
//!   entry point live and replay share;
//! - [`record`]: the recording file format (the pipeline's inputs with their
//!   arrival times);
//! - [`sim`]: simulated monitors: a seeded patient model and a sans-IO
//!   device per protocol.
//!
//! `vigil` (daemon, CLI, MQTT, displays, the IO edge) depends on this crate
//! and re-exports its modules under the same names.

pub mod engine;
pub mod pipeline;
pub mod protocol;
pub mod record;
pub mod sim;
pub mod time;
pub mod vitals;
