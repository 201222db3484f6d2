//! MQTT end to end against real Mosquitto processes: alarms reach a
//! display and match their schemas, nothing is lost when the broker or the
//! daemon is killed, the Last Will marks the bed offline, commands round
//! trip, bad commands are rejected with reasons, and the example ACL holds;
//! over MQTT 5, vitals expire at the broker and commands are answered on
//! their response topic with their correlation data.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use vigil::config;

use crate::util::daemon::{temp_dir, write_config, Monitor};
use crate::util::mqtt::{
    assert_alarms_once_in_order, assert_valid, daemon_config, now_rfc3339, start_with_mqtt,
    Client5, Gate, Mosquitto, MqttDaemon, Msg, Subscriber,
};
use crate::util::process::Vigil;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn is_alarm(j: &Value, id: &str, phase: &str) -> bool {
    j["alarm"]["id"] == id && j["alarm"]["phase"] == phase
}

/// A vigil-line monitor plugged in at `dir/tty{tag}`, and the configuration
/// of a daemon that reads it for `bed` and publishes to the broker on
/// `port`, its state in `dir/state` (`extra` goes in `[mqtt]`).
fn plug_in(dir: &Path, tag: &str, port: u16, bed: &str, extra: &str) -> (Monitor, String) {
    let tty = dir.join(format!("tty{tag}"));
    let monitor = Monitor::plug_in(&tty);
    let text = daemon_config(&tty, port, &dir.join("state"), bed, extra);
    (monitor, text)
}

/// [`plug_in`] for a daemon serving its own embedded broker (MQTT 3.1.1)
/// on a free port, its state in `dir/state-{tag}`.
fn on_embedded_broker(dir: &Path, tag: &str, bed: &str) -> (Monitor, u16, String) {
    let port = crate::util::mqtt::free_port();
    let tty = dir.join(format!("tty{tag}"));
    let monitor = Monitor::plug_in(&tty);
    let listen = format!("listen = \"127.0.0.1:{port}\"");
    let text = daemon_config(&tty, port, &dir.join(format!("state-{tag}")), bed, &listen)
        .replace("embedded = false", "embedded = true");
    (monitor, port, text)
}

/// The daemon in-process on the configuration `text`.
fn start(text: &str) -> MqttDaemon {
    start_with_mqtt(config::parse(text, "test").unwrap())
}

/// Lets the daemon settle, sends `lines` from the monitor, and waits for
/// the start of SpO2's critical low alarm on the display.
async fn desaturate(monitor: &mut Monitor, display: &mut Subscriber, lines: &[u8]) -> Msg {
    tokio::time::sleep(Duration::from_millis(300)).await;
    monitor.send(lines);
    display
        .next("/alarms", SECS(5), |j| {
            is_alarm(j, "spo2.critical_low", "start")
        })
        .await
}

/// Waits until the daemon raised the alarm `id`; fails after `within`.
async fn until_started(daemon: &mut MqttDaemon, id: &str, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    let mut raised = Vec::new();
    while !raised
        .iter()
        .any(|(_, i, phase): &(u64, String, &str)| i == id && *phase == "start")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no {id} within {within:?}: {raised:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        raised.extend(daemon.alarms_so_far());
    }
}

fn command(id: &str, body: Value) -> Value {
    let mut c = json!({"schema_version": 1, "id": id, "time": now_rfc3339()});
    if let (Some(c), Value::Object(b)) = (c.as_object_mut(), body) {
        c.extend(b);
    }
    c
}

#[tokio::test(flavor = "current_thread")]
async fn an_alarm_reaches_a_display_and_every_payload_matches_its_schema() {
    let dir = temp_dir("mqtt-e2e");
    let broker = Mosquitto::start(&dir, "");
    let prefix = "vigil/v1/test-clinic/bed-e2e/";
    let mut display = Subscriber::connect(broker.port, "display-e2e", &format!("{prefix}#")).await;
    let (mut monitor, text) = plug_in(&dir, "E2E", broker.port, "bed-e2e", "");
    let daemon = start(&text);

    let online = display.online(SECS(10)).await;
    assert!(online.retained || online.json["beat"].as_u64().is_some());
    assert_valid("status", &online.json);
    // The limits in force, as configured (`low = "off"` for SpO2).
    let limits = display.next("/limits", SECS(5), |_| true).await;
    assert_valid("limits", &limits.json);
    assert_eq!(limits.json["vitals"]["spo2"]["low"], Value::Null);
    assert_eq!(limits.json["vitals"]["spo2"]["critical_low"]["value"], 85.0);
    assert_eq!(limits.json["vitals"]["hr"]["high"]["value"], 120.0);

    let alarm = desaturate(&mut monitor, &mut display, b"hr 72\nspo2 80\n").await;
    assert_valid("alarm", &alarm.json);
    assert_eq!(alarm.json["alarm"]["value"], 80.0);
    assert_eq!(alarm.json["alarm"]["limit"], 85.0);
    assert_eq!(alarm.json["alarm"]["priority"], "high");
    assert_eq!(alarm.json["stream_seq"], 1);
    assert_eq!(alarm.json["site"], "test-clinic");

    let active = display
        .next("/alarms/active", SECS(5), |j| {
            j["alarms"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    assert_valid("alarms-active", &active.json);
    assert_eq!(active.json["alarms"][0]["id"], "spo2.critical_low");

    let vitals = display
        .next("/vitals", SECS(5), |j| j["vitals"]["spo2"].is_object())
        .await;
    assert_valid("vitals", &vitals.json);
    assert_eq!(vitals.json["vitals"]["hr"]["value"], 72.0);

    let start = command(
        "e2e-1",
        json!({"command": "start_session", "session": "S-0042"}),
    );
    assert_valid("command", &start);
    display.publish(&format!("{prefix}cmd"), &start).await;
    let result = display
        .next("/cmd/result", SECS(5), |j| j["id"] == "e2e-1")
        .await;
    assert_valid("command-result", &result.json);
    assert_eq!(result.json["result"], "accepted", "{}", result.json);
    let session = display
        .next("/session", SECS(5), |j| j["event"]["type"] == "phase")
        .await;
    assert_valid("session", &session.json);
    assert_eq!(session.json["state"]["phase"], "baseline");
    assert_eq!(session.json["state"]["session"], "S-0042");

    let dose = command(
        "e2e-2",
        json!({"command": "dose", "route": "in", "note": "56 mg"}),
    );
    display.publish(&format!("{prefix}cmd"), &dose).await;
    // A dose right after start_session: accepted, with the advisory that
    // the baselines are missing (before the dose event itself).
    let advisory = display
        .next("/session", SECS(5), |j| {
            j["event"]["type"] == "baseline_incomplete"
        })
        .await;
    assert_valid("session", &advisory.json);
    let missing = advisory.json["event"]["missing"].as_array().unwrap();
    assert!(missing.contains(&json!("nibp_sys")), "{}", advisory.json);
    let session = display
        .next("/session", SECS(5), |j| j["event"]["type"] == "dose")
        .await;
    assert_valid("session", &session.json);
    assert_eq!(session.json["state"]["doses"][0]["route"], "in");

    daemon.stop().await;
    let bye = display
        .next("/status", SECS(5), |j| j["state"] == "offline")
        .await;
    assert_eq!(bye.json["reason"], "shutdown");
    assert_valid("status", &bye.json);
}

#[tokio::test(flavor = "current_thread")]
async fn acknowledging_round_trips_and_bad_commands_are_rejected_with_reasons() {
    let dir = temp_dir("mqtt-ack");
    let broker = Mosquitto::start(&dir, "");
    let prefix = "vigil/v1/test-clinic/bed-ack/";
    let cmd_topic = format!("{prefix}cmd");
    let mut display = Subscriber::connect(broker.port, "display-ack", &format!("{prefix}#")).await;
    let (mut monitor, text) = plug_in(&dir, "ACK", broker.port, "bed-ack", "");
    let daemon = start(&text);
    display.online(SECS(10)).await;
    desaturate(&mut monitor, &mut display, b"spo2 80\n").await;

    // Each bad command gets a reason; none reaches or disturbs the engine.
    let stale = vigil::time::rfc3339(std::time::SystemTime::now() - SECS(600));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bad-1", b"{this is not json".to_vec(), "not a JSON object"),
        (
            "bad-2",
            command(
                "bad-2",
                json!({"command": "acknowledge", "alarm": "spo2.nonsense", "by": "RN"}),
            )
            .to_string()
            .into_bytes(),
            "unknown alarm id `spo2.nonsense`",
        ),
        (
            "bad-3",
            command(
                "bad-3",
                json!({"command": "acknowledge", "alarm": "spo2.critical_low"}),
            )
            .to_string()
            .into_bytes(),
            "missing field `by`",
        ),
        (
            "bad-4",
            json!({"schema_version": 1, "id": "bad-4", "time": stale, "command": "resume_audio"})
                .to_string()
                .into_bytes(),
            "stale",
        ),
        (
            "bad-5",
            command("bad-5", json!({"command": "reboot"}))
                .to_string()
                .into_bytes(),
            "unknown command `reboot`",
        ),
        (
            "bad-6",
            command(
                "bad-6",
                json!({"command": "acknowledge", "alarm": "hr.low", "by": "RN"}),
            )
            .to_string()
            .into_bytes(),
            "alarm `hr.low` is not active",
        ),
    ];
    for (id, body, reason) in &cases {
        display
            .client
            .publish(
                cmd_topic.clone(),
                rumqttc::QoS::AtLeastOnce,
                false,
                body.clone(),
            )
            .await
            .unwrap();
        let r = display
            .next("/cmd/result", SECS(5), |j| {
                j["result"] == "rejected"
                    && (j["id"] == *id || (j["id"].is_null() && *id == "bad-1"))
            })
            .await;
        assert_valid("command-result", &r.json);
        let got = r.json["reason"].as_str().unwrap_or_default();
        assert!(got.contains(reason), "{id}: expected {reason:?} in {got:?}");
    }

    let ack = command(
        "ack-1",
        json!({"command": "acknowledge", "alarm": "spo2.critical_low", "by": "RN T"}),
    );
    display.publish(&cmd_topic, &ack).await;
    let r = display
        .next("/cmd/result", SECS(5), |j| j["id"] == "ack-1")
        .await;
    assert_eq!(r.json["result"], "accepted", "{}", r.json);
    let acked = display
        .next("/alarms", SECS(5), |j| {
            is_alarm(j, "spo2.critical_low", "acknowledge")
        })
        .await;
    assert_valid("alarm", &acked.json);
    assert_eq!(acked.json["alarm"]["state"], "acknowledged");
    assert_eq!(acked.json["alarm"]["ack"]["by"], "RN T");

    // Acknowledge all: the display's one button for the whole bed. The
    // critical alarm is acknowledged already and stays so; the command is
    // accepted because alarms are present.
    let all = command(
        "ack-all-1",
        json!({"command": "acknowledge_all", "by": "RN T"}),
    );
    assert_valid("command", &all);
    display.publish(&cmd_topic, &all).await;
    let r = display
        .next("/cmd/result", SECS(5), |j| j["id"] == "ack-all-1")
        .await;
    assert_valid("command-result", &r.json);
    assert_eq!(r.json["result"], "accepted", "{}", r.json);
    daemon.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_broker_killed_five_times_loses_no_alarm_event() {
    let dir = temp_dir("mqtt-kill-broker");
    let mut broker = Mosquitto::start(&dir, "");
    let gate = Gate::start(broker.port).await;
    let prefix = "vigil/v1/test-clinic/bed-kill/";
    let mut display =
        Subscriber::connect(broker.port, "display-kill", &format!("{prefix}alarms")).await;
    let (mut monitor, text) = plug_in(&dir, "KILL", gate.port, "bed-kill", "");
    let mut daemon = start(&text);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Alarms raised and ended every 40 ms in the background.
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let keep = running.clone();
    let producer = std::thread::spawn(move || {
        let mut low = true;
        while keep.load(std::sync::atomic::Ordering::SeqCst) {
            monitor.send(if low { b"spo2 80\n" } else { b"spo2 97\n" });
            low = !low;
            std::thread::sleep(Duration::from_millis(40));
        }
    });
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        gate.close();
        broker.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        broker.restart();
        // The display is back before the daemon may reconnect.
        let seen = display.subscriptions();
        display.wait_subscribed(seen).await;
        gate.open();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    producer.join().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let raised = daemon.alarms_so_far();
    assert!(
        raised.len() > 50,
        "only {} alarm events raised",
        raised.len()
    );

    assert_alarms_once_in_order(&mut display, "/alarms", &raised, SECS(30)).await;
    daemon.stop().await;
}

/// Issue #14: the limits a display draws are those in force: published
/// (retained) at start and again when SIGHUP applies a new file.
#[tokio::test(flavor = "current_thread")]
async fn the_limits_in_force_are_republished_when_sighup_reloads_them() {
    let dir = temp_dir("mqtt-limits");
    let broker = Mosquitto::start(&dir, "");
    let prefix = "vigil/v1/test-clinic/bed-limits/";
    let mut display =
        Subscriber::connect(broker.port, "display-limits", &format!("{prefix}#")).await;
    let (_monitor, text) = plug_in(&dir, "LIMITS", broker.port, "bed-limits", "");
    let config = write_config(&dir, &text);
    let mut vigil = Vigil::run(&config, &[]);
    let first = display.next("/limits", SECS(10), |_| true).await;
    assert_valid("limits", &first.json);
    assert_eq!(first.json["vitals"]["spo2"]["low"], Value::Null);

    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("low = \"off\"", "low = { limit = 93, priority = \"high\" }");
    std::fs::write(&config, text).unwrap();
    vigil.signal("HUP");
    let reloaded = display
        .next("/limits", SECS(5), |j| {
            !j["vitals"]["spo2"]["low"].is_null()
        })
        .await;
    assert_valid("limits", &reloaded.json);
    assert_eq!(
        reloaded.json["vitals"]["spo2"]["low"],
        json!({"value": 93.0, "priority": "high"})
    );
    assert_eq!(reloaded.json["epoch"], first.json["epoch"]);
    assert!(reloaded.json["seq"].as_u64() >= first.json["seq"].as_u64());

    // A display that joins later gets the reloaded limits from the broker.
    let mut late = Subscriber::connect(
        broker.port,
        "display-limits-late",
        &format!("{prefix}limits"),
    )
    .await;
    let stored = late.next("/limits", SECS(5), |_| true).await;
    assert!(stored.retained);
    assert_eq!(stored.json["vitals"]["spo2"]["low"]["value"], 93.0);
    vigil.signal("TERM");
    vigil.wait_exit(SECS(10));
}

fn log_seq(line: &str) -> u64 {
    let v: Value = serde_json::from_str(line).expect("JSON log line");
    v["seq"]
        .as_u64()
        .or_else(|| v["fields"]["seq"].as_u64())
        .expect("seq in the log line")
}

#[tokio::test(flavor = "current_thread")]
async fn events_journaled_before_a_daemon_crash_arrive_after_the_restart() {
    let dir = temp_dir("mqtt-kill-daemon");
    let mut broker = Mosquitto::start(&dir, "");
    let prefix = "vigil/v1/test-clinic/bed-crash/";
    let mut display =
        Subscriber::connect(broker.port, "display-crash", &format!("{prefix}#")).await;
    let (mut monitor, text) = plug_in(&dir, "CRASH", broker.port, "bed-crash", "");
    let config = write_config(&dir, &text);
    let mut vigil = Vigil::run(&config, &[]);
    vigil.wait_for("MQTT connected", SECS(10));
    display.online(SECS(5)).await;

    broker.kill();
    vigil.wait_for("MQTT connection lost", SECS(5));
    let before = std::time::SystemTime::now();
    monitor.send(b"spo2 80\n");
    let line = vigil.wait_for("spo2.critical_low", SECS(5));
    let seq = log_seq(&line);
    // The MQTT thread journals and syncs on its own: wait for the record.
    let journal = dir.join("state/test-clinic/bed-crash/outbox.journal");
    let deadline = std::time::Instant::now() + SECS(5);
    while !std::fs::read(&journal)
        .unwrap_or_default()
        .windows(17)
        .any(|w| w == b"spo2.critical_low")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "alarm never journaled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    vigil.signal("KILL");
    vigil.wait_exit(SECS(5));
    drop(vigil);

    broker.restart();
    let n = display.subscriptions();
    display.wait_subscribed(n).await;
    let mut vigil = Vigil::run(&config, &[]);
    let alarm = display
        .next("/alarms", SECS(10), |j| {
            is_alarm(j, "spo2.critical_low", "start")
        })
        .await;
    assert_valid("alarm", &alarm.json);
    assert_eq!(alarm.json["seq"], seq, "published with its original seq");
    assert_eq!(alarm.json["stream_seq"], 1);
    let time = vigil::time::parse_rfc3339(alarm.json["time"].as_str().unwrap()).unwrap();
    assert!(
        time.duration_since(before).unwrap_or_default() < SECS(2),
        "the original timestamp, not the replay's"
    );
    // The new run numbers above everything the old one could have used.
    display.drain(Duration::ZERO).await;
    let beat = display.online(SECS(5)).await;
    assert!(
        beat.json["seq"].as_u64().unwrap() >= 1_000_000,
        "{}",
        beat.json
    );
    vigil.signal("TERM");
    vigil.wait_exit(SECS(10));
}

#[tokio::test(flavor = "current_thread")]
async fn the_last_will_marks_the_bed_offline_when_the_daemon_dies() {
    let dir = temp_dir("mqtt-will");
    let broker = Mosquitto::start(&dir, "");
    let prefix = "vigil/v1/test-clinic/bed-will/";
    let mut display =
        Subscriber::connect(broker.port, "display-will", &format!("{prefix}status")).await;
    let (_monitor, text) = plug_in(&dir, "WILL", broker.port, "bed-will", "");
    let config = write_config(&dir, &text);
    let mut vigil = Vigil::run(&config, &[]);
    let first = display.online(SECS(10)).await;
    let next = display.online(SECS(5)).await;
    assert!(
        next.json["beat"].as_u64() > first.json["beat"].as_u64(),
        "heartbeats count up"
    );

    vigil.signal("KILL");
    vigil.wait_exit(SECS(5));
    let will = display
        .next("/status", SECS(5), |j| j["state"] == "offline")
        .await;
    assert_eq!(will.json["reason"], "connection_lost");
    assert_valid("status", &will.json);
    let after = display.drain(Duration::from_millis(1200)).await;
    assert!(
        after.iter().all(|m| m.json["state"] != "online"),
        "the heartbeat stopped: {after:?}"
    );
    // A display joining now sees the bed offline (retained).
    let mut late =
        Subscriber::connect(broker.port, "display-late", &format!("{prefix}status")).await;
    let retained = late.next("/status", SECS(5), |_| true).await;
    assert!(retained.retained);
    assert_eq!(retained.json["state"], "offline");
}

/// Mosquitto with logins and `acl`: the daemon's user `daemon` (password
/// `daemon-secret`, written to `dir/creds` for `credentials_file`) and
/// `display` (`display-secret`); a display subscribed to `vigil/v1/#`.
async fn broker_with_acl(
    dir: &std::path::Path,
    acl: &std::path::Path,
    daemon: &str,
    display_id: &str,
) -> (Mosquitto, Subscriber) {
    let passwd = dir.join("passwd");
    crate::util::mqtt::password_file(
        &passwd,
        &[(daemon, "daemon-secret"), ("display", "display-secret")],
    );
    std::fs::write(dir.join("creds"), format!("{daemon}\ndaemon-secret\n")).unwrap();
    let broker = Mosquitto::start(
        dir,
        &format!(
            "allow_anonymous false\npassword_file {}\nacl_file {}",
            passwd.display(),
            acl.display()
        ),
    );
    let display = Subscriber::connect_as(
        broker.port,
        display_id,
        "vigil/v1/#",
        Some(("display", "display-secret")),
    )
    .await;
    (broker, display)
}

#[tokio::test(flavor = "current_thread")]
async fn the_example_acl_keeps_displays_to_commands_and_strangers_out() {
    let dir = temp_dir("mqtt-acl");
    let acl = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/mosquitto/acl");
    let (broker, mut display) =
        broker_with_acl(&dir, &acl, "vigil-demo-clinic-bed-1", "display-acl").await;

    // Anonymous: refused.
    let mut opts = rumqttc::MqttOptions::new("stranger", "127.0.0.1", broker.port);
    opts.set_keep_alive(SECS(5));
    let (_c, mut eventloop) = rumqttc::AsyncClient::new(opts, 8);
    let refused = tokio::time::timeout(SECS(5), eventloop.poll())
        .await
        .unwrap();
    assert!(
        matches!(refused, Err(rumqttc::ConnectionError::ConnectionRefused(_))),
        "{refused:?}"
    );

    // The daemon, with its own user, publishes under its prefix.
    let prefix = "vigil/v1/demo-clinic/bed-1/";
    let (mut monitor, text) = plug_in(
        &dir,
        "ACL",
        broker.port,
        "bed-1",
        &format!("credentials_file = \"{}\"", dir.join("creds").display()),
    );
    let text = text.replace("site = \"test-clinic\"", "site = \"demo-clinic\"");
    let daemon = start(&text);
    display.online(SECS(10)).await;
    desaturate(&mut monitor, &mut display, b"spo2 80\n").await;

    // A display may not publish alarms, but may send commands.
    let fake = json!({"schema_version": 1, "forged": true});
    display.publish(&format!("{prefix}alarms"), &fake).await;
    let ack = command(
        "acl-1",
        json!({"command": "acknowledge", "alarm": "spo2.critical_low", "by": "RN"}),
    );
    display.publish(&format!("{prefix}cmd"), &ack).await;
    let mut forged = false;
    let deadline = tokio::time::Instant::now() + SECS(5);
    let mut result = None;
    while result.is_none() {
        let m = tokio::time::timeout_at(deadline, display.rx.recv())
            .await
            .expect("the command's result arrives")
            .unwrap();
        forged |= m.json["forged"] == true;
        if m.topic.ends_with("/cmd/result") {
            result = Some(m.json);
        }
    }
    assert!(!forged, "the broker forwarded a display's forged alarm");
    assert_eq!(result.unwrap()["result"], "accepted");
    daemon.stop().await;
}

/// A broker whose ACL does not let vigil write its alarms acknowledges
/// and drops them: over MQTT 3.1.1 nothing tells. Over MQTT 5 the
/// acknowledgement carries the refusal, and vigil raises
/// `system.broker_refused` (high: the displays miss alarms), counts the
/// refusals in the heartbeat and goes on with what follows instead of
/// holding the refused messages for ever.
#[tokio::test(flavor = "current_thread")]
async fn a_broker_that_refuses_vigils_alarms_raises_broker_refused() {
    let dir = temp_dir("mqtt-refused");
    // Status and vitals allowed, alarms forgotten: a typical ACL mistake.
    let acl = dir.join("acl");
    std::fs::write(
        &acl,
        "user display\ntopic read vigil/v1/#\n\n\
         user vigil-test-clinic-bed-r\n\
         topic write vigil/v1/test-clinic/bed-r/status\n\
         topic write vigil/v1/test-clinic/bed-r/vitals\n\
         topic read vigil/v1/test-clinic/bed-r/cmd\n",
    )
    .unwrap();
    let (broker, mut display) =
        broker_with_acl(&dir, &acl, "vigil-test-clinic-bed-r", "display-refused").await;
    let (mut monitor, text) = plug_in(
        &dir,
        "REFUSED",
        broker.port,
        "bed-r",
        &format!("credentials_file = \"{}\"", dir.join("creds").display()),
    );
    let mut daemon = start(&text);
    display.online(SECS(10)).await;
    monitor.send(b"spo2 80\n");
    until_started(&mut daemon, "system.broker_refused", SECS(10)).await;
    let beat = display
        .next("/status", SECS(10), |j| {
            j["outbox"]["refused"].as_u64() >= Some(1)
        })
        .await;
    assert_eq!(
        beat.json["outbox"]["pending"], 0,
        "nothing held: {}",
        beat.json
    );
    // The broker really kept them from the display.
    let got = display.drain(Duration::from_millis(300)).await;
    assert!(
        got.iter().all(|m| !m.topic.ends_with("/alarms")),
        "an alarm reached the display: {got:?}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_embedded_broker_serves_a_display_with_no_other_software() {
    let dir = temp_dir("mqtt-embedded");
    let (mut monitor, port, text) = on_embedded_broker(&dir, "EMB", "bed-emb");
    let daemon = start(&text);
    let prefix = "vigil/v1/test-clinic/bed-emb/";
    let mut display = Subscriber::connect(port, "display-emb", &format!("{prefix}#")).await;
    display.online(SECS(10)).await;
    let alarm = desaturate(&mut monitor, &mut display, b"spo2 80\n").await;
    assert_valid("alarm", &alarm.json);
    daemon.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn an_unreachable_broker_raises_a_technical_alarm_that_is_delivered_later() {
    let dir = temp_dir("mqtt-unreachable");
    let port = crate::util::mqtt::free_port();
    // The daemon reaches the broker through a gate, closed until the
    // display is subscribed.
    let gate = Gate::start(port).await;
    gate.close();
    let (_monitor, text) = plug_in(
        &dir,
        "UNR",
        gate.port,
        "bed-unr",
        "unreachable_after = \"1s\"",
    );
    let mut daemon = start(&text);
    let started = std::time::Instant::now();
    until_started(&mut daemon, "system.broker_unreachable", SECS(6)).await;
    assert!(
        started.elapsed() >= SECS(1),
        "raised only after mqtt.unreachable_after"
    );
    // Exponential backoff, not rumqttc's busy loop (thousands per second).
    let attempts = gate.accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (2..=12).contains(&attempts),
        "{attempts} connection attempts in {:?}",
        started.elapsed()
    );

    // The broker comes up: the alarm ends, and a display gets both events.
    let _broker = Mosquitto::start_on(&dir, port, "");
    let prefix = "vigil/v1/test-clinic/bed-unr/";
    let mut display = Subscriber::connect(port, "display-unr", &format!("{prefix}#")).await;
    gate.open();
    let start = display
        .next("/alarms", SECS(15), |j| {
            is_alarm(j, "system.broker_unreachable", "start")
        })
        .await;
    assert_valid("alarm", &start.json);
    assert_eq!(start.json["alarm"]["kind"], "technical");
    display
        .next("/alarms", SECS(10), |j| {
            is_alarm(j, "system.broker_unreachable", "end")
        })
        .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn alarms_travel_over_tls_with_a_client_certificate() {
    let dir = temp_dir("mqtt-tls");
    crate::util::mqtt::test_pki(&dir);
    let tls_port = crate::util::mqtt::free_port();
    let p = |f: &str| dir.join(f).display().to_string();
    // The display uses a plain loopback listener; the daemon must use TLS
    // with a client certificate.
    let broker = Mosquitto::start(
        &dir,
        &format!(
            "allow_anonymous true\nlistener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true",
            p("ca.pem"),
            p("server.pem"),
            p("server.key")
        ),
    );
    let prefix = "vigil/v1/test-clinic/bed-tls/";
    let mut display = Subscriber::connect(broker.port, "display-tls", &format!("{prefix}#")).await;
    let (mut monitor, text) = plug_in(
        &dir,
        "TLS",
        tls_port,
        "bed-tls",
        &format!(
            "ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
            p("ca.pem"),
            p("client.pem"),
            p("client.key")
        ),
    );
    let text = text.replace("mqtt://127.0.0.1", "mqtts://127.0.0.1");
    let daemon = start(&text);
    display.online(SECS(10)).await;
    desaturate(&mut monitor, &mut display, b"spo2 80\n").await;
    daemon.stop().await;
}

/// MQTT 5 message expiry: a display that connects while the vitals are
/// fresh gets them (with the expiry left); one that connects after
/// `mqtt.vitals_expiry` without a new reading gets none (the broker dropped
/// the retained copy, for 3.1.1 displays too), until the next reading.
#[tokio::test(flavor = "current_thread")]
async fn retained_vitals_expire_so_a_late_display_paints_no_stale_numbers() {
    let dir = temp_dir("mqtt-expiry");
    let broker = Mosquitto::start(&dir, "");
    let prefix = "vigil/v1/test-clinic/bed-exp/";
    let vitals = format!("{prefix}vitals");
    let mut status = Subscriber::connect(
        broker.port,
        "display-exp-status",
        &format!("{prefix}status"),
    )
    .await;
    let (mut monitor, text) = plug_in(
        &dir,
        "EXP",
        broker.port,
        "bed-exp",
        "vitals_expiry = \"2s\"",
    );
    let daemon = start(&text);
    status.online(SECS(10)).await;
    monitor.send(b"spo2 97\n");
    // Wait until the broker holds the retained vitals.
    let mut live = Client5::connect(broker.port, "display-exp-live", &vitals).await;
    live.next("/vitals", SECS(5), |m| !m.json["vitals"].is_null())
        .await;

    let mut early = Client5::connect(broker.port, "display-exp-early", &vitals).await;
    let fresh = early.next("/vitals", SECS(2), |_| true).await;
    assert!(fresh.retained, "{fresh:?}");
    assert!(
        fresh.expiry.is_some_and(|s| (1..=2).contains(&s)),
        "a fresh retained vitals message carries its expiry: {fresh:?}"
    );

    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let mut late = Subscriber::connect(broker.port, "display-exp-late", &vitals).await;
    let stale = late.drain(SECS(1)).await;
    assert!(
        stale.is_empty(),
        "a vitals message older than mqtt.vitals_expiry was delivered: {stale:?}"
    );
    monitor.send(b"spo2 96\n");
    let again = late.next("/vitals", SECS(5), |_| true).await;
    assert!(!again.retained, "{again:?}");
    daemon.stop().await;
}

/// MQTT 5 request/response: a command with a response topic below the
/// bed's `cmd/result` is answered there with its correlation data (and not
/// on `cmd/result`); one naming any other topic is not carried out and is
/// refused on `cmd/result`, with its correlation data and the reason.
#[tokio::test(flavor = "current_thread")]
async fn commands_are_answered_on_their_response_topic_and_bad_ones_refused() {
    let dir = temp_dir("mqtt-reply");
    let broker = Mosquitto::start(&dir, "");
    let prefix = "vigil/v1/test-clinic/bed-rt/";
    let cmd = format!("{prefix}cmd");
    let mut display = Client5::connect(broker.port, "display-rt", "vigil/v1/#").await;
    let (_monitor, text) = plug_in(&dir, "RT", broker.port, "bed-rt", "");
    let daemon = start(&text);
    display.online(SECS(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mine = format!("{prefix}cmd/result/display-rt");
    let body = command("rt-1", json!({"command": "resume_audio"}));
    display.request(&cmd, &body, &mine, b"corr-1").await;
    let r = display
        .next("/cmd/result/display-rt", SECS(5), |m| {
            m.json["id"] == "rt-1"
        })
        .await;
    assert_eq!(r.correlation.as_deref(), Some(&b"corr-1"[..]), "{r:?}");
    assert_eq!(r.topic, mine);
    assert_valid("command-result", &r.json);

    for (n, bad) in [
        "vigil/v1/test-clinic/other-bed/cmd/result".to_owned(),
        format!("{prefix}status"),
        format!("{prefix}cmd/resultx"),
    ]
    .iter()
    .enumerate()
    {
        let id = format!("rt-bad-{n}");
        let body = command(&id, json!({"command": "resume_audio"}));
        let corr = format!("corr-bad-{n}").into_bytes();
        display.request(&cmd, &body, bad, &corr).await;
        let r = display
            .next("/cmd/result", SECS(5), |m| m.json["id"] == id.as_str())
            .await;
        assert_eq!(r.topic, format!("{prefix}cmd/result"), "{r:?}");
        assert_eq!(r.json["result"], "rejected", "{r:?}");
        let reason = r.json["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("response topic"), "{reason}");
        assert_eq!(r.correlation.as_deref(), Some(&corr[..]), "{r:?}");
    }
    // Nothing went anywhere else: every result came on cmd/result or the
    // display's own response topic.
    let rest = display.drain(Duration::from_millis(500)).await;
    assert!(
        rest.iter()
            .all(|m| !m.json["id"].as_str().is_some_and(|i| i.starts_with("rt-"))),
        "{rest:?}"
    );
    daemon.stop().await;
}

async fn display_link(
    port: u16,
    id: &str,
    bed: &vigil::display::feed::BedKey,
) -> std::sync::Arc<vigil::display::link::Shared> {
    use vigil::display::{feed, link, state};
    use vigil::mqtt::link::{parse_broker_url, LinkConfig, FLAG_KEYS};
    let settings = link::LinkSettings {
        link: LinkConfig::new(
            parse_broker_url(&format!("mqtt://127.0.0.1:{port}")).unwrap(),
            FLAG_KEYS,
        ),
        client_id: id.into(),
        persistent: false,
        topics: feed::Topics::new(feed::DEFAULT_PREFIX).unwrap(),
        beds: vec![bed.clone()],
        protocol: None,
    };
    let board = state::Board::new(state::Settings::default(), std::slice::from_ref(bed));
    let (shared, _task) = link::spawn(settings, board).unwrap();
    let deadline = tokio::time::Instant::now() + SECS(10);
    while !shared.board().view(std::time::SystemTime::now()).beds[0].live {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the display never saw the bed live over MQTT {}: {:?}",
            shared.protocol(),
            shared.board().view(std::time::SystemTime::now()).banner
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shared
}

async fn wait_result(shared: &vigil::display::link::Shared, id: &str) -> &'static str {
    let deadline = tokio::time::Instant::now() + SECS(10);
    loop {
        let view = shared.board().view(std::time::SystemTime::now());
        if let Some(r) = view.beds[0]
            .result
            .as_ref()
            .filter(|r| r.id == id && r.outcome != "pending")
        {
            return r.outcome;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no result for {id}: {view:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The displays' link speaks MQTT 5 to Mosquitto: a command names the
/// display's response topic and carries its request id as correlation
/// data, and a result is matched by its correlation data (here one whose
/// payload names another id). On the embedded broker (MQTT 3.1.1 only) the
/// link falls back to 3.1.1 and commands still round trip on `cmd/result`.
#[tokio::test(flavor = "current_thread")]
async fn the_display_link_speaks_mqtt_5_and_falls_back_to_3_1_1() {
    use vigil::display::feed::{BedCommand, BedKey};
    use vigil::mqtt::wire::Protocol;
    let dir = temp_dir("mqtt-display-v5");
    let broker = Mosquitto::start(&dir, "");
    let prefix = "vigil/v1/test-clinic/bed-dv5/";
    let bed = BedKey::new("test-clinic", "bed-dv5");
    let mut watcher =
        Client5::connect(broker.port, "display-dv5-watch", &format!("{prefix}cmd")).await;
    let (_monitor, text) = plug_in(&dir, "DV5", broker.port, "bed-dv5", "");
    let daemon = start(&text);
    let shared = display_link(broker.port, "station-dv5", &bed).await;
    assert_eq!(shared.protocol(), Protocol::V5);
    let id = shared.command(&bed, BedCommand::ResumeAudio, "RN").unwrap();
    let sent = watcher.next("/cmd", SECS(5), |_| true).await;
    assert_eq!(
        sent.response_topic.as_deref(),
        Some(format!("{prefix}cmd/result/station-dv5").as_str()),
        "{sent:?}"
    );
    assert_eq!(sent.correlation.as_deref(), Some(id.as_bytes()), "{sent:?}");
    wait_result(&shared, &id).await;

    // Matched by the correlation data, not the payload's id.
    let id2 = shared.command(&bed, BedCommand::ResumeAudio, "RN").unwrap();
    daemon.stop().await;
    let forged = json!({"schema_version": 1, "seq": 1, "time": now_rfc3339(), "id": "someone-else",
        "command": "resume_audio", "result": "rejected", "reason": "matched by correlation"});
    watcher
        .request(
            &format!("{prefix}cmd/result/station-dv5"),
            &forged,
            "unused",
            id2.as_bytes(),
        )
        .await;
    assert_eq!(wait_result(&shared, &id2).await, "rejected");

    // The embedded broker speaks 3.1.1 only.
    let (_monitor, port, text) = on_embedded_broker(&dir, "DV4", "bed-dv5");
    let daemon = start(&text);
    let shared = display_link(port, "station-dv4", &bed).await;
    assert_eq!(shared.protocol(), Protocol::V311);
    let id = shared.command(&bed, BedCommand::ResumeAudio, "RN").unwrap();
    wait_result(&shared, &id).await;
    daemon.stop().await;
}
