//! The in-process simulated monitor source.

use tokio::io::DuplexStream;

use super::source::OpenError;
use crate::config::SourceConfig;

/// Starts a simulated monitor for the source and returns the host's end of
/// its byte stream.
pub fn open(cfg: &SourceConfig) -> Result<DuplexStream, OpenError> {
    Err(OpenError::Simulated(format!(
        "source {}: simulated monitors are not available in this build",
        cfg.name
    )))
}
