//! `CatalogService` and `AdminService` through the Rust client: tables, fields and their
//! metadata, the catalog tree, table statistics and versions, compared with the engine's catalog.

use portrait_client::Error;
use portrait_client::proto::{self as v1, FieldKind as WireKind};
use portrait_engine::{FieldKind, TableSnapshot};

use crate::fixture::{DEMO_LABEL, DEMO_USERS, TABLE, client, expected, server};

fn wire_kind(kind: FieldKind) -> WireKind {
    match kind {
        FieldKind::Flag => WireKind::Flag,
        FieldKind::Enum => WireKind::Enum,
        FieldKind::Set => WireKind::Set,
        FieldKind::Int => WireKind::Int,
        FieldKind::Decimal { .. } => WireKind::Decimal,
        FieldKind::Timestamp => WireKind::Timestamp,
        FieldKind::Event => WireKind::Event,
    }
}

/// Every field path of the engine's catalog, sorted.
fn paths(snap: &TableSnapshot) -> Vec<String> {
    let mut paths: Vec<String> = snap.fields().map(|m| m.spec.path.clone()).collect();
    paths.sort();
    paths
}

#[tokio::test]
async fn tables_list_the_demo_table() {
    let client = client().await;
    let snap = expected();
    let tables = client.list_tables().await.unwrap();
    assert_eq!(tables.len(), 1, "{tables:?}");
    let table = &tables[0];
    assert_eq!(table.name, TABLE);
    assert_eq!(table.key_kind(), v1::KeyKind::String);
    assert_eq!(table.users, u64::from(DEMO_USERS));
    assert!(table.created_unix_ms > 0, "the table's creation time");
    assert_eq!(table.fields, snap.fields().count() as u64);
    assert_eq!(
        table.fields,
        9 + portrait_datagen::TAG_COUNT as u64 + portrait_datagen::EVENTS.len() as u64,
        "9 attributes, the tags and the events"
    );
}

#[tokio::test]
async fn fields_carry_the_engine_metadata() {
    let client = client().await;
    let snap = expected();
    let fields = client.list_fields().await.unwrap();
    let got: Vec<&str> = fields.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(got, paths(&snap), "every field, ordered by path");
    for field in &fields {
        let meta = snap.fields().find(|m| m.spec.path == field.path).unwrap();
        let versions = snap.versions(&field.path).unwrap();
        assert_eq!(field.kind(), wire_kind(meta.spec.kind), "{}", field.path);
        assert_eq!(field.description, meta.spec.description, "{}", field.path);
        assert_eq!(field.owner, meta.spec.owner, "{}", field.path);
        assert_eq!(field.freshness(), v1::Freshness::Offline, "{}", field.path);
        assert_eq!(field.versions.len(), 1, "{}", field.path);
        assert_eq!(field.versions[0].label, DEMO_LABEL);
        assert_eq!(field.versions[0].rows, versions[0].users, "{}", field.path);
        let stats = field.stats.expect("stats of the latest version");
        assert_eq!(stats.users_covered, versions[0].users, "{}", field.path);
        assert_eq!(
            stats.distinct_values, versions[0].distinct,
            "{}",
            field.path
        );
        assert!(field.created_unix_ms > 0 && field.updated_unix_ms >= field.created_unix_ms);
    }

    // Prefixes are segment-wise.
    let demographic = client.list_fields().prefix("demographic").await.unwrap();
    let got: Vec<&str> = demographic.iter().map(|f| f.path.as_str()).collect();
    let want: Vec<String> = paths(&snap)
        .into_iter()
        .filter(|p| p.starts_with("demographic/"))
        .collect();
    assert_eq!(got, want);
    assert!(got.contains(&"demographic/age") && got.contains(&"demographic/parent/teen"));
    assert!(
        client
            .list_fields()
            .prefix("demo")
            .await
            .unwrap()
            .is_empty()
    );

    // One field.
    let age = client.field("demographic/age").await.unwrap();
    assert_eq!(age.kind(), WireKind::Int);
    assert_eq!(age.description, "Age in years");
    assert_eq!(age.stats.unwrap().users_covered, u64::from(DEMO_USERS));
    let gender = client.field("demographic/gender").await.unwrap();
    assert_eq!(gender.stats.unwrap().distinct_values, 3);
    let spend = client.field("commerce/total_spend").await.unwrap();
    assert_eq!(spend.kind(), WireKind::Decimal);

    match client.field("demographic/agee").await {
        Err(Error::NotFound(message)) => {
            assert!(message.contains("demographic/agee"), "{message}");
            assert!(
                message.contains("did you mean `demographic/age`"),
                "{message}"
            );
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
}

/// Checks one tree node against the catalog: every path is the parent's plus the name, children
/// are sorted, fields carry their kind. Returns the field paths found.
fn walk(node: &v1::TreeNode, snap: &TableSnapshot, out: &mut Vec<String>) {
    let names: Vec<&str> = node.children.iter().map(|c| c.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "children of {:?} ordered by name", node.path);
    if node.is_field {
        let kind = snap.field(&node.path).unwrap().kind();
        assert_eq!(node.kind(), wire_kind(kind), "{}", node.path);
        out.push(node.path.clone());
    } else {
        assert_eq!(node.kind(), WireKind::Unspecified, "{}", node.path);
        assert!(
            !node.children.is_empty(),
            "{} is neither field nor folder",
            node.path
        );
    }
    for child in &node.children {
        let path = if node.path.is_empty() {
            child.name.clone()
        } else {
            format!("{}/{}", node.path, child.name)
        };
        assert_eq!(child.path, path);
        walk(child, snap, out);
    }
}

#[tokio::test]
async fn the_tree_holds_every_field_once() {
    let client = client().await;
    let snap = expected();
    let root = client.tree().await.unwrap();
    assert_eq!((root.name.as_str(), root.path.as_str()), ("", ""));
    let mut found = Vec::new();
    walk(&root, &snap, &mut found);
    found.sort();
    assert_eq!(found, paths(&snap));

    let interest = client.tree().prefix("interest").await.unwrap();
    assert_eq!(
        (interest.name.as_str(), interest.path.as_str()),
        ("interest", "interest")
    );
    let mut found = Vec::new();
    walk(&interest, &snap, &mut found);
    found.sort();
    let want: Vec<String> = paths(&snap)
        .into_iter()
        .filter(|p| p.starts_with("interest/"))
        .collect();
    assert_eq!(found, want);

    assert!(matches!(
        client.tree().prefix("no_such_family").await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn admin_reports_stats_and_versions() {
    let client = client().await;
    let snap = expected();
    let table_dir = server().data_dir().join("tables").join(TABLE);
    // Files are only ever added while the server runs, so the answer lies between the two sizes.
    let on_disk_before = dir_bytes(&table_dir);
    let stats = client.stats().await.unwrap();
    let on_disk_after = dir_bytes(&table_dir);
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].name, TABLE);
    assert_eq!(stats[0].users, u64::from(DEMO_USERS));
    assert_eq!(stats[0].fields, snap.fields().count() as u64);
    assert!(stats[0].bytes_on_disk > 0);
    assert!(
        (on_disk_before..=on_disk_after).contains(&stats[0].bytes_on_disk),
        "{} bytes reported, {on_disk_before} to {on_disk_after} on disk",
        stats[0].bytes_on_disk
    );

    let version = client.version().await.unwrap();
    assert_eq!(version.server_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(version.api_version, "v1");
    assert_eq!(
        version.format_version,
        portrait_engine::storage::FORMAT_VERSION
    );
    assert_eq!(
        version.oldest_supported_format_version,
        portrait_engine::storage::OLDEST_SUPPORTED_FORMAT_VERSION
    );
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                dir_bytes(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}
