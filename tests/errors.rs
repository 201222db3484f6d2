//! Error chains as the binary prints them at the top (`vigil: error: ...`,
//! anyhow's `{:#}`): each cause is named once. An error type whose message
//! says its cause does not also return it as `source()`, or the chain would
//! repeat it (`address in use: address in use`).

use std::net::TcpListener;
use std::process::Output;

use crate::util::daemon::{temp_dir, write_config};
use crate::util::process::vigil;

/// The `vigil: error:` line names `cause` exactly once.
fn assert_names_once(out: &Output, cause: &str) {
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("vigil: error:") || l.starts_with("vigil: cannot"))
        .unwrap_or_else(|| panic!("no error line in {stderr}"));
    assert_eq!(line.matches(cause).count(), 1, "{cause:?} in {line}");
}

fn os_message(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

#[test]
fn a_missing_configuration_names_the_os_error_once() {
    let out = vigil(&["check-config", "/nonexistent-vigil-test/vigil.toml"]);
    assert_names_once(&out, &os_message(libc::ENOENT));
}

#[test]
fn a_missing_recording_names_the_os_error_once() {
    let out = vigil(&["record", "export", "/nonexistent-vigil-test/r.vigil"]);
    assert_names_once(&out, &os_message(libc::ENOENT));
}

#[test]
fn a_taken_board_address_names_the_os_error_once() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = vigil(&[
        "display",
        "--broker",
        "mqtt://127.0.0.1:1",
        "--listen",
        &addr,
    ]);
    assert_names_once(&out, &os_message(libc::EADDRINUSE));
}

#[test]
fn a_taken_embedded_broker_address_names_the_os_error_once() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = temp_dir("errors-broker");
    let config = write_config(
        &dir,
        &format!(
            r#"
[site]
site = "test-clinic"
bed = "bed-1"

[[source]]
name = "monitor"
protocol = "vigil-line"
tcp = "127.0.0.1:1"

[recording]
dir = "{}"

[mqtt]
embedded = true
listen = "{}"
state_dir = "{}"
"#,
            dir.join("recordings").display(),
            taken.local_addr().unwrap(),
            dir.join("state").display()
        ),
    );
    let out = vigil(&["run", "-c", config.to_str().unwrap()]);
    assert_names_once(&out, &os_message(libc::EADDRINUSE));
}
