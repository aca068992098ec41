//! Writes that survive a crash: a temporary file in the same directory,
//! fsync, rename over the target, fsync the directory. One home for the
//! sequence that `state.json`, the saved key, the metrics textfile and the
//! history's rewrite use.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Which step failed, on which file.
#[derive(Debug)]
pub struct WriteError {
    pub file: PathBuf,
    pub action: &'static str,
    pub source: std::io::Error,
}

/// Writes `bytes` to `target` (in `dir`) through `temp` (also in `dir`), with
/// `mode` whatever the umask. On failure the temporary file is removed and
/// the target is left as it was.
pub fn write(
    dir: &Path,
    target: &Path,
    temp: &Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), WriteError> {
    write_with(dir, target, temp, mode, |f| f.write_all(bytes))
}

/// As [`write`], with the content written by `fill` into the temporary file
/// (through a buffer; `fill` need not flush): for a file too large to hold
/// in memory twice. An error from `fill` is reported as a write of `temp`.
pub fn write_with(
    dir: &Path,
    target: &Path,
    temp: &Path,
    mode: u32,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), WriteError> {
    let fail = |file: &Path, action: &'static str| {
        let file = file.to_path_buf();
        move |source| WriteError {
            file,
            action,
            source,
        }
    };
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(temp)
            .map_err(fail(temp, "cannot create the temporary file"))?;
        // The umask (systemd's UMask=), or an old temp file, may have other
        // modes; make sure.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(fail(temp, "cannot set the mode of"))?;
        let mut buffered = std::io::BufWriter::new(&mut f);
        fill(&mut buffered)
            .and_then(|()| buffered.flush())
            .map_err(fail(temp, "cannot write"))?;
        drop(buffered);
        f.sync_all().map_err(fail(temp, "cannot fsync"))?;
        drop(f);
        fs::rename(temp, target).map_err(fail(target, "cannot rename into place"))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(fail(dir, "cannot fsync the directory"))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_target_with_the_mode_asked_for() {
        let d = tempfile::tempdir().unwrap();
        let (target, temp) = (d.path().join("f"), d.path().join(".f.tmp-1"));
        fs::write(&target, "old").unwrap();
        write(d.path(), &target, &temp, b"new", 0o640).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert!(!temp.exists());
    }

    #[test]
    fn a_failure_names_the_file_and_leaves_the_target() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("f");
        fs::write(&target, "old").unwrap();
        let temp = d.path().join("missing-dir").join(".f.tmp-1");
        let e = write(d.path(), &target, &temp, b"new", 0o600).unwrap_err();
        assert_eq!(e.file, temp);
        assert_eq!(e.action, "cannot create the temporary file");
        assert_eq!(fs::read_to_string(&target).unwrap(), "old");
    }
}
