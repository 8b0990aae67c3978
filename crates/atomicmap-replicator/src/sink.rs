//! Stage 4, the sink writer: where a replica's records end up.
//!
//! The replica keeps the authoritative records (with versions and tombstones) in memory for
//! resolving; a sink receives each applied batch. Two sinks come with the crate:
//!
//! * [`MapSink`]: a [`LocalMap`] in the replica's process, for readers on other threads. It
//!   is not durable, so a restarted replica loads a snapshot again.
//! * [`RedisHashSink`]: two Redis hashes (values, and versions with tombstones) plus the
//!   replica's checkpoint, written in one `MULTI`/`EXEC` per batch. Because data and position
//!   change together, a replica killed at any moment restarts from a checkpoint that matches
//!   its data exactly: nothing is lost and nothing applied twice.

use std::collections::HashMap;
use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use atomicmap::{AtomicMap, Version};
use redis::Value;

use crate::codec::{decode_checkpoint, encode_checkpoint, Checkpoint};
use crate::engine::redis::{classify, RedisEngine};
use crate::engine::{EngineError, Layout};
use crate::resolve::Record;

/// What a durable sink gives back on restart: its checkpoint and every record.
pub type Recovered = Option<(Checkpoint, Vec<(String, Record)>)>;

/// Stage 4 of the pipeline.
pub trait Sink: Send + Sync + 'static {
    /// Whether the sink keeps its records and checkpoint across a restart of the replica.
    const DURABLE: bool;

    /// What a previous run left: its checkpoint and every record (tombstones included).
    /// `None` when there is nothing to resume from.
    fn recover(&mut self) -> impl Future<Output = Result<Recovered, EngineError>> + Send;

    /// Forgets everything, before a snapshot is loaded.
    fn reset(&mut self) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Applies records (a `None` value removes the key) and, for a durable sink, stores the
    /// checkpoint in the same atomic step.
    fn apply(
        &mut self,
        records: &[(String, Record)],
        checkpoint: Option<&Checkpoint>,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
}

fn now_ms() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(now.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Clone, Debug)]
struct LocalValue {
    value: Vec<u8>,
    expires_at_ms: Option<u64>,
}

impl LocalValue {
    fn live(&self, now: u64) -> bool {
        self.expires_at_ms.is_none_or(|at| at > now)
    }
}

/// A replica's map in its own process: readable from any thread while the replica applies.
#[derive(Default)]
pub struct LocalMap {
    map: AtomicMap<String, LocalValue>,
}

impl LocalMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`, unless absent or expired.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let now = now_ms();
        self.map
            .get_with(key, |v| v.live(now).then(|| v.value.clone()))
            .flatten()
    }

    /// Number of keys (expired ones included until replaced).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map has no keys.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every live key and value, at one instant.
    pub fn to_hash_map(&self) -> HashMap<String, Vec<u8>> {
        let now = now_ms();
        self.map
            .snapshot()
            .iter()
            .filter(|(_, v)| v.live(now))
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect()
    }
}

/// Writes applied records into a [`LocalMap`].
pub struct MapSink {
    map: std::sync::Arc<LocalMap>,
}

impl MapSink {
    /// A sink into `map`.
    pub fn new(map: std::sync::Arc<LocalMap>) -> Self {
        MapSink { map }
    }
}

impl Sink for MapSink {
    const DURABLE: bool = false;

    async fn recover(&mut self) -> Result<Recovered, EngineError> {
        Ok(None)
    }

    async fn reset(&mut self) -> Result<(), EngineError> {
        self.map.map.clear();
        Ok(())
    }

    async fn apply(
        &mut self,
        records: &[(String, Record)],
        _checkpoint: Option<&Checkpoint>,
    ) -> Result<(), EngineError> {
        for (key, record) in records {
            match &record.value {
                Some(value) => {
                    self.map.map.insert(
                        key.clone(),
                        LocalValue {
                            value: value.clone(),
                            expires_at_ms: record.expires_at_ms,
                        },
                    );
                }
                None => {
                    self.map.map.remove(key.as_str());
                }
            }
        }
        Ok(())
    }
}

/// Keeps nothing: for a replica whose records are all its user wants (a source recovering
/// its map).
pub struct Discard;

impl Sink for Discard {
    const DURABLE: bool = false;

    async fn recover(&mut self) -> Result<Recovered, EngineError> {
        Ok(None)
    }

    async fn reset(&mut self) -> Result<(), EngineError> {
        Ok(())
    }

    async fn apply(
        &mut self,
        _records: &[(String, Record)],
        _checkpoint: Option<&Checkpoint>,
    ) -> Result<(), EngineError> {
        Ok(())
    }
}

/// Bytes of a record's metadata in the versions hash: time `u64`, node `u16`, flags `u8`,
/// expiry `u64` (0 for none).
const META_LEN: usize = 19;
/// Metadata flag: the record is a tombstone.
const TOMBSTONE: u8 = 1;

fn encode_meta(record: &Record) -> [u8; META_LEN] {
    let mut out = [0; META_LEN];
    out[..8].copy_from_slice(&record.version.time().to_le_bytes());
    out[8..10].copy_from_slice(&record.version.node().to_le_bytes());
    out[10] = if record.value.is_none() { TOMBSTONE } else { 0 };
    out[11..].copy_from_slice(&record.expires_at_ms.unwrap_or(0).to_le_bytes());
    out
}

fn decode_meta(bytes: &[u8]) -> Option<(Version, bool, Option<u64>)> {
    let bytes: &[u8; META_LEN] = bytes.try_into().ok()?;
    let time = u64::from_le_bytes(bytes[..8].try_into().ok()?);
    let node = u16::from_le_bytes([bytes[8], bytes[9]]);
    let expires = u64::from_le_bytes(bytes[11..].try_into().ok()?);
    Some((
        Version::new(time, node),
        bytes[10] & TOMBSTONE != 0,
        (expires != 0).then_some(expires),
    ))
}

/// Writes a replica into Redis: `{prefix}/replicas/{name}` holds the values (what
/// applications read), `.../versions` the version and tombstone flag of every key, and the
/// replica's checkpoint changes in the same transaction.
///
/// Redis 7.0 has no expiry per hash field, so a TTL set by a transform is kept in the
/// versions hash (and honoured by a [`LocalMap`]) but a reader of the values hash sees the
/// value until the key changes.
pub struct RedisHashSink {
    engine: RedisEngine,
    values: String,
    versions: String,
    checkpoint: String,
}

/// Fields per `HSCAN` round trip when recovering.
const SCAN_COUNT: usize = 10_000;

impl RedisHashSink {
    /// The hash sink of replica `name`, on `engine`'s server (its own connection).
    pub fn new(engine: &RedisEngine, layout: &Layout, name: &str) -> Self {
        let values = layout.replica_hash(name);
        RedisHashSink {
            engine: crate::engine::Engine::fork(engine),
            versions: format!("{values}/versions"),
            values,
            checkpoint: layout.checkpoint(name),
        }
    }

    /// The key of the values hash.
    pub fn values_key(&self) -> &str {
        &self.values
    }

    async fn scan(&self, key: &str) -> Result<HashMap<String, Vec<u8>>, EngineError> {
        let mut connection = self.engine.connection().await?;
        let mut out = HashMap::new();
        let mut cursor = 0u64;
        loop {
            let (next, fields): (u64, Vec<(String, Vec<u8>)>) = redis::cmd("HSCAN")
                .arg(key)
                .arg(cursor)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut connection)
                .await
                .map_err(classify)?;
            out.extend(fields);
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }
}

impl Sink for RedisHashSink {
    const DURABLE: bool = true;

    async fn recover(&mut self) -> Result<Recovered, EngineError> {
        let mut connection = self.engine.connection().await?;
        let blob: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&self.checkpoint)
            .query_async(&mut connection)
            .await
            .map_err(classify)?;
        let Some(blob) = blob else { return Ok(None) };
        let checkpoint = decode_checkpoint(&blob)
            .map_err(|e| EngineError::Protocol(format!("checkpoint {}: {e}", self.checkpoint)))?;
        let mut values = self.scan(&self.values).await?;
        let versions = self.scan(&self.versions).await?;
        let mut records = Vec::with_capacity(versions.len());
        for (key, meta) in versions {
            let (version, tombstone, expires_at_ms) = decode_meta(&meta).ok_or_else(|| {
                EngineError::Protocol(format!("bad version record for key {key:?}"))
            })?;
            let value = if tombstone {
                None
            } else {
                Some(values.remove(&key).ok_or_else(|| {
                    EngineError::Protocol(format!("key {key:?} has a version but no value"))
                })?)
            };
            records.push((
                key,
                Record {
                    value,
                    version,
                    expires_at_ms,
                },
            ));
        }
        Ok(Some((checkpoint, records)))
    }

    async fn reset(&mut self) -> Result<(), EngineError> {
        let mut connection = self.engine.connection().await?;
        redis::cmd("DEL")
            .arg(&self.values)
            .arg(&self.versions)
            .arg(&self.checkpoint)
            .query_async::<Value>(&mut connection)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn apply(
        &mut self,
        records: &[(String, Record)],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), EngineError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut set = redis::cmd("HSET");
        set.arg(&self.values);
        let mut removed = redis::cmd("HDEL");
        removed.arg(&self.values);
        let mut meta = redis::cmd("HSET");
        meta.arg(&self.versions);
        let (mut sets, mut removes) = (0, 0);
        for (key, record) in records {
            match &record.value {
                Some(value) => {
                    set.arg(key).arg(value.as_slice());
                    sets += 1;
                }
                None => {
                    removed.arg(key);
                    removes += 1;
                }
            }
            meta.arg(key).arg(&encode_meta(record)[..]);
        }
        if sets > 0 {
            pipe.add_command(set).ignore();
        }
        if removes > 0 {
            pipe.add_command(removed).ignore();
        }
        if !records.is_empty() {
            pipe.add_command(meta).ignore();
        }
        if let Some(checkpoint) = checkpoint {
            pipe.cmd("SET")
                .arg(&self.checkpoint)
                .arg(encode_checkpoint(checkpoint))
                .ignore();
        }
        let mut connection = self.engine.connection().await?;
        pipe.query_async::<()>(&mut connection)
            .await
            .map_err(classify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips() {
        let record = Record {
            value: None,
            version: Version::new(123 << 16, 7),
            expires_at_ms: Some(99),
        };
        assert_eq!(
            decode_meta(&encode_meta(&record)),
            Some((record.version, true, Some(99)))
        );
        assert_eq!(decode_meta(b"short"), None);
    }

    #[tokio::test]
    async fn local_map_applies_and_expires() {
        let map = std::sync::Arc::new(LocalMap::new());
        let mut sink = MapSink::new(map.clone());
        let record = |value: Option<&[u8]>, expires_at_ms| Record {
            value: value.map(<[u8]>::to_vec),
            version: Version::new(1, 0),
            expires_at_ms,
        };
        sink.apply(
            &[
                ("a".into(), record(Some(b"1"), None)),
                ("b".into(), record(Some(b"2"), Some(1))),
                ("c".into(), record(Some(b"3"), None)),
            ],
            None,
        )
        .await
        .unwrap();
        sink.apply(&[("c".into(), record(None, None))], None)
            .await
            .unwrap();
        assert_eq!(map.get("a"), Some(b"1".to_vec()));
        assert_eq!(map.get("b"), None, "expired long ago");
        assert_eq!(map.get("c"), None);
        assert_eq!(map.to_hash_map().len(), 1);
    }
}
