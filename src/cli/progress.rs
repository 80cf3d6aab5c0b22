//! An indicatif progress bar, drawn only when stderr is a terminal.

use std::io::IsTerminal;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use indicatif::{ProgressBar, ProgressStyle};

pub struct TerminalProgress {
    enabled: bool,
    bar: Option<ProgressBar>,
    stop: Arc<AtomicBool>,
}

impl TerminalProgress {
    /// Also takes over Ctrl-C for the rest of the run (SIGINT, SIGTERM and
    /// SIGHUP on Unix; Ctrl-C and Ctrl-Break on Windows): the first one asks
    /// the library to stop and clean up; a second one exits at once.
    pub fn new() -> Self {
        TerminalProgress {
            stop: interrupt_flag(),
            ..Self::without_signals()
        }
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

/// The process's one interrupt flag, with its handler installed on first use
/// (ctrlc allows one handler per process).
fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let seen = flag.clone();
        // Fails only if a handler is already installed: then Ctrl-C keeps the
        // meaning that handler gives it, and this flag is never set.
        let _ = ctrlc::set_handler(move || {
            if seen.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
        flag
    })
    .clone()
}
