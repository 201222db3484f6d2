//! `vigil watch`: the terminal view for developers and IT. The same board
//! as the web page (one or several beds, NO DATA when blind, alarms by
//! priority, acknowledge with a key), plus the scrolling alarm feed.
//!
//! The screen is a pure function of the board view and the UI state
//! ([`ui::render`], [`ui::on_key`]); this module only runs the loop: the MQTT
//! link on a runtime thread, the terminal on the calling thread.
//!
//! Depends on [`crate::display`].

pub mod ui;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ratatui::crossterm::event::{self, Event};

use crate::display::link::{self, Shared};
use crate::display::{prepare, DisplayError, FeedOptions};

/// Errors of the terminal view.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The feed options are wrong.
    #[error(transparent)]
    Display(#[from] DisplayError),
    /// The terminal cannot be used.
    #[error("cannot use the terminal (run vigil watch in an interactive terminal): {0}")]
    Terminal(std::io::Error),
    /// The runtime did not start.
    #[error("cannot start the MQTT runtime: {0}")]
    Runtime(std::io::Error),
}

/// Carries out an action: publishes an acknowledgement or a session or
/// audio command, and returns the message to show when it could not be sent.
pub fn perform(shared: &Shared, action: &ui::Action) -> Option<String> {
    match action {
        ui::Action::Acknowledge { bed, alarm, by } => shared
            .acknowledge(bed, alarm, by)
            .err()
            .map(|e| e.to_string()),
        ui::Action::AcknowledgeAll { bed, by } => {
            shared.acknowledge_all(bed, by).err().map(|e| e.to_string())
        }
        ui::Action::Command { bed, command, by } => shared
            .command(bed, command.clone(), by)
            .err()
            .map(|e| e.to_string()),
        ui::Action::None | ui::Action::Quit => None,
    }
}

/// Runs the terminal view until the user quits.
pub fn run(opts: &FeedOptions) -> Result<(), WatchError> {
    let (settings, board) = prepare(opts, "watch")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(WatchError::Runtime)?;
    let (tx, rx) = std::sync::mpsc::channel::<Result<Arc<Shared>, link::LinkError>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("vigil-watch-mqtt".into())
        .spawn(move || {
            runtime.block_on(async move {
                match link::spawn(settings, board) {
                    Ok((shared, _task)) => {
                        let _ = tx.send(Ok(shared));
                        let _ = stop_rx.await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(WatchError::Runtime)?;
    let shared = rx
        .recv()
        .map_err(|_| WatchError::Runtime(std::io::Error::other("the MQTT thread ended")))?
        .map_err(|e| WatchError::Display(e.into()))?;

    let mut terminal = ratatui::try_init().map_err(WatchError::Terminal)?;
    let result = ui_loop(&mut terminal, &shared);
    ratatui::restore();
    let _ = stop_tx.send(());
    let _ = thread.join();
    result
}

fn ui_loop(terminal: &mut ratatui::DefaultTerminal, shared: &Shared) -> Result<(), WatchError> {
    let mut state = ui::Ui::default();
    loop {
        let mut view = shared.board().view(SystemTime::now());
        ui::arrange(&state, &mut view);
        terminal
            .draw(|f| ui::render(f, &state, &view))
            .map_err(WatchError::Terminal)?;
        if !event::poll(Duration::from_millis(125)).map_err(WatchError::Terminal)? {
            continue;
        }
        if let Event::Key(key) = event::read().map_err(WatchError::Terminal)? {
            match ui::on_key(&mut state, key, &view) {
                ui::Action::Quit => return Ok(()),
                action => {
                    if let Some(msg) = perform(shared, &action) {
                        state.message = Some(msg);
                    }
                }
            }
        }
    }
}
