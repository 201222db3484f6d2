//! The embedded broker (cargo feature `embedded-broker`, on by default):
//! rumqttd in-process so that a single workstation needs no other software.
//!
//! rumqttd's `Broker::start` blocks and has no shutdown, so it runs on a
//! thread of its own that the process owns for its lifetime. It listens on
//! `mqtt.listen` (loopback by default), without TLS and without an ACL:
//! for displays on other machines use an external broker (Mosquitto with
//! `config/mosquitto/`).

use std::collections::HashMap;
use std::net::SocketAddr;

/// Errors starting the embedded broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The listen address is taken or not ours.
    #[error("the embedded MQTT broker cannot listen on {addr} (mqtt.listen): {cause}; change mqtt.listen, or set mqtt.embedded = false to use the broker already there")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        cause: std::io::Error,
    },
    /// The thread could not be started.
    #[error("cannot start the embedded broker's thread: {0}")]
    Thread(std::io::Error),
}

/// Starts rumqttd on `listen` in a background thread.
pub fn start(listen: SocketAddr) -> Result<(), BrokerError> {
    // rumqttd only logs a failed bind from its own thread; find out first.
    drop(
        std::net::TcpListener::bind(listen).map_err(|source| BrokerError::Bind {
            addr: listen,
            cause: source,
        })?,
    );
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 5000,
        max_payload_size: 256 * 1024,
        max_inflight_count: 200,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "vigil-embedded".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 256,
            max_outgoing_packet_count: 200,
            max_segment_size: 10 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    std::thread::Builder::new()
        .name("vigil-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!("the embedded MQTT broker stopped: {e}");
            }
        })
        .map_err(BrokerError::Thread)?;
    tracing::info!(%listen, "embedded MQTT broker listening");
    Ok(())
}
