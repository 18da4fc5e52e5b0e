//! Membership in Redis: each node `SET <prefix>:node:<id> <url> PX <member_ttl>` and
//! `SADD <prefix>:nodes <id>` on every heartbeat, then reads the set back; an id whose
//! key expired (its node stopped heartbeating) is dropped from the set and the ring.
//! Redis's clock decides expiry, so nodes' clocks need not agree.
//!
//! When Redis is unreachable the ring stays as last seen (frozen): keys keep their
//! owners, and a forward to a node that died meanwhile fails fast and is served locally.
//!
//! A node announces itself only once it serves (its start-up purge replay done): before
//! that, a peer's forward would wait on a listener nobody accepts on. It leaves on
//! shutdown (`SREM` + `DEL`, [`leave`]), so peers drop it at their next heartbeat
//! instead of forwarding to it until its key expires.

use super::ring::{Member, Ring};
use super::Cluster;
use redis::AsyncCommands;
use std::sync::Arc;
use std::time::Duration;

fn nodes_key(c: &Cluster) -> String {
    format!("{}:nodes", c.cfg.key_prefix)
}

fn node_key(c: &Cluster, id: &str) -> String {
    format!("{}:node:{id}", c.cfg.key_prefix)
}

/// Heartbeats and ring rebuilds, every `heartbeat_ms`, until the node stops or leaves.
/// The first heartbeat (at once) announces the node.
pub async fn run(cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(Duration::from_millis(cluster.cfg.heartbeat_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if cluster.is_stopped() {
            break;
        }
        refresh(&cluster, Announce::Yes).await;
    }
}

/// Whether a refresh also registers this node (heartbeat) or only reads the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Announce {
    /// Heartbeat: this node is in the ring for others.
    Yes,
    /// Read the members only (start-up, before the node serves).
    No,
}

/// One heartbeat (or, with [`Announce::No`], one read) and ring rebuild; errors keep
/// the last ring.
pub async fn refresh(cluster: &Cluster, announce: Announce) {
    let Some(conn) = cluster.redis.clone() else {
        return;
    };
    match heartbeat(cluster, conn, announce).await {
        Ok(mut members) => {
            members.extend(cluster.peers.iter().cloned());
            members.push(Member { id: cluster.node_id.clone(), url: cluster.advertise.clone() });
            let next = Ring::new(members);
            if next.members() != cluster.ring.load().members() {
                let ids: Vec<&str> = next.members().iter().map(|m| m.id.as_str()).collect();
                tracing::info!(members = ?ids, "cluster ring changed");
                cluster.ring.store(Arc::new(next));
            }
        }
        Err(e) => tracing::debug!(error = %e, "cluster heartbeat failed; ring frozen at the last view"),
    }
}

async fn heartbeat(
    cluster: &Cluster,
    mut conn: redis::aio::ConnectionManager,
    announce: Announce,
) -> redis::RedisResult<Vec<Member>> {
    let ttl = cluster.cfg.member_ttl_ms;
    if announce == Announce::Yes {
        redis::pipe()
            .cmd("SET")
            .arg(node_key(cluster, &cluster.node_id))
            .arg(&cluster.advertise)
            .arg("PX")
            .arg(ttl)
            .ignore()
            .sadd(nodes_key(cluster), &cluster.node_id)
            .ignore()
            .exec_async(&mut conn)
            .await?;
    }
    let ids: Vec<String> = conn.smembers(nodes_key(cluster)).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = ids.iter().map(|id| node_key(cluster, id)).collect();
    let urls: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
    let mut members = Vec::new();
    for (id, url) in ids.into_iter().zip(urls) {
        match url {
            Some(url) => members.push(Member { id, url }),
            None => {
                // Lapsed: its heartbeat key expired.
                let _: redis::RedisResult<()> = conn.srem(nodes_key(cluster), &id).await;
            }
        }
    }
    Ok(members)
}

/// Takes this node out of the membership now (`SREM` + `DEL`); best effort: if Redis
/// cannot be reached, the node lapses by its key's TTL as a crashed one does. Call
/// after [`Cluster::stop`], so no heartbeat in flight announces it again.
pub async fn leave(cluster: &Cluster) {
    let Some(mut conn) = cluster.redis.clone() else {
        return;
    };
    let mut pipe = redis::pipe();
    pipe.srem(nodes_key(cluster), &cluster.node_id).ignore().del(node_key(cluster, &cluster.node_id)).ignore();
    match tokio::time::timeout(Duration::from_secs(1), pipe.exec_async(&mut conn)).await {
        Ok(Ok(())) => tracing::info!(node = %cluster.node_id, "left the cluster"),
        Ok(Err(e)) => tracing::warn!(error = %e, "leaving the cluster failed; the node lapses by TTL"),
        Err(_) => tracing::warn!("leaving the cluster timed out; the node lapses by TTL"),
    }
}
