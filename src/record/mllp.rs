//! Sending HL7 messages over MLLP (the Minimal Lower Layer Protocol of HL7
//! v2: each message framed as `0x0B message 0x1C 0x0D` on a TCP stream), one
//! at a time, each waiting for its acknowledgement.
//!
//! The core is sans-IO: [`frame`], [`Deframer`] (bytes in, whole frames
//! out) and [`check_ack`] (an ACK's MSA segment against the message's
//! control id). [`send_all`] is the blocking IO edge used by
//! `vigil record send`.
//!
//! Delivery is at least once: a message whose ACK did not arrive (timeout,
//! connection lost) is sent again on a new connection after a pause, up to
//! the configured attempts; the receiver may see it twice (receivers
//! recognise repeats by MSH-10). An ACK of `AA`/`CA` moves on; `AE`/`AR`
//! (`CE`/`CR`) stops with the receiver's reason: sending the same message
//! again would be refused again.
//!
//! Over TLS ([`send_all_tls`], the live sink's `hl7.tls`): the same frames
//! inside a TLS session (as MLLP over TLS receivers take them), the
//! receiver's certificate checked against the configured CA for the host of
//! `to` (its name or IP address); the handshake completes before the first
//! message, so a certificate problem is reported as such.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

const START: u8 = 0x0B;
const END: [u8; 2] = [0x1C, 0x0D];

/// Errors sending over MLLP.
#[derive(Debug, thiserror::Error)]
pub enum MllpError {
    /// The receiver could not be reached or did not acknowledge in time.
    #[error(
        "the HL7 receiver {to} did not acknowledge message {control_id} after {attempts} attempt(s) \
         (last error: {last}); check the host and port and that the receiver is running"
    )]
    Unreachable {
        /// The receiver's address.
        to: String,
        /// MSH-10 of the message.
        control_id: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: String,
    },
    /// The receiver refused a message.
    #[error("the HL7 receiver refused message {control_id}: MSA-1 {code} {text}")]
    Refused {
        /// MSH-10 of the message.
        control_id: String,
        /// MSA-1 (`AE`, `AR`, `CE`, `CR`).
        code: String,
        /// MSA-3 or ERR text, if any.
        text: String,
    },
}

/// An MLLP frame of one message.
pub fn frame(message: &str) -> Vec<u8> {
    let mut f = Vec::with_capacity(message.len() + 3);
    f.push(START);
    f.extend_from_slice(message.as_bytes());
    f.extend_from_slice(&END);
    f
}

/// Splits a byte stream into MLLP frames; bytes outside a frame are dropped.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
}

impl Deframer {
    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame's content, if one has arrived.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        let start = self.buf.iter().position(|&b| b == START)?;
        let end = self.buf[start..]
            .windows(2)
            .position(|w| w == END)
            .map(|i| start + i)?;
        let content = self.buf[start + 1..end].to_vec();
        self.buf.drain(..end + 2);
        Some(content)
    }
}

/// MSH-10 (the control id) of a message.
pub fn control_id(message: &str) -> Option<&str> {
    let msh = message.split('\r').find(|s| s.starts_with("MSH|"))?;
    // "MSH" is field 0 and MSH-1 is the separator itself, so MSH-10 is the
    // tenth piece after splitting on '|'.
    msh.split('|').nth(9)
}

/// What an acknowledgement says.
#[derive(Debug, PartialEq, Eq)]
pub enum Ack {
    /// `AA` / `CA` for the expected control id.
    Accepted,
    /// `AE` / `AR` / `CE` / `CR`, with the receiver's text.
    Refused {
        /// MSA-1.
        code: String,
        /// MSA-3, or ERR-8 when MSA-3 is empty.
        text: String,
    },
    /// Not an ACK of this message (no MSA, another control id).
    Unrelated,
}

/// Checks an acknowledgement frame against the control id sent.
pub fn check_ack(ack: &str, expected: &str) -> Ack {
    let segments: Vec<Vec<&str>> = ack
        .split(['\r', '\n'])
        .filter(|s| !s.is_empty())
        .map(|s| s.split('|').collect())
        .collect();
    let Some(msa) = segments.iter().find(|s| s[0] == "MSA") else {
        return Ack::Unrelated;
    };
    if msa.get(2).copied() != Some(expected) {
        return Ack::Unrelated;
    }
    match msa.get(1).copied().unwrap_or("") {
        "AA" | "CA" => Ack::Accepted,
        code => {
            let err = segments
                .iter()
                .find(|s| s[0] == "ERR")
                .and_then(|s| s.get(8).copied());
            let text = msa
                .get(3)
                .copied()
                .filter(|t| !t.is_empty())
                .or(err)
                .unwrap_or("")
                .to_owned();
            Ack::Refused {
                code: code.to_owned(),
                text,
            }
        }
    }
}

/// How [`send_all`] tries.
#[derive(Clone, Copy, Debug)]
pub struct SendOptions {
    /// Connect timeout and how long to wait for each ACK.
    pub timeout: Duration,
    /// Attempts per message (at least 1).
    pub attempts: u32,
    /// Pause before an attempt after a failed one.
    pub retry_after: Duration,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            timeout: Duration::from_secs(10),
            attempts: 3,
            retry_after: Duration::from_secs(2),
        }
    }
}

/// A connection to the receiver, plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// Connects to `to`, and over TLS when `tls` is given (handshake done).
fn open(
    to: &str,
    timeout: Duration,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> std::io::Result<Conn> {
    let tcp = connect(to, timeout)?;
    let Some(config) = tls else {
        return Ok(Conn::Plain(tcp));
    };
    let host = to.rsplit_once(':').map_or(to, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host)
        .map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("`{host}` is not a TLS server name: {e}"),
            )
        })?
        .to_owned();
    let conn =
        rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "the TLS handshake failed ({e}): check that the receiver speaks TLS and that its \
                     certificate names {host} and is signed by the CA of hl7.ca_file"
                ),
            )
        })?;
    }
    Ok(Conn::Tls(Box::new(s)))
}

fn connect(to: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for addr in to.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Sends one message on a stream and waits for its ACK.
fn exchange(stream: &mut (impl Read + Write), message: &str, id: &str) -> std::io::Result<Ack> {
    stream.write_all(&frame(message))?;
    let mut de = Deframer::default();
    let mut buf = [0u8; 4096];
    loop {
        while let Some(f) = de.next_frame() {
            match check_ack(&String::from_utf8_lossy(&f), id) {
                Ack::Unrelated => continue,
                ack => return Ok(ack),
            }
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the receiver closed the connection before acknowledging",
            ));
        }
        de.push(&buf[..n]);
    }
}

/// Sends every message in order to `to` (`host:port`), each after the
/// previous one was accepted; returns how many were sent.
pub fn send_all(to: &str, messages: &[String], opts: SendOptions) -> Result<usize, MllpError> {
    send_all_tls(to, messages, opts, None)
}

/// Like [`send_all`], over TLS with this client configuration when given
/// ([`crate::mqtt::link::tls_client`]).
pub fn send_all_tls(
    to: &str,
    messages: &[String],
    opts: SendOptions,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<usize, MllpError> {
    let mut stream: Option<Conn> = None;
    for message in messages {
        let id = control_id(message).unwrap_or("").to_owned();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match stream.take() {
                Some(s) => Ok(s),
                None => open(to, opts.timeout, tls),
            }
            .and_then(|mut s| exchange(&mut s, message, &id).map(|a| (s, a)));
            match result {
                Ok((s, Ack::Accepted)) => {
                    stream = Some(s);
                    break;
                }
                Ok((_, Ack::Refused { code, text })) => {
                    return Err(MllpError::Refused {
                        control_id: id,
                        code,
                        text,
                    })
                }
                Ok((_, Ack::Unrelated)) => unreachable!("exchange skips unrelated frames"),
                Err(e) if attempt >= opts.attempts.max(1) => {
                    return Err(MllpError::Unreachable {
                        to: to.to_owned(),
                        control_id: id,
                        attempts: attempt,
                        last: e.to_string(),
                    })
                }
                Err(_) => std::thread::sleep(opts.retry_after),
            }
        }
    }
    Ok(messages.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_reads_and_noise_between_them() {
        let mut d = Deframer::default();
        let a = frame("MSH|a\r");
        let b = frame("MSH|b\r");
        d.push(b"noise");
        d.push(&a[..3]);
        assert_eq!(d.next_frame(), None);
        d.push(&a[3..]);
        d.push(&b[..b.len() - 1]);
        assert_eq!(d.next_frame().unwrap(), b"MSH|a\r");
        assert_eq!(d.next_frame(), None, "b is not complete");
        d.push(&b[b.len() - 1..]);
        assert_eq!(d.next_frame().unwrap(), b"MSH|b\r");
    }

    #[test]
    fn acks_are_matched_to_the_control_id() {
        let msg = "MSH|^~\\&|vigil|site|||20260301||ORU^R01^ORU_R01|S-1.4|P|2.6\rPID|||S-1\r";
        assert_eq!(control_id(msg), Some("S-1.4"));
        let ack = |code: &str, id: &str, text: &str| {
            format!("MSH|^~\\&|EHR||||20260301||ACK^R01^ACK|9|P|2.6\rMSA|{code}|{id}|{text}\r")
        };
        assert_eq!(check_ack(&ack("AA", "S-1.4", ""), "S-1.4"), Ack::Accepted);
        assert_eq!(check_ack(&ack("CA", "S-1.4", ""), "S-1.4"), Ack::Accepted);
        assert_eq!(check_ack(&ack("AA", "S-1.3", ""), "S-1.4"), Ack::Unrelated);
        assert_eq!(check_ack("MSH|^~\\&|EHR\r", "S-1.4"), Ack::Unrelated);
        assert_eq!(
            check_ack(&ack("AR", "S-1.4", "unknown patient"), "S-1.4"),
            Ack::Refused {
                code: "AR".into(),
                text: "unknown patient".into()
            }
        );
        let with_err = format!("{}ERR||||E||||no such bed\r", ack("AE", "S-1.4", ""));
        assert_eq!(
            check_ack(&with_err, "S-1.4"),
            Ack::Refused {
                code: "AE".into(),
                text: "no such bed".into()
            }
        );
    }
}
