//! Fault injection (#12): the faults an operator or an attacker can cause
//! on purpose, each against real parts (Mosquitto, pty sources, real
//! directories and files), asserting the technical alarm, that nothing is
//! lost, and that nothing flaps.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::{json, Value};
use vigil::config;

use crate::util::daemon::{temp_dir, Monitor};
use crate::util::mqtt::{daemon_config, now_rfc3339, start_with_mqtt, Mosquitto, Subscriber};

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
/// re-sent each time). Now: a command over 4 KiB is answered and counted,
/// a 2 MiB retained one breaks the link once, is dropped and deleted, and
/// commands work again.
#[tokio::test(flavor = "current_thread")]
async fn an_oversized_command_is_answered_and_cannot_cut_vigil_off() {
    let dir = temp_dir("fault-big-cmd");
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
    let text = daemon_config(&tty, broker.port, &dir.join("state"), "bed-big", "");
    let daemon = start_with_mqtt(config::parse(&text, "test").unwrap());
    status
        .next("/status", SECS(10), |j| j["state"] == "online")
        .await;
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
    display
        .next("/status", SECS(10), |j| j["state"] == "online")
        .await;

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
