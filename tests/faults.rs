//! Fault injection (#12): the faults an operator or an attacker can cause
//! on purpose, each against real parts (Mosquitto, pty sources, real
//! directories and files), asserting the technical alarm, that nothing is
//! lost, and that nothing flaps.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::{json, Value};
use vigil::config;

use crate::util::daemon::{temp_dir, Monitor};
use crate::util::mqtt::{
    assert_alarms_once_in_order, daemon_config, now_rfc3339, start_with_mqtt, Mosquitto, Subscriber,
};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn command(id: &str, body: Value) -> Value {
    let mut c = json!({"schema_version": 1, "id": id, "time": now_rfc3339()});
    if let (Some(c), Value::Object(b)) = (c.as_object_mut(), body) {
        c.extend(b);
    }
    c
}

/// A client that may send and receive packets of any size (an attacker
/// with a display account, or a probe that looks at what is retained).
async fn big_client(port: u16, id: &str) -> (AsyncClient, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(SECS(5))
        .set_max_packet_size(8 << 20, 8 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let (up_tx, up_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut up = Some(up_tx);
        let mut got = Vec::new();
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    if let Some(tx) = up.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => got.push(p.payload.to_vec()),
                Ok(Event::Incoming(Incoming::Disconnect)) | Err(_) => return got,
                Ok(_) => {}
            }
        }
    });
    tokio::time::timeout(SECS(5), up_rx)
        .await
        .expect("connected within 5 s")
        .unwrap();
    (client, task)
}

fn last_status(status: &mut Subscriber) -> Value {
    let mut last = Value::Null;
    while let Ok(m) = status.rx.try_recv() {
        if m.json["state"] == "online" {
            last = m.json;
        }
    }
    last
}

/// One message over vigil's packet limit used to cut vigil off for ever
/// (a reconnect every 100 ms, commands never read, every undelivered alarm
/// re-sent each time). Now, over MQTT 3.1.1: a command over 4 KiB is
/// answered and counted, a 2 MiB retained one breaks the link once, is
/// dropped and deleted, and commands work again.
#[tokio::test(flavor = "current_thread")]
async fn an_oversized_command_is_answered_and_cannot_cut_vigil_off() {
    oversized_commands("3.1.1").await;
}

/// Over MQTT 5 vigil tells the broker its packet limit (Maximum Packet
/// Size): the broker never sends it the 2 MiB message, so the link does
/// not break at all.
#[tokio::test(flavor = "current_thread")]
async fn over_mqtt_5_the_broker_keeps_an_oversized_command_away_from_vigil() {
    oversized_commands("5").await;
}

async fn oversized_commands(protocol: &str) {
    let dir = temp_dir(&format!("fault-big-cmd-{protocol}"));
    // The broker has no packet limit: the worst case, not the shipped one.
    let broker = Mosquitto::start(&dir, "");
    let prefix = "vigil/v1/test-clinic/bed-big/";
    let cmd = format!("{prefix}cmd");
    let mut results =
        Subscriber::connect(broker.port, "display-results", &format!("{prefix}+/result")).await;
    let mut status =
        Subscriber::connect(broker.port, "display-status", &format!("{prefix}status")).await;
    let tty = dir.join("ttyBIG");
    let _monitor = Monitor::plug_in(&tty);
    let text = daemon_config(
        &tty,
        broker.port,
        &dir.join("state"),
        "bed-big",
        &format!("protocol = \"{protocol}\""),
    );
    let daemon = start_with_mqtt(config::parse(&text, "test").unwrap());
    status.online(SECS(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (attacker, _) = big_client(broker.port, "display-attacker").await;

    // Over the command limit, under the link limit: answered, link intact.
    let padded = command(
        "big-1",
        json!({"command": "acknowledge", "alarm": "spo2.low", "by": "x".repeat(10_000)}),
    );
    attacker
        .publish(cmd.clone(), QoS::AtLeastOnce, false, padded.to_string())
        .await
        .unwrap();
    let r = results
        .next("/cmd/result", SECS(5), |j| j["result"] == "rejected")
        .await;
    let reason = r.json["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("exceeds the 4096-byte limit"), "{reason}");

    // Over the link limit, retained: survives in the broker for every
    // reconnect and subscribe unless vigil deletes it.
    attacker
        .publish(cmd.clone(), QoS::AtLeastOnce, true, vec![b'{'; 2 << 20])
        .await
        .unwrap();
    tokio::time::sleep(SECS(6)).await;

    // Commands are read again.
    let probe = command("after-1", json!({"command": "resume_audio"}));
    attacker
        .publish(cmd.clone(), QoS::AtLeastOnce, false, probe.to_string())
        .await
        .unwrap();
    results
        .next("/cmd/result", SECS(10), |j| j["id"] == "after-1")
        .await;
    // No loop: the link broke once (or twice, if the retained copy and the
    // queued one came on different connects), not for ever.
    tokio::time::sleep(SECS(1)).await;
    let beat = last_status(&mut status);
    let reconnects = beat["outbox"]["reconnects"].as_u64().expect("a heartbeat");
    if protocol == "5" {
        assert_eq!(reconnects, 0, "the link broke: {beat}");
        assert_eq!(beat["commands"]["oversized"].as_u64(), Some(1), "{beat}");
        daemon.stop().await;
        return;
    }
    assert!(reconnects <= 2, "reconnect loop: {beat}");
    assert!(beat["commands"]["oversized"].as_u64() >= Some(2), "{beat}");
    // And the retained message is gone from the broker.
    let (_probe, received) = big_client(broker.port, "display-probe").await;
    _probe
        .subscribe(cmd.clone(), QoS::AtLeastOnce)
        .await
        .unwrap();
    tokio::time::sleep(SECS(1)).await;
    _probe.disconnect().await.unwrap();
    let got = tokio::time::timeout(SECS(5), received)
        .await
        .unwrap()
        .unwrap();
    assert!(
        got.iter().all(|m| m.len() < 4096),
        "a huge command is still retained"
    );
    daemon.stop().await;
}

/// Another client with vigil's client id (a second daemon configured for
/// the same bed) kicks vigil off the broker again and again: the link is
/// "up" every few seconds and useless. That is a technical alarm.
#[tokio::test(flavor = "current_thread")]
async fn a_reconnect_loop_raises_broker_link_unstable() {
    let dir = temp_dir("fault-loop");
    let broker = Mosquitto::start(&dir, "");
    let prefix = "vigil/v1/test-clinic/bed-loop/";
    let mut display = Subscriber::connect(broker.port, "display-loop", &format!("{prefix}#")).await;
    let tty = dir.join("ttyLOOP");
    let _monitor = Monitor::plug_in(&tty);
    let text = daemon_config(&tty, broker.port, &dir.join("state"), "bed-loop", "");
    let daemon = start_with_mqtt(config::parse(&text, "test").unwrap());
    display.online(SECS(10)).await;

    let port = broker.port;
    let rogue = tokio::spawn(async move {
        loop {
            let mut opts = MqttOptions::new("vigil-test-clinic-bed-loop", "127.0.0.1", port);
            opts.set_keep_alive(SECS(5));
            let (_c, mut el) = AsyncClient::new(opts, 4);
            let _ = tokio::time::timeout(Duration::from_millis(300), async {
                loop {
                    if el.poll().await.is_err() {
                        break;
                    }
                }
            })
            .await;
            drop(el);
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    });
    let raised = display
        .next("/alarms", SECS(40), |j| {
            j["alarm"]["id"] == "system.broker_link_unstable" && j["alarm"]["phase"] == "start"
        })
        .await;
    assert_eq!(raised.json["alarm"]["priority"], "high", "{}", raised.json);
    rogue.abort();
    daemon.stop().await;
}

/// The shipped Mosquitto configuration keeps huge packets away from vigil
/// and the boards: its `max_packet_size` is within vigil's limit, and a
/// broker running with it never forwards a 2 MiB message.
#[tokio::test(flavor = "current_thread")]
async fn the_shipped_broker_limit_stops_a_huge_message_at_the_broker() {
    let conf = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/mosquitto/mosquitto.conf"),
    )
    .unwrap();
    let line = conf
        .lines()
        .find(|l| l.starts_with("max_packet_size "))
        .expect("the shipped mosquitto.conf sets max_packet_size");
    let limit: usize = line["max_packet_size ".len()..].trim().parse().unwrap();
    assert!(limit <= vigil::mqtt::LINK_MAX_PACKET, "{line}");
    assert!(limit > vigil::mqtt::COMMAND_MAX_BYTES * 4, "{line}");

    let dir = temp_dir("fault-broker-limit");
    let broker = Mosquitto::start(&dir, &format!("allow_anonymous true\n{line}"));
    let (listener, received) = big_client(broker.port, "display-listen").await;
    listener
        .subscribe("vigil/v1/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (attacker, attacker_task) = big_client(broker.port, "display-attacker").await;
    let topic = "vigil/v1/test-clinic/bed-1/cmd";
    attacker
        .publish(topic, QoS::AtLeastOnce, true, vec![b'{'; 2 << 20])
        .await
        .unwrap();
    let _ = tokio::time::timeout(SECS(5), attacker_task).await;
    listener
        .publish(topic, QoS::AtLeastOnce, false, b"small".to_vec())
        .await
        .unwrap();
    tokio::time::sleep(SECS(1)).await;
    listener.disconnect().await.unwrap();
    let got = tokio::time::timeout(SECS(5), received)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got,
        vec![b"small".to_vec()],
        "only the small message passes"
    );
}

/// The `/view` JSON of a running board.
fn board_view(board: &crate::util::board::Board) -> Value {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", board.port)) else {
        return Value::Null;
    };
    let _ = s.set_read_timeout(Some(SECS(3)));
    let _ = write!(
        s,
        "GET /view HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        board.port
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(Value::Null)
}

fn shows(view: &Value, vital_text: &str, alarms: usize) -> bool {
    let bed = &view["beds"][0];
    bed["vitals"]
        .as_array()
        .is_some_and(|v| v.iter().any(|x| x["text"] == vital_text))
        && bed["alarms"].as_array().is_some_and(|a| a.len() == alarms)
}

async fn wait_view(board: &crate::util::board::Board, what: &str, pred: impl Fn(&Value) -> bool) {
    let deadline = tokio::time::Instant::now() + SECS(15);
    loop {
        let v = board_view(board);
        if pred(&v) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: board shows {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A new (or wiped, or restored) state directory used to start `seq` at 0
/// again: every running board dropped the new stream as old duplicates and
/// kept showing the last values and alarms, with a fresh heartbeat. Now the
/// new directory has a new epoch, and the board follows it.
#[tokio::test(flavor = "current_thread")]
async fn a_new_state_directory_does_not_freeze_a_running_board() {
    let dir = temp_dir("fault-epoch");
    let broker = Mosquitto::start(&dir, "");
    let state = dir.join("state");
    let bed_dir = state.join("test-clinic").join("bed-ep");
    // A long-running stream: its numbers are far above a fresh start's.
    std::fs::create_dir_all(&bed_dir).unwrap();
    std::fs::write(bed_dir.join("seq"), "3000000\n").unwrap();
    let board = crate::util::board::Board::start(
        &format!("mqtt://127.0.0.1:{}", broker.port),
        "test-clinic/bed-ep",
        &[],
    );
    let tty = dir.join("ttyEP");
    let mut monitor = Monitor::plug_in(&tty);
    let text = daemon_config(&tty, broker.port, &state, "bed-ep", "");
    let daemon = start_with_mqtt(config::parse(&text, "test").unwrap());
    tokio::time::sleep(SECS(1)).await;
    for _ in 0..20 {
        monitor.send(b"spo2 80\n");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_view(&board, "SpO2 80 with its alarm", |v| shows(v, "80", 1)).await;
    daemon.stop().await;

    // The state directory is replaced by an empty one.
    std::fs::remove_dir_all(&state).unwrap();
    let daemon = start_with_mqtt(config::parse(&text, "test").unwrap());
    tokio::time::sleep(SECS(1)).await;
    for _ in 0..20 {
        monitor.send(b"spo2 97\n");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_view(&board, "SpO2 97 and no alarm", |v| shows(v, "97", 0)).await;
    let epoch = std::fs::read_to_string(bed_dir.join("epoch")).unwrap();
    assert_eq!(epoch.trim().len(), 16, "{epoch:?}");
    daemon.stop().await;
}

/// Starts the daemon on `config`, waits until `status` sees it online,
/// then kills the broker: what the daemon raises from now on stays in its
/// journal.
async fn online_then_broker_killed(
    broker: &mut Mosquitto,
    config: &str,
    mut status: Subscriber,
) -> crate::util::mqtt::MqttDaemon {
    let daemon = start_with_mqtt(config::parse(config, "test").unwrap());
    status.online(SECS(10)).await;
    drop(status);
    broker.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    daemon
}

/// The alarm-stream messages still undelivered in a journal file: (byte
/// range of the record, outbox id, stream_seq), in file order. Read straight from the
/// documented format (docs/mqtt.md), not through vigil's reader.
fn undelivered_alarm_records(data: &[u8]) -> Vec<(std::ops::Range<usize>, u64, u64)> {
    assert_eq!(&data[..8], b"VGLOUT01");
    let mut messages = Vec::new();
    let mut gone = std::collections::HashSet::new();
    let mut at = 8;
    while at + 8 <= data.len() {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let body = &data[at + 8..at + 8 + len];
        let id = u64::from_le_bytes(body[1..9].try_into().unwrap());
        match body[0] {
            // Message: tag id class stream stream_seq ...; stream 0 = alarms.
            1 if body[10] == 0 => {
                let stream_seq = u64::from_le_bytes(body[11..19].try_into().unwrap());
                messages.push((at..at + 8 + len, id, stream_seq));
            }
            2 | 3 => {
                gone.insert(id);
            }
            _ => {}
        }
        at += 8 + len;
    }
    messages
        .into_iter()
        .filter(|(_, id, _)| !gone.contains(id))
        .collect()
}

/// One flipped byte in the middle of the outbox journal used to be taken
/// for a torn tail: everything after it was cut (undelivered high-priority
/// alarms among it) and the next run published new messages under the lost
/// ones' `stream_seq`, so displays saw no gap. Now the damage raises
/// `system.journal_corrupt` (latched), every message after it is delivered,
/// and the new run numbers above everything the old one wrote.
#[tokio::test(flavor = "current_thread")]
async fn a_flipped_byte_in_the_journal_raises_journal_corrupt_and_loses_only_that_record() {
    let dir = temp_dir("fault-journal-flip");
    let mut broker = Mosquitto::start(&dir, "");
    let prefix = "vigil/v1/test-clinic/bed-rot/";
    let status = Subscriber::connect(
        broker.port,
        "display-rot-status",
        &format!("{prefix}status"),
    )
    .await;
    let tty = dir.join("ttyROT");
    let mut monitor = Monitor::plug_in(&tty);
    let state = dir.join("state");
    let text = daemon_config(&tty, broker.port, &state, "bed-rot", "");
    // The broker goes away; alarms pile up in the journal.
    let daemon = online_then_broker_killed(&mut broker, &text, status).await;
    for i in 0..40 {
        monitor.send(if i % 2 == 0 {
            b"spo2 80\n"
        } else {
            b"spo2 97\n"
        });
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.stop().await;

    let journal = state.join("test-clinic/bed-rot/outbox.journal");
    let mut data = std::fs::read(&journal).unwrap();
    let held = undelivered_alarm_records(&data);
    assert!(
        held.len() >= 30,
        "only {} alarm messages journaled",
        held.len()
    );
    let highest = held.iter().map(|(_, _, s)| *s).max().unwrap();
    // One byte in the payload of a record in the middle.
    let (range, _, victim) = held[held.len() / 2].clone();
    data[range.end - 10] ^= 0x20;
    std::fs::write(&journal, &data).unwrap();

    broker.restart();
    let mut display =
        Subscriber::connect(broker.port, "display-rot", &format!("{prefix}alarms")).await;
    let mut daemon = start_with_mqtt(config::parse(&text, "test").unwrap());
    let mut by_stream_seq: std::collections::HashMap<u64, u64> = Default::default();
    let mut corrupt_raised = None;
    let expected: std::collections::BTreeSet<u64> = held
        .iter()
        .map(|(_, _, s)| *s)
        .filter(|s| *s != victim)
        .collect();
    let deadline = tokio::time::Instant::now() + SECS(20);
    let mut missing = expected.clone();
    while (!missing.is_empty() || corrupt_raised.is_none())
        && tokio::time::Instant::now() < deadline
    {
        let Ok(Some(m)) = tokio::time::timeout_at(deadline, display.rx.recv()).await else {
            break;
        };
        let (stream_seq, seq) = (m.json["stream_seq"].as_u64(), m.json["seq"].as_u64());
        if let (Some(stream_seq), Some(seq)) = (stream_seq, seq) {
            let first = *by_stream_seq.entry(stream_seq).or_insert(seq);
            assert_eq!(first, seq, "stream_seq {stream_seq} used twice: {}", m.json);
            missing.remove(&stream_seq);
        }
        if m.json["alarm"]["id"] == "system.journal_corrupt" && m.json["alarm"]["phase"] == "start"
        {
            corrupt_raised = Some(m.json.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "undelivered messages after the damaged one were lost: {missing:?}"
    );
    assert!(
        !by_stream_seq.contains_key(&victim),
        "the damaged record cannot have been delivered"
    );
    let raised = corrupt_raised.expect("system.journal_corrupt raised");
    assert_eq!(raised["alarm"]["priority"], "high", "{raised}");
    // Every new message is numbered above everything the first run wrote.
    let new: Vec<u64> = by_stream_seq
        .keys()
        .copied()
        .filter(|s| !expected.contains(s))
        .collect();
    assert!(
        !new.is_empty() && new.iter().all(|s| *s > highest),
        "new stream numbers {new:?} must be above {highest}"
    );
    // Latched: still present after the daemon let go of the condition.
    let events = daemon.alarms_so_far();
    assert!(
        events
            .iter()
            .any(|(_, id, phase)| id == "system.journal_corrupt" && *phase == "update"),
        "{events:?}"
    );
    daemon.stop().await;
}

/// A small tmpfs mounted for one test: a disk that fills up, or goes
/// read-only, for real. Mounting needs root, as scripts/test runs in CI; the
/// test FAILS (not skips) without it.
struct TmpFs {
    path: std::path::PathBuf,
}

impl TmpFs {
    fn mount(path: &std::path::Path, options: &str) -> TmpFs {
        std::fs::create_dir_all(path).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs at {} (the storage fault tests need root): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        TmpFs {
            path: path.to_owned(),
        }
    }

    fn remount(&self, options: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount {options}");
    }

    /// Writes a file until the file system is full; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        while f.write_all(&[0xAA; 4096]).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for TmpFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// (starts, ends) of the alarm `id` among a daemon's alarm events.
fn starts_and_ends(events: &[(u64, String, &'static str)], id: &str) -> (usize, usize) {
    let count = |phase: &str| {
        events
            .iter()
            .filter(|(_, i, p)| i == id && *p == phase)
            .count()
    };
    (count("start"), count("end"))
}

/// Alarms raised and ended every 40 ms on a background thread until the
/// returned flag is cleared.
fn produce_alarms(
    mut monitor: Monitor,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<Monitor>,
) {
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let keep = running.clone();
    let thread = std::thread::spawn(move || {
        let mut low = true;
        while keep.load(std::sync::atomic::Ordering::SeqCst) {
            monitor.send(if low { b"spo2 80\n" } else { b"spo2 97\n" });
            low = !low;
            std::thread::sleep(Duration::from_millis(40));
        }
        monitor
    });
    (running, thread)
}

/// On a full disk `storage_failure` used to start and end about once a
/// second (a write fits in the last page, the next does not), and the
/// journal, once lost, was never reopened. Now `system.journal_failure`
/// starts once, alarms keep flowing from memory (none lost), and when
/// space is back the journal is reopened and the condition ends once,
/// after the recovery hold.
#[tokio::test(flavor = "current_thread")]
async fn a_full_state_disk_raises_journal_failure_once_and_the_journal_comes_back() {
    let dir = temp_dir("fault-full-journal");
    let disk = TmpFs::mount(&dir.join("state"), "size=512k");
    let broker = Mosquitto::start(&dir, "");
    let prefix = "vigil/v1/test-clinic/bed-full/";
    let mut display = Subscriber::connect(broker.port, "display-full", &format!("{prefix}#")).await;
    let mut alarms = Subscriber::connect(
        broker.port,
        "display-full-alarms",
        &format!("{prefix}alarms"),
    )
    .await;
    let tty = dir.join("ttyFULL");
    let monitor = Monitor::plug_in(&tty);
    let text = daemon_config(&tty, broker.port, &disk.path, "bed-full", "");
    let mut daemon = start_with_mqtt(config::parse(&text, "test").unwrap());
    display.online(SECS(10)).await;
    let (running, producer) = produce_alarms(monitor);
    tokio::time::sleep(SECS(1)).await;

    let filler = disk.fill();
    display
        .next("/alarms", SECS(10), |j| {
            j["alarm"]["id"] == "system.journal_failure" && j["alarm"]["phase"] == "start"
        })
        .await;
    display
        .next("/status", SECS(5), |j| j["outbox"]["durable"] == false)
        .await;
    // A restart now must not continue the epoch over messages held in
    // memory only.
    let epoch_file = disk.path.join("test-clinic/bed-full/epoch");
    assert!(!epoch_file.exists(), "the epoch survives a lost journal");
    // Full for a while, alarms flowing: no flapping.
    tokio::time::sleep(SECS(8)).await;
    let during = daemon.alarms_so_far();
    assert_eq!(
        starts_and_ends(&during, "system.journal_failure"),
        (1, 0),
        "flapping on a full disk"
    );

    // Space is back: reopened within the retry period, and the condition
    // ends once after the hold (30 s).
    std::fs::remove_file(&filler).unwrap();
    display.drain(Duration::ZERO).await;
    let beat = display
        .next("/status", SECS(10), |j| j["outbox"]["durable"] == true)
        .await;
    let epoch = std::fs::read_to_string(&epoch_file).expect("the epoch written back");
    assert_eq!(epoch.trim(), beat.json["epoch"], "{}", beat.json);
    let ended = display
        .next("/alarms", SECS(45), |j| {
            j["alarm"]["id"] == "system.journal_failure" && j["alarm"]["phase"] == "end"
        })
        .await;
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    let _monitor = producer.join().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut raised = during;
    raised.extend(daemon.alarms_so_far());
    assert_eq!(
        starts_and_ends(&raised, "system.journal_failure"),
        (1, 1),
        "one start, one end: {ended:?}"
    );
    assert!(raised.len() > 100, "only {} alarm events", raised.len());
    // Every alarm event reached the display, the ones held in memory too.
    assert_alarms_once_in_order(&mut alarms, "/alarms", &raised, SECS(10)).await;
    daemon.stop().await;
}

/// A daemon configuration for the recording tests (MQTT is not started).
fn recording_config(tty: &std::path::Path) -> vigil::config::Config {
    let unused = tty.with_extension("state");
    config::parse(&daemon_config(tty, 1, &unused, "bed-rec", ""), "test").unwrap()
}

fn recording_to(dir: &std::path::Path) -> vigil::record::file::RecorderSettings {
    vigil::record::file::RecorderSettings {
        dir: dir.to_owned(),
        stem: "test".into(),
        sync_every: Duration::from_millis(100),
        retention: SECS(86_400),
        queue: 8192,
        wake_when_half_full: true,
    }
}

/// The recorder on a disk that fills up: `system.storage_failure` used to
/// flap (every write into the last page "worked again"). Now it starts
/// once, and ends once, after space is back and syncs worked for the hold.
#[tokio::test(flavor = "current_thread")]
async fn a_full_recording_disk_raises_storage_failure_once() {
    let dir = temp_dir("fault-full-recording");
    let disk = TmpFs::mount(&dir.join("recordings"), "size=256k");
    let tty = dir.join("ttyREC");
    let monitor = Monitor::plug_in(&tty);
    let mut daemon = crate::util::daemon::start_recording(
        recording_config(&tty),
        Some(recording_to(&disk.path)),
    );
    let (running, producer) = produce_alarms(monitor);
    tokio::time::sleep(SECS(1)).await;
    let filler = disk.fill();
    daemon
        .alarm(
            "system.storage_failure",
            vigil::engine::Phase::Start,
            SECS(10),
        )
        .await;
    let mut seen = vec![(
        "system.storage_failure".to_owned(),
        vigil::engine::Phase::Start,
    )];
    seen.extend(daemon.alarms_during(SECS(8)).await);
    std::fs::remove_file(&filler).unwrap();
    let deadline = tokio::time::Instant::now() + SECS(45);
    while !seen
        .iter()
        .any(|(id, p)| id == "system.storage_failure" && *p == vigil::engine::Phase::End)
        && tokio::time::Instant::now() < deadline
    {
        seen.extend(daemon.alarms_during(SECS(1)).await);
    }
    seen.extend(daemon.alarms_during(SECS(1)).await);
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    let _monitor = producer.join().unwrap();
    let count = |phase| {
        seen.iter()
            .filter(|(id, p)| id == "system.storage_failure" && *p == phase)
            .count()
    };
    assert_eq!(
        (
            count(vigil::engine::Phase::Start),
            count(vigil::engine::Phase::End)
        ),
        (1, 1),
        "one start, one end"
    );
    assert!(
        seen.iter()
            .filter(|(id, _)| id == "spo2.critical_low")
            .count()
            > 50,
        "monitoring went on"
    );
    daemon.stop().await;
}

/// A read-only recording directory at start-up used to be a log line only.
/// Now it raises `system.storage_failure`, monitoring goes on, the recording
/// is tried again, and the condition ends once it has worked for the hold.
#[tokio::test(flavor = "current_thread")]
async fn a_read_only_recording_directory_at_start_up_raises_storage_failure() {
    let dir = temp_dir("fault-ro-recording");
    let disk = TmpFs::mount(&dir.join("recordings"), "size=256k,ro");
    let tty = dir.join("ttyRO");
    let mut monitor = Monitor::plug_in(&tty);
    let mut daemon = crate::util::daemon::start_recording(
        recording_config(&tty),
        Some(recording_to(&disk.path)),
    );
    daemon
        .alarm(
            "system.storage_failure",
            vigil::engine::Phase::Start,
            SECS(5),
        )
        .await;
    monitor.send(b"spo2 80\n");
    daemon
        .alarm("spo2.critical_low", vigil::engine::Phase::Start, SECS(5))
        .await;
    // Writable again: retried within 30 s, ended 30 s after it works.
    disk.remount("rw");
    daemon
        .alarm(
            "system.storage_failure",
            vigil::engine::Phase::End,
            SECS(75),
        )
        .await;
    let recordings = std::fs::read_dir(&disk.path).unwrap().count();
    assert_eq!(recordings, 1, "the recording started");
    daemon.stop().await;
}

/// A read-only state directory at start-up used to stop vigil (exit 1).
/// Now it monitors and publishes with `system.journal_failure` raised,
/// delivers what the previous run left in the journal (read without
/// writing), and reopens the journal once the directory is writable.
#[tokio::test(flavor = "current_thread")]
async fn a_read_only_state_directory_at_start_up_keeps_monitoring() {
    let dir = temp_dir("fault-ro-state");
    let disk = TmpFs::mount(&dir.join("state"), "size=1m");
    let mut broker = Mosquitto::start(&dir, "");
    let prefix = "vigil/v1/test-clinic/bed-ro/";
    let status =
        Subscriber::connect(broker.port, "display-ro-status", &format!("{prefix}status")).await;
    let tty = dir.join("ttyRO");
    let mut monitor = Monitor::plug_in(&tty);
    let text = daemon_config(&tty, broker.port, &disk.path, "bed-ro", "");
    // The previous run leaves an undelivered alarm in its journal.
    let daemon = online_then_broker_killed(&mut broker, &text, status).await;
    monitor.send(b"spo2 80\n");
    let bed_dir = disk.path.join("test-clinic/bed-ro");
    let journal = bed_dir.join("outbox.journal");
    let deadline = std::time::Instant::now() + SECS(5);
    while !std::fs::read(&journal)
        .unwrap_or_default()
        .windows(17)
        .any(|w| w == b"spo2.critical_low")
    {
        assert!(std::time::Instant::now() < deadline, "never journaled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.stop().await;

    disk.remount("ro");
    broker.restart();
    let mut display = Subscriber::connect(broker.port, "display-ro", &format!("{prefix}#")).await;
    let daemon = start_with_mqtt(config::parse(&text, "test").unwrap());
    let old = display
        .next("/alarms", SECS(10), |j| {
            j["alarm"]["id"] == "spo2.critical_low" && j["alarm"]["phase"] == "start"
        })
        .await;
    assert_eq!(old.json["stream_seq"], 1, "{}", old.json);
    display
        .next("/alarms", SECS(10), |j| {
            j["alarm"]["id"] == "system.journal_failure" && j["alarm"]["phase"] == "start"
        })
        .await;
    let beat = display.online(SECS(5)).await;
    assert_eq!(beat.json["outbox"]["durable"], false, "{}", beat.json);
    // Monitoring and publishing go on.
    monitor.send(b"spo2 80\n");
    display
        .next("/alarms", SECS(10), |j| {
            j["alarm"]["id"] == "spo2.critical_low"
                && j["alarm"]["phase"] == "start"
                && j["stream_seq"].as_u64() > Some(1)
        })
        .await;

    // Writable again: the journal is reopened, the run's epoch kept.
    disk.remount("rw");
    display.drain(Duration::ZERO).await;
    let beat = display
        .next("/status", SECS(10), |j| j["outbox"]["durable"] == true)
        .await;
    let epoch = std::fs::read_to_string(bed_dir.join("epoch")).unwrap();
    assert_eq!(epoch.trim(), beat.json["epoch"], "{}", beat.json);
    assert!(std::fs::read(bed_dir.join(vigil::mqtt::journal::UNREAD_COPY)).is_err());
    daemon.stop().await;
}

/// An alarm event's place in its stream: (epoch, stream_seq).
fn stream_key(j: &Value) -> (String, u64) {
    (
        j["epoch"].as_str().unwrap_or_default().to_owned(),
        j["stream_seq"].as_u64().unwrap_or_default(),
    )
}

/// Every alarm event `sub` receives is added to `seen` as (epoch,
/// stream_seq); returns the first one `pred` accepts.
async fn record_alarms_until(
    sub: &mut Subscriber,
    seen: &mut Vec<(String, u64)>,
    within: Duration,
    mut pred: impl FnMut(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let m = tokio::time::timeout_at(deadline, sub.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no matching alarm event within {within:?}"))
            .expect("subscriber running");
        if !m.topic.ends_with("/alarms") {
            continue;
        }
        seen.push(stream_key(&m.json));
        if pred(&m.json) {
            return m.json;
        }
    }
}

/// SpO2 80 then 97: waits for `spo2.critical_low` to start and end (every
/// alarm event kept in `seen`); returns the start and whether
/// `system.journal_failure` came meanwhile.
async fn desaturate(
    monitor: &mut Monitor,
    display: &mut Subscriber,
    seen: &mut Vec<(String, u64)>,
) -> (Value, bool) {
    let failed = std::cell::Cell::new(false);
    let wait = |phase: &'static str| {
        let failed = &failed;
        move |j: &Value| {
            if j["alarm"]["id"] == "system.journal_failure" {
                failed.set(true);
            }
            j["alarm"]["id"] == "spo2.critical_low" && j["alarm"]["phase"] == phase
        }
    };
    monitor.send(b"spo2 80\n");
    let start = record_alarms_until(display, seen, SECS(10), wait("start")).await;
    monitor.send(b"spo2 97\n");
    record_alarms_until(display, seen, SECS(10), wait("end")).await;
    (start, failed.get())
}

/// When the kernel remounts the state directory read-only at run time, the
/// journal fails and the `epoch` file cannot be removed either. A restart in
/// the same boot used to continue the epoch from the journal's counters and
/// number its alarm events over the ones held in memory only, which a
/// display drops as duplicates. Now the epoch is noted in the runtime
/// directory and the restart starts a new one.
///
/// Linux refuses to remount a file system read-only while files are open
/// for writing on it (the daemon's journal), which the kernel's own
/// remount after errors does not. So the test plays it in two steps: the
/// journal's disk fills (its writes fail), and a read-only copy of the
/// bed's directory is mounted over it (removing `epoch` fails with EROFS).
/// Unmounting the copy and freeing the space is the repair.
#[tokio::test(flavor = "current_thread")]
async fn a_read_only_remount_at_run_time_never_lets_a_restart_reuse_stream_numbers() {
    let dir = temp_dir("fault-ro-remount");
    let disk = TmpFs::mount(&dir.join("state"), "size=1m");
    let broker = Mosquitto::start(&dir, "");
    let prefix = "vigil/v1/test-clinic/bed-remount/";
    let mut display =
        Subscriber::connect(broker.port, "display-remount", &format!("{prefix}#")).await;
    let tty = dir.join("ttyREMOUNT");
    let mut monitor = Monitor::plug_in(&tty);
    let text = daemon_config(&tty, broker.port, &disk.path, "bed-remount", "");
    let is = |id: &'static str, phase: &'static str| {
        move |j: &Value| j["alarm"]["id"] == id && j["alarm"]["phase"] == phase
    };
    let mut before = Vec::new();

    let daemon = start_with_mqtt(config::parse(&text, "test").unwrap());
    display.online(SECS(10)).await;
    let (first, _) = desaturate(&mut monitor, &mut display, &mut before).await;
    let epoch = first["epoch"].as_str().unwrap().to_owned();

    // Read-only under the running daemon: what it raises now is numbered
    // in memory only.
    let bed_dir = disk.path.join("test-clinic/bed-remount");
    let files: Vec<(std::ffi::OsString, Vec<u8>)> = std::fs::read_dir(&bed_dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name(), std::fs::read(e.path()).unwrap()))
        .collect();
    let filler = disk.fill();
    let read_only = TmpFs::mount(&bed_dir, "size=1m");
    for (name, bytes) in &files {
        std::fs::write(bed_dir.join(name), bytes).unwrap();
    }
    read_only.remount("ro");
    // Alarms until the journal's last page is full and its write fails,
    // then a few more held in memory only.
    let mut failed_at = None;
    for i in 0..100 {
        let (_, failed) = desaturate(&mut monitor, &mut display, &mut before).await;
        if failed {
            failed_at.get_or_insert(i);
        }
        if failed_at.is_some_and(|f| i >= f + 3) {
            break;
        }
    }
    assert!(
        failed_at.is_some(),
        "the journal never failed on a full disk"
    );
    assert!(
        bed_dir.join("epoch").exists(),
        "the epoch file of a read-only directory cannot go"
    );
    daemon.stop().await;
    while let Ok(Some(m)) =
        tokio::time::timeout(Duration::from_millis(300), display.rx.recv()).await
    {
        if m.topic.ends_with("/alarms") {
            before.push(stream_key(&m.json));
        }
    }

    // Repaired before the journal could be reopened, and the daemon
    // started again in the same boot.
    drop(read_only);
    std::fs::remove_file(filler).unwrap();
    assert!(bed_dir.join("epoch").exists());
    let daemon = start_with_mqtt(config::parse(&text, "test").unwrap());
    display.online(SECS(10)).await;
    monitor.send(b"spo2 80\n");
    let mut after = Vec::new();
    let again = record_alarms_until(
        &mut display,
        &mut after,
        SECS(10),
        is("spo2.critical_low", "start"),
    )
    .await;
    for key in &after {
        assert!(
            !before.contains(key),
            "the restart reused {key:?}, already used by the run before it (numbers seen: {before:?})"
        );
    }
    assert_ne!(
        again["epoch"], epoch,
        "a new epoch after the read-only stretch: {again}"
    );
    daemon.stop().await;
}

/// A byte flood that outruns the recorder used to raise
/// `system.storage_failure` (which never ended) although the disk was fine.
/// Now it raises `system.input_overload`, monitoring goes on, and no
/// storage condition starts.
#[tokio::test(flavor = "current_thread")]
async fn a_flood_that_outruns_the_recorder_is_an_input_overload_not_a_storage_failure() {
    let dir = temp_dir("fault-flood-recorder");
    let tty = dir.join("ttyFLOOD");
    let mut monitor = Monitor::plug_in(&tty);
    let settings = vigil::record::file::RecorderSettings {
        // The smallest queue, and a writer that only drains on its own
        // timer (as one a slow disk holds up): the flood overflows it. The
        // daemon's writer, woken at half a queue, keeps up with any flood
        // this machine can read (BENCHMARKS.md, 50,000 readings/s).
        queue: 16,
        wake_when_half_full: false,
        ..recording_to(&dir.join("recordings"))
    };
    let mut daemon = crate::util::daemon::start_recording(recording_config(&tty), Some(settings));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let flood = std::thread::spawn(move || {
        monitor.send(b"hr 72\n");
        let chunk = b"hr 72\nspo2 80\n".repeat(300);
        let until = std::time::Instant::now() + SECS(3);
        while std::time::Instant::now() < until {
            monitor.send(&chunk);
        }
        monitor
    });
    daemon
        .alarm(
            "system.input_overload",
            vigil::engine::Phase::Start,
            SECS(10),
        )
        .await;
    // The daemon runs on this thread: keep it running while the flood ends.
    while !flood.is_finished() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _monitor = flood.join().unwrap();
    let seen = daemon.alarms_during(SECS(2)).await;
    assert!(
        !seen.iter().any(|(id, _)| id.starts_with("system.storage")),
        "a flood is not a storage failure: {seen:?}"
    );
    daemon.stop().await;
}
