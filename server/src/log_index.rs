//! Where each line of a log starts, so a viewer can ask for lines
//! 1,000,000–1,000,100 of a 100 MB log without the server reading it all
//! again: every 1024th line's byte offset, extended as the log grows.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// One offset kept per this many lines.
const EVERY: usize = 1024;

#[derive(Debug, Clone, Default)]
pub struct LineIndex {
    /// Byte offset of line `k * EVERY` (0-based lines).
    offsets: Vec<u64>,
    /// Whole lines seen so far.
    pub lines: usize,
    /// The end of the last whole line: where scanning resumes.
    pub scanned: u64,
    /// The file indexed (inode and birth time): a log cleared for a
    /// restart, or removed by a user, is a new file, indexed from its start
    /// (its inode alone may be the old one's, reused).
    file: Option<(u64, Option<std::time::SystemTime>)>,
}

impl LineIndex {
    /// Reads what was appended since the last call (whole lines only).
    pub fn extend(&mut self, path: &Path) -> std::io::Result<()> {
        let mut file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let identity = (
            std::os::unix::fs::MetadataExt::ino(&meta),
            meta.created().ok(),
        );
        if self.file != Some(identity) || meta.len() < self.scanned {
            *self = LineIndex {
                file: Some(identity),
                ..LineIndex::default()
            };
        }
        file.seek(SeekFrom::Start(self.scanned))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut at = self.scanned;
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            for (i, b) in buf[..n].iter().enumerate() {
                if *b == b'\n' {
                    self.lines += 1;
                    self.scanned = at + i as u64 + 1;
                    if self.lines % EVERY == 0 {
                        self.offsets.push(self.scanned);
                    }
                }
            }
            at += n as u64;
        }
        Ok(())
    }

    /// The bytes of whole lines `from..from + count` (1-based `from`).
    pub fn read(&self, path: &Path, from: usize, count: usize) -> std::io::Result<Vec<u8>> {
        if from == 0 || from > self.lines || count == 0 {
            return Ok(Vec::new());
        }
        let first = from - 1;
        let start = self.offsets[first / EVERY];
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(start))?;
        let mut reader =
            std::io::BufReader::with_capacity(64 * 1024, file.take(self.scanned - start));
        let mut skip = first % EVERY;
        let mut out = Vec::new();
        let mut line = Vec::new();
        let want = count.min(self.lines - first);
        let mut taken = 0;
        while taken < want {
            line.clear();
            if std::io::BufRead::read_until(&mut reader, b'\n', &mut line)? == 0 {
                break;
            }
            if skip > 0 {
                skip -= 1;
                continue;
            }
            out.extend_from_slice(&line);
            taken += 1;
        }
        Ok(out)
    }

    /// The first line at or after `from` (wrapping to the start) whose text contains `needle`,
    /// compared case-insensitively on the text without escape codes.
    pub fn find(&self, path: &Path, needle: &str, from: usize) -> std::io::Result<Option<usize>> {
        let needle = needle.to_lowercase();
        if needle.is_empty() || self.lines == 0 {
            return Ok(None);
        }
        let from = from.clamp(1, self.lines);
        let reader = std::io::BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(path)?.take(self.scanned),
        );
        let mut first_hit = None;
        for (i, line) in std::io::BufRead::split(reader, b'\n').enumerate() {
            let line = line?;
            let number = i + 1;
            let text = String::from_utf8_lossy(&line);
            if text.to_lowercase().contains(&needle)
                && gantry_web::ansi::strip(&text)
                    .to_lowercase()
                    .contains(&needle)
            {
                if number >= from {
                    return Ok(Some(number));
                }
                first_hit.get_or_insert(number);
            }
        }
        Ok(first_hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_any_range_and_grows_with_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let text: String = (1..=5000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, format!("{text}partial")).unwrap();
        let mut index = LineIndex::default();
        index.extend(&path).unwrap();
        assert_eq!(index.lines, 5000);
        let read = |index: &LineIndex, from, count| {
            String::from_utf8(index.read(&path, from, count).unwrap()).unwrap()
        };
        assert_eq!(read(&index, 1, 2), "line 1\nline 2\n");
        assert_eq!(read(&index, 1024, 3), "line 1024\nline 1025\nline 1026\n");
        assert_eq!(
            read(&index, 4999, 10),
            "line 4999\nline 5000\n",
            "the partial line is not served"
        );
        assert_eq!(read(&index, 5001, 1), "");
        std::fs::write(&path, format!("{text}partial done\nline 5002\n")).unwrap();
        index.extend(&path).unwrap();
        assert_eq!(index.lines, 5002);
        assert_eq!(read(&index, 5001, 5), "partial done\nline 5002\n");
        assert_eq!(index.find(&path, "LINE 4097", 1).unwrap(), Some(4097));
        assert_eq!(
            index.find(&path, "line 10", 11).unwrap(),
            Some(100),
            "the next match after line 11"
        );
        assert_eq!(index.find(&path, "line 1\n", 2).unwrap(), None);
        assert_eq!(
            index.find(&path, "line 2", 4999).unwrap(),
            Some(2),
            "wraps to the start"
        );
    }

    #[test]
    fn a_log_written_anew_is_indexed_anew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "first attempt 1\nfirst attempt 2\nfirst attempt 3\n").unwrap();
        let mut index = LineIndex::default();
        index.extend(&path).unwrap();
        assert_eq!(index.lines, 3);
        // Cleared for a restart, then longer than before: a new file.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "again 1\nagain 2\nagain 3\nagain 4\nagain 5\n").unwrap();
        index.extend(&path).unwrap();
        assert_eq!(index.lines, 5);
        assert_eq!(index.read(&path, 1, 1).unwrap(), b"again 1\n");
    }
}
