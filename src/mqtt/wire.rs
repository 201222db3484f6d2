//! The two MQTT protocol versions behind one face: rumqttc 0.25's MQTT 5
//! client (`rumqttc::v5`) and its MQTT 3.1.1 client, for the daemon's
//! publisher and the displays alike.
//!
//! - [`Protocol`]: `"5"` or `"3.1.1"` (`mqtt.protocol`, `--mqtt-protocol`);
//! - [`connect`]: the client and its event loop from a [`LinkConfig`] and
//!   a [`Session`] (persistent or not, inflight, packet limit, Last Will);
//! - [`Client`]: queues publishes (with MQTT 5 [`Props`]: message expiry,
//!   response topic, correlation data; a 3.1.1 link drops them),
//!   subscriptions and the disconnect, never awaiting;
//! - [`EventLoop::poll`]: what happened, the same for both versions
//!   ([`Happened`]), or a [`Failure`] already put into words.
//!
//! MQTT 5 needs a session expiry interval for a persistent session (a 0 or
//! absent one ends the session when the connection does, unlike 3.1.1's
//! clean session flag): [`SESSION_EXPIRY`].
//!
//! Depends on [`super::link`] only.

use std::time::Duration;

use rumqttc::v5 as five;
use rumqttc::QoS;

use super::link::{explain, explain_v5, BrokerUrl, LinkConfig, LinkError};

/// How long the broker keeps a persistent MQTT 5 session (its
/// subscriptions and queued QoS 1 messages) after the connection is lost:
/// one day, as long as any outage worth queueing commands for.
pub const SESSION_EXPIRY: u32 = 24 * 3600;

/// The MQTT protocol version of a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT 5.0 (message expiry, response topic, correlation data).
    V5,
    /// MQTT 3.1.1, for brokers that do not speak MQTT 5.
    V311,
}

impl Protocol {
    /// How the user spells it: `"5"` or `"3.1.1"`.
    pub fn key(self) -> &'static str {
        match self {
            Protocol::V5 => "5",
            Protocol::V311 => "3.1.1",
        }
    }

    /// Parses `"5"` (also `"5.0"`) or `"3.1.1"`.
    pub fn parse(s: &str) -> Option<Protocol> {
        match s.trim() {
            "5" | "5.0" => Some(Protocol::V5),
            "3.1.1" => Some(Protocol::V311),
            _ => None,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// MQTT 5 publish properties (ignored on a 3.1.1 link).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Props {
    /// Message expiry interval, seconds.
    pub expiry: Option<u32>,
    /// Response topic (a request's).
    pub response_topic: Option<String>,
    /// Correlation data (a request's, echoed in its response).
    pub correlation: Option<Vec<u8>>,
}

impl Props {
    fn is_empty(&self) -> bool {
        self.expiry.is_none() && self.response_topic.is_none() && self.correlation.is_none()
    }
}

/// The Last Will.
#[derive(Clone, Debug)]
pub struct Will {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// Retained.
    pub retain: bool,
}

/// How the session is kept.
#[derive(Clone, Debug)]
pub struct Session {
    /// Keep the session on the broker across connections.
    pub persistent: bool,
    /// QoS 1 publishes in flight at most.
    pub inflight: u16,
    /// Requests the client queues at most.
    pub request_queue: usize,
    /// The largest packet read or written.
    pub max_packet: usize,
    /// The Last Will (QoS 1).
    pub will: Option<Will>,
}

/// A request could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The client's request queue is full.
    #[error("the MQTT request queue is full")]
    Full,
    /// The event loop is gone.
    #[error("the MQTT event loop has stopped")]
    Closed,
}

/// The handle that queues requests (cheap to clone).
#[derive(Clone)]
pub enum Client {
    /// MQTT 3.1.1.
    V311(rumqttc::AsyncClient),
    /// MQTT 5.
    V5(five::AsyncClient),
}

fn qos5(q: QoS) -> five::mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => five::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => five::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => five::mqttbytes::QoS::ExactlyOnce,
    }
}

fn sent4(r: Result<(), rumqttc::ClientError>) -> Result<(), SendError> {
    match r {
        Ok(()) => Ok(()),
        Err(rumqttc::ClientError::TryRequest(_)) => Err(SendError::Full),
        Err(_) => Err(SendError::Closed),
    }
}

fn sent5(r: Result<(), five::ClientError>) -> Result<(), SendError> {
    match r {
        Ok(()) => Ok(()),
        Err(five::ClientError::TryRequest(_)) => Err(SendError::Full),
        Err(_) => Err(SendError::Closed),
    }
}

impl Client {
    /// The protocol this client speaks.
    pub fn protocol(&self) -> Protocol {
        match self {
            Client::V311(_) => Protocol::V311,
            Client::V5(_) => Protocol::V5,
        }
    }

    /// Queues a publish without waiting; `props` go out on MQTT 5 only.
    pub fn try_publish(
        &self,
        topic: String,
        qos: QoS,
        retain: bool,
        body: Vec<u8>,
        props: &Props,
    ) -> Result<(), SendError> {
        match self {
            Client::V311(c) => sent4(c.try_publish(topic, qos, retain, body)),
            Client::V5(c) if props.is_empty() => {
                sent5(c.try_publish(topic, qos5(qos), retain, body))
            }
            Client::V5(c) => {
                let p = five::mqttbytes::v5::PublishProperties {
                    message_expiry_interval: props.expiry,
                    response_topic: props.response_topic.clone(),
                    correlation_data: props.correlation.clone().map(Into::into),
                    ..Default::default()
                };
                sent5(c.try_publish_with_properties(topic, qos5(qos), retain, body, p))
            }
        }
    }

    /// Queues a subscription without waiting.
    pub fn try_subscribe(&self, filter: String, qos: QoS) -> Result<(), SendError> {
        match self {
            Client::V311(c) => sent4(c.try_subscribe(filter, qos)),
            Client::V5(c) => sent5(c.try_subscribe(filter, qos5(qos))),
        }
    }

    /// Queues the disconnect without waiting.
    pub fn try_disconnect(&self) -> Result<(), SendError> {
        match self {
            Client::V311(c) => sent4(c.try_disconnect()),
            Client::V5(c) => sent5(c.try_disconnect()),
        }
    }
}

/// A message from the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// The retain flag (a stored message).
    pub retain: bool,
    /// MQTT 5 response topic.
    pub response_topic: Option<String>,
    /// MQTT 5 correlation data.
    pub correlation: Option<Vec<u8>>,
}

/// What the event loop did.
#[derive(Debug)]
pub enum Happened {
    /// Connected.
    ConnAck,
    /// A QoS 1 publish was acknowledged (its packet id).
    PubAck(u16),
    /// The broker acknowledged a QoS 1 publish with a failure reason (MQTT
    /// 5: not authorised, quota exceeded, ...): it will not pass it on.
    Refused(u16, String),
    /// A message arrived.
    Publish(Message),
    /// A publish went out with this packet id (0: QoS 0).
    Sent(u16),
    /// A publish collided with an unacknowledged packet id and waits.
    AwaitAck,
    /// Anything else (pings, subscription acks).
    Other,
}

/// The connection failed or broke.
#[derive(Debug)]
pub struct Failure {
    /// The error as rumqttc says it (for the log).
    pub detail: String,
    /// A sentence a nurse can act on.
    pub explained: String,
    /// The broker sent a packet over the limit (its size).
    pub oversized: Option<usize>,
    /// The broker answered in a way that says it may not speak this
    /// protocol version (refused it, or hung up on the connection); the
    /// caller trusts it only before the first CONNACK.
    pub wrong_protocol: bool,
}

/// The event loop; poll it in a task of its own.
// One per link, for the life of the process: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum EventLoop {
    /// MQTT 3.1.1.
    V311(rumqttc::EventLoop),
    /// MQTT 5.
    V5(five::EventLoop),
}

impl EventLoop {
    /// The next thing that happened, reconnecting when polled after a failure.
    pub async fn poll(&mut self, url: &BrokerUrl) -> Result<Happened, Failure> {
        match self {
            EventLoop::V311(el) => {
                use rumqttc::{Event, Incoming, Outgoing};
                match el.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => Ok(Happened::ConnAck),
                    Ok(Event::Incoming(Incoming::PubAck(a))) => Ok(Happened::PubAck(a.pkid)),
                    Ok(Event::Incoming(Incoming::Publish(p))) => Ok(Happened::Publish(Message {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        retain: p.retain,
                        response_topic: None,
                        correlation: None,
                    })),
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Ok(Happened::Sent(pkid)),
                    Ok(Event::Outgoing(Outgoing::AwaitAck(_))) => Ok(Happened::AwaitAck),
                    Ok(_) => Ok(Happened::Other),
                    Err(e) => {
                        use rumqttc::{ConnectReturnCode as R, ConnectionError as C};
                        let oversized = match &e {
                            C::MqttState(rumqttc::StateError::Deserialization(
                                rumqttc::Error::PayloadSizeLimitExceeded(size),
                            )) => Some(*size),
                            _ => None,
                        };
                        Err(Failure {
                            detail: e.to_string(),
                            explained: explain(&e, url),
                            oversized,
                            wrong_protocol: matches!(
                                e,
                                C::ConnectionRefused(R::RefusedProtocolVersion)
                            ),
                        })
                    }
                }
            }
            EventLoop::V5(el) => {
                use five::mqttbytes::v5::Packet;
                use five::Event;
                use rumqttc::Outgoing;
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Ok(Happened::ConnAck),
                    Ok(Event::Incoming(Packet::PubAck(a))) => {
                        use five::mqttbytes::v5::PubAckReason as R;
                        Ok(match a.reason {
                            R::Success | R::NoMatchingSubscribers => Happened::PubAck(a.pkid),
                            reason => Happened::Refused(a.pkid, format!("{reason:?}")),
                        })
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let (response_topic, correlation) = match p.properties {
                            Some(props) => (
                                props.response_topic,
                                props.correlation_data.map(|b| b.to_vec()),
                            ),
                            None => (None, None),
                        };
                        Ok(Happened::Publish(Message {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                            response_topic,
                            correlation,
                        }))
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Ok(Happened::Sent(pkid)),
                    Ok(Event::Outgoing(Outgoing::AwaitAck(_))) => Ok(Happened::AwaitAck),
                    Ok(_) => Ok(Happened::Other),
                    Err(e) => {
                        use five::mqttbytes::v5::ConnectReturnCode as R;
                        use five::mqttbytes::Error as M;
                        use five::{ConnectionError as C, StateError as S};
                        let oversized = match &e {
                            C::MqttState(S::Deserialization(M::PayloadSizeLimitExceeded {
                                pkt_size,
                                ..
                            })) => Some(*pkt_size),
                            C::MqttState(S::IncomingPacketTooLarge { pkt_size, .. }) => {
                                Some(*pkt_size)
                            }
                            _ => None,
                        };
                        // A 3.1.1-only broker refuses the version, or
                        // hangs up on the CONNECT (rumqttd does).
                        let hung_up = matches!(
                            &e,
                            C::Io(io) if matches!(
                                io.kind(),
                                std::io::ErrorKind::UnexpectedEof
                                    | std::io::ErrorKind::ConnectionReset
                                    | std::io::ErrorKind::ConnectionAborted
                            )
                        );
                        let wrong_protocol = hung_up
                            || matches!(
                                e,
                                C::ConnectionRefused(
                                    R::UnsupportedProtocolVersion | R::RefusedProtocolVersion
                                ) | C::NotConnAck(_)
                                    | C::MqttState(S::ConnectionAborted | S::Deserialization(_))
                            );
                        Err(Failure {
                            detail: e.to_string(),
                            explained: explain_v5(&e, url),
                            oversized,
                            wrong_protocol,
                        })
                    }
                }
            }
        }
    }

    /// Whether the next connect starts a clean session (true) or resumes
    /// the persistent one.
    pub fn set_clean(&mut self, clean: bool) {
        match self {
            EventLoop::V311(el) => {
                el.mqtt_options.set_clean_session(clean);
            }
            EventLoop::V5(el) => {
                el.options.set_clean_start(clean);
            }
        }
    }

    /// Drops the connection state and every request the client still
    /// holds: the caller publishes again what matters (the outbox).
    pub fn forget_pending(&mut self) {
        match self {
            EventLoop::V311(el) => {
                el.clean();
                el.pending.clear();
            }
            EventLoop::V5(el) => {
                el.clean();
                el.pending.clear();
            }
        }
    }
}

/// Builds the client and its event loop for `client_id` over `link`.
pub fn connect(
    link: &LinkConfig,
    client_id: &str,
    protocol: Protocol,
    session: &Session,
) -> Result<(Client, EventLoop), LinkError> {
    let credentials = link.credentials()?;
    let tls = link.tls()?;
    let keep_alive = Duration::from_secs(5);
    match protocol {
        Protocol::V311 => {
            let mut opts =
                rumqttc::MqttOptions::new(client_id, link.url.host.clone(), link.url.port);
            opts.set_keep_alive(keep_alive)
                .set_clean_session(!session.persistent)
                .set_inflight(session.inflight)
                .set_request_channel_capacity(session.request_queue)
                .set_max_packet_size(session.max_packet, session.max_packet);
            if let Some((user, password)) = credentials {
                opts.set_credentials(user, password);
            }
            if let Some(tls) = tls {
                opts.set_transport(rumqttc::Transport::Tls(tls));
            }
            if let Some(w) = &session.will {
                opts.set_last_will(rumqttc::LastWill::new(
                    w.topic.clone(),
                    w.payload.clone(),
                    QoS::AtLeastOnce,
                    w.retain,
                ));
            }
            let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, session.request_queue);
            let mut net = eventloop.network_options();
            net.set_tcp_nodelay(true);
            net.set_connection_timeout(5);
            eventloop.set_network_options(net);
            Ok((Client::V311(client), EventLoop::V311(eventloop)))
        }
        Protocol::V5 => {
            let mut opts = five::MqttOptions::new(client_id, link.url.host.clone(), link.url.port);
            opts.set_keep_alive(keep_alive)
                .set_clean_start(!session.persistent)
                .set_outgoing_inflight_upper_limit(session.inflight)
                .set_request_channel_capacity(session.request_queue)
                .set_connection_timeout(5)
                .set_max_packet_size(Some(session.max_packet as u32));
            if session.persistent {
                opts.set_session_expiry_interval(Some(SESSION_EXPIRY));
            }
            if let Some((user, password)) = credentials {
                opts.set_credentials(user, password);
            }
            if let Some(tls) = tls {
                opts.set_transport(rumqttc::Transport::Tls(tls));
            }
            if let Some(w) = &session.will {
                opts.set_last_will(five::mqttbytes::v5::LastWill::new(
                    w.topic.clone(),
                    w.payload.clone(),
                    five::mqttbytes::QoS::AtLeastOnce,
                    w.retain,
                    None,
                ));
            }
            let mut net = opts.network_options();
            net.set_tcp_nodelay(true);
            net.set_connection_timeout(5);
            opts.set_network_options(net);
            let (client, eventloop) = five::AsyncClient::new(opts, session.request_queue);
            Ok((Client::V5(client), EventLoop::V5(eventloop)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_parse_as_the_user_spells_them() {
        assert_eq!(Protocol::parse("5"), Some(Protocol::V5));
        assert_eq!(Protocol::parse("5.0"), Some(Protocol::V5));
        assert_eq!(Protocol::parse("3.1.1"), Some(Protocol::V311));
        assert_eq!(Protocol::parse("3"), None);
        assert_eq!(Protocol::V311.to_string(), "3.1.1");
    }
}
