//! The Redis Streams engine (Redis >= 7): `XADD` pipelines, `XREAD BLOCK`, `XREVRANGE`,
//! `XTRIM MINID`, and plain string keys for blobs.
//!
//! One [`RedisEngine`] holds at most one multiplexed connection, opened on first use and
//! dropped after an I/O error so that the next call reconnects. A blocking `XREAD` would hold
//! up every other command on the same multiplexed connection, so readers take a
//! [`fork`](Engine::fork) of their own.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, Value};
use tokio::sync::Mutex;

use super::{Engine, EngineError, Position, StreamEntry};
use crate::codec::ENTRY_FIELD;

/// How long to wait for a TCP connection to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait for an answer beyond the command's own blocking time: long enough for a
/// pipeline of large entries, short enough that a hung server is noticed and spooled around.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A Redis server (or a proxy speaking its protocol) as the log engine.
pub struct RedisEngine {
    client: Client,
    connection: Arc<Mutex<Option<MultiplexedConnection>>>,
}

impl RedisEngine {
    /// An engine for the server at `url` (`redis://127.0.0.1:6379/`). Does not connect yet.
    pub fn new(url: &str) -> Result<Self, EngineError> {
        let client = Client::open(url).map_err(|e| EngineError::Rejected(e.to_string()))?;
        Ok(RedisEngine {
            client,
            connection: Arc::new(Mutex::new(None)),
        })
    }

    /// The open connection, or a new one.
    pub async fn connection(&self) -> Result<MultiplexedConnection, EngineError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(classify)?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Forgets the connection after an error that may have broken it.
    async fn on_error(&self, error: RedisError) -> EngineError {
        let error = classify(error);
        if error.is_transient() {
            *self.connection.lock().await = None;
        }
        error
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, EngineError> {
        let mut connection = self.connection().await?;
        match cmd.query_async(&mut connection).await {
            Ok(value) => Ok(value),
            Err(error) => Err(self.on_error(error).await),
        }
    }

    async fn query_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, EngineError> {
        let mut connection = self.connection().await?;
        match pipe.query_async(&mut connection).await {
            Ok(value) => Ok(value),
            Err(error) => Err(self.on_error(error).await),
        }
    }
}

/// Sorts a redis-rs error into "retry later" or "give up".
pub(crate) fn classify(error: RedisError) -> EngineError {
    // A server that is loading its data, running a long script, out of memory (until a trim
    // or a consumer frees some) or refusing writes after a failed save will accept the same
    // command later: the source spools meanwhile rather than stopping.
    if error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_unrecoverable_error()
        || matches!(error.code(), Some("LOADING" | "BUSY" | "OOM" | "MISCONF"))
    {
        EngineError::Unavailable(error.to_string())
    } else {
        EngineError::Rejected(error.to_string())
    }
}

/// The fields of `XINFO STREAM` that tell whether entries were deleted.
#[derive(Default)]
struct StreamInfo {
    length: Option<i64>,
    entries_added: Option<i64>,
    last_generated: Option<Position>,
    max_deleted: Option<Position>,
    first: Option<Position>,
}

fn as_int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => std::str::from_utf8(as_text(other)?).ok()?.parse().ok(),
    }
}

fn protocol(what: &str, value: &Value) -> EngineError {
    EngineError::Protocol(format!("{what}: {value:?}"))
}

fn as_text(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn parse_position(value: &Value) -> Result<Position, EngineError> {
    let text = as_text(value).ok_or_else(|| protocol("stream ID", value))?;
    std::str::from_utf8(text)
        .map_err(|_| protocol("stream ID", value))?
        .parse()
}

/// Flattens RESP2 arrays and RESP3 maps into one list of items or pairs.
fn items(value: Value) -> Result<Vec<Value>, EngineError> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Map(pairs) => Ok(pairs
            .into_iter()
            .flat_map(|(k, v)| [k, v])
            .collect::<Vec<_>>()),
        Value::Nil => Ok(Vec::new()),
        other => Err(protocol("expected an array", &other)),
    }
}

/// One `[id, [field, value, ...]]` entry.
fn parse_entry(value: Value) -> Result<StreamEntry, EngineError> {
    let mut parts = items(value)?.into_iter();
    let (Some(id), Some(fields)) = (parts.next(), parts.next()) else {
        return Err(EngineError::Protocol("stream entry without fields".into()));
    };
    let position = parse_position(&id)?;
    let mut payload = None;
    let mut fields = items(fields)?.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if as_text(&name) == Some(ENTRY_FIELD.as_bytes()) {
            if let Value::BulkString(bytes) = value {
                payload = Some(bytes);
            }
        }
    }
    Ok(StreamEntry { position, payload })
}

fn parse_entries(value: Value) -> Result<Vec<StreamEntry>, EngineError> {
    items(value)?.into_iter().map(parse_entry).collect()
}

impl Engine for RedisEngine {
    fn fork(&self) -> Self {
        RedisEngine {
            client: self.client.clone(),
            connection: Arc::new(Mutex::new(None)),
        }
    }

    async fn append(
        &self,
        batch: &[(String, Vec<u8>)],
        max_len: Option<u64>,
    ) -> Result<Vec<Position>, EngineError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (stream, payload) in batch {
            let cmd = pipe.cmd("XADD").arg(stream);
            if let Some(max_len) = max_len {
                cmd.arg("MAXLEN").arg("~").arg(max_len);
            }
            cmd.arg("*").arg(ENTRY_FIELD).arg(payload.as_slice());
        }
        let ids: Vec<Value> = self.query_pipe(&pipe).await?;
        ids.iter().map(parse_position).collect()
    }

    async fn read(
        &self,
        from: &[(String, Position)],
        count: usize,
        block: Duration,
    ) -> Result<Vec<(usize, Vec<StreamEntry>)>, EngineError> {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(count);
        // BLOCK 0 would wait forever: no wait is no BLOCK at all.
        if !block.is_zero() {
            cmd.arg("BLOCK")
                .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1));
        }
        cmd.arg("STREAMS");
        for (stream, _) in from {
            cmd.arg(stream);
        }
        for (_, position) in from {
            cmd.arg(position.to_string());
        }
        let reply: Value = self.query(&cmd).await?;
        let mut out = Vec::new();
        let mut streams = items(reply)?.into_iter();
        // RESP2 answers [[name, entries], ...], RESP3 a map name -> entries, which `items`
        // flattened to name, entries, ...; accept both.
        while let Some(item) = streams.next() {
            let (name, entries) = match item {
                Value::Array(pair) if pair.len() == 2 => {
                    let mut pair = pair.into_iter();
                    match (pair.next(), pair.next()) {
                        (Some(name), Some(entries)) => (name, entries),
                        _ => return Err(EngineError::Protocol("XREAD pair".into())),
                    }
                }
                name => {
                    let entries = streams
                        .next()
                        .ok_or_else(|| EngineError::Protocol("XREAD map".into()))?;
                    (name, entries)
                }
            };
            let name = as_text(&name).ok_or_else(|| protocol("stream name", &name))?;
            let index = from
                .iter()
                .position(|(stream, _)| stream.as_bytes() == name)
                .ok_or_else(|| EngineError::Protocol("XREAD answered an unknown stream".into()))?;
            out.push((index, parse_entries(entries)?));
        }
        Ok(out)
    }

    async fn read_back(
        &self,
        stream: &str,
        before: Option<Position>,
        count: usize,
    ) -> Result<Vec<StreamEntry>, EngineError> {
        let end = match before {
            Some(position) => format!("({position}"),
            None => "+".to_string(),
        };
        let reply: Value = self
            .query(
                redis::cmd("XREVRANGE")
                    .arg(stream)
                    .arg(end)
                    .arg("-")
                    .arg("COUNT")
                    .arg(count),
            )
            .await?;
        parse_entries(reply)
    }

    async fn lost_after(&self, stream: &str, position: Position) -> Result<bool, EngineError> {
        let reply: Value = match self
            .query(redis::cmd("XINFO").arg("STREAM").arg(stream))
            .await
        {
            Ok(reply) => reply,
            // A stream that does not exist yet has lost nothing.
            Err(EngineError::Rejected(e)) if e.contains("no such key") => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut info = StreamInfo::default();
        let mut fields = items(reply)?.into_iter();
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            match as_text(&name) {
                Some(b"length") => info.length = as_int(&value),
                Some(b"entries-added") => info.entries_added = as_int(&value),
                Some(b"last-generated-id") => info.last_generated = Some(parse_position(&value)?),
                Some(b"max-deleted-entry-id") => info.max_deleted = Some(parse_position(&value)?),
                Some(b"recorded-first-entry-id") => info.first = Some(parse_position(&value)?),
                _ => {}
            }
        }
        let (Some(length), Some(added), Some(last), Some(max_deleted), Some(first)) = (
            info.length,
            info.entries_added,
            info.last_generated,
            info.max_deleted,
            info.first,
        ) else {
            return Err(EngineError::Protocol(
                "XINFO STREAM lacks the Redis 7 fields (Redis >= 7 is required)".into(),
            ));
        };
        // XDEL records the largest ID it removed; a trim does not (Redis 7.0), but it moves
        // the first entry: entries after the cursor are gone when the first kept entry is
        // past it, or, with nothing left, when the last entry ever added was.
        Ok(max_deleted > position
            || (added > length
                && if length == 0 {
                    last > position
                } else {
                    first > position
                }))
    }

    async fn trim_before(&self, stream: &str, position: Position) -> Result<u64, EngineError> {
        self.query(
            redis::cmd("XTRIM")
                .arg(stream)
                .arg("MINID")
                .arg(position.to_string()),
        )
        .await
    }

    async fn put(&self, items: &[(String, Vec<u8>)]) -> Result<(), EngineError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (key, blob) in items {
            pipe.cmd("SET").arg(key).arg(blob.as_slice()).ignore();
        }
        self.query_pipe(&pipe).await
    }

    async fn get(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("GET").arg(key);
        }
        self.query_pipe(&pipe).await
    }

    async fn delete(&self, keys: &[String]) -> Result<(), EngineError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.query(redis::cmd("DEL").arg(keys)).await
    }
}
