//! The broker link both sides share: the daemon's publisher and the
//! displays (`vigil display`, `vigil watch`) reach the broker the same way.
//!
//! - [`BrokerUrl`]: `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]` (TLS);
//! - [`LinkConfig`]: the URL plus credentials (a file, or the environment
//!   variables `VIGIL_MQTT_USERNAME` / `VIGIL_MQTT_PASSWORD`), the CA that
//!   signs the broker's certificate and an optional client certificate
//!   ([`super::wire::connect`] builds the client from it);
//! - [`tls_client`]: a rustls client configuration trusting a CA file, for
//!   other links over TLS (the HL7 MLLP link), read and checked as the
//!   broker's CA file is;
//! - [`Backoff`]: the reconnect delay, doubling from 100 ms to 5 s;
//! - [`explain`], [`explain_v5`]: a connection error (MQTT 3.1.1 or 5) in
//!   words a nurse can act on (no "os error 111").
//!
//! Every error names the setting to fix, as the user spells it: a config
//! key for the daemon (`mqtt.ca_file`), a command-line flag for the displays
//! (`--mqtt-ca-file`); see [`Keys`].
//!
//! Depends on nothing else in vigil.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rumqttc::TlsConfiguration;

pub use crate::backoff::{Backoff, BACKOFF_MAX, BACKOFF_MIN};
/// The environment variable with the MQTT username (wins over the file).
pub const ENV_USERNAME: &str = "VIGIL_MQTT_USERNAME";
/// The environment variable with the MQTT password.
pub const ENV_PASSWORD: &str = "VIGIL_MQTT_PASSWORD";

/// Errors setting up the broker link. Each names the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The broker address does not parse.
    #[error(
        "{key}: `{url}` {why} (e.g. \"mqtt://127.0.0.1:1883\" or \"mqtts://broker.example:8883\")"
    )]
    Broker {
        /// The setting.
        key: &'static str,
        /// What was given.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// The credentials file cannot be read.
    #[error("cannot read MQTT credentials from {path} ({key}): {cause}")]
    Credentials {
        /// The setting.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The credentials file does not hold a username line.
    #[error(
        "{path} ({key}) must hold the username on its first line and the password on its second"
    )]
    CredentialsFormat {
        /// The setting.
        key: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A TLS file is missing, unreadable or holds no PEM item.
    #[error("{key} = {path}: {problem}")]
    Tls {
        /// The setting.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// How the user names each link setting (config keys or flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keys {
    /// The broker URL.
    pub broker: &'static str,
    /// The credentials file.
    pub credentials_file: &'static str,
    /// The CA file.
    pub ca_file: &'static str,
    /// The client certificate.
    pub client_cert: &'static str,
    /// The client key.
    pub client_key: &'static str,
}

/// The daemon's `[mqtt]` keys.
pub const CONFIG_KEYS: Keys = Keys {
    broker: "mqtt.broker",
    credentials_file: "mqtt.credentials_file",
    ca_file: "mqtt.ca_file",
    client_cert: "mqtt.client_cert",
    client_key: "mqtt.client_key",
};

/// The displays' command-line flags.
pub const FLAG_KEYS: Keys = Keys {
    broker: "--broker",
    credentials_file: "--mqtt-credentials-file",
    ca_file: "--mqtt-ca-file",
    client_cert: "--mqtt-client-cert",
    client_key: "--mqtt-client-key",
};

/// A parsed broker address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerUrl {
    /// `mqtts://`: TLS.
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// Port (1883 or 8883 when not given).
    pub port: u16,
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Parses `mqtt://host[:port]` or `mqtts://host[:port]`.
pub fn parse_broker_url(s: &str) -> Result<BrokerUrl, String> {
    let (tls, rest) = if let Some(r) = s.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = s.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err("must start with mqtt:// or mqtts://".into());
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
        (h, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ', '?', '#']) {
        return Err(format!("`{host}` is not a host name or address"));
    }
    let port = match port {
        None if tls => 8883,
        None => 1883,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("`{p}` is not a port number"))?,
    };
    Ok(BrokerUrl {
        tls,
        host: host.to_owned(),
        port,
    })
}

/// Like [`parse_broker_url`], but a bare `HOST:PORT` (the displays' older
/// form) means plain `mqtt://`.
pub fn parse_broker_lenient(s: &str) -> Result<BrokerUrl, String> {
    if s.contains("://") {
        parse_broker_url(&s.replacen("tcp://", "mqtt://", 1))
    } else {
        parse_broker_url(&format!("mqtt://{s}"))
    }
}

/// Everything needed to reach a broker.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// Where.
    pub url: BrokerUrl,
    /// Username line, password line.
    pub credentials_file: Option<PathBuf>,
    /// CA certificates (PEM) that sign the broker's certificate.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM).
    pub client_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub client_key: Option<PathBuf>,
    /// How the user names these settings.
    pub keys: Keys,
}

impl LinkConfig {
    /// A link to `url` with nothing else set.
    pub fn new(url: BrokerUrl, keys: Keys) -> LinkConfig {
        LinkConfig {
            url,
            credentials_file: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            keys,
        }
    }

    /// The username and password: the environment first, then the file.
    pub fn credentials(&self) -> Result<Option<(String, String)>, LinkError> {
        let env_user = std::env::var(ENV_USERNAME).ok();
        if let Some(user) = env_user.filter(|u| !u.is_empty()) {
            return Ok(Some((
                user,
                std::env::var(ENV_PASSWORD).unwrap_or_default(),
            )));
        }
        let Some(path) = &self.credentials_file else {
            return Ok(None);
        };
        read_credentials(path, self.keys.credentials_file).map(Some)
    }

    /// The TLS settings for `mqtts://` (None for plain MQTT).
    pub fn tls(&self) -> Result<Option<TlsConfiguration>, LinkError> {
        if !self.url.tls {
            return Ok(None);
        }
        // rustls with the ring provider (no C toolchain beyond ring's own).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca_path = self.ca_file.as_deref().ok_or_else(|| LinkError::Tls {
            key: self.keys.ca_file,
            path: PathBuf::new(),
            problem: format!(
                "required for {}: the CA certificate that signs the broker's certificate",
                self.url
            ),
        })?;
        let ca = read_pem(self.keys.ca_file, ca_path, "CERTIFICATE")?;
        let client_auth = match (&self.client_cert, &self.client_key) {
            (Some(c), Some(k)) => Some((
                read_pem(self.keys.client_cert, c, "CERTIFICATE")?,
                read_pem(self.keys.client_key, k, "")?,
            )),
            (None, None) => None,
            (Some(c), None) => {
                return Err(LinkError::Tls {
                    key: self.keys.client_key,
                    path: c.clone(),
                    problem: "a client certificate needs its key".into(),
                })
            }
            (None, Some(k)) => {
                return Err(LinkError::Tls {
                    key: self.keys.client_cert,
                    path: k.clone(),
                    problem: "a client key needs its certificate".into(),
                })
            }
        };
        Ok(Some(TlsConfiguration::Simple {
            ca,
            alpn: None,
            client_auth,
        }))
    }
}

/// Reads a credentials file: username on the first line, password on the second.
pub fn read_credentials(path: &Path, key: &'static str) -> Result<(String, String), LinkError> {
    let text = std::fs::read_to_string(path).map_err(|source| LinkError::Credentials {
        key,
        path: path.to_owned(),
        cause: source,
    })?;
    let mut lines = text.lines();
    let user = lines.next().unwrap_or("").trim().to_owned();
    if user.is_empty() {
        return Err(LinkError::CredentialsFormat {
            key,
            path: path.to_owned(),
        });
    }
    let password = lines.next().unwrap_or("").trim_end_matches('\r').to_owned();
    Ok((user, password))
}

/// A rustls client configuration (ring, TLS 1.2 and 1.3, no client
/// certificate) that trusts the CA certificates in `ca_path` (PEM): for a
/// link over TLS other than the broker's (rumqttc builds that one from the
/// same PEM file, [`LinkConfig::tls`]). `key` names the setting in errors
/// (`hl7.ca_file`).
pub fn tls_client(
    key: &'static str,
    ca_path: &Path,
) -> Result<Arc<rustls::ClientConfig>, LinkError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let pem = read_pem(key, ca_path, "CERTIFICATE")?;
    let bad = |problem: String| LinkError::Tls {
        key,
        path: ca_path.to_owned(),
        problem,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("a certificate does not parse: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("a certificate cannot be trusted as a CA: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("no TLS version to use: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read_pem(key: &'static str, path: &Path, what: &str) -> Result<Vec<u8>, LinkError> {
    let data = std::fs::read(path).map_err(|e| LinkError::Tls {
        key,
        path: path.to_owned(),
        problem: format!("cannot read: {e}"),
    })?;
    if !String::from_utf8_lossy(&data).contains(&format!("-----BEGIN {what}")) {
        return Err(LinkError::Tls {
            key,
            path: path.to_owned(),
            problem: format!(
                "holds no PEM {}",
                if what.is_empty() { "key" } else { what }
            ),
        });
    }
    Ok(data)
}

/// A connection error as a sentence for the staff: what happened and what
/// to check, without OS error numbers.
pub fn explain(e: &rumqttc::ConnectionError, url: &BrokerUrl) -> String {
    use rumqttc::ConnectionError as C;
    use std::io::ErrorKind as K;
    let at = format!("{}:{}", url.host, url.port);
    match e {
        C::Io(io) => match io.kind() {
            K::ConnectionRefused => format!("the message broker at {at} is not running or refuses connections"),
            K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof | K::BrokenPipe => {
                format!("the connection to the message broker at {at} was dropped")
            }
            K::TimedOut => format!("the message broker at {at} does not answer"),
            K::NotFound => format!("the broker host {} is not known", url.host),
            _ => format!("cannot reach the message broker at {at} (network problem)"),
        },
        C::NetworkTimeout | C::FlushTimeout => {
            format!("the message broker at {at} does not answer")
        }
        C::ConnectionRefused(code) => format!(
            "the message broker at {at} refused this display ({}): check the MQTT user and password",
            refusal(*code)
        ),
        C::Tls(_) => format!(
            "the secure connection to the message broker at {at} failed: check the CA and client certificates"
        ),
        _ => format!("the connection to the message broker at {at} failed"),
    }
}

fn refusal(code: rumqttc::ConnectReturnCode) -> &'static str {
    use rumqttc::ConnectReturnCode as R;
    match code {
        R::BadUserNamePassword => "wrong user name or password",
        R::NotAuthorized => "not authorised",
        R::BadClientId => "client id rejected",
        R::ServiceUnavailable => "service unavailable",
        R::RefusedProtocolVersion => "protocol version refused",
        R::Success => "no reason given",
    }
}

/// [`explain`] for the MQTT 5 client's errors.
pub fn explain_v5(e: &rumqttc::v5::ConnectionError, url: &BrokerUrl) -> String {
    use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as R;
    use rumqttc::v5::ConnectionError as C;
    let at = format!("{}:{}", url.host, url.port);
    match e {
        C::Io(io) => explain(&rumqttc::ConnectionError::Io(std::io::Error::from(io.kind())), url),
        C::Timeout(_) => format!("the message broker at {at} does not answer"),
        C::ConnectionRefused(code) => {
            let why = match code {
                R::BadUserNamePassword => "wrong user name or password",
                R::NotAuthorized => "not authorised",
                R::ClientIdentifierNotValid | R::BadClientId => "client id rejected",
                R::ServerUnavailable | R::ServiceUnavailable | R::ServerBusy => {
                    "service unavailable"
                }
                R::UnsupportedProtocolVersion | R::RefusedProtocolVersion => {
                    "it does not speak MQTT 5: set the protocol to 3.1.1"
                }
                R::Banned => "banned",
                R::PacketTooLarge => "packet too large",
                _ => "no reason given",
            };
            format!(
                "the message broker at {at} refused this connection ({why}): check the MQTT user and password"
            )
        }
        C::Tls(_) => format!(
            "the secure connection to the message broker at {at} failed: check the CA and client certificates"
        ),
        C::MqttState(rumqttc::v5::StateError::ServerDisconnect { reason_code, .. }) => format!(
            "the message broker at {at} closed the connection ({reason_code:?})"
        ),
        _ => format!("the connection to the message broker at {at} failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse_with_default_ports() {
        let u = parse_broker_url("mqtts://broker.example").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port),
            (true, "broker.example", 8883)
        );
        let u = parse_broker_url("mqtt://[::1]:1884/").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "::1", 1884));
        assert_eq!(u.to_string(), "mqtt://[::1]:1884");
        assert!(parse_broker_url("mqtt://host:0").is_err());
        assert!(parse_broker_url("host:1883").is_err());
        assert!(parse_broker_url("mqtt://").is_err());
    }

    #[test]
    fn displays_also_take_a_bare_host_and_port() {
        let u = parse_broker_lenient("127.0.0.1:1884").unwrap();
        assert_eq!((u.tls, u.port), (false, 1884));
        assert_eq!(parse_broker_lenient("tcp://h").unwrap().port, 1883);
        assert!(parse_broker_lenient("mqtts://h").unwrap().tls);
        assert!(parse_broker_lenient("host:port").is_err());
        assert!(parse_broker_lenient("").is_err());
    }

    #[test]
    fn tls_errors_name_the_setting_as_the_user_spells_it() {
        let url = parse_broker_url("mqtts://b").unwrap();
        let e = LinkConfig::new(url.clone(), FLAG_KEYS).tls().unwrap_err();
        assert!(e.to_string().starts_with("--mqtt-ca-file"), "{e}");
        let mut c = LinkConfig::new(url, CONFIG_KEYS);
        c.ca_file = Some("/nonexistent/ca.pem".into());
        let e = c.tls().unwrap_err();
        assert!(e.to_string().starts_with("mqtt.ca_file = "), "{e}");
    }

    #[test]
    fn a_tls_client_names_the_ca_setting_it_was_given() {
        let e = tls_client("hl7.ca_file", Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("hl7.ca_file = /nonexistent/ca.pem: cannot read"),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("vigil-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("not-a-cert.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = tls_client("hl7.ca_file", &bad).unwrap_err();
        assert!(e.to_string().starts_with("hl7.ca_file = "), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refused_connections_read_as_sentences() {
        let url = parse_broker_url("mqtt://127.0.0.1:1").unwrap();
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let s = explain(&rumqttc::ConnectionError::Io(io), &url);
        assert!(!s.contains("os error"), "{s}");
        assert!(s.contains("127.0.0.1:1"), "{s}");
    }
}
