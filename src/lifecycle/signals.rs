//! OS signals become [`Control`] messages on a channel; nothing else in the
//! engine sees a raw signal.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// SIGTERM or SIGINT: stop gracefully.
    Shutdown,
    /// SIGHUP: reload the configuration and sweep for stalled jobs.
    Reload,
    /// A second SIGTERM/SIGINT during a graceful stop: exit now.
    ExitNow,
}

/// Starts the thread that turns signals into controls.
pub fn listen() -> std::io::Result<crossbeam_channel::Receiver<Control>> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stopping = false;
            for signal in signals.forever() {
                let control = match signal {
                    SIGHUP => Control::Reload,
                    _ if stopping => Control::ExitNow,
                    _ => {
                        stopping = true;
                        Control::Shutdown
                    }
                };
                if tx.send(control).is_err() {
                    return;
                }
            }
        })?;
    Ok(rx)
}
