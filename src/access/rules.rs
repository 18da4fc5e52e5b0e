//! Referer and IP allow/deny lists, as the CDN offers them (spec f.7, f.8).

use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;

/// Whether a list allows only its entries or denies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListMode {
    /// Whitelist.
    Allow,
    /// Blacklist.
    Deny,
}

/// Hotlink protection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefererRules {
    /// Allow or deny the listed hosts.
    pub mode: ListMode,
    /// Host names without scheme; `example.com` also covers `*.example.com`.
    pub hosts: Vec<String>,
    /// Whether requests without a Referer pass.
    #[serde(default = "yes")]
    pub allow_empty: bool,
}

fn yes() -> bool {
    true
}

impl RefererRules {
    /// True when a request with this Referer may pass.
    pub fn allows(&self, referer: Option<&str>) -> bool {
        let Some(host) = referer.map(str::trim).filter(|r| !r.is_empty()).map(referer_host) else {
            return self.allow_empty;
        };
        let listed = self.hosts.iter().any(|entry| host_matches(entry, &host));
        match self.mode {
            ListMode::Allow => listed,
            ListMode::Deny => !listed,
        }
    }
}

fn referer_host(referer: &str) -> String {
    let rest = referer.split_once("://").map_or(referer, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split(']').next().map_or(host, |h| h.trim_start_matches('['))
    } else {
        host.split(':').next().unwrap_or(host)
    };
    host.to_ascii_lowercase()
}

fn host_matches(entry: &str, host: &str) -> bool {
    let entry = entry.trim().trim_start_matches("*.").to_ascii_lowercase();
    host == entry || host.strip_suffix(entry.as_str()).is_some_and(|p| p.ends_with('.'))
}

/// The left-most address of an `X-Forwarded-For` value (the client as the first proxy
/// saw it), if it parses; the access log reads the client the same way.
pub fn first_forwarded_for(value: Option<&str>) -> Option<IpAddr> {
    value.and_then(|h| h.split(',').next()).and_then(|a| a.trim().parse::<IpAddr>().ok())
}

/// Which client address an IP rule checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpSource {
    /// The left-most `X-Forwarded-For` address (only behind a trusted proxy).
    ForwardedFor,
    /// The TCP peer.
    Peer,
    /// Both: a deny list refuses if either matches, an allow list needs both.
    Both,
}

/// IP allow/deny list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpRules {
    /// Allow or deny the listed networks.
    pub mode: ListMode,
    /// Addresses or CIDR blocks, IPv4 or IPv6.
    pub networks: Vec<String>,
    /// Which address to check.
    #[serde(default = "peer")]
    pub source: IpSource,
}

fn peer() -> IpSource {
    IpSource::Peer
}

/// Parsed IP rules.
#[derive(Debug, Clone)]
pub struct IpMatcher {
    mode: ListMode,
    nets: Vec<IpNet>,
    source: IpSource,
}

impl IpMatcher {
    /// Parses the networks.
    ///
    /// # Errors
    /// The entry that is neither an address nor a CIDR block.
    pub fn new(rules: &IpRules) -> Result<IpMatcher, String> {
        let nets = rules
            .networks
            .iter()
            .map(|n| {
                n.parse::<IpNet>()
                    .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("not an IP address or CIDR block: {n:?}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(IpMatcher { mode: rules.mode, nets, source: rules.source })
    }

    fn listed(&self, ip: IpAddr) -> bool {
        // An IPv4-mapped IPv6 peer should match IPv4 entries.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// True when the request may pass.
    pub fn allows(&self, peer: IpAddr, forwarded_for: Option<&str>) -> bool {
        let xff = first_forwarded_for(forwarded_for);
        let candidates: Vec<IpAddr> = match self.source {
            IpSource::Peer => vec![peer],
            // Without a usable header the peer is the client.
            IpSource::ForwardedFor => vec![xff.unwrap_or(peer)],
            IpSource::Both => std::iter::once(peer).chain(xff).collect(),
        };
        match self.mode {
            ListMode::Deny => !candidates.iter().any(|ip| self.listed(*ip)),
            ListMode::Allow => candidates.iter().all(|ip| self.listed(*ip)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referer_whitelist_covers_subdomains_and_empty_choice() {
        let mut r = RefererRules { mode: ListMode::Allow, hosts: vec!["example.com".into()], allow_empty: false };
        assert!(r.allows(Some("https://example.com/page")));
        assert!(r.allows(Some("https://img.Example.com:8443/x")));
        assert!(!r.allows(Some("https://badexample.com/")));
        assert!(!r.allows(Some("https://example.com.evil.net/")));
        assert!(!r.allows(None));
        assert!(!r.allows(Some("")));
        r.allow_empty = true;
        assert!(r.allows(None));
    }

    #[test]
    fn referer_blacklist() {
        let r = RefererRules { mode: ListMode::Deny, hosts: vec!["*.leech.net".into()], allow_empty: true };
        assert!(!r.allows(Some("http://a.leech.net/")));
        assert!(!r.allows(Some("http://leech.net/")));
        assert!(r.allows(Some("http://fine.org/")));
    }

    #[test]
    fn ip_lists_with_cidr_and_sources() {
        let deny = IpMatcher::new(&IpRules {
            mode: ListMode::Deny,
            networks: vec!["10.0.0.0/8".into(), "2001:db8::1".into()],
            source: IpSource::ForwardedFor,
        })
        .unwrap();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(!deny.allows(peer, Some("10.1.2.3, 127.0.0.1")));
        assert!(deny.allows(peer, Some("192.0.2.1")));
        assert!(!deny.allows("10.9.9.9".parse().unwrap(), None));
        assert!(!deny.allows(peer, Some("2001:db8::1")));
        let allow = IpMatcher::new(&IpRules {
            mode: ListMode::Allow,
            networks: vec!["127.0.0.0/8".into()],
            source: IpSource::Both,
        })
        .unwrap();
        assert!(allow.allows(peer, None));
        assert!(!allow.allows(peer, Some("192.0.2.1")));
        assert!(allow.allows("::ffff:127.0.0.1".parse().unwrap(), None));
        assert!(IpMatcher::new(&IpRules {
            mode: ListMode::Deny,
            networks: vec!["nonsense".into()],
            source: IpSource::Peer
        })
        .is_err());
    }
}
