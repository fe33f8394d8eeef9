//! Bad requests through the Rust client: malformed expressions (with their position), unknown
//! fields (with a suggestion), tables and users, and fields of the wrong kind.

use portrait_client::ast::{field, flag};
use portrait_client::{Error, Position};

use crate::fixture::{DEMO_LABEL, client, expected};

#[tokio::test]
async fn malformed_expressions_carry_line_and_column() {
    let client = client().await;
    for text in [
        "demographic/age >>= 30",
        "device/ios AND",
        "(device/ios OR device/android",
        "demographic/gender = 'female' AND\n  demographic/age BETWEEN 18 30",
        "demographic/age >= 30 AND\n\n   geo/city IN ()",
        "device/ios AND 'unterminated",
        "did('open', 7) > 3",
    ] {
        let engine = portrait_engine::parse(text).expect_err("the engine rejects it too");
        let want = Position {
            line: engine.line,
            column: engine.column,
        };
        match client.count(text).await {
            Err(Error::InvalidArgument { message, position }) => {
                assert_eq!(position, Some(want), "{text:?}: {message}");
                assert!(
                    message.ends_with(&format!("at line {}, column {}", want.line, want.column)),
                    "{text:?}: {message}"
                );
                assert!(
                    message.contains(&engine.message),
                    "{message} vs {}",
                    engine.message
                );
            }
            other => panic!("{text:?}: expected InvalidArgument, got {other:?}"),
        }
    }
    // The same rejection on every call that takes an expression.
    let text = "device/ios AND";
    let position = |r: Result<(), Error>| match r {
        Err(error @ Error::InvalidArgument { .. }) => error.position(),
        other => panic!("expected InvalidArgument, got {other:?}"),
    };
    let want = Some(Position {
        line: 1,
        column: 15,
    });
    assert_eq!(
        position(client.contains("u0000000001", text).await.map(drop)),
        want
    );
    assert_eq!(position(client.members(text).await.map(drop)), want);
    assert_eq!(position(client.sample(text, 3).await.map(drop)), want);
    assert_eq!(position(client.explain(text).await.map(drop)), want);
    assert_eq!(
        position(client.group(text, ["demographic/gender"]).await.map(drop)),
        want
    );
    assert_eq!(
        position(
            client
                .group("ALL", ["demographic/gender"])
                .base(text)
                .await
                .map(drop)
        ),
        want
    );
}

#[tokio::test]
async fn unknown_fields_are_not_found_with_a_suggestion() {
    let client = client().await;
    let cases = [
        (
            "demographic/agee >= 30",
            "demographic/agee",
            "demographic/age",
        ),
        ("device/iso AND ALL", "device/iso", "device/ios"),
        ("geo/citty = 'city_001'", "geo/citty", "geo/city"),
    ];
    for (text, path, suggestion) in cases {
        match client.count(text).await {
            Err(Error::NotFound(message)) => {
                assert!(
                    message.contains(&format!(
                        "field `{path}` not found; did you mean `{suggestion}`?"
                    )),
                    "{text:?}: {message}"
                );
            }
            other => panic!("{text:?}: expected NotFound, got {other:?}"),
        }
    }
    // In the structured form too, and in analysis requests.
    assert!(matches!(
        client.count(flag("device/iso")).await,
        Err(Error::NotFound(m)) if m.contains("did you mean `device/ios`")
    ));
    assert!(matches!(
        client.top("ALL", "acquisition/chanel").await,
        Err(Error::NotFound(m)) if m.contains("acquisition/chanel")
    ));
    assert!(matches!(
        client.aggregate("ALL", "demographic/agge").await,
        Err(Error::NotFound(m)) if m.contains("did you mean `demographic/age`")
    ));
    // Nothing close: no suggestion.
    match client.count("zzzzzzzzzz/qqqqqqqq").await {
        Err(Error::NotFound(message)) => assert!(!message.contains("did you mean"), "{message}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_users_tables_and_versions() {
    let client = client().await;
    let snap = expected();
    match client.portrait("nobody").await {
        Err(Error::NotFound(message)) => assert!(message.contains("`nobody`"), "{message}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(!client.contains("nobody", "ALL").await.unwrap());
    assert!(!client.contains("", "ALL").await.unwrap());
    assert_eq!(
        client
            .count(portrait_client::ast::keys(["nobody"]))
            .await
            .unwrap(),
        0
    );

    match client.count("ALL").table("no_such_table").await {
        Err(Error::NotFound(message)) => assert!(message.contains("no_such_table"), "{message}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    match client.count("device/ios").as_of("2000-01-01").await {
        Err(Error::NotFound(message)) => assert!(message.contains("2000-01-01"), "{message}"),
        other => panic!("expected NotFound for a label older than every version, got {other:?}"),
    }
    // The demo's own label works.
    assert_eq!(
        client.count("device/ios").as_of(DEMO_LABEL).await.unwrap(),
        snap.crowd_text("device/ios").unwrap().count().unwrap()
    );
}

#[tokio::test]
async fn fields_of_the_wrong_kind_are_invalid_arguments() {
    let client = client().await;
    let cases: Vec<(&str, Result<(), Error>)> = vec![
        (
            "aggregate over an enum",
            client
                .aggregate("ALL", "demographic/gender")
                .await
                .map(drop),
        ),
        (
            "distribution over a flag",
            client.distribution("ALL", "device/ios").await.map(drop),
        ),
        (
            "an int compared with a string",
            client.count("demographic/age = 'old'").await.map(drop),
        ),
        (
            "an enum used as a flag",
            client.count("demographic/gender").await.map(drop),
        ),
        (
            "a structured flag on an int",
            client.count(flag("demographic/age")).await.map(drop),
        ),
        (
            "HAS on an int",
            client
                .count(field("demographic/age").has("30"))
                .await
                .map(drop),
        ),
        (
            "group by an int",
            client.group("ALL", ["demographic/age"]).await.map(drop),
        ),
        (
            "no dimension",
            client.group("ALL", Vec::<String>::new()).await.map(drop),
        ),
        (
            "an empty overlap",
            client.overlap(Vec::<&str>::new()).await.map(drop),
        ),
        ("no expression at all", client.count("").await.map(drop)),
    ];
    for (what, result) in cases {
        assert!(
            matches!(result, Err(Error::InvalidArgument { .. })),
            "{what}: {result:?}"
        );
    }
}
