//! Errors that point into one file's text: the line of a span, the key a
//! serde error is about, and a guess for an unknown key (did you mean).

use super::*;

pub(super) type Sp<T> = toml::Spanned<T>;

/// Builds errors that point into one file's text.
pub(super) struct Ctx<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    pub(super) fn at(
        &self,
        key: &str,
        span: Option<std::ops::Range<usize>>,
        kind: ConfigErrorKind,
    ) -> ConfigError {
        ConfigError {
            path: self.path.to_path_buf(),
            line: span.map(|s| self.line_of(s.start)),
            key: Some(key.to_string()),
            kind,
        }
    }

    pub(super) fn val(&self, key: &str, v: &Sp<String>, kind: ConfigErrorKind) -> ConfigError {
        self.at(key, Some(v.span()), kind)
    }

    /// Turns a serde error from `toml::from_str` into one that names the key.
    pub(super) fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        let span = err.span();
        let message = err.message().trim().to_string();
        let line = span.clone().map(|s| self.line_of(s.start));
        let tree = toml::de::DeTable::parse(self.text);
        let Ok(tree) = tree else {
            // A syntax error: the parser has no key to offer.
            return ConfigError {
                path: self.path.to_path_buf(),
                line,
                key: None,
                kind: ConfigErrorKind::Syntax(message),
            };
        };
        let mut entries = Vec::new();
        flatten(tree.get_ref(), "", &mut entries);
        let key = span.clone().and_then(|s| {
            entries
                .iter()
                .find(|e| e.key_span == s)
                .or_else(|| {
                    entries
                        .iter()
                        .filter(|e| e.value_span.start <= s.start && s.end <= e.value_span.end)
                        .min_by_key(|e| e.value_span.len())
                })
                .map(|e| e.path.clone())
        });
        let kind = if message.starts_with("unknown field") {
            let table = key
                .as_deref()
                .and_then(|k| k.rsplit_once('.').map(|(t, _)| t))
                .unwrap_or("");
            let allowed: &[&str] = match table {
                "schedule" => SCHEDULE_KEYS,
                "hardware" => HARDWARE_KEYS,
                _ => TOP_KEYS,
            };
            let leaf = key.as_deref().map(|k| k.rsplit('.').next().unwrap_or(k));
            let suggestion = leaf
                .and_then(|l| closest(l, allowed))
                .map(|s| format!(" (did you mean {s:?}?)"))
                .unwrap_or_default();
            ConfigErrorKind::UnknownKey {
                suggestion,
                allowed: allowed.join(", "),
            }
        } else if message.starts_with("invalid type") {
            let hint = match key.as_deref() {
                Some(k) if k.starts_with("schedule.") => format!("; {DURATION_FORMS}"),
                Some("socket_mode") => {
                    "; write the mode as an octal string such as \"0660\"".into()
                }
                Some("socket_connections_per_uid") => {
                    "; write a whole number without quotes, e.g. 32".into()
                }
                Some("schedule") | Some("hardware") => {
                    "; it is a table: write it as [section]".into()
                }
                _ => String::new(),
            };
            ConfigErrorKind::WrongType { message, hint }
        } else {
            ConfigErrorKind::Syntax(message)
        };
        ConfigError {
            path: self.path.to_path_buf(),
            line,
            key,
            kind,
        }
    }
}

struct Entry {
    path: String,
    key_span: std::ops::Range<usize>,
    value_span: std::ops::Range<usize>,
}

fn flatten(table: &toml::de::DeTable<'_>, prefix: &str, out: &mut Vec<Entry>) {
    for (k, v) in table.iter() {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        if let toml::de::DeValue::Table(t) = v.get_ref() {
            flatten(t, &path, out);
        }
        out.push(Entry {
            path,
            key_span: k.span(),
            value_span: v.span(),
        });
    }
}

/// The allowed key closest to a typo, when it is close enough to be a guess.
fn closest<'a>(word: &str, allowed: &[&'a str]) -> Option<&'a str> {
    // "retry_maximum" for "retry_max", "id" for "id_file".
    let prefix = allowed.iter().find(|a| {
        let (short, long) = if a.len() < word.len() {
            (**a, word)
        } else {
            (word, **a)
        };
        short.len() >= 2 && long.starts_with(short)
    });
    if let Some(a) = prefix {
        return Some(a);
    }
    allowed
        .iter()
        .map(|a| (edit_distance(word, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_guesses() {
        assert_eq!(edit_distance("splay", "splay"), 0);
        assert_eq!(edit_distance("spaly", "splay"), 2);
        assert_eq!(closest("licence_key", TOP_KEYS), Some("license_key"));
        assert_eq!(closest("retry_maximum", SCHEDULE_KEYS), Some("retry_max"));
        assert_eq!(closest("id", HARDWARE_KEYS), Some("id_file"));
        assert_eq!(closest("zzz", TOP_KEYS), None);
    }
}
