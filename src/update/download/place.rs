//! Where the release goes: the target directory, a safe file name, and the
//! part file beside the target that is fsynced and renamed into place only
//! once verified (and removed on any failure).

use super::DownloadError;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;
use url::Url;

pub(super) fn check_dir(dir: &Path) -> Result<(), DownloadError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(DownloadError::Dir {
            dir: dir.to_path_buf(),
            problem: "not a directory".into(),
        }),
        Err(e) => Err(DownloadError::Dir {
            dir: dir.to_path_buf(),
            problem: e.to_string(),
        }),
    }
}

/// The file name: the URL's last path segment when it is a plain name
/// (`[A-Za-z0-9._+-]`, not starting with a dot, at most 200 bytes), else
/// `wispanel-<version>.tar.gz`.
pub fn file_name(url: &Url, version: &str) -> String {
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or_default();
    if is_plain_name(last) {
        return last.to_string();
    }
    let v: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let name = format!("wispanel-{v}.tar.gz");
    if is_plain_name(&name) && !name.contains("..") {
        name
    } else {
        "wispanel-release.tar.gz".into()
    }
}

fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
}

/// The temporary file; removed when dropped unless it was placed.
pub(super) struct PartFile {
    path: PathBuf,
    file: Option<tokio::fs::File>,
}

impl PartFile {
    /// Creates `path` (mode 0600 until verified) without following a symlink
    /// or reusing a file someone else made; a leftover of a dead process with
    /// our pid is replaced.
    pub(super) async fn create(path: &Path) -> Result<PartFile, DownloadError> {
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        let open = || options.open(path);
        let file = match open().await {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = tokio::fs::remove_file(path).await;
                open().await
            }
            other => other,
        }
        .map_err(|source| DownloadError::Write {
            path: path.to_path_buf(),
            action: "cannot create the temporary file",
            source,
        })?;
        Ok(PartFile {
            path: path.to_path_buf(),
            file: Some(file),
        })
    }

    fn err(&self, action: &'static str) -> impl FnOnce(std::io::Error) -> DownloadError + use<> {
        let path = self.path.clone();
        move |source| DownloadError::Write {
            path,
            action,
            source,
        }
    }

    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<(), DownloadError> {
        let err = self.err("cannot write");
        match self.file.as_mut() {
            Some(f) => f.write_all(bytes).await.map_err(err),
            None => Ok(()),
        }
    }

    /// fsync, mode 0644, rename to `target`, fsync the directory.
    pub(super) async fn place(&mut self, target: &Path) -> Result<(), DownloadError> {
        let Some(mut f) = self.file.take() else {
            return Ok(());
        };
        f.flush().await.map_err(self.err("cannot write"))?;
        f.sync_all().await.map_err(self.err("cannot fsync"))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))
            .await
            .map_err(self.err("cannot set mode 0644"))?;
        drop(f);
        tokio::fs::rename(&self.path, target)
            .await
            .map_err(|source| DownloadError::Write {
                path: target.to_path_buf(),
                action: "cannot rename the verified file into place",
                source,
            })?;
        // Placed: nothing left to remove.
        self.path = PathBuf::new();
        if let Some(dir) = target.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = tokio::fs::File::open(dir).await {
                // The file is complete and in place; a directory that cannot
                // be fsynced (some file systems) is not worth failing over.
                let _ = d.sync_all().await;
            }
        }
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        self.file.take();
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn file_names_are_sanitised() {
        let v = "1.5.0";
        for (u, want) in [
            (
                "https://p/releases/wispanel-1.5.0.tar.gz?token=x",
                "wispanel-1.5.0.tar.gz",
            ),
            (
                "https://p/releases/a%2F..%2Fb?token=x",
                "wispanel-1.5.0.tar.gz",
            ),
            ("https://p/releases/..", "wispanel-1.5.0.tar.gz"),
            ("https://p/releases/.hidden", "wispanel-1.5.0.tar.gz"),
            ("https://p/releases/", "wispanel-1.5.0.tar.gz"),
            ("https://p", "wispanel-1.5.0.tar.gz"),
            ("https://p/x/panel_1.5+b.tgz", "panel_1.5+b.tgz"),
        ] {
            assert_eq!(file_name(&url(u), v), want, "{u}");
        }
        assert_eq!(
            file_name(&url("https://p/"), "../../x"),
            "wispanel-release.tar.gz"
        );
        assert_eq!(file_name(&url("https://p/"), "1/2"), "wispanel-1_2.tar.gz");
    }
}
