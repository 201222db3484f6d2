//! `vigil display` end to end: Mosquitto, a test publisher speaking the
//! daemon's feed, the display as a child process, and the page in headless
//! Chromium driven over the DevTools protocol.

use std::time::{Duration, SystemTime};

use crate::util::board::Board;
use crate::util::browser::{http_get, Browser};
use crate::util::daemon::{temp_dir, write_config};
use crate::util::feed::{Broker, Publisher, Subscriber};

const BED: &str = "clinic-a/bed-2";
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
/// A 256-bit token, as `vigil display --new-token` writes them.
const TOKEN: &str = "4f1c9a7e2b8d3065e1a4c7f90b2d5e8a3c6f9b1d4e7a0c3f6b9e2d5a8c1f4b7e";

fn artefact(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("display");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn banner_shows(text: &str) -> String {
    format!(
        "(() => {{ const b = document.getElementById('banner'); \
         return !!b && b.classList.contains('show') && b.textContent.startsWith('NO DATA') && b.textContent.includes({text:?}); }})()"
    )
}

/// Emulates a `w` x `h` screen and asserts that no vital tile, nor the
/// page, spills sideways.
fn assert_nothing_spills(page: &mut Browser, w: u32, h: u32) {
    page.set_viewport(w, h);
    let overflow = page.eval(
        "[...document.querySelectorAll('.vital')].some(v => v.scrollWidth > v.clientWidth + 1) || document.documentElement.scrollWidth > window.innerWidth",
    );
    let sizes = page.eval("JSON.stringify([...document.querySelectorAll('.vital')].map(v => [v.dataset.vital, v.scrollWidth, v.clientWidth]).concat([[document.documentElement.scrollWidth, window.innerWidth]]))");
    assert_eq!(
        overflow, false,
        "{w}x{h}: a tile or the page overflows: {sizes}"
    );
}

/// Clicks the acknowledge button of `alarm` and gives `by` as the initials
/// the dialog asks for.
fn acknowledge_on_board(page: &mut Browser, alarm: &str, by: &str) {
    page.eval(&format!(
        "document.querySelector('li.alarm[data-alarm=\"{alarm}\"] button.ack').click()"
    ));
    page.wait_for(
        "!document.getElementById('ackdialog').hidden",
        Duration::from_secs(2),
    );
    page.eval(&format!(
        "document.getElementById('ackby').value = '{by}'; document.getElementById('ackconfirm').click()"
    ));
}

#[test]
fn board_shows_alarms_acknowledges_and_goes_blind() {
    let dir = temp_dir("display-board");
    let mut broker = Broker::start(&dir);
    let mut publisher =
        Publisher::start(broker.port, "clinic-a", "bed-2", Duration::from_millis(300));
    publisher.session_dosing(Duration::from_secs(42 * 60));
    publisher.vitals(72.0, 97.0, 150.0, 95.0, Duration::from_secs(4 * 60));
    let mut board = Board::start(&broker.addr(), BED, &["--heartbeat-timeout", "2s"]);
    let mut page = Browser::open(&board.url, &dir.join("chromium"));

    // Live: values, no banner.
    page.wait_for(
        "document.querySelector('[data-vital=hr] .value')?.textContent.startsWith('72')",
        Duration::from_secs(15),
    );
    assert_eq!(
        page.eval("document.getElementById('banner').classList.contains('show')"),
        false
    );
    let nibp = page.eval("document.querySelector('[data-vital=nibp]').innerText");
    assert!(nibp.as_str().unwrap().contains("150/95"), "{nibp}");
    assert!(nibp.as_str().unwrap().contains("4 min ago"), "{nibp}");
    let meta = page.eval("document.querySelector('.bed .meta').innerText");
    assert!(meta.as_str().unwrap().contains("dosing"), "{meta}");

    // Alarms appear, sorted by priority, flashing per priority.
    let t0 = SystemTime::now();
    publisher.alarm("hr.high", "medium", "start", "active", None, t0);
    publisher.alarm("spo2.low", "high", "start", "active", None, t0);
    publisher.alarm("nibp.cycle_overdue", "low", "start", "active", None, t0);
    page.wait_for(
        "document.querySelectorAll('.bed li.alarm').length === 3",
        Duration::from_secs(5),
    );
    let order = page.eval(
        "[...document.querySelectorAll('.bed li.alarm')].map(e => e.dataset.alarm + ':' + e.className).join(' | ')",
    );
    let order = order.as_str().unwrap();
    assert!(
        order.starts_with("spo2.low:alarm high flash-fast | hr.high:alarm medium flash-slow | nibp.cycle_overdue:alarm low"),
        "{order}"
    );
    assert!(
        !order.ends_with("flash-fast") && !order.ends_with("flash-slow"),
        "low is steady: {order}"
    );
    page.screenshot(&artefact("board-alarms.png"));
    // The value in alarm is shown in its priority's colour.
    page.wait_for(
        "document.querySelector('[data-vital=spo2]').classList.contains('alarm-high')",
        Duration::from_secs(3),
    );
    assert_eq!(
        page.eval("getComputedStyle(document.querySelector('[data-vital=spo2] .value')).color"),
        "rgb(224, 32, 27)"
    );
    assert_eq!(
        page.eval("document.querySelector('[data-vital=hr]').classList.contains('alarm-medium')"),
        true
    );
    // Wall screen and tablet: nothing spills sideways, numerals fill the
    // tile (on the wall, large enough to read across the room).
    for (w, h, name) in [
        (1920, 1080, "board-wall-1920x1080.png"),
        (768, 1024, "board-tablet-768x1024.png"),
    ] {
        assert_nothing_spills(&mut page, w, h);
        let px = page.eval("parseFloat(getComputedStyle(document.querySelector('[data-vital=hr] .value')).fontSize)");
        let px = px.as_f64().unwrap();
        assert!(
            px >= if w == 1920 { 100.0 } else { 48.0 },
            "{w}x{h}: numerals {px} px"
        );
        page.screenshot(&artefact(name));
    }
    page.call(
        "Emulation.clearDeviceMetricsOverride",
        serde_json::json!({}),
    );

    // Acknowledge: the button asks for initials, the command goes out on MQTT.
    let cmds = Subscriber::start(broker.port, "vigil/v1/clinic-a/bed-2/cmd");
    acknowledge_on_board(&mut page, "spo2.low", "JD");
    let (topic, cmd) = cmds.next_json(Duration::from_secs(5));
    assert_eq!(topic, "vigil/v1/clinic-a/bed-2/cmd");
    assert_eq!(cmd["command"], "acknowledge");
    assert_eq!(cmd["alarm"], "spo2.low");
    assert_eq!(cmd["by"], "JD");
    assert_eq!(cmd["schema_version"], 1);
    let id = cmd["id"].as_str().expect("request id").to_owned();
    page.wait_for(
        "document.querySelector('.result.pending') !== null",
        Duration::from_secs(3),
    );
    // The daemon accepts it and reports the acknowledged alarm.
    publisher.result(&id, true, None);
    publisher.acknowledged("spo2.low", "high", "JD", t0);
    page.wait_for(
        "document.querySelector('li.alarm[data-alarm=\"spo2.low\"]')?.innerText.includes('acknowledged by JD')",
        Duration::from_secs(5),
    );
    page.wait_for(
        "document.querySelector('.result.accepted') !== null",
        Duration::from_secs(5),
    );
    let acked = page.eval("document.querySelector('li.alarm[data-alarm=\"spo2.low\"]').className");
    assert_eq!(
        acked, "alarm high acknowledged",
        "acknowledged alarms stop flashing"
    );
    page.screenshot(&artefact("board-acknowledged.png"));

    // Heartbeat stops: NO DATA within the heartbeat timeout (+ one render tick).
    publisher.set_beating(false);
    let took = page.wait_for(&banner_shows("no heartbeat"), Duration::from_secs(6));
    assert!(
        took <= HEARTBEAT_TIMEOUT + Duration::from_millis(1500),
        "NO DATA after {took:?}"
    );
    let hr =
        page.eval("getComputedStyle(document.querySelector('[data-vital=hr] .value')).visibility");
    assert_eq!(hr, "hidden", "no stale numbers while blind");
    publisher.set_beating(true);
    page.wait_for(
        "!document.getElementById('banner').classList.contains('show')",
        Duration::from_secs(3),
    );

    // The publisher dies: its Last Will makes NO DATA at once.
    publisher.kill();
    let took = page.wait_for(&banner_shows("offline"), Duration::from_secs(5));
    assert!(took < HEARTBEAT_TIMEOUT, "Last Will NO DATA after {took:?}");
    page.screenshot(&artefact("board-nodata.png"));

    // The broker goes away.
    broker.stop();
    page.wait_for(&banner_shows("broker unreachable"), Duration::from_secs(5));

    // The page loses the display server.
    board.kill();
    page.wait_for(&banner_shows("display server"), Duration::from_secs(6));
    assert_eq!(page.eval("document.body.classList.contains('blind')"), true);
}

#[test]
fn display_refuses_other_addresses_without_a_token() {
    let err = Board::start_args(&["display", "--listen", "0.0.0.0:0"])
        .err()
        .expect("refused");
    assert!(err.contains("--token-file"), "{err}");
}

/// One raw HTTP/1.1 request on loopback; returns the whole response.
/// `GET /view` with `token` as the bearer token.
fn get_view(port: u16, token: &str) -> String {
    let auth = format!("Authorization: Bearer {token}\r\n");
    request(port, "GET", "/view", &auth, "")
}

fn request(port: u16, method: &str, path: &str, headers: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Issue #12 item 10: 100 wrong tokens in 1.4 s were all answered.
#[test]
fn wrong_tokens_are_throttled_per_client_with_retry_after() {
    let dir = temp_dir("display-throttle");
    let broker = Broker::start(&dir);
    let file = dir.join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let board = Board::start(
        &broker.addr(),
        BED,
        &["--token-file", file.to_str().unwrap()],
    );
    let login = |token: &str| {
        request(
            board.port,
            "POST",
            "/login",
            "Content-Type: application/x-www-form-urlencoded\r\n",
            &format!("token={token}"),
        )
    };
    for i in 0..5 {
        let r = login("wrong-token-0123456789abcdef");
        assert!(r.starts_with("HTTP/1.1 401"), "attempt {i}: {r}");
    }
    // The sixth is not even checked: the right token is refused too, at
    // the form and as a bearer token, until the window has passed.
    for r in [
        login("wrong-token-0123456789abcdef"),
        login(TOKEN),
        get_view(board.port, TOKEN),
    ] {
        assert!(r.starts_with("HTTP/1.1 429"), "{r}");
        let retry: u64 = r
            .lines()
            .find_map(|l| l.strip_prefix("retry-after: "))
            .expect("a Retry-After header")
            .trim()
            .parse()
            .unwrap();
        assert!((50..=60).contains(&retry), "{retry}");
    }
    std::thread::sleep(Duration::from_millis(200));
    let log = board.stderr();
    assert!(log.contains("throttled"), "{log}");
    assert!(!log.contains(TOKEN), "the token was logged");
}

#[test]
fn weak_tokens_are_refused_and_new_token_writes_a_strong_one() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = temp_dir("display-new-token");
    let broker = Broker::start(&dir);
    let weak = dir.join("weak");
    std::fs::write(&weak, "aaaaaaaaaaaa\n").unwrap();
    let err = Board::start_args(&[
        "display",
        "--broker",
        &broker.addr(),
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        weak.to_str().unwrap(),
    ])
    .err()
    .expect("a weak token is refused");
    assert!(err.contains("--token-file") && err.contains("128"), "{err}");
    assert!(err.contains("--new-token"), "{err}");

    let file = dir.join("board-token");
    let new_token = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["display", "--new-token"])
            .arg(&file)
            .output()
            .unwrap()
    };
    let out = new_token();
    assert!(out.status.success(), "{out:?}");
    let token = std::fs::read_to_string(&file).unwrap();
    let token = token.trim_end();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|c| c.is_ascii_hexdigit()), "{token}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Never over an existing file.
    let again = new_token();
    assert!(!again.status.success());
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim_end(), token);

    let board = Board::start(
        &broker.addr(),
        BED,
        &["--token-file", file.to_str().unwrap()],
    );
    let ok = get_view(board.port, token);
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

#[test]
fn other_addresses_need_tls_unless_insecure_listen_is_given() {
    let dir = temp_dir("display-insecure");
    let broker = Broker::start(&dir);
    let file = dir.join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let args = |extra: &[&'static str]| -> Vec<String> {
        [
            "display",
            "--broker",
            &broker.addr(),
            "--bed",
            BED,
            "--listen",
            "0.0.0.0:0",
            "--token-file",
            file.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(extra.iter().map(|s| s.to_string()))
        .collect()
    };
    let refused = args(&[]);
    let refused: Vec<&str> = refused.iter().map(String::as_str).collect();
    let err = Board::start_args(&refused)
        .err()
        .expect("refused without TLS");
    assert!(
        err.contains("--tls-cert") && err.contains("--insecure-listen"),
        "{err}"
    );

    let allowed = args(&["--insecure-listen"]);
    let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
    let board = Board::start_args(&allowed).expect("--insecure-listen serves");
    let ok = get_view(board.port, TOKEN);
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

/// Issue #12 item 10: `/ack` answered 200 for a bed the board does not show.
#[test]
fn commands_for_a_bed_the_board_does_not_show_are_404() {
    let dir = temp_dir("display-unknown-bed");
    let broker = Broker::start(&dir);
    let board = Board::start(&broker.addr(), BED, &[]);
    let post = |path: &str, body: &str| {
        request(
            board.port,
            "POST",
            path,
            "X-Vigil-Request: 1\r\nContent-Type: application/json\r\n",
            body,
        )
    };
    let other = "clinic-b/bed-9";
    for (path, body) in [
        (
            "/ack",
            format!(r#"{{"bed":"{other}","alarm":"spo2.low","by":"JD"}}"#),
        ),
        ("/ack-all", format!(r#"{{"bed":"{other}","by":"JD"}}"#)),
        (
            "/command",
            format!(r#"{{"bed":"{other}","by":"JD","command":"resume_audio"}}"#),
        ),
    ] {
        let r = post(path, &body);
        assert!(r.starts_with("HTTP/1.1 404"), "{path}: {r}");
        assert!(r.contains("not on this board"), "{path}: {r}");
    }
    // The bed it shows is not refused as unknown.
    let r = post(
        "/ack",
        &format!(r#"{{"bed":"{BED}","alarm":"spo2.low","by":"JD"}}"#),
    );
    assert!(!r.starts_with("HTTP/1.1 404"), "{r}");
}

#[test]
fn a_token_guards_every_request_and_is_never_logged() {
    let dir = temp_dir("display-token");
    let broker = Broker::start(&dir);
    let token = TOKEN;
    let file = dir.join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let board = Board::start(
        &broker.addr(),
        BED,
        &["--token-file", file.to_str().unwrap(), "--log", "debug"],
    );
    let get = |path: &str, auth: Option<&str>| -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", board.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let auth = auth
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{auth}Connection: close\r\n\r\n",
            board.port
        )
        .unwrap();
        let mut out = vec![0u8; 4096];
        let n = s.read(&mut out).unwrap_or(0);
        String::from_utf8_lossy(&out[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    };
    for path in ["/", "/view", "/events", "/app.js"] {
        let status = get(path, None);
        assert!(
            status.contains("401") || status.contains("303"),
            "{path}: {status}"
        );
        assert!(
            get(path, Some("wrong-token-xyz")).contains("401") || path == "/",
            "{path}"
        );
    }
    assert!(get("/view", Some(token)).contains("200"));
    assert!(get("/events", Some(token)).contains("200"));
    // Loopback without a token refuses foreign Host names (DNS rebinding).
    let open = Board::start(&broker.addr(), BED, &[]);
    assert!(http_get(open.port, "/view").contains("\"beds\""));
    let foreign = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", open.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        write!(
            s,
            "GET /view HTTP/1.1\r\nHost: board.example:{}\r\nConnection: close\r\n\r\n",
            open.port
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    assert!(foreign.starts_with("HTTP/1.1 421"), "{foreign}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!board.stderr().contains(token), "the token was logged");
}

#[test]
fn https_serves_the_board_to_token_holders() {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::io::{Read, Write};
    use std::sync::Arc;

    let dir = temp_dir("display-tls");
    let broker = Broker::start(&dir);
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
    let token = TOKEN;
    let file = dir.join("token");
    std::fs::write(&file, token).unwrap();
    let cert = data.join("cert.pem");
    let key = data.join("key.pem");
    let board = Board::start(
        &broker.addr(),
        BED,
        &[
            "--token-file",
            file.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(board.url.starts_with("https://"), "{}", board.url);

    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let get = |auth: &str| -> String {
        let conn = rustls::ClientConnection::new(
            Arc::new(cfg.clone()),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let sock = std::net::TcpStream::connect(("127.0.0.1", board.port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, sock);
        write!(
            tls,
            "GET /view HTTP/1.1\r\nHost: localhost:{}\r\n{auth}Connection: close\r\n\r\n",
            board.port
        )
        .unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let ok = get(&format!("Authorization: Bearer {token}\r\n"));
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("\"beds\""), "{ok}");
    assert!(get("").starts_with("HTTP/1.1 401"));
}

/// The shipped `config/mosquitto/` (TLS listener, passwords, ACL) with this
/// test's paths: the board must read a daemon's alarms and send an
/// acknowledgement through it, as the `display` user over `mqtts://`.
#[test]
fn the_board_works_against_the_shipped_mosquitto_configuration() {
    use crate::util::daemon::Monitor;
    use crate::util::mqtt::{daemon_config, start_with_mqtt, test_pki, Mosquitto};

    let dir = temp_dir("display-shipped");
    test_pki(&dir);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let passwd = dir.join("passwd");
    crate::util::mqtt::password_file(
        &passwd,
        &[
            ("vigil-demo-clinic-bed-1", "daemon-secret"),
            ("display", "display-secret"),
        ],
    );
    let tls_port = crate::util::mqtt::free_port();
    let p = |f: &str| dir.join(f).display().to_string();
    let shipped = std::fs::read_to_string(root.join("config/mosquitto/mosquitto.conf")).unwrap();
    // Only paths and ports change; the plain loopback listener is the
    // helper's own (on a free port).
    let conf = shipped
        .replace("/etc/mosquitto/vigil.passwd", &p("passwd"))
        .replace(
            "/etc/mosquitto/vigil.acl",
            &root.join("config/mosquitto/acl").display().to_string(),
        )
        .replace("/etc/mosquitto/certs/broker.pem", &p("server.pem"))
        .replace("/etc/mosquitto/certs/broker.key", &p("server.key"))
        .replace("/var/lib/mosquitto/", &format!("{}/", p("persist")))
        .replace("listener 8883", &format!("listener {tls_port} 127.0.0.1"))
        .replace("listener 1883 127.0.0.1", "");
    assert!(conf.contains("acl_file") && conf.contains("allow_anonymous false"));
    std::fs::create_dir_all(dir.join("persist")).unwrap();
    let broker = Mosquitto::start(&dir, &conf);

    // The daemon, as its own user, over TLS.
    std::fs::write(
        dir.join("daemon-creds"),
        "vigil-demo-clinic-bed-1\ndaemon-secret\n",
    )
    .unwrap();
    std::fs::write(dir.join("display-creds"), "display\ndisplay-secret\n").unwrap();
    std::fs::write(dir.join("wrong-creds"), "display\nnot-the-password\n").unwrap();
    let tty = dir.join("ttyShipped");
    let mut monitor = Monitor::plug_in(&tty);
    let text = daemon_config(
        &tty,
        tls_port,
        &dir.join("state"),
        "bed-1",
        &format!(
            "ca_file = \"{}\"\ncredentials_file = \"{}\"",
            p("ca.pem"),
            p("daemon-creds")
        ),
    )
    .replace("mqtt://127.0.0.1", "mqtts://127.0.0.1")
    .replace("site = \"test-clinic\"", "site = \"demo-clinic\"");
    let config = vigil::config::parse(&text, "test").unwrap();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let daemon = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let d = start_with_mqtt(config);
            while stop_rx.try_recv().is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            d.stop().await;
        });
    });

    let tls_args = |creds: &str| {
        vec![
            "--mqtt-ca-file".to_owned(),
            p("ca.pem"),
            "--mqtt-credentials-file".to_owned(),
            p(creds),
        ]
    };
    let broker_url = format!("mqtts://127.0.0.1:{tls_port}");
    let args = tls_args("display-creds");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let board = Board::start(&broker_url, "demo-clinic/bed-1", &args);
    let mut page = Browser::open(&board.url, &dir.join("chromium"));
    page.wait_for(
        "(b => !!b && !b.classList.contains('show'))(document.getElementById('banner'))",
        Duration::from_secs(15),
    );
    monitor.send(b"spo2 80\n");
    page.wait_for(
        "document.querySelector('li.alarm[data-alarm=\"spo2.critical_low\"] button.ack') !== null",
        Duration::from_secs(10),
    );
    acknowledge_on_board(&mut page, "spo2.critical_low", "RN");
    page.wait_for(
        "document.querySelector('.result.accepted') !== null",
        Duration::from_secs(10),
    );

    // A wrong password: the board says so in words, not error numbers.
    let args = tls_args("wrong-creds");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let wrong = Board::start(&broker_url, "demo-clinic/bed-1", &args);
    let mut page2 = Browser::open(&wrong.url, &dir.join("chromium-wrong"));
    page2.wait_for(&banner_shows("user and password"), Duration::from_secs(10));
    let banner = page2.eval("document.getElementById('banner').textContent");
    assert!(!banner.as_str().unwrap().contains("os error"), "{banner}");

    let _ = stop_tx.send(());
    daemon.join().unwrap();
    drop(broker);
}

/// A bed whose vigil stopped cleanly reads "stopped", does not make the
/// board blind, and can be taken off the board; a live bed stays.
#[test]
fn a_stopped_bed_is_not_blind_and_can_be_removed() {
    let dir = temp_dir("display-stopped");
    let broker = Broker::start(&dir);
    let live = Publisher::start(broker.port, "clinic-a", "bed-1", Duration::from_millis(300));
    let gone = Publisher::start(broker.port, "clinic-a", "bed-2", Duration::from_millis(300));
    live.vitals(72.0, 97.0, 120.0, 80.0, Duration::from_secs(60));
    gone.vitals(70.0, 98.0, 120.0, 80.0, Duration::from_secs(60));
    let board = Board::station(&broker.addr(), &[]);
    let mut page = Browser::open(&board.url, &dir.join("chromium"));
    page.wait_for(
        "document.querySelectorAll('section.bed').length === 2",
        Duration::from_secs(15),
    );
    gone.stop_cleanly();
    page.wait_for(
        "document.querySelector('section.bed.stopped[data-bed=\"clinic-a/bed-2\"]') !== null",
        Duration::from_secs(5),
    );
    assert_eq!(
        page.eval("document.getElementById('banner').classList.contains('show')"),
        false,
        "a stopped bed is not a blind one"
    );
    page.screenshot(&artefact("board-stopped.png"));
    page.eval("document.querySelector('section.bed.stopped button.remove').click()");
    page.wait_for(
        "document.querySelectorAll('section.bed').length === 1 && document.querySelector('section.bed').dataset.bed === 'clinic-a/bed-1'",
        Duration::from_secs(5),
    );
    drop(live);
}

/// Opens a session command's dialog on the page, fills `fields` (element id
/// -> value) and the initials when asked, and sends it.
fn send_from_board(page: &mut Browser, cmd: &str, fields: &[(&str, &str)], by: Option<&str>) {
    page.wait_for(
        &format!("document.querySelector('button.cmd[data-cmd={cmd}]') !== null"),
        Duration::from_secs(10),
    );
    page.eval(&format!(
        "document.querySelector('button.cmd[data-cmd={cmd}]').click()"
    ));
    page.wait_for(
        "!document.getElementById('cmddialog').hidden",
        Duration::from_secs(2),
    );
    for (id, value) in fields {
        page.eval(&format!(
            "document.getElementById({id:?}).value = {value:?}"
        ));
    }
    if let Some(by) = by {
        page.eval(&format!("document.getElementById('cmdby').value = {by:?}"));
    }
    page.eval("document.getElementById('cmdconfirm').click()");
    page.wait_for(
        "document.getElementById('cmddialog').hidden",
        Duration::from_secs(5),
    );
}

/// A whole session run from the board against the real daemon: each button
/// sends its command, vigil answers on `cmd/result`, and the bed shows the
/// new phase, the dose timer and the audio pause countdown.
#[test]
fn a_session_runs_from_the_board_against_the_real_daemon() {
    use crate::util::process::Vigil;

    let dir = temp_dir("display-session");
    let broker = Broker::start(&dir);
    let config = write_config(
        &dir,
        &format!(
            r#"
[site]
site = "clinic-a"
bed = "bed-2"

[[source]]
name = "monitor"
protocol = "ge-s5"
simulated = "typical"
speed = 1
timeout = "30s"

[mqtt]
embedded = false
broker = "mqtt://{}"
state_dir = "{}"
heartbeat = "500ms"
"#,
            broker.addr(),
            dir.join("state").display()
        ),
    );
    let mut daemon = Vigil::run(&config, &[]);
    let board = Board::start(&broker.addr(), BED, &[]);
    let cmds = Subscriber::start(broker.port, "vigil/v1/clinic-a/bed-2/cmd");
    let mut page = Browser::open(&board.url, &dir.join("chromium"));
    page.wait_for(
        "document.querySelector('section.bed:not(.nodata)') !== null",
        Duration::from_secs(20),
    );
    let phase = |page: &mut Browser, p: &str| {
        page.wait_for(
            &format!("/phase\\s*{p}/.test(document.querySelector('.bed .meta').textContent)"),
            Duration::from_secs(10),
        );
        page.wait_for(
            "document.querySelector('.result.accepted') !== null",
            Duration::from_secs(10),
        );
    };

    // No session under `vigil run` until a nurse starts one: the board can.
    send_from_board(
        &mut page,
        "start_session",
        &[("f-session", "K-0142")],
        Some("JD"),
    );
    let (_, cmd) = cmds.next_json(Duration::from_secs(5));
    assert_eq!(cmd["command"], "start_session");
    phase(&mut page, "baseline");
    assert!(page
        .eval("document.querySelector('.bed h2').innerText")
        .as_str()
        .unwrap()
        .contains("K-0142"));

    // The initials are asked once: the next dialog offers them.
    page.eval("document.querySelector('button.cmd[data-cmd=dose]').click()");
    page.wait_for(
        "document.getElementById('cmdby').value === 'JD'",
        Duration::from_secs(2),
    );
    page.eval("document.getElementById('cmdcancel').click()");
    send_from_board(
        &mut page,
        "dose",
        &[("f-amount", "25"), ("f-unit", "mg"), ("f-route", "im")],
        None,
    );
    let (_, cmd) = cmds.next_json(Duration::from_secs(5));
    assert_eq!(cmd["command"], "dose");
    assert_eq!(cmd["route"], "im");
    assert_eq!(
        (&cmd["amount"], &cmd["unit"]),
        (&serde_json::json!(25.0), &serde_json::json!("mg"))
    );
    assert!(cmd.get("note").is_none(), "{cmd}");
    phase(&mut page, "dosing");
    page.wait_for(
        "document.querySelector('.bed .meta').innerText.includes('since dose')",
        Duration::from_secs(5),
    );
    assert!(page
        .eval("document.querySelector('.result').innerText")
        .as_str()
        .unwrap()
        .contains("dose 25 mg im by JD"));

    // Audio pause: bounded, with its countdown, and resumed.
    send_from_board(&mut page, "pause_audio", &[("f-duration", "120")], None);
    page.wait_for(
        "/audio paused [12]:[0-9][0-9]/.test(document.querySelector('.bed .meta').textContent)",
        Duration::from_secs(10),
    );
    page.screenshot(&artefact("board-session-paused.png"));
    send_from_board(&mut page, "resume_audio", &[], None);
    page.wait_for(
        "!document.querySelector('.bed .meta').innerText.includes('audio paused')",
        Duration::from_secs(10),
    );

    send_from_board(&mut page, "start_recovery", &[], None);
    phase(&mut page, "recovery");
    send_from_board(&mut page, "end_session", &[], None);
    phase(&mut page, "ended");
    // Ended: a new session can start again.
    page.wait_for(
        "document.querySelector('button.cmd[data-cmd=start_session]') !== null",
        Duration::from_secs(5),
    );
    daemon.signal("TERM");
    daemon.wait_exit(Duration::from_secs(10));
}

/// Stands in for the browser's WebAudio: records every tone the page asks
/// for (pitch, start on the context's clock). Its initial state comes from
/// sessionStorage, so a test can make the browser "block" sound until a
/// user gesture.
const FAKE_AUDIO: &str = r#"
window.__tones = [];
class FakeAudioContext {
  constructor() {
    this.t0 = performance.now();
    this.state = sessionStorage.getItem("fake-audio-state") || "running";
    this.destination = {};
    this.onstatechange = null;
  }
  get currentTime() { return (performance.now() - this.t0) / 1000; }
  createOscillator() {
    const o = { frequency: { value: 0 }, type: "", connect: (g) => g,
      start: (t) => window.__tones.push({ hz: o.frequency.value, t }), stop() {} };
    return o;
  }
  createGain() {
    const param = { setValueAtTime() {}, exponentialRampToValueAtTime() {}, linearRampToValueAtTime() {} };
    return { gain: param, connect: (d) => d };
  }
  resume() {
    // As browsers do: a suspended context starts only from a user gesture.
    if (this.state === "suspended" && !navigator.userActivation.isActive) return Promise.resolve();
    this.state = "running";
    if (this.onstatechange) this.onstatechange();
    return Promise.resolve();
  }
  close() { this.state = "closed"; return Promise.resolve(); }
}
window.AudioContext = FakeAudioContext;
"#;

/// Tones at `hz` so far.
fn tones(page: &mut Browser, hz: u32) -> Vec<f64> {
    let v = page.eval(&format!(
        "JSON.stringify(window.__tones.filter(t => t.hz === {hz}).map(t => t.t))"
    ));
    serde_json::from_str(v.as_str().unwrap()).unwrap()
}

#[test]
fn sound_follows_the_priority_patterns_until_acknowledged_or_paused() {
    let dir = temp_dir("display-sound");
    let broker = Broker::start(&dir);
    let publisher = Publisher::start(broker.port, "clinic-a", "bed-2", Duration::from_millis(300));
    publisher.vitals(72.0, 97.0, 120.0, 80.0, Duration::from_secs(60));
    let board = Board::start(&broker.addr(), BED, &["--heartbeat-timeout", "2s"]);
    let mut page = Browser::open(&board.url, &dir.join("chromium"));
    page.call("Page.enable", serde_json::json!({}));
    page.call(
        "Page.addScriptToEvaluateOnNewDocument",
        serde_json::json!({ "source": FAKE_AUDIO }),
    );
    page.call("Page.reload", serde_json::json!({}));
    page.wait_for(
        "document.querySelector('section.bed:not(.nodata)') !== null && typeof window.__tones === 'object'",
        Duration::from_secs(15),
    );
    page.eval("document.getElementById('sound').click()");
    page.wait_for(
        "document.getElementById('sound').textContent === 'Sound on'",
        Duration::from_secs(2),
    );

    // High: ten pulses, grouped 3 + 2, a pause, 3 + 2; then again.
    let t0 = SystemTime::now();
    publisher.alarm("spo2.low", "high", "start", "active", None, t0);
    page.wait_for(
        "window.__tones.filter(t => t.hz === 880).length >= 10",
        Duration::from_secs(5),
    );
    let high = tones(&mut page, 880);
    let gaps: Vec<f64> = high[..10].windows(2).map(|w| w[1] - w[0]).collect();
    let short = gaps[0];
    for i in [0, 1, 3, 5, 6, 8] {
        assert!(
            (gaps[i] - short).abs() < 0.01,
            "even spacing inside a group: {gaps:?}"
        );
    }
    assert!(
        gaps[2] > short * 1.5 && gaps[7] > short * 1.5,
        "3 then 2: {gaps:?}"
    );
    assert!(gaps[4] > gaps[2], "a longer pause mid-burst: {gaps:?}");
    page.wait_for(
        "window.__tones.filter(t => t.hz === 880).length >= 20",
        Duration::from_secs(12),
    );

    // Acknowledged: the signal stops.
    publisher.acknowledged("spo2.low", "high", "JD", t0);
    page.wait_for("window.vigilSoundTarget === null", Duration::from_secs(5));
    let after_ack = tones(&mut page, 880).len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        tones(&mut page, 880).len(),
        after_ack,
        "silent once acknowledged"
    );

    // Medium: three pulses per burst, at its own pitch.
    publisher.alarm(
        "hr.high",
        "medium",
        "start",
        "active",
        None,
        SystemTime::now(),
    );
    page.wait_for(
        "window.__tones.filter(t => t.hz === 660).length === 3",
        Duration::from_secs(5),
    );

    // The bed's audio pause silences it, and the page shows the countdown.
    publisher.active(
        &[("hr.high", "medium", SystemTime::now())],
        Some(SystemTime::now() + Duration::from_secs(120)),
    );
    page.wait_for("window.vigilSoundTarget === null", Duration::from_secs(5));
    page.wait_for(
        "/audio paused [12]:[0-9][0-9]/.test(document.querySelector('.bed .meta').textContent)",
        Duration::from_secs(5),
    );
    let paused = tones(&mut page, 660).len();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(tones(&mut page, 660).len(), paused, "silent while paused");

    // NO DATA is a technical alarm and sounds as one (medium).
    publisher.set_beating(false);
    page.wait_for(
        "window.vigilSoundTarget === 'medium'",
        Duration::from_secs(8),
    );

    // The setting survives a reload; a browser that blocks sound is named.
    page.eval("sessionStorage.setItem('fake-audio-state', 'suspended')");
    page.call("Page.reload", serde_json::json!({}));
    page.wait_for(
        // The page may still be loading: no button yet is "not yet".
        "document.getElementById('sound')?.textContent.startsWith('Sound blocked by the browser') === true",
        Duration::from_secs(10),
    );
    page.screenshot(&artefact("board-sound-blocked.png"));
    page.call(
        "Runtime.evaluate",
        serde_json::json!({"expression": "document.getElementById('sound').click()", "userGesture": true}),
    );
    page.wait_for(
        "document.getElementById('sound').textContent === 'Sound on'",
        Duration::from_secs(3),
    );
}

/// Where the page drew it, in CSS pixels from the top of the viewport: the
/// `index`-th vertex of the sparkline trace of `vital`, and its limit lines.
fn trace_y(page: &mut Browser, vital: &str, index: usize) -> f64 {
    page.eval(&format!(
        "(() => {{ const p = document.querySelector('#beds [data-vital={vital}] svg.spark polyline.trace'); \
           const v = p.points.getItem({index}); \
           return new DOMPoint(v.x, v.y).matrixTransform(p.getScreenCTM()).y; }})()"
    ))
    .as_f64()
    .expect("a trace vertex")
}

fn limit_line(page: &mut Browser, vital: &str, kind: &str) -> serde_json::Value {
    page.eval(&format!(
        "(() => {{ const l = document.querySelector('#beds [data-vital={vital}] svg.spark line.limit[data-limit={kind}]'); \
           if (!l) return null; const r = l.getBoundingClientRect(); \
           return {{y: r.top + r.height / 2, value: Number(l.dataset.value), cls: l.getAttribute('class'), \
                    width: r.width, svg: l.ownerSVGElement.getBoundingClientRect().width}}; }})()"
    ))
}

/// Issue #14: the sparklines draw the limits in force where their values
/// lie, the trace beyond a limit takes its priority's colour, a reload's
/// limits replace them; the bed panel lists this session's alarms and
/// acknowledgements in order, and a new session clears it.
#[test]
fn sparklines_draw_the_limits_in_force_and_the_bed_panel_shows_the_sessions_history() {
    use vigil::engine::{EngineConfig, Limit, Priority};
    use vigil::vitals::Vital;
    let dir = temp_dir("display-limits");
    let broker = Broker::start(&dir);
    let publisher = Publisher::start(broker.port, "clinic-a", "bed-2", Duration::from_millis(300));
    publisher.session("K-0142", "baseline");
    // Defaults: SpO2 low 90 (medium), critical low 85 (high).
    let mut rules = EngineConfig::default().vitals;
    publisher.limits(&rules);
    let board = Board::start(&broker.addr(), BED, &[]);
    let mut page = Browser::open(&board.url, &dir.join("chromium"));
    page.set_viewport(1920, 1080);
    page.wait_for(
        "document.querySelector('#beds [data-vital=spo2] .sparkrange')?.textContent.includes('limits low 90 %')",
        Duration::from_secs(15),
    );
    // A desaturation over the last 12 min, one value a minute, the last now
    // (the board keeps a trend from live messages, not from a retained one).
    let spo2 = [
        97.0, 96.0, 95.0, 93.0, 91.0, 90.0, 88.0, 86.0, 84.0, 87.0, 92.0, 95.0, 96.0,
    ];
    let now = SystemTime::now();
    for (i, v) in spo2.iter().enumerate() {
        let ago = Duration::from_secs(60 * (spo2.len() - 1 - i) as u64);
        publisher.vitals_at(70.0 + i as f64, *v, now - ago);
        std::thread::sleep(Duration::from_millis(20));
    }
    page.wait_for(
        "document.querySelectorAll('#beds [data-vital=spo2] svg.spark polyline.trace').length === 1 \
         && document.querySelector('#beds [data-vital=spo2] svg.spark polyline.trace').points.length === 13 \
         && document.querySelector('#beds [data-vital=spo2] line.limit[data-limit=low]') !== null",
        Duration::from_secs(15),
    );
    // The low limit's line lies where the trace is at 90, across the chart.
    let low = limit_line(&mut page, "spo2", "low");
    assert_eq!(low["value"], 90.0, "{low}");
    assert_eq!(low["cls"], "limit medium", "{low}");
    assert!(
        low["width"].as_f64() >= low["svg"].as_f64().map(|w| w - 1.0),
        "{low}"
    );
    let at_90 = trace_y(&mut page, "spo2", 5);
    assert!(
        (low["y"].as_f64().unwrap() - at_90).abs() < 1.0,
        "line {low} vs trace {at_90}"
    );
    // Its number beside it.
    let tag = page.eval(
        "(() => { const t = document.querySelector('#beds [data-vital=spo2] .limittag[data-limit=low]'); \
           const r = t.getBoundingClientRect(); return [t.textContent, r.top + r.height / 2]; })()",
    );
    assert_eq!(tag[0], "90", "{tag}");
    assert!(
        (tag[1].as_f64().unwrap() - at_90).abs() < 2.0,
        "{tag} vs {at_90}"
    );
    // The critical low (85) halfway between the trace's 86 and 84.
    let critical = limit_line(&mut page, "spo2", "critical_low");
    assert_eq!(critical["cls"], "limit high", "{critical}");
    let (at_86, at_84) = (trace_y(&mut page, "spo2", 7), trace_y(&mut page, "spo2", 8));
    let mid = (at_86 + at_84) / 2.0;
    assert!(
        (critical["y"].as_f64().unwrap() - mid).abs() < 1.0,
        "{critical} vs {mid}"
    );
    // Screen y grows downwards: 97 above the limits, 84 below both.
    let top = trace_y(&mut page, "spo2", 0);
    assert!(top < low["y"].as_f64().unwrap() - 10.0, "{top} vs {low}");
    assert!(
        at_84 > critical["y"].as_f64().unwrap(),
        "{at_84} vs {critical}"
    );
    // Beyond the critical limit the trace is drawn in the high colour.
    assert_eq!(
        page.eval("getComputedStyle(document.querySelector('#beds [data-vital=spo2] polyline.inalarm.high')).stroke"),
        "rgb(224, 32, 27)"
    );
    // HR 50-120: both lines, the text says so.
    let hr = page.eval("document.querySelector('#beds [data-vital=hr] .sparkrange').textContent");
    assert!(hr.as_str().unwrap().contains("limits 50-120 /min"), "{hr}");
    assert!(limit_line(&mut page, "hr", "high")["value"] == 120.0);
    page.screenshot(&artefact("board-limits-1920x1080.png"));

    // A reload: the new limit replaces the old one where it belongs.
    rules[Vital::SpO2.index()].low = Some(Limit::new(93.0, Priority::High));
    publisher.limits(&rules);
    page.wait_for(
        "document.querySelector('#beds [data-vital=spo2] line.limit[data-limit=low]')?.dataset.value === '93'",
        Duration::from_secs(5),
    );
    let low = limit_line(&mut page, "spo2", "low");
    assert_eq!(low["cls"], "limit high", "{low}");
    let at_93 = trace_y(&mut page, "spo2", 3);
    assert!(
        (low["y"].as_f64().unwrap() - at_93).abs() < 1.0,
        "{low} vs {at_93}"
    );

    // The session's alarms and acknowledgements, in the bed panel.
    let t = |s: u64| now - Duration::from_secs(600) + Duration::from_secs(s);
    publisher.alarm("spo2.low", "medium", "start", "active", None, t(0));
    publisher.alarm("hr.high", "medium", "start", "active", None, t(30));
    publisher.alarm("spo2.low", "high", "escalate", "active", None, t(0));
    publisher.acknowledged("spo2.low", "high", "JD", t(0));
    publisher.alarm("spo2.low", "high", "end", "ended", Some("JD"), t(0));
    page.wait_for(
        "document.querySelectorAll('#beds li.alarm').length === 1",
        Duration::from_secs(5),
    );
    page.eval("document.querySelector('#beds button.history').click()");
    page.wait_for(
        "!document.getElementById('detail').hidden && document.querySelectorAll('#detail .history tbody tr').length === 2",
        Duration::from_secs(5),
    );
    let rows = page.eval(
        "JSON.stringify([...document.querySelectorAll('#detail .history tbody tr')].map(r => [r.dataset.alarm, r.className, r.innerText]))",
    );
    let rows: Vec<(String, String, String)> = serde_json::from_str(rows.as_str().unwrap()).unwrap();
    let hhmmss = |t: SystemTime| {
        let s = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() % 86_400;
        format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
    };
    assert_eq!(rows[0].0, "spo2.low", "oldest onset first: {rows:?}");
    assert_eq!(rows[0].1, "high", "the priority it reached: {rows:?}");
    assert!(rows[0].2.starts_with(&hhmmss(t(0))), "{rows:?}");
    assert!(rows[0].2.contains("SpO2 low 86 % (limit 90 %)"), "{rows:?}");
    assert!(rows[0].2.contains("JD at "), "who acknowledged: {rows:?}");
    assert!(!rows[0].2.contains("still present"), "it ended: {rows:?}");
    assert_eq!(rows[1].0, "hr.high", "{rows:?}");
    assert!(rows[1].2.starts_with(&hhmmss(t(30))), "{rows:?}");
    assert!(
        rows[1].2.contains("not acknowledged") && rows[1].2.contains("still present"),
        "{rows:?}"
    );
    page.screenshot(&artefact("board-history-1920x1080.png"));
    page.set_viewport(768, 1024);
    let overflow = page.eval("document.documentElement.scrollWidth > window.innerWidth || document.querySelector('#detail .panel').scrollWidth > document.querySelector('#detail .panel').clientWidth + 1");
    assert_eq!(overflow, false, "the panel fits a tablet");
    page.screenshot(&artefact("board-history-768x1024.png"));
    page.eval("document.getElementById('detailclose').click()");
    page.wait_for(
        "document.getElementById('detail').hidden",
        Duration::from_secs(3),
    );
    page.screenshot(&artefact("board-limits-768x1024.png"));

    // A new session: its history starts empty.
    publisher.session("K-0143", "baseline");
    page.eval("document.querySelector('#beds button.history').click()");
    page.wait_for(
        "document.querySelector('#detail .history')?.innerText.includes('No alarms in this session yet') \
         && document.querySelector('#detail .history h3').innerText.includes('K-0143')",
        Duration::from_secs(5),
    );
    assert_eq!(
        page.eval("document.querySelectorAll('#detail .history tbody tr').length"),
        0
    );
}

/// Issue #13: RR and EtCO2 tiles with their limits on a bed whose monitor
/// sends breathing values (none on a bed without capnography), the apnoea
/// alarm like any high alarm, questionable values marked, NIBP components
/// as measured (no fake mean, a questionable component marked on its own).
/// The vitals are the daemon's own payloads.
#[test]
fn breathing_questionable_values_and_nibp_components_on_the_board() {
    use vigil::engine::{EngineConfig, Limit, Priority};
    use vigil::mqtt::payload::Latest;
    use vigil::vitals::{Measurement, Sample, Validity, Vital};
    let dir = temp_dir("display-breathing");
    let broker = Broker::start(&dir);
    let capno = Publisher::start(broker.port, "clinic-a", "bed-2", Duration::from_millis(300));
    let plain = Publisher::start(broker.port, "clinic-a", "bed-3", Duration::from_millis(300));
    let mut rules = EngineConfig::default().vitals;
    rules[Vital::RespRate.index()].low = Some(Limit::new(8.0, Priority::Medium));
    rules[Vital::RespRate.index()].high = Some(Limit::new(30.0, Priority::Medium));
    rules[Vital::EtCo2.index()].low = Some(Limit::new(20.0, Priority::Medium));
    rules[Vital::EtCo2.index()].high = Some(Limit::new(55.0, Priority::High));
    capno.limits(&rules);
    plain.limits(&rules);
    let board = Board::start(&broker.addr(), BED, &["--bed", "clinic-a/bed-3"]);
    // A board of bed-2 alone (for its wall layout at the end), live from now.
    let single = Board::start(&broker.addr(), BED, &[]);
    let mut page = Browser::open(&board.url, &dir.join("chromium"));
    page.set_viewport(1920, 1080);
    page.wait_for(
        "document.querySelectorAll('section.bed:not(.nodata)').length === 2",
        Duration::from_secs(15),
    );

    use crate::util::feed::nibp;
    let ok = Sample::valid;
    let now = SystemTime::now();
    let mut plain_latest = Latest::default();
    plain.daemon_vitals(
        &mut plain_latest,
        &[
            (Measurement::HeartRate(ok(64.0)), now),
            (Measurement::SpO2(ok(98.0)), now),
            (nibp(ok(120.0), ok(80.0), ok(93.0)), now),
        ],
    );
    // Ten minutes of breathing, one value a minute, the last now.
    let mut latest = Latest::default();
    for i in 0..=10u32 {
        let at = now - Duration::from_secs(60 * u64::from(10 - i));
        capno.daemon_vitals(
            &mut latest,
            &[
                (Measurement::HeartRate(ok(80.0)), at),
                (Measurement::SpO2(ok(96.0)), at),
                (Measurement::RespRate(ok(16.0 - i as f32)), at),
                (Measurement::EtCo2(ok(36.0 + 2.0 * i as f32)), at),
            ],
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    capno.daemon_vitals(&mut latest, &[(nibp(ok(120.0), ok(80.0), ok(93.0)), now)]);
    let bed2 = "#beds section.bed[data-bed='clinic-a/bed-2']";
    let bed3 = "#beds section.bed[data-bed='clinic-a/bed-3']";
    page.wait_for(
        &format!(
            "document.querySelector(\"{bed2} [data-vital=rr] svg.spark polyline.trace\")?.points.length === 11 \
             && document.querySelector(\"{bed2} [data-vital=nibp] .value\")?.textContent.startsWith('120/80 (93)')"
        ),
        Duration::from_secs(15),
    );
    let text = |page: &mut Browser, sel: &str| -> String {
        page.eval(&format!(
            "document.querySelector(\"{sel}\")?.textContent ?? null"
        ))
        .as_str()
        .unwrap_or("(absent)")
        .to_owned()
    };
    assert!(text(&mut page, &format!("{bed2} [data-vital=rr] .value")).starts_with("6"));
    assert!(text(&mut page, &format!("{bed2} [data-vital=rr] .value")).ends_with("/min"));
    assert!(text(&mut page, &format!("{bed2} [data-vital=etco2] .value")).starts_with("56"));
    assert!(text(&mut page, &format!("{bed2} [data-vital=etco2] .value")).ends_with("mmHg"));
    assert_eq!(
        text(&mut page, &format!("{bed2} [data-vital=rr] .label")),
        "RR"
    );
    // Their limits in force, drawn on the sparklines where the values lie.
    let limits = page.eval(&format!(
        "[...document.querySelectorAll(\"{bed2} [data-vital=rr] line.limit, {bed2} [data-vital=etco2] line.limit\")]\
           .map(l => l.closest('.vital').dataset.vital + ':' + l.dataset.limit + ':' + l.dataset.value + ':' + l.getAttribute('class')).join(' ')"
    ));
    assert_eq!(
        limits,
        "rr:low:8:limit medium rr:high:30:limit medium etco2:low:20:limit medium etco2:high:55:limit high"
    );
    // 56 mmHg is above the high limit of 55: that part of the trace in its colour.
    assert_eq!(
        page.eval(&format!(
            "document.querySelectorAll(\"{bed2} [data-vital=etco2] polyline.inalarm.high\").length"
        )),
        1
    );
    // A bed without capnography has no breathing tiles at all.
    assert_eq!(
        page.eval(&format!(
            "[...document.querySelectorAll(\"{bed3} .vital\")].map(v => v.dataset.vital).join(' ')"
        )),
        "hr spo2 nibp"
    );

    // NIBP without its mean: no mean shown (not the previous one).
    capno.daemon_vitals(
        &mut latest,
        &[(
            nibp(ok(124.0), ok(82.0), Sample::missing(Validity::Unavailable)),
            SystemTime::now(),
        )],
    );
    page.wait_for(
        &format!("document.querySelector(\"{bed2} [data-vital=nibp] .value\")?.textContent.startsWith('124/82\u{2192}mmHg')"),
        Duration::from_secs(5),
    );
    assert_eq!(
        page.eval(&format!(
            "document.querySelector(\"{bed2} [data-vital=nibp] .mean\")"
        )),
        serde_json::Value::Null
    );

    // A questionable diastolic, marked on its own; a questionable SpO2 (vigil
    // sends its number with the validity: the number with its mark).
    let t = SystemTime::now();
    capno.daemon_vitals(
        &mut latest,
        &[
            (
                nibp(
                    ok(126.0),
                    Sample::new(79.0, Validity::Questionable),
                    ok(95.0),
                ),
                t,
            ),
            (
                Measurement::SpO2(Sample::new(82.0, Validity::Questionable)),
                t,
            ),
            (Measurement::RespRate(ok(0.0)), t),
        ],
    );
    page.wait_for(
        &format!(
            "document.querySelector(\"{bed2} [data-vital=nibp] .part.questionable\") !== null"
        ),
        Duration::from_secs(5),
    );
    let parts = page.eval(&format!(
        "[...document.querySelectorAll(\"{bed2} [data-vital=nibp] .value .part\")]\
           .map(p => p.dataset.part + '=' + p.textContent + (p.classList.contains('questionable') ? ':q' : '')).join(' ')"
    ));
    assert_eq!(parts, "sys=126 dia=79?:q mean=95");
    let spo2 = page.eval(&format!(
        "(() => {{ const v = document.querySelector(\"{bed2} [data-vital=spo2]\"); const p = v.querySelector('.part'); \
           return [v.className, p.textContent, p.className, p.title, v.querySelector('.note').textContent]; }})()"
    ));
    assert_eq!(spo2[0], "vital questionable", "{spo2}");
    assert_eq!(spo2[1], "82?", "{spo2}");
    assert_eq!(spo2[2], "part questionable", "{spo2}");
    assert!(
        spo2[3].as_str().unwrap().contains("signal quality"),
        "{spo2}"
    );
    assert!(spo2[4].as_str().unwrap().contains("questionable"), "{spo2}");
    // The hatch: a background pattern the eye sees as "not a clean value".
    let hatch = page.eval(&format!(
        "getComputedStyle(document.querySelector(\"{bed2} [data-vital=spo2] .part\")).backgroundImage"
    ));
    assert!(
        hatch
            .as_str()
            .unwrap()
            .contains("repeating-linear-gradient"),
        "{hatch}"
    );

    // Apnoea: a high alarm like any other, the RR value in its colour; a
    // desaturation alarm on a questionable value says so.
    let onset = SystemTime::now();
    let mut apnoea =
        crate::util::feed::alarm_object("rr.apnoea", "high", "start", "active", None, onset);
    apnoea["value"] = serde_json::json!(0);
    apnoea["delay_ms"] = serde_json::json!(20_000);
    capno.alarm_event(apnoea);
    let mut desat = crate::util::feed::alarm_object(
        "spo2.critical_low",
        "high",
        "start",
        "active",
        None,
        onset,
    );
    desat["value"] = serde_json::json!(82);
    desat["limit"] = serde_json::json!(85);
    desat["validity"] = serde_json::json!("questionable");
    capno.alarm_event(desat);
    page.wait_for(
        &format!("document.querySelectorAll(\"{bed2} li.alarm.high.flash-fast\").length === 2"),
        Duration::from_secs(5),
    );
    assert_eq!(
        page.eval(&format!(
            "document.querySelector(\"{bed2} [data-vital=rr]\").classList.contains('alarm-high')"
        )),
        true
    );
    let desat = page.eval(&format!(
        "(() => {{ const a = document.querySelector(\"{bed2} li.alarm[data-alarm='spo2.critical_low']\"); \
           return [a.className, a.querySelector('.text').textContent, a.querySelector('.text').title]; }})()"
    ));
    assert!(
        desat[0].as_str().unwrap().contains("questionable"),
        "{desat}"
    );
    assert!(
        desat[1]
            .as_str()
            .unwrap()
            .starts_with("SpO2 critically low 82 % (limit 85 %) ? questionable signal"),
        "{desat}"
    );
    assert!(
        desat[2].as_str().unwrap().contains("signal quality"),
        "{desat}"
    );
    let feed = page.eval("document.getElementById('feed').textContent");
    assert!(
        feed.as_str()
            .unwrap()
            .contains("? questionable signal started"),
        "{feed}"
    );
    assert!(text(
        &mut page,
        &format!("{bed2} li.alarm[data-alarm='rr.apnoea'] .text")
    )
    .contains("apnoea"));

    // Wall screen and tablet: nothing spills sideways; the wall shows the
    // five tiles of a bed in rows that fit.
    for (w, h, name) in [
        (1920, 1080, "board-breathing-1920x1080.png"),
        (768, 1024, "board-breathing-768x1024.png"),
    ] {
        assert_nothing_spills(&mut page, w, h);
        page.screenshot(&artefact(name));
    }
    // One bed on the wall: its five tiles in one row, numerals to read
    // across the room.
    page.call("Page.navigate", serde_json::json!({"url": single.url}));
    page.set_viewport(1920, 1080);
    page.wait_for(
        "document.querySelectorAll('#beds section.bed').length === 1 \
         && document.querySelectorAll('#beds .vital').length === 5 \
         && document.querySelector('#beds [data-vital=etco2] svg.spark') !== null \
         && document.querySelectorAll('#beds li.alarm').length === 2",
        Duration::from_secs(15),
    );
    let rows = page.eval(
        "new Set([...document.querySelectorAll('#beds .vital')].map(v => Math.round(v.getBoundingClientRect().top))).size",
    );
    assert_eq!(rows, 1, "five tiles in one row");
    let px = page.eval(
        "parseFloat(getComputedStyle(document.querySelector('#beds [data-vital=rr] .value')).fontSize)",
    );
    assert!(px.as_f64().unwrap() >= 80.0, "numerals {px} px");
    page.screenshot(&artefact("board-breathing-one-bed-1920x1080.png"));
}
