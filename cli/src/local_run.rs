//! One local run of the pipeline: the same stage functions as the Lambdas, with the local
//! edges (inline queue, state files, a dead-letter file). Used by `sync` and `demo`.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use sfsync_mapping::Config;
use sfsync_pipeline::local::{Progress, ProgressFn};

use crate::output;

pub use sfsync_pipeline::local::{LocalOutcome, LocalRun};

/// Runs locally with progress on stderr (bars on a terminal, plain lines otherwise).
pub async fn run(config: Config, options: LocalRun, show_progress: bool) -> Result<LocalOutcome> {
    let selected: Vec<_> = if options.syncs.is_empty() {
        config.syncs.iter().map(|s| s.name.clone()).collect()
    } else {
        options.syncs.clone()
    };
    let display = Display::new(show_progress, &selected);
    let progress: ProgressFn = {
        let display = display.clone();
        Arc::new(move |event| display.update(event))
    };
    let outcome = sfsync_pipeline::local::run_local(config, options, progress).await;
    display.finish_all();
    Ok(outcome?)
}

/// Progress: a bar per sync on a terminal, a plain line per page otherwise.
#[derive(Clone)]
struct Display {
    inner: Arc<Mutex<DisplayState>>,
}

struct DisplayState {
    enabled: bool,
    multi: Option<MultiProgress>,
    bars: Vec<(String, ProgressBar, u64, u64)>,
}

impl Display {
    fn new(enabled: bool, syncs: &[String]) -> Display {
        let terminal = enabled && std::io::stderr().is_terminal();
        let multi = terminal.then(MultiProgress::new);
        let style = ProgressStyle::with_template("{spinner} {prefix:<20} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bars = syncs
            .iter()
            .map(|s| {
                let bar = match &multi {
                    Some(m) => m.add(ProgressBar::new_spinner()),
                    None => ProgressBar::hidden(),
                };
                bar.set_style(style.clone());
                bar.set_prefix(s.clone());
                bar.set_message("waiting");
                (s.clone(), bar, 0, 0)
            })
            .collect();
        Display {
            inner: Arc::new(Mutex::new(DisplayState {
                enabled,
                multi,
                bars,
            })),
        }
    }

    fn update(&self, event: Progress) {
        let Ok(mut state) = self.inner.lock() else {
            return;
        };
        let enabled = state.enabled;
        let terminal = state.multi.is_some();
        match event {
            Progress::Extracted { sync, records } => {
                if let Some(entry) = state.bars.iter_mut().find(|b| b.0 == sync) {
                    entry.2 += records;
                    entry
                        .1
                        .set_message(format!("{} extracted, {} delivered", entry.2, entry.3));
                    entry.1.tick();
                    if enabled && !terminal {
                        output::note(format_args!("{sync}: {} records extracted", entry.2));
                    }
                }
            }
            Progress::Delivered { sync, calls, .. } => {
                if let Some(entry) = state.bars.iter_mut().find(|b| b.0 == sync) {
                    entry.3 += calls;
                    entry
                        .1
                        .set_message(format!("{} extracted, {} delivered", entry.2, entry.3));
                }
            }
            Progress::Waiting {
                destination,
                seconds,
                reason,
            } => {
                let line = format!("{destination}: waiting {seconds}s before retrying ({reason})");
                match &state.multi {
                    Some(m) => {
                        let _ = m.println(line);
                    }
                    None if enabled => output::note(line),
                    None => {}
                }
            }
        }
    }

    fn finish_all(&self) {
        let Ok(state) = self.inner.lock() else { return };
        for entry in &state.bars {
            entry.1.finish_with_message(format!(
                "done: {} extracted, {} delivered",
                entry.2, entry.3
            ));
        }
        if let Some(m) = &state.multi {
            let _ = m.clear();
        }
    }
}

/// Prints the reports and where things are (nothing more once the reader has gone away).
pub fn print_reports(outcome: &LocalOutcome, state_dir: &Path) -> Result<()> {
    for report in &outcome.reports {
        output::line(report)?;
    }
    for busy in &outcome.busy {
        output::line(format_args!(
            "sync {busy}: skipped, another run holds its lease"
        ))?;
    }
    if outcome.reports.iter().any(|r| r.counts.dead > 0) {
        output::line(format_args!(
            "dead letters (with reasons): {}",
            outcome.dead_letter_path.display()
        ))?;
    }
    output::line(format_args!("state: {}", state_dir.display()))?;
    Ok(())
}
