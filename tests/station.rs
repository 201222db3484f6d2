//! The station at scale: `vigil display` with 64 beds from four sites on
//! one 1920 x 1080 screen, fed by the ward publisher (1 Hz vitals and
//! heartbeats per bed, bursts of alarms), in headless Chromium: a compact
//! grid that fits the screen, worst bed first, a site filter, the whole bed
//! on a click, and every alarm of the bursts on the page.

use std::time::Duration;

use crate::util::board::Board;
use crate::util::browser::Browser;
use crate::util::daemon::temp_dir;
use crate::util::feed::Broker;
use crate::util::ward::{Plan, Ward};

fn artefact(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("station");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

pub const SITES: [&str; 4] = ["room-1", "room-2", "room-3", "room-4"];

#[test]
fn sixty_four_beds_fit_one_screen_worst_first_and_filter_by_site() {
    let dir = temp_dir("station-64");
    let broker = Broker::start(&dir);
    let mut ward = Ward::start(Plan::on_one_broker(broker.port, &SITES, 16));
    assert_eq!(ward.beds.len(), 64);
    let board = Board::station(&broker.addr(), &["--heartbeat-timeout", "3s"]);
    let mut page = Browser::open(&board.url, &dir.join("chromium"));
    page.set_viewport(1920, 1080);
    page.wait_for(
        "document.querySelectorAll('section.bed.tile:not(.nodata)').length === 64",
        Duration::from_secs(20),
    );
    // A burst of a high alarm (the first one, at 3 s) and then a medium one.
    page.wait_for(
        "document.querySelectorAll('section.tile.alarm-high').length >= 6 && document.querySelectorAll('section.tile.alarm-medium').length >= 1",
        Duration::from_secs(15),
    );
    page.screenshot(&artefact("station-64-beds-1920x1080.png"));
    // Worst first: the urgency never rises along the grid, high on top.
    let urgencies = page.eval(
        "JSON.stringify([...document.querySelectorAll('#beds > section.tile')].map(t => Number(t.dataset.urgency)))",
    );
    let urgencies: Vec<u8> = serde_json::from_str(urgencies.as_str().unwrap()).unwrap();
    assert_eq!(urgencies.len(), 64);
    assert!(
        urgencies.windows(2).all(|w| w[0] >= w[1]),
        "not worst first: {urgencies:?}"
    );
    assert_eq!(urgencies[0], 7, "{urgencies:?}");
    // Readable: every tile on the screen at once, nothing clipped sideways,
    // numerals of at least 28 px (about 1 m reading distance at a desk, the
    // whole bed is one click away).
    let fit = page.eval(
        "(() => { const ts = [...document.querySelectorAll('#beds > section.tile')]; \
          const off = ts.filter(t => t.getBoundingClientRect().bottom > window.innerHeight + 1).length; \
          const clip = [...document.querySelectorAll('section.tile .value')].filter(v => v.scrollWidth > v.clientWidth + 1).map(v => v.closest('section').dataset.bed + ':' + v.textContent); \
          const px = Math.min(...[...document.querySelectorAll('section.tile [data-vital=hr] .value')].map(v => parseFloat(getComputedStyle(v).fontSize))); \
          return JSON.stringify({off, clip, px, scroll: document.documentElement.scrollHeight > window.innerHeight + 1 || document.documentElement.scrollWidth > window.innerWidth}); })()",
    );
    let fit: serde_json::Value = serde_json::from_str(fit.as_str().unwrap()).unwrap();
    assert_eq!(fit["off"], 0, "{fit}");
    assert_eq!(fit["clip"], serde_json::json!([]), "{fit}");
    assert_eq!(fit["scroll"], false, "{fit}");
    assert!(fit["px"].as_f64().unwrap() >= 28.0, "{fit}");
    // The value in alarm is coloured: a high SpO2 alarm's SpO2 is red.
    assert_eq!(
        page.eval("getComputedStyle(document.querySelector('section.tile.alarm-high [data-vital=spo2].alarm-high .value')).color"),
        "rgb(224, 32, 27)"
    );

    // The site filter: one site's 16 beds, still worst first; the choice is
    // in the address (a screen per site can be bookmarked).
    page.eval(
        "(() => { const s = document.getElementById('site'); s.value = 'room-2'; s.dispatchEvent(new Event('change')); })()",
    );
    page.wait_for(
        "document.querySelectorAll('#beds > section.tile').length === 16 && [...document.querySelectorAll('#beds > section.tile')].every(t => t.dataset.bed.startsWith('room-2/'))",
        Duration::from_secs(5),
    );
    assert_eq!(page.eval("location.search"), "?site=room-2");
    let options = page
        .eval("[...document.querySelectorAll('#site option')].map(o => o.textContent).join(' | ')");
    assert!(
        options.as_str().unwrap().contains("room-4: 16 beds"),
        "{options}"
    );
    page.screenshot(&artefact("station-room-2-1920x1080.png"));

    // A click on a tile: the whole bed (controls, alarms, trends) in a panel.
    page.eval("document.querySelector('#beds > section.tile').click()");
    page.wait_for(
        "!document.getElementById('detail').hidden && document.querySelector('#detail section.bed .controls button.cmd') !== null",
        Duration::from_secs(5),
    );
    page.screenshot(&artefact("station-bed-panel-1920x1080.png"));
    page.eval("document.getElementById('detailclose').click()");
    page.wait_for(
        "document.getElementById('detail').hidden",
        Duration::from_secs(3),
    );

    // Back to all sites: every alarm of the bursts reached the page.
    page.eval(
        "(() => { const s = document.getElementById('site'); s.value = ''; s.dispatchEvent(new Event('change')); })()",
    );
    std::thread::sleep(Duration::from_secs(1));
    let sent = ward.sent();
    ward.stop();
    assert!(sent.len() >= 12, "{} alarms sent", sent.len());
    let keys: Vec<String> = sent
        .iter()
        .map(|s| format!("{}|{}|{}", s.bed, s.id, s.onset_ms))
        .collect();
    let missing = page.eval(&format!(
        "JSON.stringify({}.filter(k => !(k in window.vigilSeen)))",
        serde_json::to_string(&keys).unwrap()
    ));
    assert_eq!(missing, "[]", "alarms never shown");
}
