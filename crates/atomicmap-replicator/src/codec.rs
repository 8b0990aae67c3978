//! The bytes that travel through the engine: stream entries, snapshot chunks, anchors and
//! checkpoints.
//!
//! Every blob starts with a four-byte magic that names its kind and format (`AMR1` for a stream
//! entry, `AMS1` for a snapshot chunk, `AMA1` for an anchor, `AMC1` for a checkpoint) and ends
//! with a CRC-32 of everything before it. Integers are little endian; strings and values are
//! length-prefixed (`u32`). Decoding never panics: every read is bounds-checked and each way a
//! blob can be wrong has its own [`DecodeError`], because the replica treats them differently
//! (a foreign entry is skipped, an entry of a newer format stops the replica, since skipping it
//! would silently lose changes).
//!
//! A stream entry carries one batch of changes of one partition:
//!
//! | field | type | why |
//! |---|---|---|
//! | magic | `b"AMR1"` | recognises our entries among foreign ones, and our format version |
//! | partition | `u16` | an entry copied into the wrong stream is detected |
//! | epoch | `u64` | publisher session: a restarted source starts a new, larger epoch |
//! | seq | `u64` | 1, 2, 3... per partition within an epoch: duplicates and gaps are detected |
//! | events_total | `u64` | changes published in this partition and epoch up to this entry: lag in events |
//! | published_ms | `u64` | wall clock of the publisher: lag in seconds |
//! | count | `u32` | number of changes that follow |
//! | changes | see below | `op u8`, `time u64`, `node u16`, key, value unless a remove |
//! | crc | `u32` | truncation and corruption |

use std::fmt;

use atomicmap::Version;

/// The field of a stream entry that holds our payload.
pub const ENTRY_FIELD: &str = "amr";

const ENTRY_MAGIC: &[u8; 4] = b"AMR1";
const CHUNK_MAGIC: &[u8; 4] = b"AMS1";
const ANCHOR_MAGIC: &[u8; 4] = b"AMA1";
const CHECKPOINT_MAGIC: &[u8; 4] = b"AMC1";
/// The first three bytes shared by every format of ours; a blob that has them but not the
/// expected fourth byte was written by another version of the replicator.
const FAMILY: &[u8; 2] = b"AM";

const OP_INSERT: u8 = 1;
const OP_UPDATE: u8 = 2;
const OP_REMOVE: u8 = 3;

/// Largest key or value accepted when decoding, so a corrupt length cannot make us allocate
/// gigabytes before the CRC check fails.
pub const MAX_FIELD_LEN: usize = 64 << 20;

/// One change of one key, as it travels from the source map to a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The key.
    pub key: String,
    /// The new value, or `None` when the key was removed (a tombstone).
    pub value: Option<Vec<u8>>,
    /// The version the source map gave this change.
    pub version: Version,
    /// Whether the source saw the key absent before (an insert); informational only.
    pub inserted: bool,
    /// Set by a transform (TTL injection): the sink forgets the value after this wall-clock
    /// instant (unix milliseconds). Not carried in stream entries.
    pub expires_at_ms: Option<u64>,
}

impl Change {
    /// A change that sets `key` to `value`.
    pub fn upsert(key: String, value: Vec<u8>, version: Version) -> Self {
        Change {
            key,
            value: Some(value),
            version,
            inserted: false,
            expires_at_ms: None,
        }
    }

    /// A change that removes `key`.
    pub fn remove(key: String, version: Version) -> Self {
        Change {
            key,
            value: None,
            version,
            inserted: false,
            expires_at_ms: None,
        }
    }
}

/// The header of a stream entry: which batch of which publisher session this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryHeader {
    /// Partition the batch belongs to.
    pub partition: u16,
    /// Publisher session.
    pub epoch: u64,
    /// Position of the batch within its partition and epoch, from 1.
    pub seq: u64,
    /// Changes published in this partition and epoch, this entry's included.
    pub events_total: u64,
    /// Publisher's wall clock when the entry was encoded (unix milliseconds).
    pub published_ms: u64,
}

/// A decoded stream entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Who published it and where it sits in the sequence.
    pub header: EntryHeader,
    /// The changes, in the publisher's order.
    pub changes: Vec<Change>,
}

/// Why a blob could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not written by this replicator at all (no magic, no field of ours).
    Foreign,
    /// Written by another format version of this replicator (`found` is its magic).
    UnsupportedFormat {
        /// The four bytes found where the magic should be.
        found: [u8; 4],
    },
    /// Shorter than its own lengths say.
    Truncated,
    /// The CRC does not match: corrupted, or truncated exactly at a field boundary.
    Checksum,
    /// Lengths and CRC agree but a field is invalid (unknown op, key not UTF-8, a length over
    /// [`MAX_FIELD_LEN`], bytes left over).
    Malformed(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Foreign => write!(f, "not an atomicmap-replicator blob"),
            DecodeError::UnsupportedFormat { found } => write!(
                f,
                "written by another replicator format ({:?}); upgrade this process",
                String::from_utf8_lossy(found)
            ),
            DecodeError::Truncated => write!(f, "truncated"),
            DecodeError::Checksum => write!(f, "checksum mismatch"),
            DecodeError::Malformed(what) => write!(f, "malformed: {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Where a partition's stream stands: the engine position of the last entry taken into
/// account, and the publisher sequence up to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Engine position of the last entry taken into account (`Position::ZERO` before any).
    pub position: crate::engine::Position,
    /// Epoch of that entry's publisher (0 before any).
    pub epoch: u64,
    /// Its sequence number.
    pub seq: u64,
    /// Its `events_total`.
    pub events_total: u64,
}

/// A published snapshot: where to find its chunks, and where in each partition's stream a
/// replica loading it must start reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// Identifies the snapshot (and the keys of its chunks).
    pub snapshot_id: u64,
    /// Number of chunks.
    pub chunks: u32,
    /// Number of entries over all chunks.
    pub entries: u64,
    /// Largest version in the snapshot.
    pub max_version: Version,
    /// When it was taken (unix milliseconds).
    pub created_ms: u64,
    /// Per partition, the last entry that the snapshot already contains.
    pub cursors: Vec<Cursor>,
}

/// A replica's progress over the tasks it follows, stored in the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Per task followed, in configuration order: the snapshot the state descends from and
    /// the cursors of its partitions.
    pub tasks: Vec<TaskCheckpoint>,
}

/// One task's part of a [`Checkpoint`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskCheckpoint {
    /// The task's name.
    pub task: String,
    /// The snapshot the replica bootstrapped from.
    pub snapshot_id: u64,
    /// Per partition, the last entry applied.
    pub cursors: Vec<Cursor>,
}

/// Appends the encoding of values to a buffer.
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn new(magic: &[u8; 4], capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + 8);
        buf.extend_from_slice(magic);
        Writer { buf }
    }
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        // Lengths above u32 cannot be produced by a map entry we would replicate; the decoder
        // rejects them anyway (MAX_FIELD_LEN), so saturate rather than wrap.
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(v);
    }
    fn version(&mut self, v: Version) {
        self.u64(v.time());
        self.u16(v.node());
    }
    fn cursor(&mut self, c: &Cursor) {
        self.u64(c.position.ms);
        self.u64(c.position.seq);
        self.u64(c.epoch);
        self.u64(c.seq);
        self.u64(c.events_total);
    }
    fn finish(mut self) -> Vec<u8> {
        let crc = crc32fast::hash(&self.buf);
        self.u32(crc);
        self.buf
    }
}

/// Reads values back, bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Checks magic and CRC and returns a reader over the body.
    fn open(blob: &'a [u8], magic: &[u8; 4]) -> Result<Self, DecodeError> {
        if blob.len() < 4 || &blob[..2] != FAMILY {
            return Err(DecodeError::Foreign);
        }
        if &blob[..4] != magic {
            let mut found = [0; 4];
            found.copy_from_slice(&blob[..4]);
            // Another of our kinds in the wrong place is as foreign to this reader as any
            // other blob; only the same kind of another format version is "unsupported".
            return if blob[..3] == magic[..3] {
                Err(DecodeError::UnsupportedFormat { found })
            } else {
                Err(DecodeError::Foreign)
            };
        }
        if blob.len() < 8 {
            return Err(DecodeError::Truncated);
        }
        let (body, crc) = blob.split_at(blob.len() - 4);
        let mut crc_bytes = [0; 4];
        crc_bytes.copy_from_slice(crc);
        if crc32fast::hash(body) != u32::from_le_bytes(crc_bytes) {
            return Err(DecodeError::Checksum);
        }
        Ok(Reader { buf: &body[4..] })
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        if len > MAX_FIELD_LEN {
            return Err(DecodeError::Malformed("field longer than MAX_FIELD_LEN"));
        }
        self.take(len)
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Malformed("key is not UTF-8"))
    }
    fn version(&mut self) -> Result<Version, DecodeError> {
        let time = self.u64()?;
        let node = self.u16()?;
        Ok(Version::new(time, node))
    }
    fn cursor(&mut self) -> Result<Cursor, DecodeError> {
        Ok(Cursor {
            position: crate::engine::Position {
                ms: self.u64()?,
                seq: self.u64()?,
            },
            epoch: self.u64()?,
            seq: self.u64()?,
            events_total: self.u64()?,
        })
    }
    /// A count that will size an allocation: at most what the remaining bytes could hold at
    /// `min_item` bytes an item, so a corrupt count cannot allocate more than the blob.
    fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        Ok(n)
    }
    fn end(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed("bytes after the last field"))
        }
    }
}

/// Smallest encoding of one change (a remove with an empty key): op, version, key length.
const MIN_CHANGE_LEN: usize = 1 + 10 + 4;

/// Encodes one stream entry.
pub fn encode_entry(header: &EntryHeader, changes: &[Change]) -> Vec<u8> {
    let size: usize = changes
        .iter()
        .map(|c| MIN_CHANGE_LEN + 4 + c.key.len() + c.value.as_ref().map_or(0, Vec::len))
        .sum();
    let mut w = Writer::new(ENTRY_MAGIC, 48 + size);
    w.u16(header.partition);
    w.u64(header.epoch);
    w.u64(header.seq);
    w.u64(header.events_total);
    w.u64(header.published_ms);
    w.u32(u32::try_from(changes.len()).unwrap_or(u32::MAX));
    for change in changes {
        let op = match (&change.value, change.inserted) {
            (None, _) => OP_REMOVE,
            (Some(_), true) => OP_INSERT,
            (Some(_), false) => OP_UPDATE,
        };
        w.u8(op);
        w.version(change.version);
        w.bytes(change.key.as_bytes());
        if let Some(value) = &change.value {
            w.bytes(value);
        }
    }
    w.finish()
}

/// Decodes one stream entry's payload.
pub fn decode_entry(blob: &[u8]) -> Result<Entry, DecodeError> {
    let mut r = Reader::open(blob, ENTRY_MAGIC)?;
    let header = EntryHeader {
        partition: r.u16()?,
        epoch: r.u64()?,
        seq: r.u64()?,
        events_total: r.u64()?,
        published_ms: r.u64()?,
    };
    let count = r.count(MIN_CHANGE_LEN)?;
    let mut changes = Vec::with_capacity(count);
    for _ in 0..count {
        let op = r.u8()?;
        let version = r.version()?;
        let key = r.string()?;
        let (value, inserted) = match op {
            OP_INSERT => (Some(r.bytes()?.to_vec()), true),
            OP_UPDATE => (Some(r.bytes()?.to_vec()), false),
            OP_REMOVE => (None, false),
            _ => return Err(DecodeError::Malformed("unknown change op")),
        };
        changes.push(Change {
            key,
            value,
            version,
            inserted,
            expires_at_ms: None,
        });
    }
    r.end()?;
    Ok(Entry { header, changes })
}

/// One entry of a snapshot: a live key with its value, or a recently removed key (a
/// tombstone), with the version of the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotEntry {
    /// The key.
    pub key: String,
    /// Its value, `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// The version of the change that set or removed it.
    pub version: Version,
}

/// Snapshot entry flag: a tombstone (no value follows).
const SNAPSHOT_TOMBSTONE: u8 = 1;
/// Smallest encoding of a snapshot entry: version, flags, key length.
const MIN_SNAPSHOT_ENTRY_LEN: usize = 10 + 1 + 4;

/// Encodes one chunk of a snapshot.
pub fn encode_chunk(snapshot_id: u64, index: u32, entries: &[SnapshotEntry]) -> Vec<u8> {
    let size: usize = entries
        .iter()
        .map(|e| MIN_SNAPSHOT_ENTRY_LEN + 4 + e.key.len() + e.value.as_ref().map_or(0, Vec::len))
        .sum();
    let mut w = Writer::new(CHUNK_MAGIC, 16 + size);
    w.u64(snapshot_id);
    w.u32(index);
    w.u32(u32::try_from(entries.len()).unwrap_or(u32::MAX));
    for entry in entries {
        w.version(entry.version);
        w.u8(if entry.value.is_none() {
            SNAPSHOT_TOMBSTONE
        } else {
            0
        });
        w.bytes(entry.key.as_bytes());
        if let Some(value) = &entry.value {
            w.bytes(value);
        }
    }
    w.finish()
}

/// Decodes one chunk and checks that it is the one asked for: a chunk of another snapshot
/// under the expected key means the snapshot was replaced while being read.
pub fn decode_chunk(
    blob: &[u8],
    snapshot_id: u64,
    index: u32,
) -> Result<Vec<SnapshotEntry>, DecodeError> {
    let mut r = Reader::open(blob, CHUNK_MAGIC)?;
    if r.u64()? != snapshot_id || r.u32()? != index {
        return Err(DecodeError::Malformed("chunk of another snapshot"));
    }
    let count = r.count(MIN_SNAPSHOT_ENTRY_LEN)?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let version = r.version()?;
        let flags = r.u8()?;
        if flags & !SNAPSHOT_TOMBSTONE != 0 {
            return Err(DecodeError::Malformed("unknown snapshot entry flags"));
        }
        let key = r.string()?;
        let value = if flags & SNAPSHOT_TOMBSTONE != 0 {
            None
        } else {
            Some(r.bytes()?.to_vec())
        };
        entries.push(SnapshotEntry {
            key,
            value,
            version,
        });
    }
    r.end()?;
    Ok(entries)
}

/// Encodes an anchor.
pub fn encode_anchor(anchor: &Anchor) -> Vec<u8> {
    let mut w = Writer::new(ANCHOR_MAGIC, 64 + anchor.cursors.len() * 40);
    w.u64(anchor.snapshot_id);
    w.u32(anchor.chunks);
    w.u64(anchor.entries);
    w.version(anchor.max_version);
    w.u64(anchor.created_ms);
    w.u32(u32::try_from(anchor.cursors.len()).unwrap_or(u32::MAX));
    for cursor in &anchor.cursors {
        w.cursor(cursor);
    }
    w.finish()
}

/// Decodes an anchor.
pub fn decode_anchor(blob: &[u8]) -> Result<Anchor, DecodeError> {
    let mut r = Reader::open(blob, ANCHOR_MAGIC)?;
    let snapshot_id = r.u64()?;
    let chunks = r.u32()?;
    let entries = r.u64()?;
    let max_version = r.version()?;
    let created_ms = r.u64()?;
    let n = r.count(40)?;
    let cursors = (0..n).map(|_| r.cursor()).collect::<Result<_, _>>()?;
    r.end()?;
    Ok(Anchor {
        snapshot_id,
        chunks,
        entries,
        max_version,
        created_ms,
        cursors,
    })
}

/// Encodes a checkpoint.
pub fn encode_checkpoint(checkpoint: &Checkpoint) -> Vec<u8> {
    let mut w = Writer::new(CHECKPOINT_MAGIC, 64);
    w.u32(u32::try_from(checkpoint.tasks.len()).unwrap_or(u32::MAX));
    for task in &checkpoint.tasks {
        w.bytes(task.task.as_bytes());
        w.u64(task.snapshot_id);
        w.u32(u32::try_from(task.cursors.len()).unwrap_or(u32::MAX));
        for cursor in &task.cursors {
            w.cursor(cursor);
        }
    }
    w.finish()
}

/// Decodes a checkpoint.
pub fn decode_checkpoint(blob: &[u8]) -> Result<Checkpoint, DecodeError> {
    let mut r = Reader::open(blob, CHECKPOINT_MAGIC)?;
    let n = r.count(16)?;
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let task = r.string()?;
        let snapshot_id = r.u64()?;
        let m = r.count(40)?;
        let cursors = (0..m).map(|_| r.cursor()).collect::<Result<_, _>>()?;
        tasks.push(TaskCheckpoint {
            task,
            snapshot_id,
            cursors,
        });
    }
    r.end()?;
    Ok(Checkpoint { tasks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Position;

    fn sample() -> (EntryHeader, Vec<Change>) {
        let header = EntryHeader {
            partition: 3,
            epoch: 77,
            seq: 5,
            events_total: 12,
            published_ms: 1_700_000_000_000,
        };
        let mut insert = Change::upsert("k1".into(), b"v1".to_vec(), Version::new(10 << 16, 1));
        insert.inserted = true;
        let changes = vec![
            insert,
            Change::upsert("k2".into(), vec![], Version::new(11 << 16, 1)),
            Change::remove("k1".into(), Version::new(12 << 16, 2)),
        ];
        (header, changes)
    }

    #[test]
    fn entry_round_trips() {
        let (header, changes) = sample();
        let blob = encode_entry(&header, &changes);
        assert_eq!(decode_entry(&blob), Ok(Entry { header, changes }));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let (header, changes) = sample();
        let blob = encode_entry(&header, &changes);
        for len in 0..blob.len() {
            assert!(decode_entry(&blob[..len]).is_err(), "prefix of {len} bytes");
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let (header, changes) = sample();
        let blob = encode_entry(&header, &changes);
        for i in 0..blob.len() * 8 {
            let mut bad = blob.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(decode_entry(&bad).is_err(), "bit {i}");
        }
    }

    #[test]
    fn foreign_and_other_formats_are_told_apart() {
        assert_eq!(decode_entry(b"hello world"), Err(DecodeError::Foreign));
        assert_eq!(decode_entry(b""), Err(DecodeError::Foreign));
        let (header, changes) = sample();
        let mut blob = encode_entry(&header, &changes);
        blob[3] = b'9';
        assert_eq!(
            decode_entry(&blob),
            Err(DecodeError::UnsupportedFormat { found: *b"AMR9" })
        );
        let chunk = encode_chunk(1, 0, &[]);
        assert_eq!(decode_entry(&chunk), Err(DecodeError::Foreign));
    }

    #[test]
    fn a_huge_count_does_not_allocate() {
        let mut w = Writer::new(ENTRY_MAGIC, 64);
        w.u16(0);
        for _ in 0..4 {
            w.u64(0);
        }
        w.u32(u32::MAX);
        let blob = w.finish();
        // The CRC is valid, so only the count check stands between this blob and a
        // 4-billion-element allocation.
        assert_eq!(decode_entry(&blob), Err(DecodeError::Truncated));
    }

    #[test]
    fn chunk_anchor_checkpoint_round_trip() {
        let entries = vec![
            SnapshotEntry {
                key: "a".into(),
                value: Some(b"1".to_vec()),
                version: Version::new(5, 9),
            },
            SnapshotEntry {
                key: "gone".into(),
                value: None,
                version: Version::new(6, 9),
            },
        ];
        let chunk = encode_chunk(42, 7, &entries);
        assert_eq!(decode_chunk(&chunk, 42, 7), Ok(entries));
        assert!(decode_chunk(&chunk, 43, 7).is_err());

        let cursor = Cursor {
            position: Position { ms: 9, seq: 2 },
            epoch: 4,
            seq: 8,
            events_total: 100,
        };
        let anchor = Anchor {
            snapshot_id: 42,
            chunks: 3,
            entries: 25_000,
            max_version: Version::new(99, 1),
            created_ms: 123,
            cursors: vec![cursor, Cursor::default()],
        };
        assert_eq!(decode_anchor(&encode_anchor(&anchor)), Ok(anchor));

        let checkpoint = Checkpoint {
            tasks: vec![TaskCheckpoint {
                task: "orders".into(),
                snapshot_id: 42,
                cursors: vec![cursor],
            }],
        };
        assert_eq!(
            decode_checkpoint(&encode_checkpoint(&checkpoint)),
            Ok(checkpoint)
        );
    }
}
