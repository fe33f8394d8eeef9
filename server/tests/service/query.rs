//! Queries and analyses, compared with the engine's own answers.

use portrait_engine::expr::parse;
use portrait_proto::v1::{self, node};
use portrait_server::Limits;
use tonic::Code;

use crate::harness::{Harness, USERS, ast, engine_count, text};

fn wrap(kind: node::Kind) -> v1::Node {
    v1::Node { kind: Some(kind) }
}

async fn count(h: &Harness, expr: Option<v1::Expr>) -> Result<u64, tonic::Status> {
    h.query()
        .count(v1::CountRequest {
            table: "users".into(),
            expr,
            as_of: None,
        })
        .await
        .map(|r| r.into_inner().count)
}

#[tokio::test]
async fn counts_agree_with_the_engine_in_both_faces() {
    let h = Harness::start().await;
    let expr = "demographic/gender = 'female' AND demographic/age BETWEEN 18 AND 30";
    let expected = engine_count(&h, expr);
    assert!(expected > 0);
    assert_eq!(count(&h, text(expr)).await.unwrap(), expected);

    let tree = wrap(node::Kind::LogicalAnd(node::And {
        operands: vec![
            wrap(node::Kind::Compare(node::Compare {
                path: "demographic/gender".into(),
                op: v1::CompareOp::Eq.into(),
                value: Some(v1::Literal {
                    value: Some(v1::literal::Value::StringValue("female".into())),
                }),
            })),
            wrap(node::Kind::Between(node::Between {
                path: "demographic/age".into(),
                low: Some(v1::Literal {
                    value: Some(v1::literal::Value::IntValue(18)),
                }),
                high: Some(v1::Literal {
                    value: Some(v1::literal::Value::IntValue(30)),
                }),
            })),
        ],
    }));
    assert_eq!(count(&h, ast(tree)).await.unwrap(), expected);
    let nobody = wrap(node::Kind::LogicalOr(node::Or { operands: vec![] }));
    assert_eq!(count(&h, ast(nobody)).await.unwrap(), 0);
    let everybody = wrap(node::Kind::LogicalAnd(node::And { operands: vec![] }));
    assert_eq!(count(&h, ast(everybody)).await.unwrap(), u64::from(USERS));
    let spend = "commerce/total_spend >= 100.50";
    assert_eq!(
        count(&h, text(spend)).await.unwrap(),
        engine_count(&h, spend)
    );
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_right_code() {
    let h = Harness::start().await;
    let status = count(&h, text("demographic/age >=\n AND vip"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.metadata().get("x-portrait-line").unwrap(), "2");
    assert_eq!(status.metadata().get("x-portrait-column").unwrap(), "2");
    assert!(
        status.message().ends_with("at line 2, column 2"),
        "{}",
        status.message()
    );

    let status = count(&h, text("demographic/gendr = 'x'"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().contains("demographic/gender"),
        "{}",
        status.message()
    );

    let status = count(&h, text("demographic/age = 'old'"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let status = count(&h, None).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let status = count(&h, text(&"a OR ".repeat(20_000))).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);

    let status = h
        .query()
        .count(v1::CountRequest {
            table: "nope".into(),
            expr: text("ALL"),
            as_of: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("`nope`"));
}

/// Reads a whole Members stream: its keys, the cursor of each batch, and its final status.
async fn drain(
    h: &Harness,
    request: v1::MembersRequest,
) -> Result<(Vec<String>, Vec<String>, Option<tonic::Status>), tonic::Status> {
    let request_packed = request.packed_keys;
    let mut stream = h.query().members(request).await?.into_inner();
    let (mut keys, mut cursors) = (Vec::new(), Vec::new());
    loop {
        match stream.message().await {
            Ok(Some(batch)) => {
                // Keys come in the form asked for.
                if request_packed {
                    assert!(batch.keys.is_empty(), "plain keys in a packed export");
                } else {
                    assert!(
                        batch.packed_keys.is_empty(),
                        "packed keys in a plain export"
                    );
                }
                keys.extend(batch.keys);
                keys.extend(unpack(&batch.packed_keys));
                cursors.push(batch.next_cursor);
            }
            Ok(None) => return Ok((keys, cursors, None)),
            Err(status) => return Ok((keys, cursors, Some(status))),
        }
    }
}

/// The keys of a `MembersBatch.packed_keys` (each key's length as a varint, then its text).
fn unpack(mut packed: &[u8]) -> Vec<String> {
    let mut keys = Vec::new();
    while !packed.is_empty() {
        let len = prost::encoding::decode_varint(&mut packed).unwrap() as usize;
        keys.push(String::from_utf8(packed[..len].to_vec()).unwrap());
        packed = &packed[len..];
    }
    keys
}

fn members_request(expr: &str, cursor: &str, limit: u64) -> v1::MembersRequest {
    v1::MembersRequest {
        table: "users".into(),
        expr: text(expr),
        cursor: cursor.into(),
        limit,
        packed_keys: false,
        as_of: None,
    }
}

fn packed_request(expr: &str, cursor: &str, limit: u64) -> v1::MembersRequest {
    v1::MembersRequest {
        packed_keys: true,
        ..members_request(expr, cursor, limit)
    }
}

#[tokio::test]
async fn packed_exports_hold_the_same_keys_and_cursors() {
    let limits = Limits {
        members_batch_keys: 64,
        ..Limits::default()
    };
    let h = Harness::start_with(limits, std::time::Duration::from_secs(5)).await;
    let snap = h.snapshot();
    for expr in ["demographic/age < 30", "ALL", "NOT ALL"] {
        let expected: Vec<String> = snap
            .crowd(&parse(expr).unwrap())
            .unwrap()
            .members(None, usize::MAX)
            .unwrap()
            .keys
            .iter()
            .map(ToString::to_string)
            .collect();
        for limit in [0, 100] {
            let plain = drain(&h, members_request(expr, "", limit)).await.unwrap();
            let packed = drain(&h, packed_request(expr, "", limit)).await.unwrap();
            assert!(packed.2.is_none(), "{expr}: {:?}", packed.2);
            let want = if limit == 0 {
                &expected[..]
            } else {
                &expected[..expected.len().min(100)]
            };
            assert_eq!(packed.0, want, "{expr}, limit {limit}");
            assert_eq!(packed.0, plain.0, "{expr}, limit {limit}");
            assert_eq!(packed.1, plain.1, "{expr}, limit {limit}: cursors");
            if let Some(resume) = packed.1.get(1).filter(|c| !c.is_empty()) {
                let rest = drain(&h, packed_request(expr, resume, 0)).await.unwrap();
                // Two batches of 64 keys, or the limit's 100.
                let at = want.len().min(128);
                assert_eq!(rest.0, expected[at..], "{expr}: resumed");
            }
        }
    }
}

#[tokio::test]
async fn members_stream_in_batches_and_resume_from_cursors() {
    let limits = Limits {
        members_batch_keys: 100,
        ..Limits::default()
    };
    let h = Harness::start_with(limits, std::time::Duration::from_secs(5)).await;
    let expr = "demographic/age < 30";
    let snap = h.snapshot();
    let crowd = snap.crowd(&parse(expr).unwrap()).unwrap();
    let expected: Vec<String> = crowd
        .members(None, usize::MAX)
        .unwrap()
        .keys
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(expected.len() > 250);

    let (keys, cursors, end) = drain(&h, members_request(expr, "", 0)).await.unwrap();
    assert!(end.is_none(), "{end:?}");
    assert_eq!(keys, expected);
    assert_eq!(cursors.len(), expected.len().div_ceil(100));
    assert_eq!(cursors.last().unwrap(), "", "the final batch has no cursor");
    assert!(cursors[..cursors.len() - 1].iter().all(|c| !c.is_empty()));

    // Resume after the second batch.
    let (rest, _, end) = drain(&h, members_request(expr, &cursors[1], 0))
        .await
        .unwrap();
    assert!(end.is_none());
    assert_eq!(rest, expected[200..]);

    // A limit ends the stream early; its last batch's cursor continues the export.
    let (first, cursors, end) = drain(&h, members_request(expr, "", 150)).await.unwrap();
    assert!(end.is_none());
    assert_eq!(first, expected[..150]);
    let resume = cursors.last().unwrap();
    assert!(
        !resume.is_empty(),
        "the batch that reaches the limit carries a cursor"
    );
    let (rest, _, _) = drain(&h, members_request(expr, resume, 0)).await.unwrap();
    assert_eq!(rest, expected[150..]);

    let (none, cursors, _) = drain(&h, members_request("NOT ALL", "", 0)).await.unwrap();
    assert!(none.is_empty());
    assert_eq!(cursors, [""]);

    let bad = drain(&h, members_request(expr, "garbage", 0))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let bad = drain(&h, members_request("nosuchflag", "", 0))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::NotFound);
}

#[tokio::test]
async fn unlimited_exports_stop_at_the_export_cap() {
    let limits = Limits {
        members_batch_keys: 100,
        max_export_keys: 250,
        ..Limits::default()
    };
    let h = Harness::start_with(limits, std::time::Duration::from_secs(5)).await;
    let (keys, cursors, end) = drain(&h, members_request("ALL", "", 0)).await.unwrap();
    assert_eq!(keys.len(), 250);
    assert_eq!(end.unwrap().code(), Code::ResourceExhausted);
    let (more, _, _) = drain(&h, members_request("ALL", cursors.last().unwrap(), 0))
        .await
        .unwrap();
    assert_eq!(
        more.first().unwrap(),
        "u0000000250",
        "resumes after the cap"
    );
    let refused = drain(&h, members_request("ALL", "", 251))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let (exact, _, end) = drain(&h, members_request("ALL", "", 250)).await.unwrap();
    assert_eq!((exact.len(), end.is_none()), (250, true));
}

#[tokio::test]
async fn portraits_and_membership() {
    let h = Harness::start().await;
    let snap = h.snapshot();
    let mut query = h.query();
    let portrait = query
        .portrait(v1::PortraitRequest {
            table: "users".into(),
            key: "u0000000007".into(),
            prefixes: vec!["demographic".into(), "commerce".into()],
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner()
        .portrait
        .unwrap();
    let engine = snap.portrait("u0000000007").unwrap();
    let expected: Vec<&str> = {
        let mut paths: Vec<&str> = engine
            .iter()
            .map(|(p, _)| p.as_str())
            .filter(|p| p.starts_with("demographic/") || p.starts_with("commerce/"))
            .collect();
        paths.sort_unstable();
        paths
    };
    let got: Vec<&str> = portrait.values.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(got, expected);
    let spend = portrait
        .values
        .iter()
        .find(|v| v.path == "commerce/total_spend")
        .unwrap();
    assert!(matches!(
        spend.value.as_ref().unwrap().kind,
        Some(v1::value::Kind::DecimalValue(ref d)) if d.contains('.')
    ));

    let unknown = query
        .portrait(v1::PortraitRequest {
            table: "users".into(),
            key: "nobody".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(unknown.message().contains("nobody"));

    let as_of = query
        .portrait(v1::PortraitRequest {
            table: "users".into(),
            key: "u0000000007".into(),
            prefixes: vec![],
            as_of: Some("2026-12-31".into()),
        })
        .await
        .unwrap()
        .into_inner()
        .portrait
        .unwrap();
    assert_eq!(as_of.values.len(), engine.len());
    let too_old = query
        .portrait(v1::PortraitRequest {
            table: "users".into(),
            key: "u0000000007".into(),
            prefixes: vec![],
            as_of: Some("2020-01-01".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(too_old.code(), Code::NotFound);

    let batch = query
        .batch_portrait(v1::BatchPortraitRequest {
            table: "users".into(),
            keys: vec![
                "u0000000002".into(),
                "ghost".into(),
                "u0000000001".into(),
                "u0000000002".into(),
            ],
            prefixes: vec!["geo".into()],
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<&str> = batch.portraits.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["u0000000002", "u0000000001"]);
    assert_eq!(batch.missing_keys, ["ghost"]);
    assert!(
        batch.portraits[0]
            .values
            .iter()
            .all(|v| v.path.starts_with("geo/"))
    );

    let too_many = query
        .batch_portrait(v1::BatchPortraitRequest {
            table: "users".into(),
            keys: vec!["k".into(); 10_001],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), Code::ResourceExhausted);

    // Every user's full portrait is more than the harness's 4 MiB message limit.
    let everyone: Vec<String> = (0..USERS).map(|i| format!("u{i:010}")).collect();
    let too_large = query
        .batch_portrait(v1::BatchPortraitRequest {
            table: "users".into(),
            keys: everyone.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(too_large.code(), Code::ResourceExhausted);
    assert!(
        too_large.message().contains("fewer keys"),
        "{}",
        too_large.message()
    );
    let narrow = query
        .batch_portrait(v1::BatchPortraitRequest {
            table: "users".into(),
            keys: everyone,
            prefixes: vec!["geo".into()],
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(narrow.portraits.len(), USERS as usize);

    let female = snap.crowd_text("demographic/gender = 'female'").unwrap();
    for key in ["u0000000000", "u0000000001", "u0000000002"] {
        let answer = query
            .contains(v1::ContainsRequest {
                table: "users".into(),
                expr: text("demographic/gender = 'female'"),
                key: key.into(),
                as_of: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(answer.known);
        assert_eq!(answer.contains, female.contains(key).unwrap(), "{key}");
    }
    let ghost = query
        .contains(v1::ContainsRequest {
            table: "users".into(),
            expr: text("ALL"),
            key: "ghost".into(),
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ghost.contains, ghost.known), (false, false));
}

#[tokio::test]
async fn analyses_agree_with_the_engine() {
    let h = Harness::start().await;
    let snap = h.snapshot();
    let crowd_text = "account/vip_level >= 1 OR demographic/age < 20";
    let crowd = snap.crowd_text(crowd_text).unwrap();
    let mut analysis = h.analysis();

    let group = analysis
        .group(v1::GroupRequest {
            table: "users".into(),
            expr: text(crowd_text),
            dims: vec!["demographic/gender".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let engine = crowd
        .group_count(&["demographic/gender"], None, 1000)
        .unwrap();
    assert_eq!(group.rows.len(), engine.len());
    assert_eq!(group.total, crowd.count().unwrap());
    assert_eq!(group.base_total, u64::from(USERS));
    for (row, e) in group.rows.iter().zip(&engine) {
        assert_eq!(row.count, e.count);
        assert_eq!(
            row.values[0].kind,
            Some(v1::value::Kind::StringValue(e.values[0].clone()))
        );
    }

    let aggregate = analysis
        .aggregate(v1::AggregateRequest {
            table: "users".into(),
            expr: text(crowd_text),
            field: "commerce/total_spend".into(),
            percentiles: vec![50.0, 99.0],
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner();
    let e = crowd
        .aggregate("commerce/total_spend", &[50.0, 99.0])
        .unwrap();
    assert_eq!(aggregate.count, e.count);
    let decimal = |units: i128| {
        Some(v1::Value {
            kind: Some(v1::value::Kind::DecimalValue(
                portrait_server::convert::decimal_string(units, 2),
            )),
        })
    };
    assert_eq!(aggregate.sum, decimal(e.sum));
    assert_eq!(aggregate.max, decimal(e.max.unwrap().into()));
    assert!((aggregate.avg - e.avg.unwrap() / 100.0).abs() < 1e-9);
    assert_eq!(aggregate.percentiles.len(), 2);

    let distribution = analysis
        .distribution(v1::DistributionRequest {
            table: "users".into(),
            expr: text(crowd_text),
            field: "demographic/age".into(),
            buckets: Some(v1::distribution_request::Buckets::Bounds(v1::Bounds {
                bounds: [18, 25, 35]
                    .map(|b| v1::Literal {
                        value: Some(v1::literal::Value::IntValue(b)),
                    })
                    .to_vec(),
            })),
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner();
    let buckets: u64 = distribution.buckets.iter().map(|b| b.count).sum();
    assert_eq!(buckets, distribution.total);
    assert_eq!(
        distribution.total + distribution.missing,
        crowd.count().unwrap()
    );

    let top = analysis
        .top(v1::TopRequest {
            table: "users".into(),
            expr: text(crowd_text),
            field: "interest".into(),
            k: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let e = crowd
        .top_values("interest", 5, portrait_engine::TopOrder::Count)
        .unwrap();
    let paths: Vec<&str> = top.rows.iter().map(|r| r.path.as_str()).collect();
    let expected: Vec<&str> = e.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, expected);

    // Against a base equal to every user, TGI is the engine's.
    let top_base = analysis
        .top(v1::TopRequest {
            table: "users".into(),
            expr: text(crowd_text),
            field: "interest".into(),
            k: 5,
            base: text("ALL"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for (a, b) in top_base.rows.iter().zip(&e) {
        assert!(
            (a.tgi - b.tgi.unwrap()).abs() < 1e-9,
            "{} {}",
            a.tgi,
            b.tgi.unwrap()
        );
    }

    let overlap = analysis
        .overlap(v1::OverlapRequest {
            table: "users".into(),
            exprs: vec![
                text("account/vip_level >= 1").unwrap(),
                text(crowd_text).unwrap(),
            ],
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overlap.n, 2);
    assert_eq!(overlap.matrix[3], crowd.count().unwrap());
    assert_eq!(overlap.matrix[1], overlap.matrix[2]);
    let too_many = analysis
        .overlap(v1::OverlapRequest {
            table: "users".into(),
            exprs: vec![text("ALL").unwrap(); 65],
            as_of: None,
        })
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), Code::ResourceExhausted);

    let sample = analysis
        .sample(v1::SampleRequest {
            table: "users".into(),
            expr: text(crowd_text),
            n: 10,
            seed: Some(7),
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner();
    let e: Vec<String> = crowd
        .sample(10, 7)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!((sample.keys, sample.seed), (e, 7));
    let too_big = analysis
        .sample(v1::SampleRequest {
            table: "users".into(),
            expr: text("ALL"),
            n: 1_000_001,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(too_big.code(), Code::ResourceExhausted);

    let plan = analysis
        .explain(v1::ExplainRequest {
            table: "users".into(),
            expr: text(crowd_text),
            analyze: true,
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        plan.root.unwrap().actual_cardinality,
        Some(crowd.count().unwrap())
    );
    assert!(plan.plan.contains("OR"), "{}", plan.plan);
}

/// Counts, groups (sharing the base-group memo) and samples, 48 at once on rayon's workers
/// (`run_parallel`): every call finishes, with the engine's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_analyses_finish_with_the_engines_answers() {
    let h = Harness::start().await;
    let snap = h.snapshot();
    let exprs = [
        "account/vip_level >= 1 OR demographic/age < 20",
        "demographic/age BETWEEN 20 AND 40 AND NOT account/vip_level >= 3",
        "ALL",
    ];
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..48 {
        let expr = exprs[i % exprs.len()];
        let crowd = snap.crowd_text(expr).unwrap();
        let (mut query, mut analysis) = (h.query(), h.analysis());
        match i % 3 {
            0 => {
                let want = crowd.count().unwrap();
                calls.spawn(async move {
                    let got = query
                        .count(v1::CountRequest {
                            table: "users".into(),
                            expr: text(expr),
                            as_of: None,
                        })
                        .await
                        .unwrap()
                        .into_inner()
                        .count;
                    assert_eq!(got, want, "count of {expr}");
                });
            }
            1 => {
                let want: Vec<u64> = crowd
                    .group_count(&["demographic/gender"], None, 1000)
                    .unwrap()
                    .iter()
                    .map(|r| r.count)
                    .collect();
                calls.spawn(async move {
                    let got: Vec<u64> = analysis
                        .group(v1::GroupRequest {
                            table: "users".into(),
                            expr: text(expr),
                            dims: vec!["demographic/gender".into()],
                            ..Default::default()
                        })
                        .await
                        .unwrap()
                        .into_inner()
                        .rows
                        .iter()
                        .map(|r| r.count)
                        .collect();
                    assert_eq!(got, want, "group of {expr}");
                });
            }
            _ => {
                let want: Vec<String> = crowd
                    .sample(25, i as u64)
                    .unwrap()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                calls.spawn(async move {
                    let got = analysis
                        .sample(v1::SampleRequest {
                            table: "users".into(),
                            expr: text(expr),
                            n: 25,
                            seed: Some(i as u64),
                            as_of: None,
                        })
                        .await
                        .unwrap()
                        .into_inner()
                        .keys;
                    assert_eq!(got, want, "sample of {expr}");
                });
            }
        }
    }
    let all = async {
        while let Some(done) = calls.join_next().await {
            done.unwrap();
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), all)
        .await
        .expect("every concurrent call finishes");
}
