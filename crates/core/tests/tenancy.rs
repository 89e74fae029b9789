//! Behaviour of the tenancy primitives: identifier rule, task-local binding, extensions.

use std::sync::Arc;

use astrocyte_core::tenancy::{
    bind, bound_schema, current_schema, fq_function, fq_table, spawn_with_current_schema, unbind,
    use_schema, use_schema_sync, validate_identifier, with_binding_slot, DefaultTenantExtension,
    IdentifierLabel, RequestInfo, Schema, Tenant, TenantExtension,
};
use futures::FutureExt;
use proptest::prelude::*;

fn schema(name: &str) -> Schema {
    Schema::new(name).expect("test schema names are valid")
}

#[tokio::test]
async fn default_schema_is_public() {
    assert_eq!(current_schema().as_str(), "public");
    assert_eq!(bound_schema(), None);
    assert_eq!(
        fq_table(&current_schema(), "memories").as_deref(),
        Ok("\"public\".\"memories\"")
    );
}

#[tokio::test]
async fn nested_scopes_restore_the_outer_schema() {
    use_schema(schema("outer"), async {
        assert_eq!(current_schema().as_str(), "outer");
        use_schema(schema("inner"), async {
            assert_eq!(current_schema().as_str(), "inner");
        })
        .await;
        assert_eq!(current_schema().as_str(), "outer");
    })
    .await;
    assert_eq!(current_schema().as_str(), "public");
}

#[tokio::test]
async fn binding_is_undone_on_error() {
    let result: Result<(), &str> = use_schema(schema("failing"), async {
        assert_eq!(current_schema().as_str(), "failing");
        Err("boom")
    })
    .await;
    assert!(result.is_err());
    assert_eq!(current_schema().as_str(), "public");
}

#[tokio::test]
async fn binding_is_undone_on_panic() {
    use_schema(schema("outer"), async {
        let caught = std::panic::AssertUnwindSafe(use_schema(schema("panicking"), async {
            assert_eq!(current_schema().as_str(), "panicking");
            panic!("handler panicked");
        }))
        .catch_unwind()
        .await;
        assert!(caught.is_err());
        assert_eq!(current_schema().as_str(), "outer");
    })
    .await;
    let caught = std::panic::catch_unwind(|| {
        use_schema_sync(schema("sync_panic"), || panic!("sync panic"));
    });
    assert!(caught.is_err());
    assert_eq!(current_schema().as_str(), "public");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_tasks_over_fifty_schemas_stay_isolated() {
    let mut handles = Vec::new();
    for task in 0..1000 {
        let name = format!("tenant_{}", task % 50);
        handles.push(tokio::spawn(use_schema(schema(&name), async move {
            for step in 0..20 {
                // Yield and sleep so tasks interleave across worker threads between checks.
                if step % 2 == 0 {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(std::time::Duration::from_micros((task % 7) as u64)).await;
                }
                if current_schema().as_str() != name {
                    return Err(format!(
                        "task {task} saw {} instead of {name}",
                        current_schema()
                    ));
                }
            }
            Ok(())
        })));
    }
    for handle in handles {
        handle
            .await
            .expect("task did not panic")
            .expect("schema stayed bound");
    }
}

#[tokio::test]
async fn spawned_tasks_inherit_the_binding() {
    use_schema(schema("parent"), async {
        let child = spawn_with_current_schema(async {
            let grandchild = spawn_with_current_schema(async { current_schema() });
            (current_schema(), grandchild.await.expect("grandchild ran"))
        });
        let (child_schema, grandchild_schema) = child.await.expect("child ran");
        assert_eq!(child_schema.as_str(), "parent");
        assert_eq!(grandchild_schema.as_str(), "parent");
        // A plain tokio::spawn does not carry the binding: that is why the helper exists.
        let plain = tokio::spawn(async { bound_schema() }).await.expect("ran");
        assert_eq!(plain, None);
    })
    .await;
}

#[tokio::test]
async fn bind_and_unbind_for_middleware() {
    assert!(bind(schema("nowhere")).is_err(), "bind needs a slot");
    with_binding_slot(async {
        let first = bind(schema("a")).expect("slot exists");
        assert_eq!(current_schema().as_str(), "a");
        let second = bind(schema("b")).expect("slot exists");
        assert_eq!(current_schema().as_str(), "b");
        unbind(second);
        assert_eq!(current_schema().as_str(), "a");
        unbind(first);
        assert_eq!(bound_schema(), None);
    })
    .await;
}

#[test]
fn fq_helpers_quote_both_halves_and_validate_the_table() {
    let s = schema("tenant_acme");
    assert_eq!(
        fq_table(&s, "memories").as_deref(),
        Ok("\"tenant_acme\".\"memories\"")
    );
    assert_eq!(
        fq_function(&s, "touch").as_deref(),
        Ok("\"tenant_acme\".\"touch\"")
    );
    let err = fq_table(&s, "memories; drop").expect_err("bad table");
    assert_eq!(err.label, IdentifierLabel::Table);
    let message = err.to_string();
    assert!(message.starts_with("table \"memories; drop\""), "{message}");
    assert!(message.contains("^[a-zA-Z_][a-zA-Z0-9_]*$"), "{message}");
    let err = fq_function(&s, "1fn").expect_err("bad function");
    assert!(err.to_string().starts_with("function "));
}

#[test]
fn hostile_identifiers_are_rejected() {
    let long64 = "a".repeat(64);
    let hostile: Vec<String> = [
        "",
        " ",
        "a b",
        " a",
        "a ",
        "a\tb",
        "a\nb",
        "a\0b",
        "\0",
        "a\"b",
        "\"a\"",
        "a'b",
        "'",
        "a.b",
        "public.memories",
        "a;b",
        "a; DROP TABLE x;--",
        "a--b",
        "a/*b*/",
        "a-b",
        "a+b",
        "a(b)",
        "a[b]",
        "a{b}",
        "a,b",
        "a:b",
        "a@b",
        "a$b",
        "a#b",
        "a%b",
        "a\\b",
        "a/b",
        "a`b",
        "1abc",
        "9",
        "0_tenant",
        "tenant\u{0430}",
        "\u{0430}dmin",
        "ａdmin",
        "tenant\u{200b}",
        "tenant\u{00a0}x",
        "é",
        "tenant\u{2028}",
        "𝕒",
        "a=b",
        "a|b",
        "a&b",
        "a<b",
        "a>b",
        "a?b",
        "a!b",
        "a*b",
        "~a",
        "a^b",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([long64, "_".repeat(64), format!("a{}", "1".repeat(63))])
    .collect();
    assert!(hostile.len() >= 40);
    for name in &hostile {
        let err = Schema::new(name.clone()).expect_err(&format!("{name:?} must be rejected"));
        assert_eq!(err.label, IdentifierLabel::Schema);
        assert_eq!(&err.value, name);
        assert!(fq_table(&Schema::public(), name).is_err());
        assert!(fq_function(&Schema::public(), name).is_err());
        assert!(DefaultTenantExtension::new(name).is_err());
    }
    // The boundary: 63 bytes is the longest accepted name.
    assert!(Schema::new("a".repeat(63)).is_ok());
    assert!(Schema::new("_").is_ok());
    assert!(Schema::new("Tenant_42").is_ok());
}

#[test]
fn schema_deserialisation_goes_through_the_rule() {
    assert!(serde_json::from_str::<Schema>("\"ok_name\"").is_ok());
    assert!(serde_json::from_str::<Schema>("\"bad name\"").is_err());
}

#[tokio::test]
async fn default_extension_returns_its_schema_and_lists_one_tenant() {
    let ext: Arc<dyn TenantExtension> =
        Arc::new(DefaultTenantExtension::new("tenant_x").expect("valid"));
    let ctx = ext
        .authenticate(&RequestInfo::in_process().with_header("X-Anything", "1"))
        .await
        .expect("default extension never fails");
    assert_eq!(ctx.schema.as_str(), "tenant_x");
    assert_eq!(
        ext.list_tenants().await.expect("lists"),
        vec![Tenant {
            schema: schema("tenant_x")
        }]
    );
    let default = DefaultTenantExtension::default();
    let ctx = default
        .authenticate(&RequestInfo::in_process())
        .await
        .expect("ok");
    assert_eq!(ctx.schema.as_str(), "public");
}

fn is_rule_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

proptest! {
    #[test]
    fn accepted_names_render_exactly_quoted(name in "[a-zA-Z_][a-zA-Z0-9_]{0,62}", table in "[a-zA-Z_][a-zA-Z0-9_]{0,62}") {
        let s = Schema::new(name.clone()).expect("matches the rule");
        prop_assert_eq!(fq_table(&s, &table).expect("valid table"), format!("\"{}\".\"{}\"", name, table));
        prop_assert_eq!(fq_function(&s, &table).expect("valid function"), format!("\"{}\".\"{}\"", name, table));
    }

    #[test]
    fn any_name_with_a_character_outside_the_rule_is_rejected(prefix in "[a-zA-Z_][a-zA-Z0-9_]{0,20}", bad in any::<char>().prop_filter("outside the rule", |c| !is_rule_char(*c)), suffix in "[a-zA-Z0-9_]{0,20}") {
        let name = format!("{prefix}{bad}{suffix}");
        prop_assert!(Schema::new(name.clone()).is_err());
        prop_assert!(validate_identifier(&name, IdentifierLabel::Table).is_err());
    }

    #[test]
    fn arbitrary_strings_are_accepted_iff_they_match_the_rule(name in ".{0,70}") {
        let expected = !name.is_empty()
            && name.len() <= 63
            && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(is_rule_char);
        prop_assert_eq!(Schema::new(name.clone()).is_ok(), expected);
    }
}
