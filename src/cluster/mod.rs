//! Several nodes as one CDN tier: owner routing, cluster-wide purges, membership.
//!
//! - [`ring`]: which node owns a cache key (ketama consistent hash over node ids).
//! - [`membership`]: who is in the ring: nodes register in Redis with a heartbeat
//!   (a key with a TTL) and lapse out; a static `peers` list works without Redis.
//!   While Redis is unreachable the ring stays frozen at the last view.
//! - [`forward`]: a miss on a non-owner is fetched from the owner over HTTP (HMAC
//!   authenticated, one hop at most); owner down or slow → the node fills itself.
//! - [`purge_stream`]: purges go through a Redis Stream every node applies in order;
//!   a restarted node replays what it missed before it serves.
//!
//! Config: `[cluster]` ([`crate::config::ClusterConfig`]).

pub mod forward;
pub mod membership;
pub mod purge_stream;
pub mod ring;

use crate::config::ClusterConfig;
use crate::App;
use arc_swap::ArcSwap;
use ring::{Member, Ring};
use std::sync::Arc;
use std::time::Duration;

/// A running node's cluster state.
pub struct Cluster {
    /// This node's id.
    pub node_id: String,
    /// This node's advertised URL.
    pub advertise: String,
    cfg: ClusterConfig,
    secret: Vec<u8>,
    peers: Vec<Member>,
    ring: ArcSwap<Ring>,
    /// Commands (heartbeat, XADD): one multiplexed, self-reconnecting connection.
    redis: Option<redis::aio::ConnectionManager>,
    /// The stream consumer's own connection: its blocking XREAD would hold up the
    /// commands queued behind it on a shared one.
    reader: Option<redis::aio::ConnectionManager>,
    client: forward::Client,
    stopped: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node_id", &self.node_id).field("ring", &self.ring).finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to Redis (when configured) and builds the first ring view.
    ///
    /// # Errors
    /// The config is incomplete or Redis cannot be reached at start-up.
    pub async fn connect(cfg: &ClusterConfig) -> Result<Arc<Cluster>, String> {
        let node_id = cfg.node_id.clone().ok_or("cluster.node_id is not set")?;
        let advertise = cfg.advertise.clone().ok_or("cluster.advertise is not set")?.trim_end_matches('/').to_owned();
        let secret = cfg.secret.clone().ok_or("cluster.secret is not set")?.into_bytes();
        let peers = cfg.static_peers()?.into_iter().map(|(id, url)| Member { id, url }).collect::<Vec<_>>();
        let (redis, reader) = match &cfg.redis {
            Some(url) => {
                let client = redis::Client::open(url.as_str()).map_err(|e| format!("cluster.redis {url:?}: {e}"))?;
                let commands = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(Duration::from_secs(1)))
                    .set_number_of_retries(1);
                let blocking =
                    commands.clone().set_response_timeout(Some(purge_stream::BLOCK + Duration::from_secs(2)));
                let connect = |config| {
                    let client = client.clone();
                    async move { redis::aio::ConnectionManager::new_with_config(client, config).await }
                };
                let a = connect(commands).await.map_err(|e| format!("cluster Redis {url} unreachable: {e}"))?;
                let b = connect(blocking).await.map_err(|e| format!("cluster Redis {url} unreachable: {e}"))?;
                (Some(a), Some(b))
            }
            None => (None, None),
        };
        let mut first = peers.clone();
        first.push(Member { id: node_id.clone(), url: advertise.clone() });
        Ok(Arc::new(Cluster {
            node_id,
            advertise,
            cfg: cfg.clone(),
            secret,
            peers,
            ring: ArcSwap::from_pointee(Ring::new(first)),
            redis,
            reader,
            client: forward::client(cfg),
            stopped: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// The current ring view.
    pub fn ring(&self) -> arc_swap::Guard<Arc<Ring>> {
        self.ring.load()
    }

    /// The settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    /// Stops heartbeating and consuming purges (the node lapses out of the ring after
    /// `member_ttl_ms`, as a crashed one would); tests use it to simulate a crash.
    pub fn stop(&self) {
        self.stopped.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Graceful leave (shutdown): stops, then takes the node out of Redis's
    /// membership, so peers stop routing to it at their next heartbeat.
    pub async fn leave(&self) {
        self.stop();
        membership::leave(self).await;
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The owner of a cache key when it is another node; None when it is this one.
    pub fn remote_owner(&self, key_hash: &[u8]) -> Option<Member> {
        let ring = self.ring.load();
        ring.owner(key_hash).filter(|m| m.id != self.node_id).cloned()
    }
}

/// Start-up: reads the ring (without announcing this node), replays the purges this
/// node missed (before anything is served), then starts the purge consumer and the
/// heartbeat, whose first beat announces the node. Call right before the listeners
/// accept: peers route to the node from its first heartbeat on.
///
/// # Errors
/// The purge stream cannot be read at start-up (the node would serve what it missed).
pub async fn start(app: &Arc<App>) -> Result<(), String> {
    let Some(cluster) = app.cluster.clone() else {
        return Ok(());
    };
    membership::refresh(&cluster, membership::Announce::No).await;
    let cursor = purge_stream::catch_up(app, &cluster).await?;
    if let Some(cursor) = cursor {
        tokio::spawn(purge_stream::consume(Arc::clone(app), Arc::clone(&cluster), cursor));
    }
    tokio::spawn(membership::run(cluster));
    Ok(())
}
