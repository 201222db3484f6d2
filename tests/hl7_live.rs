//! The live `[hl7]` sink against a local MLLP listener that is down,
//! acknowledges, refuses (AR) and drops connections without an ACK: the
//! session's chart arrives as PCD-01 ORU^R01 messages in order, and every
//! failure raises `system.hl7_undelivered` until a message is accepted again;
//! what the receiver did not take survives a restart of the daemon; over
//! TLS only a receiver whose certificate the configured CA signs gets it.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vigil::config;
use vigil::engine::{Command, Phase};
use vigil::record::mllp::{control_id, frame, Deframer};
use vigil::vitals::ShortText;

use vigil::io::hl7::Backlog;

use crate::util::daemon::{start_with, temp_dir, Running};
use crate::util::mqtt::free_port;
use crate::util::tls::Pki;

const ACK: u8 = 0;
const NAK: u8 = 1;
const DROP: u8 = 2;

/// An MLLP receiver on `port` whose answer the test switches.
struct Receiver {
    mode: Arc<AtomicU8>,
    /// Messages acknowledged with AA, in order.
    accepted: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn listen(port: u16) -> Receiver {
        Receiver::start(port, None)
    }

    /// The same over TLS with this server configuration.
    fn listen_tls(port: u16, tls: Arc<rustls::ServerConfig>) -> Receiver {
        Receiver::start(port, Some(tls))
    }

    fn start(port: u16, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the MLLP port again");
        let mode = Arc::new(AtomicU8::new(ACK));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let (m, a) = (mode.clone(), accepted.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (m, a, tls) = (m.clone(), a.clone(), tls.clone());
                std::thread::spawn(move || match tls {
                    None => serve(stream, &m, &a),
                    Some(tls) => {
                        let Ok(conn) = rustls::ServerConnection::new(tls) else {
                            return;
                        };
                        serve(rustls::StreamOwned::new(conn, stream), &m, &a);
                    }
                });
            }
        });
        Receiver { mode, accepted }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn accepted(&self) -> Vec<String> {
        self.accepted.lock().unwrap().clone()
    }
}

fn serve(mut stream: impl Read + Write, mode: &AtomicU8, accepted: &Mutex<Vec<String>>) {
    let mut de = Deframer::default();
    let mut buf = [0u8; 8192];
    loop {
        let Ok(n) = stream.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        de.push(&buf[..n]);
        while let Some(f) = de.next_frame() {
            let message = String::from_utf8(f).unwrap();
            let id = control_id(&message).unwrap_or("").to_owned();
            let code = match mode.load(Ordering::SeqCst) {
                ACK => {
                    accepted.lock().unwrap().push(message);
                    "AA"
                }
                NAK => "AR",
                _ => return, // closes the connection without an ACK
            };
            let ack = format!(
                "MSH|^~\\&|EHR|HOSP|vigil||20260301093000||ACK^R01^ACK|A{id}|P|2.6\rMSA|{code}|{id}|{}\r",
                if code == "AR" { "unknown device" } else { "" }
            );
            if stream.write_all(&frame(&ack)).is_err() {
                return;
            }
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn live_hl7_charts_the_session_and_alarms_when_the_receiver_is_down_refuses_or_drops() {
    let state = temp_dir("hl7-live");
    // A port with nobody listening: connections are refused.
    let port = free_port();
    let text = config_text(port, &state, "");
    let cfg = config::parse(&text, "test").expect("valid test configuration");
    assert!(cfg.hl7.is_some(), "the [hl7] section");
    // The daemon wires the sink from the [hl7] section itself.
    let mut daemon = start_with(cfg, None, |_| Vec::new());
    daemon
        .command(Command::StartSession {
            session: ShortText::new("KT-77"),
        })
        .await
        .unwrap();
    let alarm = "system.hl7_undelivered";
    let within = Duration::from_secs(20);

    // Down: the messages wait, the alarm says so.
    daemon.alarm(alarm, Phase::Start, within).await;

    // Up: the backlog goes out in order, and the alarm ends.
    let receiver = Receiver::listen(port);
    daemon.alarm(alarm, Phase::End, within).await;
    // Every interval (1 s) brings the next message.
    let deadline = std::time::Instant::now() + within;
    while receiver.accepted().len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = receiver.accepted();
    assert!(got.len() >= 3, "one message per interval: {got:?}");
    let mut numbers = Vec::new();
    for m in &got {
        let segments: Vec<&str> = m.split('\r').filter(|s| !s.is_empty()).collect();
        assert!(segments[0].starts_with("MSH|^~\\&|vigil|north|||"), "{m}");
        assert!(segments[0].contains("|ORU^R01^ORU_R01|KT-77."), "{m}");
        assert!(segments[0].ends_with("IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"));
        assert_eq!(segments[1], "PID|||KT-77^^^north^ANON||^^^^^^S");
        assert_eq!(segments[2], "PV1||I|^^bed-4^north");
        assert!(
            segments.iter().any(|s| s.starts_with("OBX|1|")
                && (s.contains("|150456^MDC_PULS_OXIM_SAT_O2^MDC^2708-6^")
                    || s.contains("|149530^MDC_PULS_OXIM_PULS_RATE^MDC^"))),
            "an SpO2 or pulse rate OBX: {m}"
        );
        let id = control_id(m).unwrap();
        numbers.push(id.rsplit('.').next().unwrap().parse::<u64>().unwrap());
    }
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, none lost or repeated: {numbers:?}"
    );

    // Refused (AR): the alarm is raised again, and ends once it accepts.
    receiver.set(NAK);
    daemon.alarm(alarm, Phase::Start, within).await;
    receiver.set(ACK);
    daemon.alarm(alarm, Phase::End, within).await;

    // Dropped without an ACK: not delivered either.
    receiver.set(DROP);
    daemon.alarm(alarm, Phase::Start, within).await;
    receiver.set(ACK);
    daemon.alarm(alarm, Phase::End, within).await;
    daemon.stop().await;
}

/// The text of a test configuration sending to `port`, keeping the HL7
/// backlog in `state`; `hl7_extra` goes into the `[hl7]` section.
fn config_text(port: u16, state: &std::path::Path, hl7_extra: &str) -> String {
    format!(
        r#"
        [site]
        site = "north"
        bed = "bed-4"

        [[source]]
        name = "oximeter"
        protocol = "masimo"
        simulated = "typical"
        speed = 1

        [alarms]
        technical_delay = "1s"

        [mqtt]
        state_dir = "{}"

        [hl7]
        to = "127.0.0.1:{port}"
        interval = "1s"
        timeout = "1s"
        {hl7_extra}
        "#,
        state.display()
    )
}

/// The control number (`<n>` of MSH-10 `<session>.<n>`) of each message.
fn numbers(messages: &[String]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| {
            let id = control_id(m).unwrap();
            id.rsplit('.').next().unwrap().parse::<u64>().unwrap()
        })
        .collect()
}

/// Starts a session.
async fn start_session(daemon: &Running, id: &str) {
    daemon
        .command(Command::StartSession {
            session: ShortText::new(id),
        })
        .await
        .unwrap();
}

/// Waits until `done` holds, at most `within`.
async fn until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    while !done() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

#[tokio::test(flavor = "current_thread")]
async fn live_hl7_keeps_undelivered_messages_across_a_restart_and_sends_each_once_in_order() {
    const SESSION: &str = "KT-78";
    let state = temp_dir("hl7-backlog");
    let port = free_port();
    let cfg =
        config::parse(&config_text(port, &state, ""), "test").expect("valid test configuration");
    let within = Duration::from_secs(20);
    // The bed's state directory.
    let bed = state.join("north").join("bed-4");
    let queued = || Backlog::read(&bed).expect("the backlog file reads");

    // The receiver is down: messages wait in the backlog file.
    let mut daemon = start_with(cfg.clone(), None, |_| Vec::new());
    start_session(&daemon, SESSION).await;
    daemon
        .alarm("system.hl7_undelivered", Phase::Start, within)
        .await;
    assert!(
        until(within, || queued().len() >= 3).await,
        "messages queue up while the receiver is down: {:?}",
        queued()
    );
    daemon.stop().await;
    let before: Vec<String> = queued().into_iter().map(|p| p.message).collect();
    assert!(before.len() >= 3, "{before:?}");

    // Started again, still down: nothing is lost; then the receiver is up.
    let mut daemon = start_with(cfg, None, |_| Vec::new());
    start_session(&daemon, SESSION).await;
    daemon
        .alarm("system.hl7_undelivered", Phase::Start, within)
        .await;
    let receiver = Receiver::listen(port);
    daemon
        .alarm("system.hl7_undelivered", Phase::End, within)
        .await;
    assert!(
        until(within, || receiver.accepted().len() >= before.len() + 2).await,
        "the backlog and the new messages arrive: {:?}",
        numbers(&receiver.accepted())
    );
    daemon.stop().await;

    // Each message of the previous run once, unchanged, in order, before
    // the new ones; no control id twice.
    let got = receiver.accepted();
    assert_eq!(got[..before.len()], before[..], "{:?}", numbers(&got));
    let n = numbers(&got);
    assert!(
        n.windows(2).all(|w| w[1] > w[0]),
        "in order, none repeated: {n:?}"
    );
    assert!(
        got.iter()
            .all(|m| control_id(m).unwrap().starts_with("KT-78.")),
        "{n:?}"
    );
    // Delivered: the backlog file holds nothing any more.
    assert_eq!(queued(), Vec::new());
}

/// A TLS server configuration from a certificate and key (PEM).
fn tls_server(cert: &std::path::Path, key: &std::path::Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        .expect("the server certificate reads");
    let key = PrivateKeyDer::from_pem_file(key).expect("the server key reads");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("a server configuration");
    Arc::new(config)
}

#[tokio::test(flavor = "current_thread")]
async fn live_hl7_over_tls_reaches_a_receiver_the_ca_signs_and_no_other() {
    const SESSION: &str = "KT-79";
    let dir = temp_dir("hl7-tls");
    let ours = Pki::new(&dir.join("ours"));
    let theirs = Pki::new(&dir.join("theirs"));
    let within = Duration::from_secs(20);
    let run = |port: u16, state: &str| {
        let extra = format!(
            "tls = true\n        ca_file = \"{}\"",
            ours.dir.join("ca.pem").display()
        );
        let state = dir.join(state);
        let cfg = config::parse(&config_text(port, &state, &extra), "test")
            .expect("valid test configuration");
        assert!(cfg.hl7.as_ref().is_some_and(|h| h.tls));
        start_with(cfg, None, |_| Vec::new())
    };

    // A receiver whose certificate another CA signs: nothing is sent, and
    // the alarm says the chart does not arrive.
    let port = free_port();
    let (cert, key) = theirs.server("ehr");
    let impostor = Receiver::listen_tls(port, tls_server(&cert, &key));
    let mut daemon = run(port, "state-impostor");
    start_session(&daemon, SESSION).await;
    daemon
        .alarm("system.hl7_undelivered", Phase::Start, within)
        .await;
    daemon.stop().await;
    assert_eq!(impostor.accepted(), Vec::<String>::new());

    // The receiver our CA signs: the chart arrives over TLS, in order.
    let port = free_port();
    let (cert, key) = ours.server("ehr");
    let receiver = Receiver::listen_tls(port, tls_server(&cert, &key));
    let mut daemon = run(port, "state");
    start_session(&daemon, SESSION).await;
    assert!(
        until(within, || receiver.accepted().len() >= 3).await,
        "messages arrive over TLS: {:?}",
        receiver.accepted()
    );
    let undelivered = daemon.alarms_during(Duration::from_millis(500)).await;
    daemon.stop().await;
    assert!(
        !undelivered
            .iter()
            .any(|(id, _)| id == "system.hl7_undelivered"),
        "{undelivered:?}"
    );
    let got = receiver.accepted();
    assert!(got.iter().all(|m| m.starts_with("MSH|^~\\&|vigil|north|||")
        && control_id(m).unwrap().starts_with("KT-79.")));
    let n = numbers(&got);
    assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{n:?}");
}

/// A backlog file that cannot be used (here the bed's state directory is a
/// file) used to be a log line only: the chart went on in memory, to be lost
/// at the next stop. Now `system.hl7_backlog_failure` is raised, and the
/// chart still goes out.
#[tokio::test(flavor = "current_thread")]
async fn live_hl7_without_a_usable_backlog_file_raises_a_technical_alarm_and_still_sends() {
    let state = temp_dir("hl7-no-backlog");
    std::fs::create_dir_all(state.join("north")).unwrap();
    std::fs::write(state.join("north").join("bed-4"), b"not a directory").unwrap();
    let port = free_port();
    let receiver = Receiver::listen(port);
    let cfg =
        config::parse(&config_text(port, &state, ""), "test").expect("valid test configuration");
    let within = Duration::from_secs(20);
    let mut daemon = start_with(cfg, None, |_| Vec::new());
    start_session(&daemon, "KT-79").await;
    daemon
        .alarm("system.hl7_backlog_failure", Phase::Start, within)
        .await;
    assert!(
        until(within, || !receiver.accepted().is_empty()).await,
        "the chart goes out from memory"
    );
    daemon.stop().await;
}

/// A backlog file that failed used to stay in memory until a restart. Now
/// it is tried again every few seconds: once the state directory works,
/// what waits is written out (so a restart loses none of it), the
/// technical alarm ends after the hold, and the messages still arrive in
/// order when the receiver comes up.
#[tokio::test(flavor = "current_thread")]
async fn live_hl7_backlog_file_that_works_again_takes_what_waits_and_the_alarm_ends() {
    const SESSION: &str = "KT-80";
    let state = temp_dir("hl7-backlog-back");
    std::fs::create_dir_all(state.join("north")).unwrap();
    let bed = state.join("north").join("bed-4");
    std::fs::write(&bed, b"not a directory").unwrap();
    // Nobody listens yet: messages wait.
    let port = free_port();
    let cfg =
        config::parse(&config_text(port, &state, ""), "test").expect("valid test configuration");
    let within = Duration::from_secs(20);
    let mut daemon = start_with(cfg, None, |_| Vec::new());
    start_session(&daemon, SESSION).await;
    daemon
        .alarm("system.hl7_backlog_failure", Phase::Start, within)
        .await;
    daemon
        .alarm("system.hl7_undelivered", Phase::Start, within)
        .await;

    // The directory can be made: within the retry period the backlog is
    // on disk, with what waited in memory.
    std::fs::remove_file(&bed).unwrap();
    let queued = || Backlog::read(&bed).unwrap_or_default();
    assert!(
        until(within, || queued().len() >= 2).await,
        "the waiting messages reach the file: {:?}",
        queued()
    );
    // Ends once, after the hold (30 s).
    daemon
        .alarm(
            "system.hl7_backlog_failure",
            Phase::End,
            Duration::from_secs(45),
        )
        .await;
    let waited = queued().len();
    let receiver = Receiver::listen(port);
    daemon
        .alarm("system.hl7_undelivered", Phase::End, within)
        .await;
    assert!(
        until(within, || receiver.accepted().len() >= waited).await,
        "what waited arrives: {:?}",
        numbers(&receiver.accepted())
    );
    daemon.stop().await;
    let n = numbers(&receiver.accepted());
    assert!(n.windows(2).all(|w| w[1] > w[0]), "in order: {n:?}");
    assert_eq!(queued(), Vec::new(), "delivered, so no longer in the file");
}
