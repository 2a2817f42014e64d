//! The failed assertion, said once more after the logs that follow it.
//!
//! A failing test's fixtures print berth's and kubelet's logs while it unwinds,
//! after the panic message; CI shows only the tail of the output, so the last
//! fixture to go repeats the message.

use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Keeps each thread's last panic message (then panics as before).
pub fn record_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(a panic without a message)");
            let location = info.location().map(|l| format!(" ({l})")).unwrap_or_default();
            LAST_PANIC.with(|last| *last.borrow_mut() = Some(format!("{message}{location}")));
            default(info);
        }));
    });
}

/// The message of this thread's last panic, when it is unwinding from one.
pub fn unwinding_from() -> Option<String> {
    if !std::thread::panicking() {
        return None;
    }
    LAST_PANIC.with(|last| last.borrow().clone())
}
