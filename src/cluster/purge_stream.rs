//! Cluster-wide purges through a Redis Stream (`<prefix>:purges`).
//!
//! A purge arriving at any node is validated, then `XADD`ed (`MAXLEN ~
//! purge_stream_max_len`) before the API answers: the answer means the purge is in
//! Redis (durable across a Redis restart only with `appendonly yes`). Redis
//! unreachable → 503 + Retry-After, nothing purged anywhere. The node applies it
//! locally at once; every other node's consumer (`XREAD BLOCK` from its cursor)
//! applies the stream's entries in order with the same parser, so every node purges
//! the same targets.
//!
//! The cursor (last applied id) is kept in `<state_dir>/purge-cursor` (written after
//! each batch; a lagging cursor only re-applies purges, which is harmless). At start-up
//! [`catch_up`] replays from it before the node serves; if the stream was trimmed past
//! it (or lost), the node cannot know what it missed and calls
//! [`crate::cache::Cache::invalidate_all`].

use super::Cluster;
use crate::error::Error;
use crate::purge::{self, PurgeKind};
use crate::App;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long one `XREAD` blocks.
pub const BLOCK: Duration = Duration::from_millis(2000);
/// Entries read per batch.
const BATCH: usize = 256;
/// Pause after a failed read (Redis down): the connection manager reconnects meanwhile.
const RETRY: Duration = Duration::from_millis(250);
const CURSOR_FILE: &str = "purge-cursor";

fn stream_key(c: &Cluster) -> String {
    format!("{}:purges", c.cfg.key_prefix)
}

fn kind_name(kind: PurgeKind) -> &'static str {
    match kind {
        PurgeKind::File => "file",
        PurgeKind::Directory => "directory",
        PurgeKind::Regex => "regex",
        PurgeKind::IgnoreParams => "ignore_params",
    }
}

/// Appends an already validated purge request to the stream; Ok once Redis has it.
/// Without Redis (no cluster, or static peers only) it does nothing: the purge is local.
///
/// # Errors
/// `ClusterUnavailable` when Redis does not take it; nothing may then be purged.
pub async fn publish(app: &App, content_type: &str, body: &[u8], query: Option<&str>) -> Result<(), Error> {
    let Some(cluster) = app.cluster.as_deref() else { return Ok(()) };
    let Some(mut conn) = cluster.redis.clone() else { return Ok(()) };
    let (kind, paths, force) = purge::read_purge_input(content_type, body, query)?;
    // The node-independent form every node parses (the JSON `/purge` takes).
    let record = serde_json::json!({"type": kind_name(kind), "paths": paths, "force": force}).to_string();
    let added: redis::RedisResult<String> = redis::cmd("XADD")
        .arg(stream_key(cluster))
        .arg("MAXLEN")
        .arg("~")
        .arg(cluster.cfg.purge_stream_max_len)
        .arg("*")
        .arg("node")
        .arg(&cluster.node_id)
        .arg("purge")
        .arg(record)
        .query_async(&mut conn)
        .await;
    match added {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "purge refused: the cluster purge stream is unreachable");
            Err(Error::ClusterUnavailable(e.to_string()))
        }
    }
}

fn cursor_path(c: &Cluster) -> Option<PathBuf> {
    c.cfg.state_dir.as_ref().map(|d| d.join(CURSOR_FILE))
}

async fn save_cursor(c: &Cluster, id: &str) {
    let Some(path) = cursor_path(c) else { return };
    let tmp = path.with_extension("tmp");
    // Written then renamed: a crash leaves the old cursor or the new one, never half.
    let res = async {
        // The folder may not exist yet on a node's first start (--cluster-state).
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::write(&tmp, id.as_bytes()).await?;
        tokio::fs::rename(&tmp, &path).await
    }
    .await;
    if let Err(e) = res {
        tracing::warn!(error = %e, path = %path.display(), "cannot save the purge-stream cursor");
    }
}

/// A stream id `ms-seq` as a pair, for ordering.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// Start-up replay. Returns the cursor the consumer goes on from (None: no Redis).
///
/// # Errors
/// Redis cannot be read: the node must not serve what it may have missed.
pub async fn catch_up(app: &Arc<App>, cluster: &Cluster) -> Result<Option<String>, String> {
    let Some(mut conn) = cluster.redis.clone() else { return Ok(None) };
    let key = stream_key(cluster);
    let saved = match cursor_path(cluster) {
        Some(path) => match tokio::fs::read_to_string(&path).await {
            Ok(text) => Some(text.trim().to_owned()).filter(|t| parse_id(t).is_some()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        },
        None => None,
    };
    let info: redis::RedisResult<redis::Value> =
        redis::cmd("XINFO").arg("STREAM").arg(&key).query_async(&mut conn).await;
    let info = match info {
        Ok(v) => Some(v),
        Err(e) if e.to_string().to_ascii_lowercase().contains("no such key") => None,
        Err(e) => return Err(format!("cluster purge stream unreadable at start-up: {e}")),
    };
    let field = |name: &str| -> Option<String> {
        let redis::Value::Array(items) = info.as_ref()? else {
            if let Some(redis::Value::Map(pairs)) = info.as_ref() {
                return pairs.iter().find_map(|(k, v)| {
                    (redis::from_redis_value_ref::<String>(k).ok()? == name)
                        .then(|| redis::from_redis_value_ref(v).ok())
                        .flatten()
                });
            }
            return None;
        };
        items.chunks(2).find_map(|kv| match kv {
            [k, v] if redis::from_redis_value_ref::<String>(k).ok()? == name => redis::from_redis_value_ref(v).ok(),
            _ => None,
        })
    };
    let last = field("last-generated-id").unwrap_or_else(|| "0-0".into());
    let Some(cursor) = saved else {
        if cluster.cfg.state_dir.is_some() {
            // A state folder without a cursor: what this node stored before is of unknown age.
            let n = app.cache.invalidate_all();
            tracing::info!(entries = n, "no purge-stream cursor: cached entries treated as stale");
        }
        save_cursor(cluster, &last).await;
        return Ok(Some(last));
    };
    let lost = match info {
        // The stream is gone (Redis lost its data): what was purged is unknown.
        None => true,
        Some(_) => trimmed_past(&mut conn, &key, &cursor, &last, &field).await?,
    };
    if lost {
        let n = app.cache.invalidate_all();
        tracing::warn!(
            cursor,
            entries = n,
            "purge stream trimmed past this node's cursor (or lost): cache treated as stale"
        );
        save_cursor(cluster, &last).await;
        return Ok(Some(last));
    }
    let mut cursor = cursor;
    let mut replayed = 0;
    loop {
        let opts = StreamReadOptions::default().count(BATCH);
        let reply: StreamReadReply =
            conn.xread_options(&[&key], &[&cursor], &opts).await.map_err(|e| format!("replaying purges: {e}"))?;
        let n = apply(app, cluster, &reply, &mut cursor, true).await;
        if n == 0 {
            break;
        }
        replayed += n;
    }
    save_cursor(cluster, &cursor).await;
    tracing::info!(replayed, cursor, "purge stream caught up");
    Ok(Some(cursor))
}

/// True when entries after `cursor` may have been trimmed away. Trimming removes the
/// oldest entries first, so while the cursor's own entry is still there nothing after
/// it is gone; once it is gone, conservatively, something after it may be (a cursor of
/// `0-0`, an empty stream at first start, compares the entries ever added with those held).
async fn trimmed_past(
    conn: &mut redis::aio::ConnectionManager,
    key: &str,
    cursor: &str,
    last: &str,
    field: &impl Fn(&str) -> Option<String>,
) -> Result<bool, String> {
    let (Some(c), Some(l)) = (parse_id(cursor), parse_id(last)) else { return Ok(true) };
    if l <= c {
        return Ok(false);
    }
    if c == (0, 0) {
        let num = |name: &str| field(name).and_then(|v| v.parse::<u64>().ok());
        return Ok(num("entries-added").zip(num("length")).is_none_or(|(added, held)| added > held));
    }
    let own: redis::streams::StreamRangeReply =
        conn.xrange(key, cursor, cursor).await.map_err(|e| format!("reading the purge stream: {e}"))?;
    Ok(own.ids.is_empty())
}

/// Applies a batch in order; returns the number of entries read.
async fn apply(
    app: &Arc<App>,
    cluster: &Cluster,
    reply: &StreamReadReply,
    cursor: &mut String,
    own_too: bool,
) -> usize {
    let mut n = 0;
    for stream in &reply.keys {
        for entry in &stream.ids {
            n += 1;
            *cursor = entry.id.clone();
            let from: Option<String> = entry.get("node");
            // The node that took the purge applied it already (unless it is replaying).
            if !own_too && from.as_deref() == Some(cluster.node_id.as_str()) {
                continue;
            }
            let Some(record) = entry.get::<String>("purge") else { continue };
            match purge::parse_purge(app, "application/json", record.as_bytes(), None) {
                Ok(tasks) => {
                    if let Err(e) = purge::apply(app, tasks).await {
                        tracing::warn!(error = %e, id = entry.id, "applying a cluster purge failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, id = entry.id, "a cluster purge did not parse here; skipped"),
            }
        }
    }
    n
}

/// The consumer: blocks on the stream from `cursor` and applies what arrives, for the
/// life of the process; reconnects after errors (Redis down) without losing its place.
pub async fn consume(app: Arc<App>, cluster: Arc<Cluster>, mut cursor: String) {
    let Some(mut conn) = cluster.reader.clone() else { return };
    let key = stream_key(&cluster);
    let block = usize::try_from(BLOCK.as_millis()).unwrap_or(2000);
    while !cluster.is_stopped() {
        let opts = StreamReadOptions::default().count(BATCH).block(block);
        match conn.xread_options::<_, _, Option<StreamReadReply>>(&[&key], &[&cursor], &opts).await {
            // A stopped node takes nothing more (its cursor stays where it stopped).
            Ok(Some(_)) if cluster.is_stopped() => break,
            Ok(Some(reply)) => {
                if apply(&app, &cluster, &reply, &mut cursor, false).await > 0 {
                    save_cursor(&cluster, &cursor).await;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "purge stream read failed; retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}
