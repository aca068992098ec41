//! `metrics_textfile`: the metrics written to a file for node_exporter's
//! textfile collector, since Prometheus cannot scrape a Unix socket.
//!
//! Each write is atomic (a temporary file in the same directory, `fsync`,
//! `rename`, `fsync` of the directory), so the collector never reads half a
//! file. The temporary name (`.NAME.tmp-<pid>`) does not end in `.prom`, so
//! the collector never reads it either. The file is mode 0644: node_exporter
//! runs as its own user. [`keep_written`] rewrites it on every change and at
//! least once a [`REWRITE_EVERY`], so that the file's age shows a daemon that
//! stopped; it removes its temporary file on the way out, and a temporary file
//! left by a crash is removed at the next start.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span};

/// SPEC: "at least once a minute".
pub const REWRITE_EVERY: Duration = Duration::from_secs(60);

/// Readable by node_exporter's user.
pub const MODE: u32 = 0o644;

#[derive(Debug, thiserror::Error)]
pub enum TextfileError {
    #[error(
        "metrics_textfile {path}: the directory {dir} does not exist; create it (for Debian's prometheus-node-exporter: /var/lib/prometheus/node-exporter) or change metrics_textfile"
    )]
    NoDirectory { path: PathBuf, dir: PathBuf },
    #[error("metrics_textfile {path}: {action} {file}: {source}")]
    Io {
        path: PathBuf,
        file: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
}

/// The file and its temporary sibling.
#[derive(Clone, Debug)]
pub struct Textfile {
    path: PathBuf,
    dir: PathBuf,
    name: String,
    temp: PathBuf,
}

impl Textfile {
    /// `path` is absolute (the configuration checks it).
    pub fn new(path: &Path) -> Textfile {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        Textfile {
            path: path.to_path_buf(),
            dir,
            name,
            temp,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with `text`, atomically, mode 0644.
    pub fn write(&self, text: &str) -> Result<(), TextfileError> {
        if !self.dir.is_dir() {
            return Err(TextfileError::NoDirectory {
                path: self.path.clone(),
                dir: self.dir.clone(),
            });
        }
        crate::atomic_file::write(&self.dir, &self.path, &self.temp, text.as_bytes(), MODE).map_err(
            |e| TextfileError::Io {
                path: self.path.clone(),
                file: e.file,
                action: e.action,
                source: e.source,
            },
        )
    }

    /// Removes temporary files of this file that a killed daemon left
    /// behind (`.NAME.tmp-<pid>` of another pid); returns them.
    pub fn remove_stale_temp_files(&self) -> Vec<PathBuf> {
        let prefix = format!(".{}.tmp-", self.name);
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_prefix(&prefix)
                    .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
                    && e.path() != self.temp
            })
            .filter(|e| fs::remove_file(e.path()).is_ok())
            .map(|e| e.path())
            .collect()
    }

    /// Removes this process's temporary file, if a write left it.
    pub fn remove_temp(&self) {
        let _ = fs::remove_file(&self.temp);
    }
}

/// Writes `render(value)` to the file that `target` names, at once, again on
/// every change of `rx` and at least every `every`, until `shutdown` or until
/// the sender goes. `target` is asked before each write, so a reloaded
/// configuration takes effect at the next change: a file that is no longer
/// named is removed (it would only look like a daemon that stopped), and
/// nothing is written while none is named. A failed write is logged (once
/// per distinct error, and its recovery) and tried again at the next change
/// or tick: the daemon keeps running.
pub async fn keep_written<T: Send + Sync + 'static>(
    target: impl Fn() -> Option<PathBuf> + Send + 'static,
    mut rx: watch::Receiver<T>,
    render: impl Fn(&T) -> String + Send + 'static,
    every: Duration,
    shutdown: CancellationToken,
) {
    async {
        let mut current: Option<Textfile> = None;
        let mut last_error: Option<String> = None;
        loop {
            let wanted = target();
            if current.as_ref().map(Textfile::path) != wanted.as_deref() {
                if let Some(old) = current.take() {
                    info!(path = %old.path().display(), "metrics_textfile changed; removing the old metrics file");
                    old.remove_temp();
                    let _ = fs::remove_file(old.path());
                }
                current = wanted.as_deref().map(Textfile::new);
                last_error = None;
                if let Some(new) = &current {
                    for stale in new.remove_stale_temp_files() {
                        info!(path = %stale.display(), "removed a temporary metrics file left by an earlier run");
                    }
                }
            }
            if let Some(file) = &current {
                let text = render(&rx.borrow_and_update());
                let f = file.clone();
                // Awaited to the end even at shutdown: a write takes
                // milliseconds, and stopping half-way would leave the
                // temporary file.
                let result = match tokio::task::spawn_blocking(move || f.write(&text)).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(e) => Err(format!(
                        "metrics_textfile {}: the write task failed: {e}",
                        file.path().display()
                    )),
                };
                match result {
                    Ok(()) => {
                        if last_error.take().is_some() {
                            info!(path = %file.path().display(), "the metrics file is written again");
                        }
                    }
                    Err(e) => {
                        if last_error.as_ref() != Some(&e) {
                            error!(path = %file.path().display(), "cannot write the metrics file: {e}");
                        }
                        last_error = Some(e);
                    }
                }
            } else {
                rx.borrow_and_update();
            }
            let tick = async {
                if current.is_some() {
                    tokio::time::sleep(every).await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                r = rx.changed() => if r.is_err() { break },
                _ = tick => {}
                _ = shutdown.cancelled() => break,
            }
        }
        if let Some(file) = current {
            file.remove_temp();
        }
    }
    .instrument(info_span!("textfile"))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn writes_atomically_with_mode_0644_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wispanel_license.prom");
        let f = Textfile::new(&path);
        f.write("a 1\n").unwrap();
        f.write("a 2\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "a 2\n");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("wispanel_license.prom")]
        );
    }

    #[test]
    fn a_missing_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope/wispanel_license.prom");
        let e = Textfile::new(&path).write("a 1\n").unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn stale_temp_files_of_this_file_only_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.prom");
        for n in [
            ".w.prom.tmp-12345",
            ".w.prom.tmp-x",
            ".other.prom.tmp-1",
            "w.prom",
        ] {
            fs::write(dir.path().join(n), "x").unwrap();
        }
        let f = Textfile::new(&path);
        assert_eq!(
            f.remove_stale_temp_files(),
            vec![dir.path().join(".w.prom.tmp-12345")]
        );
        for n in [".w.prom.tmp-x", ".other.prom.tmp-1", "w.prom"] {
            assert!(dir.path().join(n).exists(), "{n}");
        }
    }

    /// Polls the file until `want` is in it; the writer runs on the blocking
    /// pool, so the test yields instead of assuming a time.
    async fn until_written(path: &Path, want: &str) {
        for _ in 0..6000 {
            if fs::read_to_string(path).is_ok_and(|t| t == want) {
                return;
            }
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("{} never held {want:?}", path.display());
    }

    #[tokio::test(start_paused = true)]
    async fn rewritten_on_change_and_every_interval_and_clean_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.prom");
        let stale = dir.path().join(".w.prom.tmp-1");
        fs::write(&stale, "half").unwrap();
        let (tx, rx) = watch::channel("a 1\n".to_string());
        let shutdown = CancellationToken::new();
        let target = path.clone();
        let task = tokio::spawn(keep_written(
            move || Some(target.clone()),
            rx,
            |s: &String| s.clone(),
            REWRITE_EVERY,
            shutdown.clone(),
        ));
        until_written(&path, "a 1\n").await;
        assert!(!stale.exists(), "the crash's temporary file is gone");
        tx.send_replace("a 2\n".into());
        until_written(&path, "a 2\n").await;
        // Nothing changes, yet the file is written again within the minute.
        fs::remove_file(&path).unwrap();
        tokio::time::sleep(REWRITE_EVERY - Duration::from_secs(1)).await;
        assert!(!path.exists(), "not before its time");
        tokio::time::sleep(Duration::from_secs(2)).await;
        until_written(&path, "a 2\n").await;
        shutdown.cancel();
        task.await.unwrap();
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("w.prom")]);
    }
}

#[cfg(test)]
mod target_tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn a_changed_target_moves_the_file_and_none_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.prom");
        let b = dir.path().join("b.prom");
        let target = Arc::new(Mutex::new(Some(a.clone())));
        let (tx, rx) = watch::channel(1u32);
        let shutdown = CancellationToken::new();
        let t = target.clone();
        let task = tokio::spawn(keep_written(
            move || t.lock().unwrap().clone(),
            rx,
            |n: &u32| format!("n {n}\n"),
            REWRITE_EVERY,
            shutdown.clone(),
        ));
        let wait = |p: PathBuf, want: Option<&'static str>| async move {
            for _ in 0..6000 {
                if fs::read_to_string(&p).ok().as_deref() == want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("{} never became {want:?}", p.display());
        };
        wait(a.clone(), Some("n 1\n")).await;
        *target.lock().unwrap() = Some(b.clone());
        tx.send_replace(2);
        wait(b.clone(), Some("n 2\n")).await;
        wait(a.clone(), None).await;
        *target.lock().unwrap() = None;
        tx.send_replace(3);
        wait(b.clone(), None).await;
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
