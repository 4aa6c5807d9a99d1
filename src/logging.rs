//! Log output: `tracing` with `RUST_LOG`-style filtering; human-readable lines (coloured on a terminal) or JSON.
//!
//! Lines are written to stderr through a small buffer, as nginx does with `access_log ... buffer=32k flush=...`:
//! one `write` per request line was a measurable share of the proxy's cost. The buffer is written out when it holds
//! 32 KiB, at least every 100 ms (see [`flush_periodically`]), at exit, and at once for any warning or error, so a
//! problem is never held back.

use std::io::{IsTerminal as _, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

const BUFFER_BYTES: usize = 32 * 1024;
/// How long an info line may wait in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The buffered stderr writer shared by every thread.
#[derive(Clone, Default)]
pub struct LogBuffer {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl LogBuffer {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while a line was being appended leaves at worst half a line; keep logging.
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
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
        let mut buffer = self.owner.lock();
        buffer.extend_from_slice(&self.line);
        if self.urgent || buffer.len() >= BUFFER_BYTES {
            let _ = std::io::stderr().lock().write_all(&buffer);
            buffer.clear();
        }
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
    let buffer = LogBuffer::default();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(buffer.clone());
    let _ = if format == LogFormat::Json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.with_ansi(terminal).try_init()
    };
    buffer
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
