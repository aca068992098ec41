//! A panic in one of the daemon's tasks ends the process with SIGABRT (so
//! that systemd restarts it), although tokio would catch it. The panicking
//! task is this test's own, run in a child process (this test binary run
//! again, filtered to the child test): the shipped binaries have no trigger.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

const CHILD: &str = "WISPANEL_PANIC_ABORT_CHILD";

/// In the child: a task panics on the daemon's kind of runtime; returns when
/// the process survived it.
fn child(with_hook: bool) {
    if with_hook {
        wispanel_license::daemon::abort_on_panic();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let task = tokio::spawn(async { panic!("a task panics") });
        assert!(task.await.is_err(), "tokio caught the panic");
    });
    println!("survived the panic");
}

fn run_child(name: &str, with_hook: bool) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, if with_hook { "hook" } else { "none" })
        .output()
        .unwrap()
}

#[test]
fn a_panicking_task_aborts_the_process() {
    match std::env::var(CHILD).as_deref() {
        Ok("hook") => return child(true),
        Ok(_) => return child(false),
        Err(_) => {}
    }
    let out = run_child("a_panicking_task_aborts_the_process", true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(6),
        "SIGABRT expected: {:?}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(!stdout.contains("survived"), "{stdout}");
    assert!(
        stderr.contains("a task panics"),
        "the panic is printed first: {stderr}"
    );

    // Without the hook (and without panic=abort), tokio catches it: the
    // check above can fail.
    let out = run_child("a_panicking_task_aborts_the_process", false);
    if cfg!(panic = "unwind") {
        assert!(out.status.success(), "{:?}", out.status);
        assert!(String::from_utf8_lossy(&out.stdout).contains("survived"));
    } else {
        assert_eq!(out.status.signal(), Some(6));
    }
}
