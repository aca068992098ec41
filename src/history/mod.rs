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
use std::io::{BufRead, BufReader, Write};
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

/// Past this length a line is not an entry (an entry is a few hundred bytes):
/// it is counted as unreadable and never held whole in memory.
const MAX_LINE: usize = 64 * 1024;

/// Reads the history file; a missing file is an empty history. Lines that
/// are not an entry are counted and skipped, never an error.
pub fn read_file(path: &Path) -> Result<FileContents, HistoryError> {
    let mut entries = Vec::new();
    let mut contents = scan(path, |_, e| entries.push(e))?;
    contents.entries = entries;
    Ok(contents)
}

/// Reads the history file line by line, holding one line at a time, and
/// gives `on_entry` each entry with its line (without the newline). The
/// counts come back in a [`FileContents`] whose `entries` is empty.
fn scan(path: &Path, on_entry: impl FnMut(&[u8], Entry)) -> Result<FileContents, HistoryError> {
    let fail = |action: &'static str| {
        move |source| HistoryError {
            path: path.to_path_buf(),
            action,
            source,
        }
    };
    match File::open(path) {
        Ok(f) => scan_lines(BufReader::new(f), on_entry).map_err(fail("read")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileContents::default()),
        Err(source) => Err(fail("open")(source)),
    }
}

fn scan_lines(
    mut r: impl BufRead,
    mut on_entry: impl FnMut(&[u8], Entry),
) -> std::io::Result<FileContents> {
    let mut out = FileContents::default();
    let mut line = Vec::new();
    // The line being read is longer than MAX_LINE (its bytes are dropped).
    let mut overlong = false;
    let mut number = 0;
    let mut last = None;
    let mut finish = |line: &[u8], overlong: bool, number: usize, out: &mut FileContents| {
        if !overlong && line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        out.lines += 1;
        match serde_json::from_slice::<Entry>(line) {
            Ok(e) if !overlong => on_entry(line, e),
            _ => {
                out.skipped += 1;
                out.first_skipped_line.get_or_insert(number);
            }
        }
    };
    loop {
        let buf = r.fill_buf()?;
        let Some(&end) = buf.last() else { break };
        last = Some(end);
        let (piece, complete) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        if !overlong && line.len() + piece.len() > MAX_LINE {
            overlong = true;
            line = Vec::new();
        }
        if !overlong {
            line.extend_from_slice(piece);
        }
        let used = piece.len() + usize::from(complete);
        r.consume(used);
        if complete {
            number += 1;
            finish(&line, overlong, number, &mut out);
            line.clear();
            overlong = false;
        }
    }
    if overlong || !line.is_empty() {
        finish(&line, overlong, number + 1, &mut out);
    }
    out.torn_tail = last.is_some_and(|b| b != b'\n');
    Ok(out)
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
        // Only the counts: the entries stay on disk.
        let read = scan(&path, |_, _| {});
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
    /// or the new one. The file is read twice, a line at a time (once to
    /// count its entries, once to copy the newest), so that a rewrite holds
    /// no more of it in memory than an append does (issue 22).
    fn rewrite(&self, inner: &mut Inner, entries: &[Entry]) -> Result<(), HistoryError> {
        let counted = scan(&self.path, |_, _| {})?;
        let on_disk = counted.lines - counted.skipped;
        let new = Self::lines_of(inner.unsaved.iter().chain(entries));
        let new_count = inner.unsaved.len() + entries.len();
        let skip = (on_disk + new_count).saturating_sub(KEEP);
        let temp = self
            .dir
            .join(format!(".{FILE_NAME}.tmp-{}", std::process::id()));
        // A read error of the second pass, told apart from a write error.
        let mut read_error = None;
        let mut kept = 0;
        let written = crate::atomic_file::write_with(&self.dir, &self.path, &temp, 0o600, |w| {
            let mut seen = 0;
            let mut write_error = None;
            let copied = scan(&self.path, |line, _| {
                seen += 1;
                if seen > skip
                    && write_error.is_none()
                    && let Err(e) = w.write_all(line).and_then(|()| w.write_all(b"\n"))
                {
                    write_error = Some(e);
                }
            });
            if let Some(e) = write_error {
                return Err(e);
            }
            if let Err(e) = copied {
                read_error = Some(e);
                return Err(std::io::Error::other("the history could not be read"));
            }
            kept = seen.saturating_sub(skip);
            for line in new
                .split_inclusive(|&b| b == b'\n')
                .skip(skip.saturating_sub(seen))
            {
                w.write_all(line)?;
                kept += 1;
            }
            Ok(())
        });
        if let Some(e) = read_error {
            return Err(e);
        }
        written.map_err(|e| HistoryError {
            path: e.file,
            action: e.action,
            source: e.source,
        })?;
        inner.lines = kept;
        inner.unsaved.clear();
        inner.torn_tail = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
