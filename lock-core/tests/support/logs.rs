//! The warnings and errors the code under test logs, captured by a global `tracing` subscriber
//! of the test binary (events come from any thread, runtime workers shutting down included).

use std::fmt::Write;
use std::sync::{Mutex, Once};

static EVENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(event.metadata().level().to_string());
        event.record(&mut fields);
        EVENTS.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Installs the capture, once per test binary.
pub fn capture() {
    static START: Once = Once::new();
    START.call_once(|| tracing::subscriber::set_global_default(Capture).unwrap());
}

/// Waits up to `within` for an ERROR event naming `key`.
pub fn error_naming(key: &str, within: std::time::Duration) -> Option<String> {
    event_containing("ERROR", key, within)
}

/// Waits up to `within` for an event of `level` (`"WARN"`, `"ERROR"`) whose fields contain
/// `text`.
pub fn event_containing(level: &str, text: &str, within: std::time::Duration) -> Option<String> {
    event_containing_all(level, &[text], within)
}

/// Waits up to `within` for an event of `level` whose fields contain every one of `texts`.
pub fn event_containing_all(
    level: &str,
    texts: &[&str],
    within: std::time::Duration,
) -> Option<String> {
    let start = std::time::Instant::now();
    loop {
        let found = EVENTS
            .lock()
            .unwrap()
            .iter()
            .find(|event| event.starts_with(level) && texts.iter().all(|t| event.contains(t)))
            .cloned();
        if found.is_some() || start.elapsed() > within {
            return found;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
