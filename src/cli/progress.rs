//! An indicatif progress bar, drawn only when stderr is a terminal.

use std::io::IsTerminal;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use indicatif::{ProgressBar, ProgressStyle};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

pub struct TerminalProgress {
    enabled: bool,
    bar: Option<ProgressBar>,
    stop: Arc<AtomicBool>,
}

impl TerminalProgress {
    /// Also takes over SIGINT, SIGTERM and SIGHUP for the rest of the run: the
    /// first one asks the library to stop and clean up; a second one exits at once.
    pub fn new() -> Self {
        let progress = Self::without_signals();
        for signal in [SIGINT, SIGTERM, SIGHUP] {
            // Registration only fails for forbidden signals, which these are not.
            let _ = signal_hook::flag::register_conditional_shutdown(
                signal,
                130,
                progress.stop.clone(),
            );
            let _ = signal_hook::flag::register(signal, progress.stop.clone());
        }
        progress
    }

    /// A progress bar that leaves signal handling alone.
    pub fn without_signals() -> Self {
        TerminalProgress {
            enabled: std::io::stderr().is_terminal(),
            bar: None,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl sxf::Progress for TerminalProgress {
    fn begin(&mut self, what: &str, total: u64) {
        // Small jobs finish before a bar would be readable.
        if !self.enabled || total < (8 << 20) {
            return;
        }
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>10} [{bar:20}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(what.to_owned());
        self.bar = Some(bar);
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn stop_flag(&self) -> Option<Arc<AtomicBool>> {
        Some(self.stop.clone())
    }

    fn end(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
