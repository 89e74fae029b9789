//! Behaviour of the tenancy primitives: identifier rule, task-local binding, extensions.

use std::sync::Arc;

use astrocyte_core::tenancy::{
    bound_schema, check_bound, fq_table, strict_mode, use_schema, validate_identifier,
    DefaultTenantExtension, IdentifierLabel, RequestInfo, Schema, Tenant, TenantExtension,
};
use futures::FutureExt;
use proptest::prelude::*;

fn schema(name: &str) -> Schema {
    Schema::new(name).expect("test schema names are valid")
}

/// The bound schema's name, `None` when nothing is bound.
fn bound() -> Option<String> {
    bound_schema().map(|s| s.to_string())
}

#[tokio::test]
async fn nothing_is_bound_by_default() {
    assert_eq!(bound_schema(), None);
}

#[tokio::test]
async fn nested_scopes_restore_the_outer_schema() {
    use_schema(schema("outer"), async {
        assert_eq!(bound().as_deref(), Some("outer"));
        use_schema(schema("inner"), async {
            assert_eq!(bound().as_deref(), Some("inner"));
        })
        .await;
        assert_eq!(bound().as_deref(), Some("outer"));
    })
    .await;
    assert_eq!(bound(), None);
}

#[tokio::test]
async fn binding_is_undone_on_error() {
    let result: Result<(), &str> = use_schema(schema("failing"), async {
        assert_eq!(bound().as_deref(), Some("failing"));
        Err("boom")
    })
    .await;
    assert!(result.is_err());
    assert_eq!(bound(), None);
}

#[tokio::test]
async fn binding_is_undone_on_panic() {
    use_schema(schema("outer"), async {
        let caught = std::panic::AssertUnwindSafe(use_schema(schema("panicking"), async {
            assert_eq!(bound().as_deref(), Some("panicking"));
            panic!("handler panicked");
        }))
        .catch_unwind()
        .await;
        assert!(caught.is_err());
        assert_eq!(bound().as_deref(), Some("outer"));
    })
    .await;
    assert_eq!(bound(), None);
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
                if bound().as_deref() != Some(name.as_str()) {
                    return Err(format!("task {task} saw {:?} instead of {name}", bound()));
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
async fn spawned_tasks_do_not_inherit_the_binding() {
    use_schema(schema("parent"), async {
        let plain = tokio::spawn(async { bound_schema() }).await.expect("ran");
        assert_eq!(plain, None);
    })
    .await;
}

/// Strict mode is process-wide and never turned off, so it is tested in `tests/strict_mode.rs`;
/// this binary never enables it.
#[tokio::test]
async fn check_bound_always_passes_in_lenient_mode() {
    assert!(!strict_mode());
    assert_eq!(check_bound(&schema("a")), Ok(()), "nothing bound");
    let crossed = use_schema(schema("a"), async { check_bound(&schema("b")) }).await;
    assert_eq!(crossed, Ok(()), "another tenant bound");
    let same = use_schema(schema("a"), async { check_bound(&schema("a")) }).await;
    assert_eq!(same, Ok(()));
}

#[test]
fn fq_table_quotes_both_halves_and_validates_the_table() {
    let s = schema("tenant_acme");
    assert_eq!(
        fq_table(&s, "memories").as_deref(),
        Ok("\"tenant_acme\".\"memories\"")
    );
    let err = fq_table(&s, "memories; drop").expect_err("bad table");
    assert_eq!(err.label, IdentifierLabel::Table);
    let message = err.to_string();
    assert!(message.starts_with("table \"memories; drop\""), "{message}");
    assert!(message.contains("^[a-zA-Z_][a-zA-Z0-9_]*$"), "{message}");
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
        // Names PostgreSQL reserves match the pattern but are refused; their own test covers them.
        prop_assume!(!astrocyte_core::tenancy::is_reserved_schema(&name));
        let s = Schema::new(name.clone()).expect("matches the rule");
        prop_assert_eq!(fq_table(&s, &table).expect("valid table"), format!("\"{}\".\"{}\"", name, table));
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
            && name.chars().all(is_rule_char)
            && !astrocyte_core::tenancy::is_reserved_schema(&name);
        prop_assert_eq!(Schema::new(name.clone()).is_ok(), expected);
    }

    #[test]
    fn names_postgresql_reserves_are_refused_on_every_store(suffix in "[a-zA-Z0-9_]{0,40}", p in "[pP]", g in "[gG]") {
        let name = format!("{}{}_{}", p, g, suffix);
        let error = Schema::new(name.clone()).expect_err("reserved");
        prop_assert!(error.reserved);
        prop_assert!(error.to_string().contains("is reserved"), "{}", error);
        // Not a reserved prefix: still a tenant.
        let near = format!("{}{}x_{}", p, g, suffix);
        prop_assert!(Schema::new(near).is_ok());
    }
}

#[test]
fn information_schema_is_reserved_in_any_case() {
    for name in [
        "information_schema",
        "INFORMATION_SCHEMA",
        "Information_Schema",
    ] {
        assert!(Schema::new(name).expect_err(name).reserved);
    }
    assert!(Schema::new("information_schema2").is_ok());
    assert!(Schema::new("public").is_ok());
}
