//! Standard output whose reader may go away at any moment (`sfsync runs | head -3`).
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe fails with `BrokenPipe`, and
//! `println!` turns that into a panic with a backtrace. The commands write through here
//! instead: once the reader is gone, output stops quietly and the command carries on to its
//! normal end (a `sync` still saves its state and exits with the run's status), as
//! `rg … | head` does. Any other write error is still an error.

use std::fmt::Display;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write found the reader gone; later writes are skipped.
static READER_GONE: AtomicBool = AtomicBool::new(false);

/// Prints `text` and a newline. `Ok(false)` when the reader has gone away, so that a
/// command producing a stream can stop early.
pub fn line(text: impl Display) -> anyhow::Result<bool> {
    if reader_gone() {
        return Ok(false);
    }
    let mut out = io::stdout().lock();
    let written = writeln!(out, "{text}").and_then(|()| out.flush());
    gone_is_ok(written)
}

/// Prints a progress or diagnostic line on stderr. Unlike `eprintln!`, a stderr whose
/// reader went away (`sfsync sync 2>&1 | head`) does not panic in the middle of a run: the
/// line is dropped and the run goes on to save its state.
pub fn note(text: impl Display) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// True once a write to stdout found its reader gone.
pub fn reader_gone() -> bool {
    READER_GONE.load(Ordering::Relaxed)
}

/// The result of a write to stdout: `Ok(true)` written, `Ok(false)` the reader has gone
/// away (remembered for later writes), `Err` any other failure.
pub fn gone_is_ok(result: io::Result<()>) -> anyhow::Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            READER_GONE.store(true, Ordering::Relaxed);
            Ok(false)
        }
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to stdout")),
    }
}

/// `error` and its causes joined by ": ", as `{:#}` prints them, but leaving out a cause
/// whose text is already in the message: the pipeline's typed errors name their cause in
/// their own message (the logs and run reports read it there) and also return it from
/// `source()`, and would otherwise be printed with the cause twice.
pub fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.is_empty() {
            text = part;
        } else if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
    }
    text
}

/// True when `error` comes from writing to stdout after its reader went away: the last
/// line of defence in `main`, which then ends quietly instead of printing an error.
pub fn is_reader_gone(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cause the message already names is not repeated; one it does not name is added.
    #[test]
    fn a_cause_is_printed_once() {
        let err = anyhow::Error::new(sfsync_pipeline::state::StateError::Io {
            action: "read",
            path: "/state/checkpoints/s.json".into(),
            source: io::Error::new(io::ErrorKind::PermissionDenied, "denied"),
        })
        .context("sync s");
        assert_eq!(
            error_text(&err),
            "sync s: state store: cannot read /state/checkpoints/s.json: denied"
        );
        let plain = anyhow::Error::new(io::Error::other("disk full")).context("cannot write x");
        assert_eq!(error_text(&plain), "cannot write x: disk full");
    }

    #[test]
    fn a_broken_pipe_is_the_reader_going_away_and_other_errors_stay_errors() {
        let gone = io::Error::new(io::ErrorKind::BrokenPipe, "closed");
        assert!(!gone_is_ok(Err(gone)).unwrap_or(true));
        assert!(reader_gone());
        let full = io::Error::new(io::ErrorKind::StorageFull, "disk full");
        let err = gone_is_ok(Err(full)).err();
        assert!(err.is_some_and(|e| !is_reader_gone(&e)));
        let wrapped = anyhow::Error::new(io::Error::new(io::ErrorKind::BrokenPipe, "closed"))
            .context("writing");
        assert!(is_reader_gone(&wrapped));
    }
}
