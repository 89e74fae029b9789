//! The API-key directory: put / find / revoke / list, conflicts, keys following their tenant
//! on drop, and persistence across store instances.

use astrocyte_core::store::ApiKeyRecord;
use astrocyte_core::{ErrorKind, Schema, Store, Timestamp};
use chrono::TimeZone;

use crate::support::TestDb;

fn at(seconds: i64) -> Timestamp {
    chrono::Utc
        .timestamp_opt(1_700_000_000 + seconds, 0)
        .single()
        .expect("valid timestamp")
}

fn key(id: &str, schema: &Schema) -> ApiKeyRecord {
    ApiKeyRecord {
        key_id: id.into(),
        key_hash: format!("hash-of-{id}"),
        schema: schema.clone(),
        principal: format!("agent:{id}"),
        created_at: at(0),
        revoked_at: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_stored_found_revoked_listed_and_dropped_with_their_tenant() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let (alpha, beta) = (
        Schema::new("key_alpha").expect("schema"),
        Schema::new("key_beta").expect("schema"),
    );
    store.create_tenant(&alpha).await.expect("create alpha");
    store.create_tenant(&beta).await.expect("create beta");
    let keys = store.key_directory().expect("postgres keeps keys");

    keys.put_key(&key("k3", &alpha)).await.expect("put k3");
    keys.put_key(&key("k1", &alpha)).await.expect("put k1");
    keys.put_key(&key("k2", &beta)).await.expect("put k2");

    let found = keys
        .find_key_by_hash("hash-of-k1")
        .await
        .expect("find")
        .expect("k1 exists");
    assert_eq!(found, key("k1", &alpha));
    assert!(keys
        .find_key_by_hash("hash-of-nobody")
        .await
        .expect("find")
        .is_none());

    // Same key id with another hash, and same hash under another id: both conflicts.
    let mut duplicate_id = key("k1", &beta);
    duplicate_id.key_hash = "another-hash".into();
    let error = keys.put_key(&duplicate_id).await.expect_err("duplicate id");
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
    let mut duplicate_hash = key("k9", &beta);
    duplicate_hash.key_hash = "hash-of-k2".into();
    let error = keys
        .put_key(&duplicate_hash)
        .await
        .expect_err("duplicate hash");
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
    // A key for a tenant the directory does not hold.
    let ghost = Schema::new("ghost").expect("schema");
    let error = keys.put_key(&key("k8", &ghost)).await.expect_err("ghost");
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");

    assert!(keys.revoke_key("k1", at(60)).await.expect("revoke"));
    // A second revocation keeps the first time; an unknown key is reported.
    assert!(keys.revoke_key("k1", at(120)).await.expect("revoke again"));
    assert!(!keys
        .revoke_key("nope", at(60))
        .await
        .expect("revoke unknown"));
    let revoked = keys
        .find_key_by_hash("hash-of-k1")
        .await
        .expect("find")
        .expect("still stored");
    assert_eq!(revoked.revoked_at, Some(at(60)));

    let ids = |records: Vec<ApiKeyRecord>| -> Vec<String> {
        records.into_iter().map(|r| r.key_id).collect()
    };
    assert_eq!(
        ids(keys.list_keys(Some(&alpha)).await.expect("list")),
        ["k1", "k3"]
    );
    assert_eq!(
        ids(keys.list_keys(None).await.expect("list")),
        ["k1", "k2", "k3"]
    );

    // Another store (another process) sees the same keys.
    let other = db.store().await;
    let other_keys = other.key_directory().expect("keys");
    assert_eq!(
        other_keys
            .find_key_by_hash("hash-of-k2")
            .await
            .expect("find")
            .map(|r| r.schema),
        Some(beta.clone())
    );

    store.drop_tenant(&alpha).await.expect("drop alpha");
    assert_eq!(ids(keys.list_keys(None).await.expect("list")), ["k2"]);
    assert!(keys
        .find_key_by_hash("hash-of-k3")
        .await
        .expect("find")
        .is_none());
    // A tenant re-created under the same name does not inherit the old keys.
    store.create_tenant(&alpha).await.expect("re-create");
    assert!(keys.list_keys(Some(&alpha)).await.expect("list").is_empty());
}
