//! The warnings and errors the code under test logs, captured by a global `tracing` subscriber
//! of the test binary (events come from any thread, runtime workers shutting down included).
//! [`capture_spans`] also captures lockwright's `DEBUG` spans and events, with their fields.

use std::fmt::Write;
use std::sync::{Mutex, Once};

static EVENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Every span opened, as `LEVEL name field=value...` (fields recorded later appended); a span's
/// id is its index + 1.
static SPANS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture {
    /// Also capture `lock_core`'s spans and events down to `DEBUG`.
    spans: bool,
}

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
            || (self.spans
                && metadata.target().starts_with("lock_core")
                && *metadata.level() <= tracing::Level::DEBUG)
    }
    fn new_span(&self, attributes: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let metadata = attributes.metadata();
        let mut fields = Fields(format!("{} {}", metadata.level(), metadata.name()));
        attributes.record(&mut fields);
        let mut spans = SPANS.lock().unwrap();
        spans.push(fields.0);
        tracing::span::Id::from_u64(spans.len() as u64)
    }
    fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut fields = Fields(String::new());
        values.record(&mut fields);
        if let Some(text) = SPANS.lock().unwrap().get_mut(span.into_u64() as usize - 1) {
            text.push_str(&fields.0);
        }
    }
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
    install(false);
}

/// Installs the capture of warnings and errors and of lockwright's `DEBUG` spans and events,
/// once per test binary (the first of `capture` and `capture_spans` called decides).
pub fn capture_spans() {
    install(true);
}

fn install(spans: bool) {
    static START: Once = Once::new();
    START.call_once(|| tracing::subscriber::set_global_default(Capture { spans }).unwrap());
}

/// The captured spans named `name` whose fields contain every one of `texts`.
pub fn spans_containing_all(name: &str, texts: &[&str]) -> Vec<String> {
    SPANS
        .lock()
        .unwrap()
        .iter()
        .filter(|span| span.split(' ').nth(1) == Some(name))
        .filter(|span| texts.iter().all(|text| span.contains(text)))
        .cloned()
        .collect()
}

/// The captured events of `level` whose fields contain every one of `texts`.
pub fn events_containing_all(level: &str, texts: &[&str]) -> Vec<String> {
    EVENTS
        .lock()
        .unwrap()
        .iter()
        .filter(|event| event.starts_with(level) && texts.iter().all(|t| event.contains(t)))
        .cloned()
        .collect()
}

/// Every span and event captured so far, one a line (to check what never appears).
pub fn everything_captured() -> String {
    let spans = SPANS.lock().unwrap().join("\n");
    let events = EVENTS.lock().unwrap().join("\n");
    format!("{spans}\n{events}")
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
