//! The publisher's local durable queue, for when the engine is unreachable (flow level 3).
//!
//! One append-only file of frames `len u32 | crc u32 | partition u16 | entry bytes`, fsynced
//! after every push, so an entry in the spool survives a crash of the process or the machine.
//! The file is bounded (`max_bytes`); a full spool refuses pushes and the publisher stops
//! taking changes, which makes the map's writers wait (the capture subscription is a waiting
//! one): memory and disk stay bounded.
//!
//! Frames are consumed from the front in memory (a read offset); once everything is drained
//! the file is truncated to zero. A crash before that leaves drained frames in the file: the
//! next drain sends them again, and the engine-side check of the publisher sequence (see
//! `source`) drops what is already in the stream. A torn last frame (a crash mid-write) is cut
//! off when the spool is opened; a bad frame anywhere else is an error, since skipping it
//! would lose changes.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Bytes of a frame header: length and CRC.
const FRAME_HEADER: u64 = 8;

/// What can go wrong with the spool.
#[derive(Debug)]
pub enum SpoolError {
    /// The push would exceed `max_bytes`.
    Full,
    /// A frame before the last one is damaged.
    Corrupt {
        /// Its offset in the file.
        offset: u64,
    },
    /// The file system refused.
    Io(io::Error),
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::Full => write!(f, "spool full"),
            SpoolError::Corrupt { offset } => write!(f, "spool frame at byte {offset} is damaged"),
            SpoolError::Io(e) => write!(f, "spool I/O: {e}"),
        }
    }
}

impl std::error::Error for SpoolError {}

impl From<io::Error> for SpoolError {
    fn from(e: io::Error) -> Self {
        SpoolError::Io(e)
    }
}

/// A bounded durable FIFO of `(partition, entry)` pairs.
pub struct Spool {
    file: File,
    /// Frame sizes (header included) from the read offset to the end of the file.
    frames: VecDeque<u64>,
    /// Where the first unconsumed frame starts.
    read_offset: u64,
    /// File length.
    len: u64,
    max_bytes: u64,
}

impl Spool {
    /// Opens (or creates) the spool at `path`, keeping the frames a previous run left.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut frames = VecDeque::new();
        let mut offset = 0usize;
        while offset < bytes.len() {
            match check_frame(&bytes[offset..]) {
                Some(size) => {
                    frames.push_back(size as u64);
                    offset += size;
                }
                None if is_torn_tail(&bytes[offset..]) => break,
                None => {
                    return Err(SpoolError::Corrupt {
                        offset: offset as u64,
                    })
                }
            }
        }
        if offset < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                cut = bytes.len() - offset,
                "spool: cutting a torn last frame"
            );
            file.set_len(offset as u64)?;
            file.sync_all()?;
        }
        Ok(Spool {
            file,
            frames,
            read_offset: 0,
            len: offset as u64,
            max_bytes,
        })
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes in the file (drained frames included until it is truncated).
    pub fn bytes(&self) -> u64 {
        self.len
    }

    /// Appends entries durably: all of them or, on error, none that will be read back.
    pub fn push(&mut self, entries: &[(u16, Vec<u8>)]) -> Result<(), SpoolError> {
        let mut buf = Vec::new();
        let mut sizes = Vec::with_capacity(entries.len());
        for (partition, entry) in entries {
            let body_len = 2 + entry.len();
            let mut crc = crc32fast::Hasher::new();
            crc.update(&partition.to_le_bytes());
            crc.update(entry);
            buf.extend_from_slice(&u32::try_from(body_len).unwrap_or(u32::MAX).to_le_bytes());
            buf.extend_from_slice(&crc.finalize().to_le_bytes());
            buf.extend_from_slice(&partition.to_le_bytes());
            buf.extend_from_slice(entry);
            sizes.push(FRAME_HEADER + body_len as u64);
        }
        if self.len + buf.len() as u64 > self.max_bytes {
            return Err(SpoolError::Full);
        }
        self.file.seek(SeekFrom::Start(self.len))?;
        if let Err(e) = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data())
        {
            // A partial write would be a torn frame in the middle once more frames follow:
            // cut it now.
            let _ = self.file.set_len(self.len);
            return Err(e.into());
        }
        self.len += buf.len() as u64;
        self.frames.extend(sizes);
        Ok(())
    }

    /// Reads up to `max` entries from the front without consuming them.
    pub fn peek(&mut self, max: usize) -> Result<Vec<(u16, Vec<u8>)>, SpoolError> {
        let n = max.min(self.frames.len());
        let total: u64 = self.frames.iter().take(n).sum();
        let mut bytes = vec![0; usize::try_from(total).unwrap_or(usize::MAX)];
        self.file.seek(SeekFrom::Start(self.read_offset))?;
        self.file.read_exact(&mut bytes)?;
        let mut out = Vec::with_capacity(n);
        let mut offset = 0usize;
        for _ in 0..n {
            let size = check_frame(&bytes[offset..]).ok_or(SpoolError::Corrupt {
                offset: self.read_offset + offset as u64,
            })?;
            let body = &bytes[offset + FRAME_HEADER as usize..offset + size];
            out.push((u16::from_le_bytes([body[0], body[1]]), body[2..].to_vec()));
            offset += size;
        }
        Ok(out)
    }

    /// Drops `n` entries from the front (after they reached the engine); truncates the file
    /// once it is drained.
    pub fn consume(&mut self, n: usize) -> Result<(), SpoolError> {
        for _ in 0..n {
            match self.frames.pop_front() {
                Some(size) => self.read_offset += size,
                None => break,
            }
        }
        if self.frames.is_empty() {
            self.file.set_len(0)?;
            self.file.sync_all()?;
            self.read_offset = 0;
            self.len = 0;
        }
        Ok(())
    }
}

/// The size of the valid frame at the start of `bytes`, if there is one.
fn check_frame(bytes: &[u8]) -> Option<usize> {
    let header = bytes.get(..FRAME_HEADER as usize)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let body = bytes.get(FRAME_HEADER as usize..FRAME_HEADER as usize + len)?;
    if len < 2 || crc32fast::hash(body) != crc {
        return None;
    }
    Some(FRAME_HEADER as usize + len)
}

/// Whether an invalid frame is the torn end of an interrupted write: it claims more bytes
/// than the file has.
fn is_torn_tail(bytes: &[u8]) -> bool {
    match bytes.get(..4) {
        None => true,
        Some(len) => {
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            FRAME_HEADER as usize + len > bytes.len()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(range: std::ops::Range<u16>) -> Vec<(u16, Vec<u8>)> {
        range.map(|i| (i % 4, vec![i as u8; i as usize])).collect()
    }

    #[test]
    fn fifo_survives_reopen_and_truncates_when_drained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool");
        let mut spool = Spool::open(&path, 1 << 20).unwrap();
        spool.push(&entries(0..10)).unwrap();
        spool.push(&entries(10..20)).unwrap();
        assert_eq!(spool.peek(3).unwrap(), entries(0..3));
        spool.consume(3).unwrap();
        assert_eq!(spool.peek(100).unwrap(), entries(3..20));
        drop(spool);

        // Consumption is in memory only: a reopened spool sends everything again.
        let mut spool = Spool::open(&path, 1 << 20).unwrap();
        assert_eq!(spool.len(), 20);
        assert_eq!(spool.peek(100).unwrap(), entries(0..20));
        spool.consume(20).unwrap();
        assert!(spool.is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn full_spool_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(&dir.path().join("s"), 100).unwrap();
        spool.push(&[(0, vec![0; 50])]).unwrap();
        assert!(matches!(
            spool.push(&[(0, vec![0; 50])]),
            Err(SpoolError::Full)
        ));
        assert_eq!(spool.len(), 1);
    }

    #[test]
    fn torn_tail_is_cut_and_middle_damage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut spool = Spool::open(&path, 1 << 20).unwrap();
        spool.push(&entries(1..6)).unwrap();
        drop(spool);
        let full = std::fs::read(&path).unwrap();

        std::fs::write(&path, &full[..full.len() - 3]).unwrap();
        let mut spool = Spool::open(&path, 1 << 20).unwrap();
        assert_eq!(spool.peek(10).unwrap(), entries(1..5));
        drop(spool);

        let mut damaged = full.clone();
        damaged[10] ^= 0xff;
        std::fs::write(&path, &damaged).unwrap();
        assert!(matches!(
            Spool::open(&path, 1 << 20),
            Err(SpoolError::Corrupt { offset: 0 })
        ));
    }
}
