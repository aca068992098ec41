//! Which entries a `since`/`limit` query picks (one rule for
//! `GET /v1/history` and the CLI reading the file itself), and the query's
//! parsing from a URL's query string.

use super::Entry;
use wispanel_core::timestamp::Timestamp;

/// `limit` when the query has none.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit`.
pub const MAX_LIMIT: usize = 1000;

/// A history query: the newest `limit` entries at or after `since`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    pub since: Option<Timestamp>,
    pub limit: usize,
}

impl Default for Query {
    fn default() -> Query {
        Query {
            since: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// A bad query: which parameter, and what is wrong with it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("query parameter `{param}`: {message}")]
pub struct QueryError {
    pub param: &'static str,
    pub message: String,
}

impl Query {
    /// Parses `since=...&limit=...` (URL-encoded). Parameters it does not
    /// know are ignored (the HTTP norm: a newer client may send more); a
    /// known one given twice, empty or out of range is an error naming it.
    pub fn parse(query: Option<&str>) -> Result<Query, QueryError> {
        let mut q = Query::default();
        let (mut seen_since, mut seen_limit) = (false, false);
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "since" => {
                    if std::mem::replace(&mut seen_since, true) {
                        return Err(bad("since", "given more than once"));
                    }
                    // Form decoding turns an unescaped `+` (an offset like
                    // `+02:00`) into a space; an RFC 3339 time has no space.
                    let text = v.replace(' ', "+");
                    q.since = Some(Timestamp::parse_rfc3339(&text).ok_or_else(|| {
                        bad(
                            "since",
                            format!("{text:?} is not an RFC 3339 time (e.g. 2026-11-26T10:00:00Z)"),
                        )
                    })?);
                }
                "limit" => {
                    if std::mem::replace(&mut seen_limit, true) {
                        return Err(bad("limit", "given more than once"));
                    }
                    q.limit = parse_limit(&v).map_err(|m| bad("limit", m))?;
                }
                _ => {}
            }
        }
        Ok(q)
    }

    /// The query string for this query (what the CLI sends).
    pub fn to_query_string(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        if let Some(t) = self.since {
            s.append_pair("since", &t.to_rfc3339());
        }
        s.append_pair("limit", &self.limit.to_string());
        s.finish()
    }
}

/// `limit`: a whole number from 1 to [`MAX_LIMIT`].
pub fn parse_limit(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a whole number from 1 to {MAX_LIMIT}"
        )),
    }
}

/// `--since` of the CLI: an RFC 3339 time, or a duration back from `now`
/// in the configuration's syntax (`7d`, `1h30m`).
pub fn parse_since(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    if let Some(t) = Timestamp::parse_rfc3339(text) {
        return Ok(t);
    }
    wispanel_core::duration::parse_duration(text)
        .map(|d| now.sub(d))
        .map_err(|e| {
            format!("{text:?} is neither an RFC 3339 time (2026-11-26T10:00:00Z) nor a duration (7d, 12h): {e}")
        })
}

fn bad(param: &'static str, message: impl Into<String>) -> QueryError {
    QueryError {
        param,
        message: message.into(),
    }
}

/// The newest `q.limit` of `entries` (oldest first) at or after `q.since`,
/// oldest first.
pub fn select<'a>(entries: impl DoubleEndedIterator<Item = &'a Entry>, q: &Query) -> Vec<Entry> {
    let mut picked: Vec<Entry> = entries
        .rev()
        .filter(|e| q.since.is_none_or(|s| e.at >= s))
        .take(q.limit)
        .cloned()
        .collect();
    picked.reverse();
    picked
}
