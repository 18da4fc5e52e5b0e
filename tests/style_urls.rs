//! Issue 16 item 7: OSS style URLs (`a.jpg!thumb`, `a.jpg@!thumb`) with configured
//! style delimiters, served and cached as `a.jpg?x-oss-process=style/thumb`.

use crate::common::server::{start_with, tmp_origin};

fn jpeg() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/giunchedi_srgb_icc.jpg")).unwrap()
}

fn with_style(delimiters: &'static str) -> impl FnOnce(&mut imgedge::Config) {
    move |c| {
        c.styles.insert("thumb".into(), "image/resize,w_16/format,png".into());
        c.style_delimiters = delimiters.into();
    }
}

#[tokio::test]
async fn delimiter_urls_are_the_styled_object_and_share_the_query_forms_entry() {
    let jpg = jpeg();
    let origin = tmp_origin(&[("a.jpg", &jpg), ("photo-2024.jpg", b"plain bytes")]);
    let s = start_with(origin.path(), with_style("!-")).await;
    let styled = s.get("/a.jpg!thumb").await;
    assert_eq!(styled.status, 200, "{}", styled.text());
    assert_eq!(styled.header("content-type"), "image/png");
    assert_eq!(styled.x_cache(), "MISS TCP_MISS");
    let query = s.get("/a.jpg?x-oss-process=style/thumb").await;
    assert_eq!(query.status, 200);
    assert_eq!(query.x_cache(), "HIT TCP_MEM_HIT", "one entry for both spellings");
    assert_eq!(query.body, styled.body);
    let at = s.get("/a.jpg@!thumb").await;
    assert_eq!(at.status, 200);
    assert_eq!(at.x_cache(), "HIT TCP_MEM_HIT", "`@!` is the same entry");
    assert_eq!(at.body, styled.body);
    // `-` is a delimiter, but `2024.jpg` is no style: the object as named.
    let dashed = s.get("/photo-2024.jpg").await;
    assert_eq!(dashed.status, 200);
    assert_eq!(dashed.text(), "plain bytes");
    // An unknown style after a delimiter is an object name too (missing here).
    assert_eq!(s.get("/a.jpg!nosuch").await.status, 404);
    // A style in the path and a chain in the query: refused, not guessed.
    assert_eq!(s.get("/a.jpg!thumb?x-oss-process=image/info").await.status, 400);
    s.stop().await;
}

#[tokio::test]
async fn without_delimiters_the_path_is_the_object_name() {
    let jpg = jpeg();
    let origin = tmp_origin(&[("a.jpg", &jpg), ("a.jpg!thumb", b"an object with a bang")]);
    let s = start_with(origin.path(), with_style("")).await;
    let r = s.get("/a.jpg!thumb").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "an object with a bang");
    s.stop().await;
}

#[test]
fn only_oss_delimiters_are_accepted() {
    let mut c = imgedge::Config::default();
    for ok in ["", "!", "-_/!"] {
        c.style_delimiters = ok.into();
        assert!(c.validate().is_ok(), "{ok:?}");
    }
    for bad in ["?", "!!", "a"] {
        c.style_delimiters = bad.into();
        assert!(c.validate().unwrap_err().contains("style_delimiters"), "{bad:?}");
    }
}
