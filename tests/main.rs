//! vigil's integration tests, compiled as ONE binary (faster builds, one
//! place for shared helpers in `util`). Each module covers one area.

mod breathing;
mod chart_export;
mod daemon;
mod display;
mod emulator;
mod engine_alloc;
mod errors;
mod faults;
mod hl7_live;
mod install;
mod lifecycle;
mod mqtt;
mod real_captures;
mod record_tools;
mod replay;
mod station;
mod topology;
mod util;
mod watch;
