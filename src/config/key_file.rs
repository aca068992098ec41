//! The licence key read from `license_key_file` or the systemd credential:
//! a private file holding one well-shaped key.

use super::ctx::{Ctx, Sp};
use super::fields::absolute;
use super::side_file::{SideFileError, read_side_file};
use super::*;

/// "readable by group and others" etc., for a mode with bits in 0o077.
pub(super) fn describe_access(mode: u32) -> String {
    let who = |shift: u32| {
        let bits = (mode >> shift) & 0o7;
        let mut v = Vec::new();
        if bits & 0o4 != 0 {
            v.push("readable");
        }
        if bits & 0o2 != 0 {
            v.push("writable");
        }
        if bits & 0o1 != 0 {
            v.push("executable");
        }
        v.join(" and ")
    };
    let group = who(3);
    let others = who(0);
    match (group.is_empty(), others.is_empty()) {
        (false, true) => format!("{group} by its group"),
        (true, false) => format!("{others} by others"),
        _ if group == others => format!("{group} by its group and by others"),
        _ => format!("{group} by its group and {others} by others"),
    }
}

/// Reads and checks a key file: private mode, readable, a well-shaped key.
pub(super) fn read_key_file(
    ctx: &Ctx<'_>,
    key: &str,
    span: Option<std::ops::Range<usize>>,
    path: &Path,
    check_mode: bool,
) -> Result<LicenseKey, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let unreadable = |source| {
        ctx.at(
            key,
            span.clone(),
            ConfigErrorKind::KeyFileUnreadable {
                path: path.to_path_buf(),
                source,
            },
        )
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    let mode = meta.permissions().mode() & 0o7777;
    if check_mode && mode & 0o077 != 0 {
        return Err(ctx.at(
            key,
            span,
            ConfigErrorKind::KeyFilePermissions {
                path: path.to_path_buf(),
                mode,
                access: describe_access(mode),
            },
        ));
    }
    let text = read_side_file(path).map_err(|e| match e {
        SideFileError::Io(source) => unreadable(source),
        SideFileError::TooLarge => ctx.at(
            key,
            span.clone(),
            ConfigErrorKind::TooLarge {
                path: path.to_path_buf(),
            },
        ),
        SideFileError::NotText => ctx.at(
            key,
            span.clone(),
            ConfigErrorKind::NotText {
                path: path.to_path_buf(),
            },
        ),
    })?;
    LicenseKey::parse(&text).map_err(|e| ctx.at(key, span, ConfigErrorKind::KeyShape(e)))
}

/// The licence key and where it came from: inline, `license_key_file`, or
/// the systemd credential in `credentials_dir`.
pub(super) fn license_key(
    ctx: &Ctx<'_>,
    inline: Option<&Sp<String>>,
    key_file: Option<&Sp<String>>,
    credentials_dir: Option<&Path>,
) -> Result<(Option<LicenseKey>, Option<KeySource>), ConfigError> {
    match (inline, key_file) {
        (Some(_), Some(file)) => Err(ctx.val("license_key_file", file, ConfigErrorKind::KeyTwice)),
        (Some(k), None) => {
            if k.get_ref().contains("****") {
                return Err(ctx.val("license_key", k, ConfigErrorKind::MaskedKey));
            }
            let key = LicenseKey::parse(k.get_ref())
                .map_err(|e| ctx.val("license_key", k, ConfigErrorKind::KeyShape(e)))?;
            Ok((Some(key), Some(KeySource::Inline)))
        }
        (None, Some(f)) => {
            let file = absolute(ctx, "license_key_file", f)?;
            let key = read_key_file(ctx, "license_key_file", Some(f.span()), &file, true)?;
            Ok((Some(key), Some(KeySource::File(file))))
        }
        (None, None) => match credentials_dir {
            Some(dir) => {
                let file = dir.join(KEY_CREDENTIAL);
                if file.exists() {
                    // systemd makes the credentials directory private to the
                    // service, so the file's own mode is not checked.
                    let key = read_key_file(ctx, "license.key credential", None, &file, false)?;
                    Ok((Some(key), Some(KeySource::Credential(file))))
                } else {
                    Ok((None, None))
                }
            }
            None => Ok((None, None)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_descriptions() {
        assert_eq!(
            describe_access(0o644),
            "readable by its group and by others"
        );
        assert_eq!(describe_access(0o640), "readable by its group");
        assert_eq!(describe_access(0o602), "writable by others");
        assert_eq!(
            describe_access(0o664),
            "readable and writable by its group and readable by others"
        );
    }
}
