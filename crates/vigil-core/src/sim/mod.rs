//! Simulated monitors: a seeded patient model following a scenario, and
//! sans-IO devices that speak each supported protocol from it.
//!
//! - [`rng`]: the seeded generator every random draw comes from;
//! - [`scenario`]: the scenario file format and the built-in scenarios;
//! - [`model`]: the patient: what a monitor shows at any moment;
//! - [`device`]: a monitor of one protocol family: bytes out on the
//!   protocol's own timing, host requests in;
//! - [`link`]: the monitor side as a trait, and an in-memory link that
//!   steps a device and a host together.
//!
//! Pure like the rest of the core: no tokio, no clock reads, no unseeded
//! randomness: a scenario is parsed from text the caller read (`vigil::sim`
//! finds built-in names and files). The IO edge (`vigil::io::simulated`,
//! `vigil-sim`) runs a [`device::SimDevice`] on a clock. Depends on
//! [`crate::protocol`], [`crate::pipeline`] (the host side, in tests),
//! [`crate::vitals`] and [`crate::time`].

pub mod device;
pub mod link;
pub mod model;
pub mod rng;
pub mod scenario;

#[cfg(test)]
mod golden;

pub use device::SimDevice;
pub use link::Device;
pub use model::Patient;
pub use scenario::{Scenario, ScenarioError};
