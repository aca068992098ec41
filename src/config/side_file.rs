//! The small files a configuration names (key, version, CA): read whole,
//! refused when larger than 64 KiB or not text.

use super::ctx::{Ctx, Sp};
use super::fields::{absolute, word};
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

/// `ca_file`: an absolute path to a small text file holding a PEM certificate.
pub(super) fn ca_file(ctx: &Ctx<'_>, v: &Sp<String>) -> Result<PathBuf, ConfigError> {
    let p = absolute(ctx, "ca_file", v)?;
    let pem = read_side_file(&p).map_err(|e| {
        let kind = match e {
            SideFileError::Io(source) => ConfigErrorKind::CaFileUnreadable {
                path: p.clone(),
                source,
            },
            SideFileError::TooLarge => ConfigErrorKind::TooLarge { path: p.clone() },
            SideFileError::NotText => ConfigErrorKind::NotText { path: p.clone() },
        };
        ctx.val("ca_file", v, kind)
    })?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(ctx.val("ca_file", v, ConfigErrorKind::CaFileNotPem { path: p }));
    }
    Ok(p)
}

/// The product version: `product_version` or a readable `version_file`, exactly one.
pub(super) fn version(
    ctx: &Ctx<'_>,
    fixed: Option<&Sp<String>>,
    file: Option<&Sp<String>>,
) -> Result<VersionSource, ConfigError> {
    match (fixed, file) {
        (Some(_), Some(f)) => Err(ctx.val("version_file", f, ConfigErrorKind::VersionTwice)),
        (Some(v), None) => Ok(VersionSource::Fixed(word(ctx, "product_version", v)?)),
        (None, Some(f)) => {
            let p = absolute(ctx, "version_file", f)?;
            read_version_file(&p).map_err(|k| ctx.val("version_file", f, k))?;
            Ok(VersionSource::File(p))
        }
        (None, None) => Err(ctx.at("product_version", None, ConfigErrorKind::VersionMissing)),
    }
}
