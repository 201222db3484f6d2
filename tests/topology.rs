//! A clinic with a room broker bridged to a central broker
//! (docs/topology.md), from the shipped configs in config/mosquitto/: a
//! daemon on the room broker, the station (the displays' real MQTT link
//! and state model) and a persistent subscriber on the central one. Both
//! brokers are SIGKILLed and restarted in turn while alarms keep coming:
//! every alarm event reaches the centre once (after dropping duplicates by
//! seq) and in `stream_seq` order once placed by it (the bridge may reorder
//! after a reconnect; displays place events as this test does), and the
//! station says which site was blind, why and for how long. The central ACL keeps a room to its own prefix.
//! Over MQTT 5 a station's command is answered on its response topic across the bridge.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use vigil::config;
use vigil::display::feed::{Topics, DEFAULT_PREFIX};
use vigil::display::link::{self, LinkSettings};
use vigil::display::site::Cause;
use vigil::display::state::{Board, Settings, GAP_WAIT};
use vigil::mqtt::link::{parse_broker_url, LinkConfig, FLAG_KEYS};

use crate::util::daemon::{temp_dir, Monitor};
use crate::util::mqtt::{
    assert_alarms_once, daemon_config, start_with_mqtt, MqttDaemon, Order, Subscriber,
};
use crate::util::topology::{example, Topology, BED_1, BRIDGE_TOPIC, DISPLAY, SITE};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// The station: vigil display's MQTT link and board, in-process.
fn station(port: u16, dir: &Path) -> Arc<link::Shared> {
    let creds = dir.join("station-creds");
    std::fs::write(&creds, format!("{}\n{}\n", DISPLAY.0, DISPLAY.1)).unwrap();
    let mut link = LinkConfig::new(
        parse_broker_url(&format!("mqtt://127.0.0.1:{port}")).unwrap(),
        FLAG_KEYS,
    );
    link.credentials_file = Some(creds);
    let settings = LinkSettings {
        link,
        client_id: "station".into(),
        persistent: true,
        topics: Topics::new(DEFAULT_PREFIX).unwrap(),
        beds: Vec::new(),
        protocol: None,
    };
    let board = Board::new(
        Settings {
            heartbeat_timeout: SECS(2),
            ..Settings::default()
        },
        &[],
    );
    link::spawn(settings, board)
        .expect("start the station link")
        .0
}

/// Bed 1's monitor at `dir/tty{tag}` and its daemon, logging in as bed 1
/// to the room broker on `port`.
fn bed_1_in_room(dir: &Path, tag: &str, port: u16) -> (Monitor, MqttDaemon) {
    std::fs::write(dir.join("creds"), format!("{}\n{}\n", BED_1.0, BED_1.1)).unwrap();
    let tty = dir.join(format!("tty{tag}"));
    let monitor = Monitor::plug_in(&tty);
    let text = daemon_config(
        &tty,
        port,
        &dir.join("state"),
        "bed-1",
        &format!("credentials_file = \"{}\"", dir.join("creds").display()),
    )
    .replace("site = \"test-clinic\"", &format!("site = \"{SITE}\""));
    (
        monitor,
        start_with_mqtt(config::parse(&text, "test").unwrap()),
    )
}

/// Waits until the bridge notification says "connected" on the centre.
async fn bridge_up(centre: &mut Subscriber, within: Duration) {
    centre
        .next(BRIDGE_TOPIC, within, |j| j.as_u64() == Some(1))
        .await;
}

#[tokio::test(flavor = "current_thread")]
async fn alarms_cross_the_bridge_once_in_order_while_each_broker_is_killed() {
    let dir = temp_dir("topology");
    let mut net = Topology::start(&dir);
    // The centre keeps a persistent session: the central broker queues for
    // it (and saves the queue) while it is away.
    let mut centre = Subscriber::connect_with(
        net.central.port,
        "centre",
        &format!("vigil/v1/{SITE}/#"),
        Some(DISPLAY),
        false,
    )
    .await;
    bridge_up(&mut centre, SECS(15)).await;
    let station = station(net.central.port, &dir);

    let (mut monitor, mut daemon) = bed_1_in_room(&dir, "ROOM", net.room.port);
    centre
        .next("bed-1/status", SECS(15), |j| j["state"] == "online")
        .await;

    // Alarms raised and ended every 40 ms in the background.
    let running = Arc::new(AtomicBool::new(true));
    let keep = running.clone();
    let producer = std::thread::spawn(move || {
        let mut low = true;
        while keep.load(Ordering::SeqCst) {
            monitor.send(if low { b"spo2 80\n" } else { b"spo2 97\n" });
            low = !low;
            std::thread::sleep(Duration::from_millis(40));
        }
    });
    let down = Duration::from_millis(1500);
    tokio::time::sleep(SECS(2)).await;

    // 1. The central broker dies: the bridge queues on the room broker.
    net.central.kill();
    let central_down = Instant::now();
    tokio::time::sleep(down).await;
    net.central.restart();
    let central_gone = central_down.elapsed();
    bridge_up(&mut centre, SECS(40)).await;
    tokio::time::sleep(SECS(2)).await;

    // 2. The room broker dies: the daemon's outbox holds what is unacknowledged.
    net.room.kill();
    let room_down = Instant::now();
    tokio::time::sleep(down).await;
    let blind = station
        .board()
        .sites(SystemTime::now())
        .into_iter()
        .find(|s| s.site == SITE)
        .expect("the station knows the site");
    assert_eq!(blind.cause, Some(Cause::BridgeLost), "{blind:?}");
    assert!(
        blind
            .no_data
            .as_deref()
            .is_some_and(|t| t.contains("bridge")),
        "{blind:?}"
    );
    net.room.restart();
    let room_gone = room_down.elapsed();
    bridge_up(&mut centre, SECS(40)).await;
    tokio::time::sleep(SECS(2)).await;
    running.store(false, Ordering::SeqCst);
    producer.join().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let raised = daemon.alarms_so_far();
    assert!(
        raised.len() > 100,
        "only {} alarm events raised",
        raised.len()
    );

    // Every alarm event, once, in order at the centre. Mosquitto's bridge
    // may reorder after a reconnect (2.0.11 sends messages that arrive
    // while it drains its queue ahead of the queue): displays place events
    // by stream_seq, and so does this check.
    let got = assert_alarms_once(
        &mut centre,
        "bed-1/alarms",
        &raised,
        SECS(30),
        Order::Stream,
    )
    .await;
    eprintln!("{} alarm event(s) arrived after a later one", got.reordered);

    // The station: live again, and it says how long the site was blind.
    let now = SystemTime::now();
    let (sites, outages) = {
        let board = station.board();
        (board.sites(now), board.site_outages(SITE))
    };
    let site = sites.into_iter().find(|s| s.site == SITE).unwrap();
    assert_eq!(site.no_data, None, "{site:?}");
    // Its persistent session on the central broker replayed what it missed
    // while its own link was down: no gap in its feed, not even one still
    // open (looked at as if GAP_WAIT had passed).
    let gaps: Vec<String> = station
        .board()
        .view(now + GAP_WAIT)
        .feed
        .into_iter()
        .filter(|l| l.phase == "gap")
        .map(|l| l.text)
        .collect();
    assert!(gaps.is_empty(), "the station's feed has gaps: {gaps:?}");
    eprintln!("outages of {SITE}: {outages:?}");
    let of = |cause: Cause, gone: Duration| {
        let o = outages
            .iter()
            .find(|o| o.cause == cause)
            .unwrap_or_else(|| panic!("no {cause:?} outage in {outages:?}"));
        assert!(
            o.length() >= gone && o.length() < gone + SECS(45),
            "{cause:?} outage of {:?} for a broker down {gone:?}",
            o.length()
        );
    };
    of(Cause::StationLink, central_gone);
    of(Cause::BridgeLost, room_gone);
    daemon.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_central_acl_keeps_a_room_to_its_own_prefix() {
    let dir = temp_dir("topology-acl");
    let net = Topology::start(&dir);
    let mut centre = Subscriber::connect_with(
        net.central.port,
        "centre-acl",
        "vigil/v1/#",
        Some(DISPLAY),
        true,
    )
    .await;
    bridge_up(&mut centre, SECS(15)).await;

    // A room broker misconfigured to forward every site's alarms, with
    // room-1's bridge certificate, and no ACL of its own.
    let text = std::fs::read_to_string(dir.join("room.conf")).unwrap();
    let rogue_port = crate::util::mqtt::free_port();
    let rogue_conf = text
        .replace(
            &format!("listener {} 127.0.0.1", net.room.port),
            &format!("listener {rogue_port} 127.0.0.1"),
        )
        .replace(
            &format!("listener {} 127.0.0.1", net.room_tls),
            &format!("listener {} 127.0.0.1", crate::util::mqtt::free_port()),
        )
        .replace("allow_anonymous false", "allow_anonymous true")
        .replace("acl_file", "# acl_file")
        .replace("password_file", "# password_file")
        .replace("connection central-room-1", "connection rogue")
        .replace("bridge-room-1-local", "rogue-local")
        .replace("remote_clientid bridge-room-1", "remote_clientid rogue")
        .replace("notification_topic", "# notification_topic")
        .replace("room-data", "rogue-data")
        .replace(
            "topic vigil/v1/room-1/+/alarms out 1",
            "topic vigil/v1/+/+/alarms out 1",
        )
        .replace("room.log", "rogue.log");
    assert!(rogue_conf.contains("topic vigil/v1/+/+/alarms out 1"));
    std::fs::create_dir_all(dir.join("rogue-data")).unwrap();
    let _rogue = crate::util::mqtt::Mosquitto::start_with(&dir, rogue_port, "rogue", &rogue_conf);
    let publisher = Subscriber::connect(rogue_port, "forger", "nothing/here").await;
    // Wait until the rogue bridge is up (its own notification, local only
    // on $SYS since the topic was commented out): a room-1 message passes.
    let deadline = Instant::now() + SECS(20);
    let mut n = 0;
    loop {
        n += 1;
        let own = serde_json::json!({"schema_version": 1, "n": n, "who": "own"});
        publisher
            .publish("vigil/v1/room-1/bed-9/alarms", &own)
            .await;
        let got = centre.drain(Duration::from_millis(500)).await;
        if got
            .iter()
            .any(|m| m.topic == "vigil/v1/room-1/bed-9/alarms")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rogue bridge never connected"
        );
    }
    let forged = serde_json::json!({"schema_version": 1, "who": "forged"});
    publisher
        .publish("vigil/v1/room-2/bed-1/alarms", &forged)
        .await;
    let own = serde_json::json!({"schema_version": 1, "who": "own-after"});
    publisher
        .publish("vigil/v1/room-1/bed-9/alarms", &own)
        .await;
    let got = centre.drain(SECS(2)).await;
    assert!(
        got.iter().any(|m| m.json["who"] == "own-after"),
        "room-1's own message passes: {got:?}"
    );
    assert!(
        got.iter().all(|m| !m.topic.starts_with("vigil/v1/room-2/")),
        "room-1 wrote under room-2: {got:?}"
    );
    // And the example ACL names no wildcard write for a room.
    let acl = std::fs::read_to_string(example("central.acl")).unwrap();
    assert!(!acl.contains("topic write vigil/v1/#"));
}

/// MQTT 5 across the bridge: the station's command to a bed in a room
/// names its response topic and correlation data; the bridge carries both
/// in, and vigil's result comes back out on the station's response topic
/// (`cmd/result/station`, allowed by the shipped ACLs and bridge topics),
/// where the station matches it.
#[tokio::test(flavor = "current_thread")]
async fn a_station_command_is_answered_on_its_response_topic_across_the_bridge() {
    use vigil::display::feed::{BedCommand, BedKey};
    let dir = temp_dir("topology-reply");
    let net = Topology::start(&dir);
    let mut centre = Subscriber::connect_as(
        net.central.port,
        "centre-reply",
        &format!("vigil/v1/{SITE}/#"),
        Some(DISPLAY),
    )
    .await;
    bridge_up(&mut centre, SECS(15)).await;
    let station = station(net.central.port, &dir);
    let (_monitor, daemon) = bed_1_in_room(&dir, "REPLY", net.room.port);
    centre
        .next("bed-1/status", SECS(15), |j| j["state"] == "online")
        .await;
    assert_eq!(station.protocol(), vigil::mqtt::wire::Protocol::V5);
    let bed = BedKey::new(SITE, "bed-1");
    let deadline = Instant::now() + SECS(10);
    let id = loop {
        // The station must know the bed first (its retained status).
        match station.command(&bed, BedCommand::ResumeAudio, "RN") {
            Ok(id) => break id,
            Err(e) => assert!(Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let r = centre
        .next("bed-1/cmd/result/station", SECS(10), |j| {
            j["id"] == id.as_str()
        })
        .await;
    assert!(r.json["result"].is_string(), "{:?}", r.json);
    loop {
        let view = station.board().view(SystemTime::now());
        let bed_view = view.beds.iter().find(|b| b.key == bed.to_string());
        if bed_view
            .and_then(|b| b.result.as_ref())
            .is_some_and(|r| r.id == id && r.outcome != "pending")
        {
            break;
        }
        assert!(Instant::now() < deadline + SECS(10), "{view:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.stop().await;
}
