//! Build progress for people: a spinner per stage on a terminal, plain lines otherwise.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

/// Draws build progress on stderr.
pub(crate) struct TermProgress {
    tty: bool,
    bar: Mutex<Option<ProgressBar>>,
    image: String,
}

impl TermProgress {
    /// Progress for building `image`.
    pub(crate) fn new(image: &str) -> TermProgress {
        TermProgress { tty: std::io::stderr().is_terminal(), bar: Mutex::new(None), image: image.into() }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        self.bar.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl den_images::Progress for TermProgress {
    fn begin(&self, stage: &str, what: &str) {
        if !self.tty {
            eprintln!("[{}] {stage}: building {what}", self.image);
            return;
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner:.cyan} [{elapsed:>4}] {prefix:.bold} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(format!("{} {stage}", self.image));
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        *self.slot() = Some(bar);
    }

    fn line(&self, _stage: &str, line: &str) {
        if let Some(bar) = self.slot().as_ref() {
            let short: String = line.chars().take(100).collect();
            bar.set_message(short);
        }
    }

    fn end(&self, stage: &str, cached: bool, secs: f64) {
        let how = if cached { "cached".to_string() } else { format!("built in {secs:.1}s") };
        match self.slot().take() {
            Some(bar) => bar.finish_with_message(format!("done ({how})")),
            None if self.tty => eprintln!("  ✓ [{}] {stage}: {how}", self.image),
            None => eprintln!("[{}] {stage}: {how}", self.image),
        }
    }

    fn warn(&self, msg: &str) {
        match self.slot().as_ref() {
            Some(bar) => bar.println(format!("warning: {msg}")),
            None => eprintln!("warning: {msg}"),
        }
    }
}

/// A byte-count bar on stderr when it is a terminal (`None` otherwise).
pub(crate) fn bytes_bar(len: u64, what: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner:.cyan} [{elapsed:>4}] {bar:30.cyan/blue} {bytes}/{total_bytes} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}
