//! vigil's integration tests, compiled as ONE binary (faster builds, one
//! place for shared helpers in `util`). Each module covers one area.

mod engine_alloc;
mod util;
