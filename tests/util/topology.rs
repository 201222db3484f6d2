//! The clinic topology of docs/topology.md on loopback: a room's Mosquitto
//! bridged over TLS (client certificate, MQTT 5, persistent sessions) to a
//! central Mosquitto, both started from the shipped example configurations
//! in config/mosquitto/ with only paths, ports and the central broker's
//! address rewritten (each rewrite must match, so the examples cannot
//! drift from what is tested).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use super::mqtt::{free_port, password_file, Mosquitto};
use super::tls::Pki;

/// The site (room) name of the examples.
pub const SITE: &str = "room-1";
/// The station's user on the central broker (and a room display's).
pub const DISPLAY: (&str, &str) = ("display", "display-secret");
/// Bed 1's daemon user on the room broker.
pub const BED_1: (&str, &str) = ("vigil-room-1-bed-1", "bed-1-secret");
/// The bridge's notification topic (room-broker.conf).
pub const BRIDGE_TOPIC: &str = "vigil/v1/room-1/_bridge";

/// The shipped example `name` from config/mosquitto/.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/mosquitto")
        .join(name)
}

/// `text` with each `(from, to)` replaced once; panics when `from` is missing.
fn rewrite(name: &str, text: &str, pairs: &[(&str, String)]) -> String {
    let mut out = text.to_owned();
    for (from, to) in pairs {
        assert!(
            out.contains(from),
            "config/mosquitto/{name} no longer contains {from:?}: update the test with the example"
        );
        out = out.replace(from, to);
    }
    out
}

/// A room broker bridged to a central broker.
pub struct Topology {
    /// The central broker; `port` is its loopback listener (the station's).
    pub central: Mosquitto,
    /// The room broker; `port` is its loopback listener (the daemons').
    pub room: Mosquitto,
    /// The room broker's TLS listener for the beds.
    pub room_tls: u16,
}

impl Topology {
    /// Makes certificates and password files in `dir` and starts the
    /// central broker, then the room broker (whose bridge connects out).
    pub fn start(dir: &Path) -> Topology {
        let certs = dir.join("certs");
        let pki = Pki::new(&certs);
        pki.server("central");
        pki.server("room-1");
        // The bridge's identity: its CN is the site, the central ACL's user.
        pki.client("bridge-room-1", SITE);
        password_file(&dir.join("central.passwd"), &[DISPLAY]);
        password_file(&dir.join("room.passwd"), &[BED_1, DISPLAY]);
        let certs = format!("{}/", certs.display());
        let local = |p: &Path| format!("{}", p.display());

        let (central, central_tls) = start_central(dir, &example("central.acl"), &certs);

        let (room_port, room_tls) = (free_port(), free_port());
        let data = dir.join("room-data");
        std::fs::create_dir_all(&data).unwrap();
        let text = std::fs::read_to_string(example("room-broker.conf")).unwrap();
        let room_conf = rewrite(
            "room-broker.conf",
            &text,
            &[
                (
                    "/etc/mosquitto/vigil.passwd",
                    local(&dir.join("room.passwd")),
                ),
                ("/etc/mosquitto/room-1.acl", local(&example("room-1.acl"))),
                ("/var/lib/mosquitto/", format!("{}/", data.display())),
                ("/etc/mosquitto/certs/", certs),
                (
                    "listener 8883\n",
                    format!("listener {room_tls} 127.0.0.1\n"),
                ),
                (
                    "listener 1883 127.0.0.1\n",
                    format!("listener {room_port} 127.0.0.1\n"),
                ),
                (
                    "address central.clinic.example:8883",
                    format!("address 127.0.0.1:{central_tls}"),
                ),
            ],
        ) + &test_tail(dir, "room");
        let room = Mosquitto::start_with(dir, room_port, "room", &room_conf);
        Topology {
            central,
            room,
            room_tls,
        }
    }
}

/// The central broker from the shipped central.conf with `acl`; returns it
/// and its TLS listener's port (the bridges').
fn start_central(dir: &Path, acl: &Path, certs: &str) -> (Mosquitto, u16) {
    let local = |p: &Path| format!("{}", p.display());
    let (central_port, central_tls) = (free_port(), free_port());
    let data = dir.join("central-data");
    std::fs::create_dir_all(&data).unwrap();
    let text = std::fs::read_to_string(example("central.conf")).unwrap();
    let central_conf = rewrite(
        "central.conf",
        &text,
        &[
            (
                "/etc/mosquitto/central.passwd",
                local(&dir.join("central.passwd")),
            ),
            ("/etc/mosquitto/central.acl", local(acl)),
            ("/var/lib/mosquitto/", format!("{}/", data.display())),
            ("/etc/mosquitto/certs/", certs.to_owned()),
            (
                "listener 8883\n",
                format!("listener {central_tls} 127.0.0.1\n"),
            ),
            (
                "listener 1883 127.0.0.1\n",
                format!("listener {central_port} 127.0.0.1\n"),
            ),
        ],
    ) + &test_tail(dir, "central");
    let central = Mosquitto::start_with(dir, central_port, "central", &central_conf);
    (central, central_tls)
}

/// What a test adds: run as the test's user, log to a file in `dir`.
fn test_tail(dir: &Path, name: &str) -> String {
    format!(
        "\n# Added by the test.\nuser root\nlog_dest file {}/{name}.log\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n",
        dir.display()
    )
}

/// A clinic of several rooms, each a room broker bridged to one central
/// broker, from the same shipped examples: room `room-N`'s configuration
/// and ACL are room-1's with the name changed, and the central ACL is the
/// shipped one plus, for rooms it does not name, room-2's block renamed.
/// `publisher` may write every topic of every room (a ward simulator
/// standing in for each room's beds).
pub struct Clinic {
    pub central: Mosquitto,
    /// The room brokers, in the order of the names given.
    pub rooms: Vec<Mosquitto>,
}

impl Clinic {
    pub fn start(dir: &Path, rooms: &[&str], publisher: (&str, &str)) -> Clinic {
        let certs = dir.join("certs");
        let pki = Pki::new(&certs);
        pki.server("central");
        let shipped_acl = std::fs::read_to_string(example("central.acl")).unwrap();
        let room_2 = shipped_acl
            .split("\n\n")
            .find(|b| b.contains("user room-2"))
            .expect("central.acl has a block for room-2")
            .to_owned();
        let mut central_acl = shipped_acl.clone();
        for r in rooms {
            pki.server(r);
            pki.client(&format!("bridge-{r}"), r);
            if !shipped_acl.contains(&format!("user {r}\n")) {
                central_acl = format!("{}\n\n{}\n", room_2.replace("room-2", r), central_acl);
            }
        }
        std::fs::write(dir.join("central.acl"), central_acl).unwrap();
        password_file(&dir.join("central.passwd"), &[DISPLAY]);
        password_file(&dir.join("room.passwd"), &[DISPLAY, publisher]);
        let certs = format!("{}/", certs.display());
        let local = |p: &Path| format!("{}", p.display());

        let (central, central_tls) = start_central(dir, &dir.join("central.acl"), &certs);

        let room_text = std::fs::read_to_string(example("room-broker.conf")).unwrap();
        let acl_text = std::fs::read_to_string(example("room-1.acl")).unwrap();
        let rooms = rooms
            .iter()
            .map(|r| {
                let acl = dir.join(format!("{r}.acl"));
                std::fs::write(
                    &acl,
                    format!(
                        "{}\nuser {}\ntopic write vigil/v1/{r}/#\ntopic read vigil/v1/{r}/+/cmd\n",
                        acl_text.replace("room-1", r),
                        publisher.0
                    ),
                )
                .unwrap();
                let (port, tls) = (free_port(), free_port());
                let shipped_acl_path = format!("/etc/mosquitto/{r}.acl");
                let data = dir.join(format!("{r}-data"));
                std::fs::create_dir_all(&data).unwrap();
                let conf = rewrite(
                    "room-broker.conf",
                    &room_text.replace("room-1", r),
                    &[
                        (
                            "/etc/mosquitto/vigil.passwd",
                            local(&dir.join("room.passwd")),
                        ),
                        (shipped_acl_path.as_str(), local(&acl)),
                        ("/var/lib/mosquitto/", format!("{}/", data.display())),
                        ("/etc/mosquitto/certs/", certs.clone()),
                        ("listener 8883\n", format!("listener {tls} 127.0.0.1\n")),
                        (
                            "listener 1883 127.0.0.1\n",
                            format!("listener {port} 127.0.0.1\n"),
                        ),
                        (
                            "address central.clinic.example:8883",
                            format!("address 127.0.0.1:{central_tls}"),
                        ),
                    ],
                ) + &test_tail(dir, r);
                Mosquitto::start_with(dir, port, r, &conf)
            })
            .collect();
        Clinic { central, rooms }
    }
}
