//! The live daemon on real pseudo-terminals: protocol bytes in, alarm events
//! out; unplug and replug; garbage on the line.

use std::time::Duration;

use vigil::config::{self, Config};
use vigil::engine::Phase;
use vigil::protocol::{masimo, Snapshot};
use vigil::vitals::{DeviceTime, Sample, Validity};

use crate::util::daemon::{start, temp_dir, Monitor};

fn config_for(port: &std::path::Path, protocol: &str, extra: &str) -> Config {
    let text = format!(
        r#"
        [[source]]
        name = "oximeter"
        protocol = "{protocol}"
        serial = "{}"
        timeout = "2s"
        {extra}
        "#,
        port.display()
    );
    config::parse(&text, "test").expect("valid test configuration")
}

fn masimo_line(spo2: f32, pr: f32) -> Vec<u8> {
    let snap = Snapshot {
        spo2: Sample::valid(spo2),
        pulse_rate: Sample::valid(pr),
        ..Snapshot::empty(DeviceTime(1_795_460_000))
    };
    let mut out = Vec::new();
    masimo::encode_line(&snap, &mut out);
    out
}

#[tokio::test(flavor = "current_thread")]
async fn masimo_bytes_on_a_pty_raise_the_critical_spo2_alarm() {
    let dir = temp_dir("pty-masimo");
    let port = dir.join("ttyOXI");
    let mut monitor = Monitor::plug_in(&port);
    let mut daemon = start(config_for(&port, "masimo", ""));
    tokio::time::sleep(Duration::from_millis(300)).await;

    monitor.send(&masimo_line(97.0, 72.0));
    monitor.send(&masimo_line(82.0, 75.0));
    let a = daemon
        .alarm("spo2.critical_low", Phase::Start, Duration::from_secs(5))
        .await;
    assert_eq!(a.value, Some(82.0));
    assert_eq!(a.limit, Some(85.0));
    daemon.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn unplugging_raises_disconnected_and_replugging_clears_it() {
    let dir = temp_dir("pty-unplug");
    let port = dir.join("ttyMON");
    let mut monitor = Monitor::plug_in(&port);
    let mut daemon = start(config_for(&port, "vigil-line", ""));
    tokio::time::sleep(Duration::from_millis(300)).await;
    monitor.send(b"hr 72\n");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let unplugged = std::time::Instant::now();
    monitor.unplug();
    daemon
        .alarm(
            "source.oximeter.disconnected",
            Phase::Start,
            Duration::from_secs(3),
        )
        .await;
    assert!(
        unplugged.elapsed() < Duration::from_secs(1),
        "a hang-up is seen at once, not only after the 2 s silence timeout"
    );

    // Nothing at the path for a while: the daemon retries with backoff.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    monitor.replug();
    // The daemon reopens the port on its own; then data must flow.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut ended = false;
    while std::time::Instant::now() < deadline && !ended {
        monitor.try_send(b"hr 72\n");
        let seen = daemon.alarms_during(Duration::from_millis(500)).await;
        ended = seen
            .iter()
            .any(|(id, p)| id == "source.oximeter.disconnected" && *p == Phase::End);
    }
    assert!(ended, "the disconnected alarm ends once data flows again");
    daemon.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn garbage_and_half_frames_are_counted_and_alarmed_not_crashed() {
    let dir = temp_dir("pty-garbage");
    let port = dir.join("ttyGAR");
    let mut monitor = Monitor::plug_in(&port);
    let mut daemon = start(config_for(&port, "masimo", ""));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Half a Masimo line, then noise, then valid lines again.
    let line = masimo_line(97.0, 70.0);
    monitor.send(&line[..line.len() / 2]);
    for i in 0..12u8 {
        monitor.send(&[0x13, 0xff, i, b'\n', b'=', b'=', b'\r', b'\n']);
    }
    daemon
        .alarm(
            "source.oximeter.link_errors",
            Phase::Start,
            Duration::from_secs(5),
        )
        .await;
    // The decoder resynchronises: valid lines still become readings.
    monitor.send(&masimo_line(84.0, 70.0));
    daemon
        .alarm("spo2.critical_low", Phase::Start, Duration::from_secs(5))
        .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn sensor_off_on_the_wire_is_technical_not_physiological() {
    let dir = temp_dir("pty-sensor");
    let port = dir.join("ttySEN");
    let mut monitor = Monitor::plug_in(&port);
    let mut daemon = start(config_for(
        &port,
        "vigil-line",
        "[alarms]\ntechnical_delay = \"0s\"",
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    monitor.send(b"vigil-line 1\nspo2 - sensor_off\n");
    let a = daemon
        .alarm("spo2.sensor_off", Phase::Start, Duration::from_secs(5))
        .await;
    assert_eq!(a.validity, Some(Validity::SensorOff));
    let others = daemon.alarms_during(Duration::from_millis(500)).await;
    assert!(
        !others
            .iter()
            .any(|(id, _)| id.starts_with("spo2.") && !id.ends_with("sensor_off")),
        "{others:?}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_tcp_device_server_that_resets_and_comes_back() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = config::parse(
        &format!(
            "[[source]]\nname = \"bridge\"\nprotocol = \"vigil-line\"\ntcp = \"{addr}\"\ntimeout = \"2s\"\n"
        ),
        "test",
    )
    .unwrap();
    let mut daemon = start(cfg);
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("the daemon connects")
        .unwrap();
    conn.write_all(b"spo2 83\n").await.unwrap();
    daemon
        .alarm("spo2.critical_low", Phase::Start, Duration::from_secs(5))
        .await;

    // The device server goes away: connection reset, listener closed.
    // SO_LINGER 0 makes the close a reset (RST), as when a device server
    // reboots; with a zero timeout the drop does not block.
    #[allow(deprecated)]
    conn.set_linger(Some(Duration::ZERO)).unwrap();
    drop(conn);
    drop(listener);
    daemon
        .alarm(
            "source.bridge.disconnected",
            Phase::Start,
            Duration::from_secs(3),
        )
        .await;

    // Back on the same port: the daemon reconnects by itself.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(15), listener.accept())
        .await
        .expect("the daemon reconnects")
        .unwrap();
    conn.write_all(b"spo2 97\n").await.unwrap();
    daemon
        .alarm(
            "source.bridge.disconnected",
            Phase::End,
            Duration::from_secs(5),
        )
        .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn ge_monitor_answers_the_request_record_the_daemon_writes() {
    use vigil::protocol::ge;
    use vigil::vitals::{Nibp, NibpMode};

    let dir = temp_dir("pty-ge");
    let port = dir.join("ttyGE");
    let mut monitor = Monitor::plug_in(&port);
    // GE talks 8E1 with RTS/CTS by default; a pty ignores line settings.
    let mut daemon = start(config_for(&port, "ge-s5", ""));

    // The monitor sends nothing until asked: the daemon must write the
    // "displayed values every 5 s" request record through the same port.
    let mut expected = Vec::new();
    ge::PhdbRequest::displayed_every(5)
        .unwrap()
        .encode(&mut expected);
    let written = tokio::task::spawn_blocking(move || {
        let got = monitor.receive(expected.len(), Duration::from_secs(5));
        (monitor, got, expected)
    })
    .await
    .unwrap();
    let (mut monitor, got, expected) = written;
    assert_eq!(got, expected, "the request record, byte for byte");

    let snap = Snapshot {
        heart_rate: Sample::valid(72.0),
        spo2: Sample::valid(96.0),
        pulse_rate: Sample::valid(72.0),
        nibp: Some(Nibp {
            systolic: Sample::valid(205.0),
            diastolic: Sample::valid(100.0),
            mean: Sample::valid(135.0),
            measured_at: Some(DeviceTime(1_795_460_000)),
            mode: NibpMode::Auto,
        }),
        resp_rate: Sample::missing(Validity::Unavailable),
        etco2: Sample::missing(Validity::Unavailable),
        device_time: DeviceTime(1_795_460_005),
    };
    let mut frame = Vec::new();
    ge::encode_displayed_values(&snap, &mut frame);
    monitor.send(&frame);
    let a = daemon
        .alarm(
            "nibp_sys.critical_high",
            Phase::Start,
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(a.value, Some(205.0));
    daemon.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn ge_request_goes_out_again_at_once_when_the_monitor_is_replugged() {
    use vigil::protocol::ge;

    let dir = temp_dir("pty-ge-replug");
    let port = dir.join("ttyGE");
    let monitor = Monitor::plug_in(&port);
    let mut daemon = start(config_for(&port, "ge-s5", ""));
    let mut expected = Vec::new();
    ge::PhdbRequest::displayed_every(5)
        .unwrap()
        .encode(&mut expected);
    let len = expected.len();
    let (monitor, first) = tokio::task::spawn_blocking(move || {
        let mut monitor = monitor;
        let got = monitor.receive(len, Duration::from_secs(5));
        (monitor, got)
    })
    .await
    .unwrap();
    assert_eq!(first, expected, "the request on the first connection");

    // A new monitor at the same port. The daemon must ask it at once: a GE
    // monitor says nothing until asked, and the silence re-request only
    // comes after 15 s.
    let (_monitor, took, again) = tokio::task::spawn_blocking(move || {
        let mut monitor = monitor;
        monitor.unplug();
        std::thread::sleep(Duration::from_millis(100));
        let replugged = std::time::Instant::now();
        monitor.replug();
        let got = monitor.receive(len, Duration::from_secs(5));
        let took = replugged.elapsed();
        // Asked, it answers.
        let snap = Snapshot {
            heart_rate: Sample::valid(72.0),
            ..Snapshot::empty(DeviceTime(1_795_460_005))
        };
        let mut frame = Vec::new();
        ge::encode_displayed_values(&snap, &mut frame);
        monitor.send(&frame);
        (monitor, took, got)
    })
    .await
    .unwrap();
    assert_eq!(again, expected, "the request on the second connection");
    assert!(
        took < Duration::from_secs(2),
        "the request reached the replugged monitor only after {took:?}"
    );
    // The hang-up was a disconnection; the answer ends it.
    daemon
        .alarm(
            "source.oximeter.disconnected",
            Phase::End,
            Duration::from_secs(5),
        )
        .await;
    daemon.stop().await;
}

/// A Philips monitor that answers every association request with a refusal:
/// bytes flow both ways, but no reading ever can. The daemon says so from
/// start-up on, as a source alarm of its own, and not as "disconnected".
#[tokio::test(flavor = "current_thread")]
async fn a_philips_monitor_that_refuses_association_is_not_associated_not_silent() {
    use vigil::protocol::philips;

    let dir = temp_dir("pty-philips-refuse");
    let port = dir.join("ttyPHR");
    let monitor = Monitor::plug_in(&port);
    let mut daemon = start(config_for(&port, "philips-intellivue", ""));
    let refusing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let keep_refusing = refusing.clone();
    let answerer = tokio::task::spawn_blocking(move || {
        let mut monitor = monitor;
        let mut refusals = 0u32;
        let mut refuse = Vec::new();
        philips::encode_refuse(&mut refuse);
        while keep_refusing.load(std::sync::atomic::Ordering::Relaxed) {
            // Anything the host sends (association requests, aborts) is
            // answered with a refusal, as a monitor whose export is
            // switched off would.
            if !monitor.receive(1, Duration::from_millis(200)).is_empty() {
                monitor.send(&refuse);
                refusals += 1;
            }
        }
        refusals
    });
    let a = daemon
        .alarm(
            "source.oximeter.not_associated",
            Phase::Start,
            Duration::from_secs(8),
        )
        .await;
    assert_eq!(a.priority, vigil::engine::Priority::High);
    let during = daemon.alarms_during(Duration::from_secs(3)).await;
    assert!(
        !during.iter().any(|(id, _)| id.ends_with(".disconnected")),
        "a monitor that answers is not disconnected: {during:?}"
    );
    refusing.store(false, std::sync::atomic::Ordering::Relaxed);
    let refusals = answerer.await.unwrap();
    assert!(refusals >= 2, "the host kept asking: {refusals} refusals");
    daemon.stop().await;
}

/// A line of noise that never decodes, from the first byte on: not a single
/// valid reading, so `no_valid_data`, although bytes arrive all the time.
#[tokio::test(flavor = "current_thread")]
async fn a_source_that_streams_only_garbage_from_start_up_has_no_valid_data() {
    let dir = temp_dir("pty-only-garbage");
    let port = dir.join("ttyOGB");
    let mut monitor = Monitor::plug_in(&port);
    let mut daemon = start(config_for(&port, "masimo", ""));
    let noise = tokio::task::spawn_blocking(move || {
        for i in 0..40u8 {
            monitor.send(&[0x13, 0xff, i, b'\n', b'=', b'=', b'\r', b'\n']);
            std::thread::sleep(Duration::from_millis(100));
        }
        monitor
    });
    daemon
        .alarm(
            "source.oximeter.no_valid_data",
            Phase::Start,
            Duration::from_secs(6),
        )
        .await;
    let mut monitor = noise.await.unwrap();
    // The first valid line ends it at once.
    monitor.send(&masimo_line(97.0, 70.0));
    daemon
        .alarm(
            "source.oximeter.no_valid_data",
            Phase::End,
            Duration::from_secs(3),
        )
        .await;
    daemon.stop().await;
}
