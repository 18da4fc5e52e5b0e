//! How long a response may be served from cache, following the CDN's decision
//! order (spec f.3):
//!
//! 1. the origin forbids caching (`Pragma: no-cache`, `Cache-Control: no-cache`,
//!    `no-store`, `max-age=0`, `private`) → not cached, unless configured to ignore;
//! 2. configured rules (extension, directory, full path), highest weight first,
//!    configuration order among equal weights, first match wins; TTL 0 = not cached;
//!    a rule with `prefer_origin` defers to the origin's headers when there are any;
//! 3. the origin's `Cache-Control` (`s-maxage` before `max-age`), then `Expires`;
//! 4. heuristic: 10 % of the time since `Last-Modified`, clamped to 10 s..3600 s;
//!    an ETag alone gives a small fixed TTL; neither → not cached.

use crate::config::{CacheConfig, TtlRule, TtlRuleKind};
use crate::origin::ObjectMeta;
use std::time::{Duration, SystemTime};

const HEURISTIC_MIN: Duration = Duration::from_secs(10);
const HEURISTIC_MAX: Duration = Duration::from_secs(3600);

/// Compiled TTL policy.
#[derive(Debug, Clone)]
pub struct TtlPolicy {
    rules: Vec<TtlRule>,
    ignore_origin_no_cache: bool,
    etag_only: Duration,
    not_found: Duration,
}

impl TtlPolicy {
    /// Builds the policy; rules are ordered by weight, stable for ties.
    pub fn new(cfg: &CacheConfig) -> TtlPolicy {
        let mut rules = cfg.ttl_rules.clone();
        rules.sort_by_key(|r| std::cmp::Reverse(r.weight));
        TtlPolicy {
            rules,
            ignore_origin_no_cache: cfg.ignore_origin_no_cache,
            etag_only: Duration::from_secs(cfg.etag_only_ttl_secs),
            not_found: Duration::from_secs(cfg.not_found_ttl_secs),
        }
    }

    /// TTL for a 404 answer, None when 404s are not cached.
    pub fn for_not_found(&self) -> Option<Duration> {
        (!self.not_found.is_zero()).then_some(self.not_found)
    }

    /// TTL for a 200 response of `path`, None when it must not be cached.
    pub fn for_object(&self, path: &str, meta: &ObjectMeta, now: SystemTime) -> Option<Duration> {
        let cc = CacheControl::parse(meta.cache_control.as_deref().unwrap_or(""));
        if !self.ignore_origin_no_cache && (meta.pragma_no_cache || cc.forbids_caching()) {
            return None;
        }
        let origin_ttl = cc.max_age().or_else(|| meta.expires.map(|exp| exp.duration_since(now).unwrap_or_default()));
        if let Some(rule) = self.rules.iter().find(|r| rule_matches(r, path)) {
            if !(rule.prefer_origin && origin_ttl.is_some()) {
                return (rule.ttl_secs > 0).then(|| Duration::from_secs(rule.ttl_secs));
            }
        }
        if let Some(ttl) = origin_ttl {
            return (!ttl.is_zero()).then_some(ttl);
        }
        if let Some(lm) = meta.last_modified {
            let since = now.duration_since(lm).unwrap_or_default();
            return Some(since.mul_f64(0.1).clamp(HEURISTIC_MIN, HEURISTIC_MAX));
        }
        if meta.etag.is_some() && !self.etag_only.is_zero() {
            return Some(self.etag_only);
        }
        None
    }
}

fn rule_matches(rule: &TtlRule, path: &str) -> bool {
    match rule.kind {
        TtlRuleKind::Extension => {
            let file = path.rsplit('/').next().unwrap_or(path);
            let Some((_, ext)) = file.rsplit_once('.') else {
                return false;
            };
            rule.value.split(',').map(|e| e.trim().trim_start_matches('.')).any(|e| e.eq_ignore_ascii_case(ext))
        }
        TtlRuleKind::Directory => path.starts_with(rule.value.as_str()),
        TtlRuleKind::Path => path == rule.value,
    }
}

/// The parts of a Cache-Control header that decide caching.
#[derive(Debug, Default, PartialEq, Eq)]
struct CacheControl {
    no_cache: bool,
    no_store: bool,
    private: bool,
    max_age: Option<u64>,
    s_maxage: Option<u64>,
}

impl CacheControl {
    fn parse(header: &str) -> CacheControl {
        let mut cc = CacheControl::default();
        for directive in header.split(',') {
            let (name, value) = match directive.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            match name.to_ascii_lowercase().as_str() {
                "no-cache" => cc.no_cache = true,
                "no-store" => cc.no_store = true,
                "private" => cc.private = true,
                "max-age" => cc.max_age = value.and_then(|v| v.parse().ok()),
                "s-maxage" => cc.s_maxage = value.and_then(|v| v.parse().ok()),
                _ => {}
            }
        }
        cc
    }

    fn forbids_caching(&self) -> bool {
        self.no_cache || self.no_store || self.private || self.max_age == Some(0) && self.s_maxage.is_none()
    }

    fn max_age(&self) -> Option<Duration> {
        self.s_maxage.or(self.max_age).map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rules: Vec<TtlRule>) -> TtlPolicy {
        TtlPolicy::new(&CacheConfig { ttl_rules: rules, ..CacheConfig::default() })
    }

    fn rule(kind: TtlRuleKind, value: &str, ttl: u64, weight: u8) -> TtlRule {
        TtlRule { kind, value: value.into(), ttl_secs: ttl, weight, prefer_origin: false }
    }

    fn meta_modified_ago(secs: u64, now: SystemTime) -> ObjectMeta {
        ObjectMeta { last_modified: Some(now - Duration::from_secs(secs)), ..ObjectMeta::default() }
    }

    #[test]
    fn heuristic_is_a_tenth_of_age_clamped() {
        let now = SystemTime::now();
        let p = policy(vec![]);
        assert_eq!(p.for_object("/a", &meta_modified_ago(60, now), now), Some(HEURISTIC_MIN));
        assert_eq!(p.for_object("/a", &meta_modified_ago(600, now), now), Some(Duration::from_secs(60)));
        assert_eq!(p.for_object("/a", &meta_modified_ago(86400, now), now), Some(HEURISTIC_MAX));
        assert_eq!(p.for_object("/a", &ObjectMeta::default(), now), None);
    }

    #[test]
    fn origin_no_cache_wins_over_rules() {
        let now = SystemTime::now();
        let p = policy(vec![rule(TtlRuleKind::Directory, "/", 100, 10)]);
        for cc in ["no-cache", "no-store", "max-age=0", "private"] {
            let m = ObjectMeta { cache_control: Some(cc.into()), ..ObjectMeta::default() };
            assert_eq!(p.for_object("/a.jpg", &m, now), None, "{cc}");
        }
        let m = ObjectMeta { pragma_no_cache: true, ..ObjectMeta::default() };
        assert_eq!(p.for_object("/a.jpg", &m, now), None);
    }

    #[test]
    fn rules_by_weight_as_in_the_cdn_docs() {
        let now = SystemTime::now();
        let p = policy(vec![
            rule(TtlRuleKind::Directory, "/www/", 70, 70),
            rule(TtlRuleKind::Path, "/www/dir/a.jpg", 80, 80),
            rule(TtlRuleKind::Extension, "jpg,png", 90, 90),
        ]);
        let m = ObjectMeta::default();
        assert_eq!(p.for_object("/www/dir/a.jpg", &m, now), Some(Duration::from_secs(90)));
        assert_eq!(p.for_object("/www/dir/a.gif", &m, now), Some(Duration::from_secs(70)));
        let zero = policy(vec![rule(TtlRuleKind::Extension, "php", 0, 99)]);
        assert_eq!(zero.for_object("/x.php", &meta_modified_ago(9999, now), now), None);
    }

    #[test]
    fn origin_headers_s_maxage_then_max_age_then_expires() {
        let now = SystemTime::now();
        let p = policy(vec![]);
        let m = ObjectMeta { cache_control: Some("max-age=50, s-maxage=70".into()), ..ObjectMeta::default() };
        assert_eq!(p.for_object("/a", &m, now), Some(Duration::from_secs(70)));
        let m = ObjectMeta { cache_control: Some("public, max-age=50".into()), ..ObjectMeta::default() };
        assert_eq!(p.for_object("/a", &m, now), Some(Duration::from_secs(50)));
        let m = ObjectMeta { expires: Some(now + Duration::from_secs(30)), ..ObjectMeta::default() };
        assert_eq!(p.for_object("/a", &m, now), Some(Duration::from_secs(30)));
    }

    #[test]
    fn prefer_origin_rule_defers_only_when_origin_speaks() {
        let now = SystemTime::now();
        let mut r = rule(TtlRuleKind::Extension, "jpg", 500, 50);
        r.prefer_origin = true;
        let p = policy(vec![r]);
        let with = ObjectMeta { cache_control: Some("max-age=5".into()), ..ObjectMeta::default() };
        assert_eq!(p.for_object("/a.jpg", &with, now), Some(Duration::from_secs(5)));
        assert_eq!(p.for_object("/a.jpg", &ObjectMeta::default(), now), Some(Duration::from_secs(500)));
    }

    #[test]
    fn etag_only_objects_get_the_small_default() {
        let now = SystemTime::now();
        let m = ObjectMeta { etag: Some("\"x\"".into()), ..ObjectMeta::default() };
        assert_eq!(policy(vec![]).for_object("/a", &m, now), Some(Duration::from_secs(60)));
    }
}
