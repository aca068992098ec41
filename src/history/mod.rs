//! The daemon's history (SPEC "History"): `state_dir/history.jsonl`, one
//! [`Entry`] per line, mode 0600.
//!
//! [`History`] is the daemon's handle: it appends and fsyncs new entries (the
//! daemon does it before it announces the change), past [`MAX_ON_DISK`] lines
//! rewrites the file atomically (`atomic_file`) with the newest [`KEEP`], and
//! answers `GET /v1/history` by reading the file (a rare request; at most
//! [`MAX_ON_DISK`] lines). It keeps in memory only the entries whose append
//! failed, until a later append puts them on disk before the new ones: the
//! daemon's memory does not grow with its history (issue 22). [`read_file`] and [`select`]
//! are the rules the CLI shares with the daemon when it reads the file
//! itself (the daemon down): which lines count, and which entries a
//! `since`/`limit` query picks.

mod entry;
mod query;

pub use entry::{Action, Entry, Event, OUTCOME_OK, OUTCOME_UNREACHABLE, ReloadOutcome};
pub use query::{DEFAULT_LIMIT, MAX_LIMIT, Query, QueryError, parse_limit, parse_since, select};

/// The answer of `GET /v1/history`: `{"entries": [...]}`, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Page {
    pub entries: Vec<Entry>,
}

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file's name in `state_dir`.
pub const FILE_NAME: &str = "history.jsonl";
/// Past this many lines on disk, the file is rewritten.
pub const MAX_ON_DISK: usize = 2000;
/// How many of the newest entries a rewrite keeps.
pub const KEEP: usize = 1000;

/// Why the history could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} the history {}: {source}", path.display())]
pub struct HistoryError {
    pub path: PathBuf,
    pub action: &'static str,
    #[source]
    pub source: std::io::Error,
}

/// What a read of the file found.
#[derive(Debug, Default)]
pub struct FileContents {
    /// The entries that could be read, in file order (oldest first).
    pub entries: Vec<Entry>,
    /// Lines that could not be read (torn by a crash, damaged).
    pub skipped: usize,
    /// The first of them (1-based), to name in the log.
    pub first_skipped_line: Option<usize>,
    /// Lines in the file, read or not (what counts towards a rewrite).
    pub lines: usize,
    /// The file does not end with a newline (a torn last write).
    pub torn_tail: bool,
}

/// Reads the history file; a missing file is an empty history. Lines that
/// are not an entry are counted and skipped, never an error.
pub fn read_file(path: &Path) -> Result<FileContents, HistoryError> {
    let mut raw = Vec::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_end(&mut raw).map_err(|source| HistoryError {
            path: path.to_path_buf(),
            action: "read",
            source,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileContents::default()),
        Err(source) => {
            return Err(HistoryError {
                path: path.to_path_buf(),
                action: "open",
                source,
            });
        }
    };
    Ok(parse(&raw))
}

fn parse(raw: &[u8]) -> FileContents {
    let mut out = FileContents {
        torn_tail: !raw.is_empty() && !raw.ends_with(b"\n"),
        ..Default::default()
    };
    for (i, line) in raw.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.lines += 1;
        match serde_json::from_slice::<Entry>(line) {
            Ok(e) => out.entries.push(e),
            Err(_) => {
                out.skipped += 1;
                out.first_skipped_line.get_or_insert(i + 1);
            }
        }
    }
    out
}

/// The daemon's history: the file, and what could not be written to it yet.
pub struct History {
    path: PathBuf,
    dir: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Entries whose append failed, oldest first: served with the file's,
    /// and written before the next ones; never more than [`MAX_ON_DISK`].
    unsaved: VecDeque<Entry>,
    /// Lines in the file now (a rewrite is due past [`MAX_ON_DISK`]).
    lines: usize,
    /// The last write was torn: start the next append on a new line.
    torn_tail: bool,
}

impl History {
    /// Opens the history in `state_dir` (which exists): reads what is there.
    /// An unreadable file is an empty history (the caller logs it) that
    /// appends still try to write to.
    pub fn open(state_dir: &Path) -> (History, Result<FileContents, HistoryError>) {
        let path = state_dir.join(FILE_NAME);
        let read = read_file(&path);
        let (lines, torn_tail) = match &read {
            Ok(c) => (c.lines, c.torn_tail),
            Err(_) => (0, false),
        };
        let h = History {
            dir: state_dir.to_path_buf(),
            path,
            inner: Mutex::new(Inner {
                unsaved: VecDeque::new(),
                lines,
                torn_tail,
            }),
        };
        (h, read)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every entry, oldest first: the file's newest [`MAX_ON_DISK`] (none
    /// when it cannot be read), then those not written yet.
    fn all(&self, inner: &Inner) -> Vec<Entry> {
        let mut entries = read_file(&self.path).map(|c| c.entries).unwrap_or_default();
        let skip = entries.len().saturating_sub(MAX_ON_DISK);
        entries.drain(..skip);
        entries.extend(inner.unsaved.iter().cloned());
        entries
    }

    /// Every entry, oldest first (one read of the file).
    pub fn entries(&self) -> Vec<Entry> {
        let inner = self.inner();
        self.all(&inner)
    }

    /// The entries a query picks, oldest first.
    pub fn query(&self, q: &Query) -> Vec<Entry> {
        let inner = self.inner();
        select(self.all(&inner).iter(), q)
    }

    /// Appends `entries` (after any whose append failed before) and flushes
    /// them to disk (fsync) before returning; past [`MAX_ON_DISK`] lines,
    /// rewrites the file with the newest [`KEEP`]. When the write fails the
    /// entries are kept (served, and written with the next append).
    pub fn append(&self, entries: &[Entry]) -> Result<(), HistoryError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut inner = self.inner();
        let written = if inner.lines + inner.unsaved.len() + entries.len() > MAX_ON_DISK {
            self.rewrite(&mut inner, entries)
        } else {
            self.append_lines(&mut inner, entries)
        };
        if written.is_err() {
            inner.unsaved.extend(entries.iter().cloned());
            while inner.unsaved.len() > MAX_ON_DISK {
                inner.unsaved.pop_front();
            }
        }
        written
    }

    /// The lines of `entries`, each ending in a newline.
    fn lines_of<'a>(entries: impl Iterator<Item = &'a Entry>) -> Vec<u8> {
        let mut text = Vec::new();
        for e in entries {
            // An entry is plain data: serialising it cannot fail.
            if let Ok(line) = serde_json::to_vec(e) {
                text.extend_from_slice(&line);
                text.push(b'\n');
            }
        }
        text
    }

    /// Appends the unsaved entries, then `entries`, to the file.
    fn append_lines(&self, inner: &mut Inner, entries: &[Entry]) -> Result<(), HistoryError> {
        let mut text = Vec::new();
        if inner.torn_tail {
            // A crash cut the last line: it stays a bad line of its own.
            text.push(b'\n');
        }
        text.extend(Self::lines_of(inner.unsaved.iter().chain(entries)));
        let fail = |action: &'static str| {
            let path = self.path.clone();
            move |source| HistoryError {
                path,
                action,
                source,
            }
        };
        let created = !self.path.exists();
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(fail("open"))?;
        f.write_all(&text).map_err(fail("append to"))?;
        f.sync_data().map_err(fail("flush"))?;
        if created {
            // The new file's name must survive a crash too.
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(fail("flush the directory of"))?;
        }
        inner.lines += inner.unsaved.len() + entries.len();
        inner.unsaved.clear();
        inner.torn_tail = false;
        Ok(())
    }

    /// Writes the newest [`KEEP`] of the file's entries, the unsaved ones and
    /// `entries` as the whole file, atomically: a crash leaves the old file
    /// or the new one.
    fn rewrite(&self, inner: &mut Inner, entries: &[Entry]) -> Result<(), HistoryError> {
        let mut all = read_file(&self.path)?.entries;
        all.extend(inner.unsaved.iter().cloned());
        all.extend(entries.iter().cloned());
        let skip = all.len().saturating_sub(KEEP);
        let kept = &all[skip..];
        let text = Self::lines_of(kept.iter());
        let temp = self
            .dir
            .join(format!(".{FILE_NAME}.tmp-{}", std::process::id()));
        crate::atomic_file::write(&self.dir, &self.path, &temp, &text, 0o600).map_err(|e| {
            HistoryError {
                path: e.file,
                action: e.action,
                source: e.source,
            }
        })?;
        inner.lines = kept.len();
        inner.unsaved.clear();
        inner.torn_tail = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
