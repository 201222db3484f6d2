//! The command line (the binary's own modules, not the library's): the
//! arguments and the subcommands' implementations. The top layer: the only
//! place besides `main.rs` that uses `anyhow`.

pub mod args;
pub mod commands;
