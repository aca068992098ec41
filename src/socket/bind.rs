//! Creating the socket: its directory, a stale socket left by a dead daemon
//! (replaced), a live daemon's socket (refused), a path that is not a socket
//! (never deleted), and the mode and group set before anyone can connect.

use crate::config::Config;
use crate::host::group_id;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error(
        "{path}: socket_path: another wispanel-licensed is already listening there; stop it first"
    )]
    Live { path: PathBuf },
    #[error("{path}: socket_path: the path exists and is not a socket; not touching it")]
    NotASocket { path: PathBuf },
    #[error("{path}: socket_path: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("socket_group: no group named {0:?} in /etc/group")]
    NoGroup(String),
    #[error("the socket passed by systemd (LISTEN_FDS) cannot be served: {problem}")]
    Passed { problem: String },
}

fn io(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> SocketError {
    let path = path.to_path_buf();
    move |source| SocketError::Io {
        path,
        action,
        source,
    }
}

/// Binds the status socket at `socket_path` with `socket_mode` and
/// `socket_group`. The socket is made under a temporary name and renamed into
/// place, so no client ever sees it with the wrong mode.
pub fn bind(config: &Config) -> Result<UnixListener, SocketError> {
    let path = &config.socket_path;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(io(dir, "cannot create the socket's directory"))?;
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(SocketError::Live { path: path.clone() });
            }
            tracing::info!(path = %path.display(), "replacing a stale socket: {}", path.display());
            fs::remove_file(path).map_err(io(path, "cannot remove the stale socket"))?;
        }
        Ok(_) => return Err(SocketError::NotASocket { path: path.clone() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(path, "cannot inspect")(e)),
    }
    let gid = config
        .socket_group
        .as_deref()
        .map(group_id)
        .transpose()
        .map_err(|e| SocketError::NoGroup(e.0))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "status.sock".into());
    let tmp = path.with_file_name(format!(".{name}.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(io(&tmp, "cannot bind"))?;
    let setup = (|| {
        fs::set_permissions(&tmp, fs::Permissions::from_mode(config.socket_mode))
            .map_err(io(&tmp, "cannot set socket_mode"))?;
        if let Some(gid) = gid {
            std::os::unix::fs::chown(&tmp, None, Some(gid))
                .map_err(io(&tmp, "cannot set socket_group"))?;
        }
        fs::rename(&tmp, path).map_err(io(path, "cannot move the socket into place"))
    })();
    if let Err(e) = setup {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(listener)
}
