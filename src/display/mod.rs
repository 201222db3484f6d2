//! The staff displays: `vigil display` (the web alarm board) and `vigil
//! watch` (the terminal view, in [`crate::watch`]).
//!
//! ```text
//!  MQTT broker --(link: rumqttc)--> feed (parse) --> state::Board
//!                                                       |  view(now)
//!                            web (axum, SSE) <----------+----------> watch (ratatui)
//!  cmd <--(link)-- acknowledge <-- page button / terminal key
//! ```
//!
//! - [`feed`]: the topic layout and every payload (the ONE place that knows
//!   the publisher's JSON);
//! - [`state`]: the shared, pure state model and the NO DATA decision;
//! - [`site`]: NO DATA per site (a room's broker bridged to the central one);
//! - [`link`]: the MQTT client both displays use (MQTT 5 where the broker
//!   speaks it: commands carry a response topic and correlation data);
//! - [`web`]: the HTTP server, its page and access control.
//!
//! Depends on [`crate::engine`] (alarm vocabulary) and [`crate::time`] (RFC 3339).

pub mod feed;
pub mod link;
pub mod site;
pub mod state;
pub mod web;

use std::path::PathBuf;
use std::time::Duration;

use feed::{BedKey, Topics};
use link::LinkSettings;
use state::{Board, Settings};

/// Errors starting a display. Each names the option to fix.
#[derive(Debug, thiserror::Error)]
pub enum DisplayError {
    /// A feed argument (prefix, bed) is wrong.
    #[error(transparent)]
    Topics(#[from] crate::mqtt::topics::TopicsError),
    /// The MQTT link cannot be set up.
    #[error(transparent)]
    Link(#[from] link::LinkError),
    /// The web server cannot run.
    #[error(transparent)]
    Web(#[from] web::WebError),
    /// The heartbeat timeout is out of range.
    #[error("--heartbeat-timeout must be between 1 s and 10 min")]
    HeartbeatTimeout,
}

/// What both displays need to reach the feed.
#[derive(Clone, Debug)]
pub struct FeedOptions {
    /// The broker: `mqtt://HOST:PORT`, `mqtts://HOST:PORT` or `HOST:PORT`.
    pub broker: String,
    /// Username and password file.
    pub credentials_file: Option<PathBuf>,
    /// CA certificates (PEM) for `mqtts://`.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for brokers that require one.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub client_key: Option<PathBuf>,
    /// Topic prefix template.
    pub prefix: String,
    /// `SITE/BED` of each bed; empty: every bed on the broker.
    pub beds: Vec<String>,
    /// No heartbeat for this long: NO DATA.
    pub heartbeat_timeout: Duration,
    /// MQTT client id; default `vigil-<kind>-<pid>`.
    pub client_id: Option<String>,
    /// MQTT version; None: MQTT 5, or 3.1.1 when the broker does not speak it.
    pub protocol: Option<crate::mqtt::wire::Protocol>,
}

/// The link settings and an empty board for these options.
pub fn prepare(opts: &FeedOptions, kind: &str) -> Result<(LinkSettings, Board), DisplayError> {
    if opts.heartbeat_timeout < Duration::from_secs(1)
        || opts.heartbeat_timeout > Duration::from_secs(600)
    {
        return Err(DisplayError::HeartbeatTimeout);
    }
    let topics = Topics::new(&opts.prefix)?;
    let beds = opts
        .beds
        .iter()
        .map(|b| BedKey::parse(b))
        .collect::<Result<Vec<_>, _>>()?;
    let keys = crate::mqtt::link::FLAG_KEYS;
    let url = crate::mqtt::link::parse_broker_lenient(&opts.broker).map_err(|why| {
        link::LinkError::Setup(crate::mqtt::link::LinkError::Broker {
            key: keys.broker,
            url: opts.broker.clone(),
            why,
        })
    })?;
    let link_config = crate::mqtt::link::LinkConfig {
        url,
        credentials_file: opts.credentials_file.clone(),
        ca_file: opts.ca_file.clone(),
        client_cert: opts.client_cert.clone(),
        client_key: opts.client_key.clone(),
        keys,
    };
    // Fail at start on unreadable files, not at the first connection.
    link_config.credentials().map_err(link::LinkError::Setup)?;
    link_config.tls().map_err(link::LinkError::Setup)?;
    let settings = Settings {
        heartbeat_timeout: opts.heartbeat_timeout,
        ..Settings::default()
    };
    let board = Board::new(settings, &beds);
    Ok((
        LinkSettings {
            link: link_config,
            // A chosen id is stable across restarts: its session may persist
            // (a PID-based one would leave a queue behind at every restart).
            persistent: opts.client_id.is_some(),
            client_id: opts
                .client_id
                .clone()
                .unwrap_or_else(|| format!("vigil-{kind}-{}", std::process::id())),
            topics,
            beds,
            protocol: opts.protocol,
        },
        board,
    ))
}

/// Runs the web board until the process ends.
pub async fn run_board(
    opts: &FeedOptions,
    web: web::WebSettings,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), DisplayError> {
    let (settings, board) = prepare(opts, "display")?;
    let (shared, _task) = link::spawn(settings, board)?;
    web::serve(web, shared, ready).await?;
    Ok(())
}
