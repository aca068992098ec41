//! The small files a configuration names (key, version, CA): read whole,
//! refused when larger than 64 KiB or not text.

use super::*;

/// Reads a small text file; `Err` carries the I/O error or a size/encoding kind.
pub(super) enum SideFileError {
    Io(std::io::Error),
    TooLarge,
    NotText,
}

pub(super) fn read_side_file(path: &Path) -> Result<String, SideFileError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(SideFileError::Io)?;
    let mut bytes = Vec::new();
    file.take(MAX_SIDE_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(SideFileError::Io)?;
    if bytes.len() as u64 > MAX_SIDE_FILE {
        return Err(SideFileError::TooLarge);
    }
    String::from_utf8(bytes).map_err(|_| SideFileError::NotText)
}

pub(super) fn read_version_file(path: &Path) -> Result<String, ConfigErrorKind> {
    let text = read_side_file(path).map_err(|e| match e {
        SideFileError::Io(source) => ConfigErrorKind::VersionFileUnreadable {
            path: path.to_path_buf(),
            source,
        },
        SideFileError::TooLarge => ConfigErrorKind::TooLarge {
            path: path.to_path_buf(),
        },
        SideFileError::NotText => ConfigErrorKind::NotText {
            path: path.to_path_buf(),
        },
    })?;
    let v = text.trim();
    if v.is_empty() {
        return Err(ConfigErrorKind::VersionFileEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(v.to_string())
}
