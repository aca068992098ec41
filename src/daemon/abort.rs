//! A panic anywhere ends the daemon, so that systemd restarts it
//! (`Restart=on-failure`) instead of leaving it running without the task that
//! panicked: tokio catches a panic in a spawned task and carries on, which for
//! this daemon would mean, say, no more licence checks while the status
//! socket still answers. The release profile has `panic = "abort"`, which
//! already aborts at the panic; the hook makes every build behave the same
//! (debug builds and tests unwind).

/// Installs a panic hook that prints the panic as usual (to stderr, which is
/// the journal under systemd) and then aborts the process (SIGABRT).
pub fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        std::process::abort();
    }));
}
