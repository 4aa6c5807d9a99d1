//! Log output: `tracing` with `RUST_LOG`-style filtering; human-readable lines (coloured on a terminal) or JSON.
//!
//! Lines logged while a request is served carry its `request_id` and, once known, its `member` (from
//! [`crate::context`]), in both formats, without any call site passing them.
//!
//! Lines are written to stderr through a small buffer, as nginx does with `access_log ... buffer=32k flush=...`:
//! one `write` per request line was a measurable share of the proxy's cost. The buffer is written out when it holds
//! 32 KiB, at least every 100 ms (see [`flush_periodically`]), at exit, and at once for any warning or error, so a
//! problem is never held back.

use std::io::{IsTerminal as _, Write};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

const BUFFER_BYTES: usize = 32 * 1024;
/// How long an info line may wait in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The buffered stderr writer shared by every thread.
#[derive(Clone, Default)]
pub struct LogBuffer {
    buffer: Arc<Mutex<Vec<u8>>>,
    ansi: bool,
}

/// Where lines written outside `tracing`'s formatter (the access log) go: set once, by the first [`init`].
static OUTPUT: OnceLock<(LogBuffer, LogFormat)> = OnceLock::new();

/// The installed buffer and format, once [`init`] has run.
pub fn output() -> Option<(&'static LogBuffer, LogFormat)> {
    OUTPUT.get().map(|(buffer, format)| (buffer, *format))
}

impl LogBuffer {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while a line was being appended leaves at worst half a line; keep logging.
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends whole lines; writes the buffer out when it is full or `urgent`.
    pub fn append(&self, lines: &[u8], urgent: bool) {
        let mut buffer = self.lock();
        buffer.extend_from_slice(lines);
        if urgent || buffer.len() >= BUFFER_BYTES {
            let _ = std::io::stderr().lock().write_all(&buffer);
            buffer.clear();
        }
    }

    /// Whether lines are coloured (stderr is a terminal and the format is text).
    pub fn ansi(&self) -> bool {
        self.ansi
    }

    /// Writes out whatever is buffered.
    pub fn flush(&self) {
        let mut buffer = self.lock();
        if !buffer.is_empty() {
            let _ = std::io::stderr().lock().write_all(&buffer);
            buffer.clear();
        }
    }
}

/// One event's line, appended to the buffer when the formatter drops it.
pub struct Line {
    owner: LogBuffer,
    line: Vec<u8>,
    urgent: bool,
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        self.owner.append(&self.line, self.urgent);
    }
}

impl<'a> MakeWriter<'a> for LogBuffer {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            owner: self.clone(),
            line: Vec::with_capacity(256),
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        Line {
            owner: self.clone(),
            line: Vec::with_capacity(256),
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

/// Installs the global subscriber and returns its buffer (flush it periodically and at exit). Later calls (tests
/// that start several gateways) keep the first subscriber.
pub fn init(format: LogFormat) -> LogBuffer {
    let terminal = std::io::stderr().is_terminal();
    let buffer = LogBuffer {
        buffer: Arc::default(),
        ansi: terminal && format == LogFormat::Text,
    };
    if OUTPUT.set((buffer.clone(), format)).is_err() {
        // Already set up (tests that start several gateways): keep the first.
        return OUTPUT.get().map_or(buffer, |(first, _)| first.clone());
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(buffer.clone());
    let _ = if format == LogFormat::Json {
        builder.event_format(JsonLine).try_init()
    } else {
        builder
            .fmt_fields(TextFields::default())
            .with_ansi(terminal)
            .try_init()
    };
    buffer
}

/// The text format's fields, followed by the current request's id and member.
#[derive(Debug, Default)]
pub struct TextFields {
    inner: DefaultFields,
}

impl<'w> FormatFields<'w> for TextFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        self.inner.format_fields(writer.by_ref(), fields)?;
        if let Some((id, member)) = crate::context::current() {
            write!(writer, " request_id={id}")?;
            if let Some(member) = member {
                write!(writer, " member={member}")?;
            }
        }
        Ok(())
    }
}

/// One JSON object per line: `timestamp` (RFC 3339, UTC), `level`, `target`, `message`, the event's fields, and the
/// current request's `request_id` and `member`.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut object = Map::new();
        object.insert("timestamp".into(), Value::String(timestamp()));
        object.insert("level".into(), Value::String(meta.level().as_str().into()));
        object.insert("target".into(), Value::String(meta.target().into()));
        event.record(&mut JsonFields(&mut object));
        if let Some((id, member)) = crate::context::current() {
            object.insert("request_id".into(), Value::String(id.to_string()));
            if let Some(member) = member {
                object.insert("member".into(), Value::String(member.to_string()));
            }
        }
        writeln!(writer, "{}", Value::Object(object))
    }
}

/// UTC, to the microsecond: enough to order lines, short enough to read.
fn timestamp() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Microsecond)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

struct JsonFields<'a>(&'a mut Map<String, Value>);

impl Visit for JsonFields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }
}

/// Writes the buffer out every [`FLUSH_EVERY`] until the process ends; run it on the main runtime.
pub async fn flush_periodically(buffer: LogBuffer) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        buffer.flush();
    }
}
