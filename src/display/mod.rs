//! The staff displays: what they read from the MQTT feed and what they show.
//!
//! - [`feed`]: the topic layout and every payload (the ONE place that knows
//!   the publisher's JSON);
//! - [`state`]: the shared, pure state model and the NO DATA decision.
//!
//! Depends on [`crate::engine`] (alarm vocabulary) and [`crate::io::clock`].

pub mod feed;
pub mod state;
