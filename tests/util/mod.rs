//! Helpers shared by the integration tests.

pub mod alloc;
pub mod board;
pub mod browser;
pub mod config;
pub mod daemon;
pub mod emulator;
pub mod feed;
pub mod mqtt;
pub mod process;
pub mod readings;
pub mod session;
pub mod tls;
pub mod topology;
pub mod ward;
