//! Session recordings: the format from [`vigil_core::record`] (re-exported
//! here), the file IO around it, and the tools that read recordings.
//!
//! - [`file`]: the recorder thread (append, sync, prune) and whole-file
//!   reading and writing;
//! - [`health`]: the storage-failure alarm's hold-off;
//! - [`export`], [`chart`], [`fhir`], [`hl7`], [`mllp`]: a replayed session
//!   as CSV, JSON, charts, FHIR and HL7 (through [`crate::replay`]);
//! - [`import`]: another system's readings as a recording.
//!
//! Layering: the tools depend on [`crate::replay`], which depends on the
//! core format only, never on this module.

pub use vigil_core::record::*;

pub mod chart;
pub mod export;
pub mod fhir;
pub mod file;
pub mod health;
pub mod hl7;
pub mod import;
pub mod mllp;
