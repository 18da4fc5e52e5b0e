//! Issue 7 (items 4, 5, 7): URL authentication A/B/C, referer and IP rules, and
//! Host-based site selection, through the real server.

use crate::common::server::{fixtures, start_with};
use http::StatusCode;
use imgedge::access::url_auth::md5_hex;
use imgedge::access::SiteConfig;

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn site(toml_text: &str) -> SiteConfig {
    toml::from_str(toml_text).unwrap()
}

const KEY: &str = "PrivKey0123456789";

#[tokio::test]
async fn type_a_signed_urls_pass_and_share_the_plain_cache_entry() {
    let s = start_with(fixtures(), |c| {
        c.sites = vec![site(&format!("hosts = [\"*\"]\n[url_auth]\ntype = \"A\"\nprimary_key = \"{KEY}\"\nsecondary_key = \"OldKey0123456789\"\nvalidity_secs = 60\n"))];
    })
    .await;
    let r = s.get("/hello.txt").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.header("x-tengine-error"), "denied by req auth: no url arg auth_key");
    assert!(r.text().contains("<Code>AccessDenied</Code>"));

    let ts = now();
    let sign = |key: &str, ts: u64| md5_hex(&format!("/hello.txt-{ts}-0-0-{key}"));
    let r = s.get(&format!("/hello.txt?auth_key={ts}-0-0-{}", sign(KEY, ts))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.x_cache(), "MISS TCP_MISS");
    // Another valid signature (rotated key) hits the same entry.
    let r = s.get(&format!("/hello.txt?auth_key={ts}-0-0-{}", sign("OldKey0123456789", ts))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.x_cache(), "HIT TCP_MEM_HIT");

    let old = ts - 120;
    let r = s.get(&format!("/hello.txt?auth_key={old}-0-0-{}", sign(KEY, old))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.header("x-tengine-error"), "denied by req auth: expired timestamp");
    let r = s.get(&format!("/hello.txt?auth_key={ts}-0-0-{}", sign("WrongKey", ts))).await;
    assert_eq!(r.header("x-tengine-error"), "denied by req auth: invalid md5hash");
}

#[tokio::test]
async fn type_b_and_c_rewrite_to_the_object_path() {
    let s = start_with(fixtures(), |c| {
        c.sites = vec![
            site(&format!("hosts = [\"b.test\"]\n[url_auth]\ntype = \"B\"\nprimary_key = \"{KEY}\"\n")),
            site(&format!("hosts = [\"c.test\"]\n[url_auth]\ntype = \"C\"\nprimary_key = \"{KEY}\"\n")),
        ];
    })
    .await;
    // Type B: YYYYMMDDHHMM in UTC+8.
    let t = now() + 8 * 3600;
    let (days, rem) = (t / 86400, t % 86400);
    let (y, m, d) = civil_from_days(days as i64);
    let stamp = format!("{y:04}{m:02}{d:02}{:02}{:02}", rem / 3600, rem % 3600 / 60);
    let hash = md5_hex(&format!("{KEY}{stamp}/hello.txt"));
    let r = s.get_with(&format!("/{stamp}/{hash}/hello.txt"), &[("host", "b.test")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.text(), "hello from imgedge\n");

    let hex = format!("{:x}", now());
    let hash = md5_hex(&format!("{KEY}/hello.txt{hex}"));
    let r = s.get_with(&format!("/{hash}/{hex}/hello.txt"), &[("host", "c.test")]).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s.get_with(&format!("/hello.txt?KEY1={hash}&KEY2={hex}"), &[("host", "c.test")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.x_cache(), "HIT TCP_MEM_HIT", "format 2 shares format 1's entry");
    let r = s.get_with("/hello.txt", &[("host", "c.test")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Host selects only configured sites.
    let r = s.get_with("/hello.txt", &[("host", "other.test")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[tokio::test]
async fn referer_whitelist_with_empty_referer_choice() {
    let s = start_with(fixtures(), |c| {
        c.sites = vec![site(
            "hosts = [\"*\"]\n[referer]\nmode = \"allow\"\nhosts = [\"example.com\"]\nallow_empty = false\n",
        )];
    })
    .await;
    assert_eq!(s.get_with("/hello.txt", &[("referer", "https://www.example.com/p")]).await.status, StatusCode::OK);
    assert_eq!(s.get_with("/hello.txt", &[("referer", "https://evil.net/")]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(s.get("/hello.txt").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn ip_deny_list_by_forwarded_for_and_peer() {
    let s = start_with(fixtures(), |c| {
        c.sites = vec![site(
            "hosts = [\"*\"]\n[ip]\nmode = \"deny\"\nnetworks = [\"203.0.113.0/24\"]\nsource = \"forwarded_for\"\n",
        )];
    })
    .await;
    assert_eq!(s.get("/hello.txt").await.status, StatusCode::OK);
    assert_eq!(
        s.get_with("/hello.txt", &[("x-forwarded-for", "203.0.113.9, 10.0.0.1")]).await.status,
        StatusCode::FORBIDDEN
    );
    let peer_deny = start_with(fixtures(), |c| {
        c.sites = vec![site("hosts = [\"*\"]\n[ip]\nmode = \"deny\"\nnetworks = [\"127.0.0.0/8\"]\n")];
    })
    .await;
    assert_eq!(peer_deny.get("/hello.txt").await.status, StatusCode::FORBIDDEN);
}
