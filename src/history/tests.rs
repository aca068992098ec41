use super::*;
use std::os::unix::fs::PermissionsExt;
use wispanel_core::timestamp::Timestamp;

fn entry(secs: i64) -> Entry {
    Entry {
        at: Timestamp::from_unix_secs(1_800_000_000 + secs),
        event: Event::DaemonStarted {
            version: format!("0.{secs}.0"),
        },
    }
}

fn versions(es: &[Entry]) -> Vec<i64> {
    es.iter()
        .map(|e| e.at.unix_secs() - 1_800_000_000)
        .collect()
}

/// A directory for thousands of appends, each with its fsync: on a tmpfs
/// where there is one (an fsync costs nothing there; on a busy disk these
/// tests took seconds).
fn dir_for_many_appends() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap()
}

#[test]
fn appends_are_on_disk_mode_0600_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (h, read) = History::open(dir.path());
    assert_eq!(read.unwrap().lines, 0);
    h.append(&[entry(1), entry(2)]).unwrap();
    h.append(&[entry(3)]).unwrap();
    let path = dir.path().join(FILE_NAME);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let c = read_file(&path).unwrap();
    assert_eq!(versions(&c.entries), [1, 2, 3]);
    assert_eq!((c.lines, c.skipped), (3, 0));
    // A new handle (a restart) serves the same entries, read from the file.
    let (h2, _) = History::open(dir.path());
    assert_eq!(versions(&h2.query(&Query::default())), [1, 2, 3]);
}

#[test]
fn past_2000_lines_the_file_is_rewritten_with_the_newest_1000() {
    let dir = dir_for_many_appends();
    let (h, _) = History::open(dir.path());
    let path = dir.path().join(FILE_NAME);
    let mut n = 0;
    let mut most = 0;
    // The file as last read and its lines: when the new one starts with it
    // (an append), only the added bytes need counting; else (a rewrite) all.
    // Counting every byte after every append made this test take seconds.
    let (mut before, mut lines) = (Vec::new(), 0);
    let newlines = |b: &[u8]| b.iter().filter(|&&b| b == b'\n').count();
    // Appends of varying size, well past two rewrites.
    while n < 4500 {
        let batch: Vec<Entry> = (0..(n % 3 + 1)).map(|i| entry(n + i)).collect();
        n += batch.len() as i64;
        h.append(&batch).unwrap();
        let now = std::fs::read(&path).unwrap();
        lines = match now.strip_prefix(before.as_slice()) {
            Some(added) => lines + newlines(added),
            None => newlines(&now),
        };
        before = now;
        most = most.max(lines);
        assert!(lines <= MAX_ON_DISK, "{lines} lines on disk");
        assert!(lines >= (n as usize).min(KEEP), "{lines} lines after {n}");
        if n % 97 < 3 {
            // Always the newest, in order, with nothing lost at the newest end.
            let c = read_file(&path).unwrap();
            assert_eq!(versions(&c.entries).last(), Some(&(n - 1)));
        }
    }
    assert_eq!(most, MAX_ON_DISK);
    let c = read_file(&path).unwrap();
    let v = versions(&c.entries);
    assert!(v.windows(2).all(|w| w[1] == w[0] + 1), "a gap: {v:?}");
    // Memory holds what is on disk.
    let q = Query {
        since: None,
        limit: MAX_LIMIT,
    };
    assert_eq!(h.query(&q), c.entries[c.entries.len() - MAX_LIMIT..]);
    // No temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [FILE_NAME]);
}

#[test]
fn torn_and_damaged_lines_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let good = |s| serde_json::to_string(&entry(s)).unwrap();
    // A damaged line in the middle, and a last line cut by a crash.
    let text = format!("{}\nnot json\n{}\n{{\"at\":\"2027-01", good(1), good(2));
    std::fs::write(&path, text).unwrap();
    let (h, read) = History::open(dir.path());
    // The daemon's open counts, and keeps none of the entries in memory.
    let c = read.unwrap();
    assert!(c.entries.is_empty());
    assert_eq!(
        (c.lines, c.skipped, c.first_skipped_line, c.torn_tail),
        (4, 2, Some(2), true)
    );
    let c = read_file(&path).unwrap();
    assert_eq!(versions(&c.entries), [1, 2]);
    assert_eq!(
        (c.skipped, c.first_skipped_line, c.torn_tail),
        (2, Some(2), true)
    );
    // The next append starts on a line of its own: the new entry is readable.
    h.append(&[entry(3)]).unwrap();
    let c = read_file(&path).unwrap();
    assert_eq!(versions(&c.entries), [1, 2, 3]);
    assert_eq!(c.skipped, 2);
}

#[test]
fn an_unwritable_history_is_an_error_and_the_entry_is_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _) = History::open(dir.path());
    // A directory where the file should be: no privilege gets round that
    // (the tests may run as root, who ignores modes).
    std::fs::create_dir(dir.path().join(FILE_NAME)).unwrap();
    let e = h.append(&[entry(1)]).unwrap_err();
    assert!(e.to_string().contains(FILE_NAME), "{e}");
    assert_eq!(versions(&h.query(&Query::default())), [1]);
}

#[test]
fn entries_that_could_not_be_written_go_to_disk_first_with_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _) = History::open(dir.path());
    h.append(&[entry(1)]).unwrap();
    let path = dir.path().join(FILE_NAME);
    // The file replaced by a directory: appends fail, entries are kept.
    let moved = dir.path().join("moved");
    std::fs::rename(&path, &moved).unwrap();
    std::fs::create_dir(&path).unwrap();
    assert!(h.append(&[entry(2)]).is_err());
    assert!(h.append(&[entry(3)]).is_err());
    assert_eq!(h.inner().unsaved.len(), 2);
    // Back: the next append writes 2 and 3, then 4, in order.
    std::fs::remove_dir(&path).unwrap();
    std::fs::rename(&moved, &path).unwrap();
    h.append(&[entry(4)]).unwrap();
    assert_eq!(versions(&read_file(&path).unwrap().entries), [1, 2, 3, 4]);
    assert_eq!(versions(&h.query(&Query::default())), [1, 2, 3, 4]);
    assert!(h.inner().unsaved.is_empty());
}

#[test]
fn the_daemon_keeps_no_copy_of_what_is_on_disk() {
    let dir = dir_for_many_appends();
    let (h, _) = History::open(dir.path());
    for i in 0..2500 {
        h.append(&[entry(i)]).unwrap();
    }
    // Memory holds nothing but the line count; the file holds the entries.
    assert!(h.inner().unsaved.is_empty());
    let c = read_file(&dir.path().join(FILE_NAME)).unwrap();
    assert_eq!(h.inner().lines, c.lines);
    assert!(c.lines <= MAX_ON_DISK && c.lines >= KEEP, "{}", c.lines);
    assert_eq!(versions(&c.entries).last(), Some(&2499));
    let page = h.query(&Query::default());
    assert_eq!(versions(&page).last(), Some(&2499));
}

#[test]
fn a_query_picks_the_newest_limit_at_or_after_since_oldest_first() {
    let es: Vec<Entry> = (0..10).map(entry).collect();
    let q = |since: Option<i64>, limit| Query {
        since: since.map(|s| Timestamp::from_unix_secs(1_800_000_000 + s)),
        limit,
    };
    assert_eq!(versions(&select(es.iter(), &q(None, 3))), [7, 8, 9]);
    assert_eq!(versions(&select(es.iter(), &q(Some(8), 5))), [8, 9]);
    assert_eq!(versions(&select(es.iter(), &q(Some(2), 100))).len(), 8);
    assert_eq!(
        versions(&select(es.iter(), &q(Some(20), 5))),
        Vec::<i64>::new()
    );
}

#[test]
fn query_strings_parse_or_name_the_bad_parameter() {
    let t = |s| Timestamp::parse_rfc3339(s).unwrap();
    assert_eq!(Query::parse(None), Ok(Query::default()));
    assert_eq!(
        Query::parse(Some("since=2026-11-26T10:00:00Z&limit=5&other=1")),
        Ok(Query {
            since: Some(t("2026-11-26T10:00:00Z")),
            limit: 5
        })
    );
    // An offset, escaped or not.
    for s in [
        "since=2026-11-26T12:00:00%2B02:00",
        "since=2026-11-26T12:00:00+02:00",
    ] {
        assert_eq!(
            Query::parse(Some(s)).unwrap().since,
            Some(t("2026-11-26T10:00:00Z"))
        );
    }
    for (s, param) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("limit=", "limit"),
        ("limit=ten", "limit"),
        ("limit=1&limit=2", "limit"),
        ("since=yesterday", "since"),
        ("since=", "since"),
        ("since=2026-11-26", "since"),
    ] {
        assert_eq!(Query::parse(Some(s)).unwrap_err().param, param, "{s}");
    }
    assert_eq!(Query::parse(Some("limit=1000")).unwrap().limit, 1000);
    // What the CLI sends reads back the same.
    let q = Query {
        since: Some(t("2026-11-26T10:00:00Z")),
        limit: 7,
    };
    assert_eq!(Query::parse(Some(&q.to_query_string())), Ok(q));
}

#[test]
fn lines_are_read_alike_whatever_the_read_buffer_cuts() {
    let good = |s| serde_json::to_string(&entry(s)).unwrap();
    let text = format!("{}\n\n  \nnot json\n{}\n{}", good(1), good(2), good(3));
    // Buffers smaller than a line, and the default one.
    for cap in [1, 7, 64, 8192] {
        let mut seen = Vec::new();
        let c = scan_lines(
            std::io::BufReader::with_capacity(cap, text.as_bytes()),
            |line, e| seen.push((line.to_vec(), e)),
        )
        .unwrap();
        let lines: Vec<Vec<u8>> = seen.iter().map(|(l, _)| l.clone()).collect();
        assert_eq!(
            lines,
            [good(1), good(2), good(3)].map(String::into_bytes),
            "buffer of {cap}"
        );
        let es: Vec<Entry> = seen.into_iter().map(|(_, e)| e).collect();
        assert_eq!(versions(&es), [1, 2, 3]);
        // Blank lines do not count; line numbers do count them.
        assert_eq!(
            (c.lines, c.skipped, c.first_skipped_line, c.torn_tail),
            (4, 1, Some(4), true),
            "buffer of {cap}"
        );
    }
}

#[test]
fn an_overlong_line_is_unreadable_and_not_kept_whole() {
    let good = serde_json::to_string(&entry(1)).unwrap();
    // An entry padded past the limit with spaces (valid JSON otherwise).
    let padded = format!("{}{}", " ".repeat(MAX_LINE), good);
    let text = format!("{padded}\n{good}\n");
    let mut longest = 0;
    let c = scan_lines(std::io::BufReader::new(text.as_bytes()), |line, _| {
        longest = longest.max(line.len())
    })
    .unwrap();
    assert_eq!((c.lines, c.skipped, c.first_skipped_line), (2, 1, Some(1)));
    assert_eq!(longest, good.len());
    // At the end of a file without a newline, too.
    let c = scan_lines(std::io::BufReader::new(padded.as_bytes()), |_, _| {
        panic!("an overlong line is not an entry")
    })
    .unwrap();
    assert_eq!((c.lines, c.skipped, c.torn_tail), (1, 1, true));
}

#[test]
fn a_rewrite_copies_the_newest_good_lines_as_they_were_and_drops_damaged_ones() {
    let dir = dir_for_many_appends();
    let path = dir.path().join(FILE_NAME);
    // A full file: 1990 entries with a damaged line among the newest, in a
    // spelling of our own (key order, spaces) that a copy keeps and a
    // re-serialisation would not.
    let odd = |s: i64| {
        let serde_json::Value::Object(fields) = serde_json::to_value(entry(s)).unwrap() else {
            panic!("an entry is an object")
        };
        let fields: Vec<String> = fields
            .iter()
            .rev()
            .map(|(k, v)| format!("{k:?}: {v}"))
            .collect();
        format!("{{ {} }}", fields.join(", "))
    };
    let mut text = String::new();
    for s in 0..1990 {
        text.push_str(&odd(s));
        text.push('\n');
        if s == 1500 {
            text.push_str("{\"at\": damaged\n");
        }
    }
    std::fs::write(&path, &text).unwrap();
    assert_eq!(serde_json::from_str::<Entry>(&odd(7)).unwrap(), entry(7));
    assert_ne!(odd(7), serde_json::to_string(&entry(7)).unwrap());
    let (h, read) = History::open(dir.path());
    assert_eq!(read.unwrap().lines, 1991);
    // Ten more: past 2000, a rewrite with the newest 1000.
    h.append(&(1990..2000).map(entry).collect::<Vec<_>>())
        .unwrap();
    let c = read_file(&path).unwrap();
    assert_eq!(versions(&c.entries), (1000..2000).collect::<Vec<_>>());
    assert_eq!((c.lines, c.skipped), (1000, 0));
    let on_disk = std::fs::read_to_string(&path).unwrap();
    assert!(
        on_disk.starts_with(&format!("{}\n", odd(1000))),
        "{}",
        &on_disk[..200]
    );
    assert_eq!(h.inner().lines, 1000);
    // The count kept in memory is right: the next rewrite comes after
    // another 1000 lines, not before.
    h.append(&(2000..2999).map(entry).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(read_file(&path).unwrap().lines, 1999);
    h.append(&[entry(2999), entry(3000)]).unwrap();
    let c = read_file(&path).unwrap();
    assert_eq!(versions(&c.entries), (2001..=3000).collect::<Vec<_>>());
}
