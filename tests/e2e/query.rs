//! `QueryService` through the Rust client (counts, member exports, membership tests, portraits),
//! every answer compared with the engine's on the same data.

use portrait_client::ast::{all, and, date, decimal, field, flag, keys, not, or, xor};
use portrait_client::{Expr, proto as v1};

use crate::fixture::{
    DEMO_LABEL, DEMO_USERS, EXPRESSIONS, client, expected, expected_count, expected_members,
    expected_portrait, key,
};

#[tokio::test]
async fn counts_match_the_engine() {
    let client = client().await;
    let snap = expected();
    let users = u64::from(DEMO_USERS);
    for &expr in EXPRESSIONS {
        let want = expected_count(&snap, expr);
        assert_eq!(client.count(expr).await.unwrap(), want, "count of {expr:?}");
        assert_eq!(
            client.count(expr).as_of(DEMO_LABEL).await.unwrap(),
            want,
            "count of {expr:?} as of the demo's label"
        );
    }
    assert_eq!(expected_count(&snap, "ALL"), users);
    // The compound expressions select a real part of the table, so equal counts mean something.
    for &expr in &EXPRESSIONS[2..EXPRESSIONS.len() - 1] {
        let n = expected_count(&snap, expr);
        assert!(0 < n && n < users, "{expr:?} selects {n} of {users} users");
    }
}

#[tokio::test]
async fn structured_expressions_count_like_their_text() {
    let client = client().await;
    let snap = expected();
    let cases: Vec<(Expr, &str)> = vec![
        (all().into(), "ALL"),
        (flag("device/ios").into(), "device/ios"),
        (
            and([
                field("demographic/age").ge(30),
                field("account/vip_level").ge(3),
            ])
            .into(),
            "demographic/age >= 30 AND account/vip_level >= 3",
        ),
        (
            or([
                field("demographic/age").between(18, 24),
                field("geo/province").in_list(["guangdong", "zhejiang"]),
            ])
            .into(),
            "demographic/age BETWEEN 18 AND 24 OR geo/province IN ('guangdong', 'zhejiang')",
        ),
        (
            xor([flag("device/android"), flag("marketing/push_opt_in")]).into(),
            "device/android XOR marketing/push_opt_in",
        ),
        (
            and([
                not(flag("lifecycle/churned")),
                field("commerce/total_spend").gt(decimal("100.50")),
            ])
            .into(),
            "NOT lifecycle/churned AND commerce/total_spend > 100.50",
        ),
        (
            and([
                field("account/registered").ge(date("2026-01-01")),
                field("activity/last_active").lt(date("2026-11-01")),
            ])
            .into(),
            "account/registered >= DATE '2026-01-01' AND activity/last_active < DATE '2026-11-01'",
        ),
        (
            field("acquisition/channel")
                .not_in(["organic", "app_store"])
                .into(),
            "acquisition/channel NOT IN ('organic', 'app_store')",
        ),
        (
            keys([key(3), key(5), "nobody".to_owned()]).into(),
            "KEYS('u0000000003', 'u0000000005', 'nobody')",
        ),
    ];
    for (ast, text) in cases {
        let want = expected_count(&snap, text);
        assert_eq!(client.count(ast).await.unwrap(), want, "AST of {text:?}");
    }
}

#[tokio::test]
async fn members_stream_every_key_of_the_crowd_once() {
    let client = client().await;
    let snap = expected();
    for expr in [
        "ALL",
        "demographic/gender = 'female'",
        "device/foldable",
        "NOT ALL",
    ] {
        let want = expected_members(&snap, expr);
        let mut stream = client.members(expr).await.unwrap();
        let mut got = Vec::new();
        let mut batches = 0;
        while let Some(batch) = stream.next_batch().await.unwrap() {
            batches += 1;
            assert!(batch.keys.len() <= 4096, "a batch of {}", batch.keys.len());
            got.extend(batch.keys);
        }
        assert_eq!(stream.received(), got.len() as u64);
        assert_eq!(got.len(), want.len(), "members of {expr:?}");
        assert!(got == want, "members of {expr:?} differ from the engine's");
        if want.len() > 4096 {
            assert!(batches >= want.len().div_ceil(4096), "{batches} batches");
        }
    }
}

#[tokio::test]
async fn a_limited_export_stops_at_its_limit_and_resumes_from_a_cursor() {
    let client = client().await;
    let snap = expected();
    let expr = "demographic/gender = 'female'";
    let want = expected_members(&snap, expr);
    assert!(want.len() > 5_000, "{} members", want.len());

    // 5,000 is one full batch of 4,096 and part of the next.
    let limited = client
        .members(expr)
        .limit(5_000)
        .await
        .unwrap()
        .collect_keys()
        .await
        .unwrap();
    assert!(limited == want[..5_000], "the first 5,000 members differ");

    // Every batch's cursor resumes right after it, in a new call.
    let mut stream = client.members(expr).await.unwrap();
    let first = stream.next_batch().await.unwrap().expect("a first batch");
    drop(stream);
    assert!(first.keys == want[..first.keys.len()]);
    assert!(!first.next_cursor.is_empty(), "more members follow");
    let tail = client
        .members(expr)
        .cursor(first.next_cursor)
        .await
        .unwrap()
        .collect_keys()
        .await
        .unwrap();
    assert!(
        tail == want[first.keys.len()..],
        "the resumed export differs"
    );

    // A limit beyond the crowd returns the whole crowd.
    let everything = client
        .members(expr)
        .limit(want.len() as u64 + 10)
        .await
        .unwrap()
        .collect_keys()
        .await
        .unwrap();
    assert!(everything == want);
}

/// `MembersBatch.next_cursor` (portrait.proto): "A stream ends after [the batch that ends the
/// crowd], or after the batch that reaches `limit` (whose cursor continues the export)". The
/// server sends an empty cursor on the batch that reaches the limit, so a limited export cannot
/// be continued.
#[tokio::test]
async fn the_batch_that_reaches_the_limit_continues_the_export() {
    let client = client().await;
    let snap = expected();
    let expr = "demographic/gender = 'female'";
    let want = expected_members(&snap, expr);
    let mut first = client.members(expr).limit(5_000).await.unwrap();
    while first.next_batch().await.unwrap().is_some() {}
    let cursor = first.cursor().to_owned();
    assert!(!cursor.is_empty(), "the limit batch's cursor is empty");
    let tail = client
        .members(expr)
        .cursor(cursor)
        .await
        .unwrap()
        .collect_keys()
        .await
        .unwrap();
    assert!(tail == want[5_000..]);
}

#[tokio::test]
async fn contains_matches_the_engine() {
    let client = client().await;
    let snap = expected();
    let users = [0, 1, 7, 42, 4_095, 4_096, 12_345, DEMO_USERS - 1];
    for &expr in &EXPRESSIONS[..EXPRESSIONS.len() - 1] {
        let crowd = snap.crowd_text(expr).unwrap();
        for i in users {
            let k = key(i);
            let want = crowd.contains(k.as_str()).unwrap();
            let got = client.contains(k.as_str(), expr).await.unwrap();
            assert_eq!(got, want, "{k} in {expr:?}");
        }
    }
    // Unknown users match nothing, not even ALL.
    assert!(!client.contains("nobody", "ALL").await.unwrap());
    assert!(!client.contains("nobody", "NOT device/ios").await.unwrap());
}

#[tokio::test]
async fn portraits_match_the_engine() {
    let client = client().await;
    let snap = expected();
    for i in [0, 7, 42, 9_999, DEMO_USERS - 1] {
        let k = key(i);
        let want = expected_portrait(&snap, &k);
        assert!(
            want.values.len() > 9,
            "{k} has {} values",
            want.values.len()
        );
        let got = client.portrait(k.as_str()).await.unwrap();
        assert_eq!(got, want, "portrait of {k}");
        let as_of = client.portrait(k.as_str()).as_of(DEMO_LABEL).await.unwrap();
        assert_eq!(as_of, want, "portrait of {k} as of the demo's label");
    }

    // Prefixes select whole path segments.
    let k = key(42);
    let full = expected_portrait(&snap, &k);
    let got = client
        .portrait(k.as_str())
        .prefixes(["demographic", "geo/city"])
        .await
        .unwrap();
    let want: Vec<&v1::FieldValue> = full
        .values
        .iter()
        .filter(|v| {
            v.path.starts_with("demographic/")
                || v.path == "geo/city"
                || v.path.starts_with("geo/city/")
        })
        .collect();
    assert_eq!(got.values.iter().collect::<Vec<_>>(), want);
    let partial_segment = client
        .portrait(k.as_str())
        .prefixes(["demo"])
        .await
        .unwrap();
    assert!(partial_segment.values.is_empty(), "{partial_segment:?}");
}

#[tokio::test]
async fn batch_portraits_keep_request_order_and_report_missing_keys() {
    let client = client().await;
    let snap = expected();
    let (a, b) = (key(11), key(19_000));
    let response = client
        .batch_portrait([a.as_str(), "nobody", b.as_str(), a.as_str(), "also-nobody"])
        .await
        .unwrap();
    assert_eq!(
        response.portraits,
        [expected_portrait(&snap, &a), expected_portrait(&snap, &b)]
    );
    assert_eq!(response.missing_keys, ["nobody", "also-nobody"]);

    let tags_only = client
        .batch_portrait([b.as_str()])
        .prefixes(["device", "marketing"])
        .await
        .unwrap();
    let want: Vec<v1::FieldValue> = expected_portrait(&snap, &b)
        .values
        .into_iter()
        .filter(|v| v.path.starts_with("device/") || v.path.starts_with("marketing/"))
        .collect();
    assert_eq!(tags_only.portraits.len(), 1);
    assert_eq!(tags_only.portraits[0].values, want);
}
