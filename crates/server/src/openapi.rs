//! The OpenAPI 3 document, generated from the handlers' annotations and the wire types, and
//! served at `/openapi.json`. Hand-written paths are deliberately absent.

use axum::Json;
use utoipa::OpenApi;

use crate::dto;
use crate::routes::{admin, browse, health, memory};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Astrocyte",
        description = "Memory for AI agents: retain, recall, reflect and forget over the reference gateway's wire contract."
    ),
    paths(
        health::live, health::health, health::metrics,
        memory::retain, memory::recall, memory::reflect, memory::forget, memory::history, memory::job_status,
        browse::banks, browse::list, browse::get, browse::update, browse::forget, browse::changes, browse::entities, browse::export, browse::import,
        admin::export, admin::import, admin::banks, admin::enqueue_job, admin::put_legal_hold, admin::delete_legal_hold, admin::issue_key, admin::list_keys, admin::revoke_key,
    ),
    components(schemas(
        dto::ErrorDetail, dto::AuthenticationFailed, dto::PiiRejectedBody, dto::RateLimitedBody,
    )),
    tags(
        (name = "memory", description = "Tenant data: needs tenant authentication"),
        (name = "admin", description = "Needs X-Admin-Token, or loopback when no token is configured"),
        (name = "health", description = "Probes and metrics: no authentication"),
    )
)]
pub struct ApiDoc;

/// The document as JSON, with what every route can answer besides its own results: the
/// gateway's refusals (bad input, credentials, body cap, rate limits, outages) and the
/// credentials it accepts.
pub fn document() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::path::HttpMethod;
    use utoipa::openapi::security::{
        ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
    };
    use utoipa::openapi::{RefOr, ResponseBuilder};

    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let json = |schema: &str, description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    utoipa::openapi::content::ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name(schema)))
                        .build(),
                )
                .build(),
        )
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        let probe = ["/live", "/health", "/metrics"].contains(&path.as_str());
        for (method, operation) in [
            (HttpMethod::Get, item.get.as_mut()),
            (HttpMethod::Post, item.post.as_mut()),
            (HttpMethod::Put, item.put.as_mut()),
            (HttpMethod::Delete, item.delete.as_mut()),
        ] {
            let Some(operation) = operation else { continue };
            let responses = &mut operation.responses.responses;
            let mut add = |code: &str, response: RefOr<utoipa::openapi::Response>| {
                responses.entry(code.to_string()).or_insert(response);
            };
            add(
                "500",
                json("ErrorDetail", "Internal error (no detail is given)"),
            );
            if probe {
                continue;
            }
            add("400", json("ErrorDetail", "Invalid input"));
            add("401", json("AuthenticationFailed", "No valid credential"));
            add("403", json("ErrorDetail", "Not allowed"));
            add("404", json("ErrorDetail", "Not found"));
            add(
                "429",
                json("RateLimitedBody", "Rate limited (see Retry-After)"),
            );
            add(
                "503",
                json(
                    "ErrorDetail",
                    "A dependency is unavailable (see Retry-After)",
                ),
            );
            if method == HttpMethod::Post {
                add("413", json("ErrorDetail", "Body over the cap"));
                add("415", json("ErrorDetail", "Body is not JSON"));
            }
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    let header = |name: &str, what: &str| {
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(name, what)))
    };
    components.add_security_scheme(
        "ApiKey",
        header("X-Api-Key", "An issued API key (or ASTROCYTE_API_KEY)"),
    );
    components.add_security_scheme(
        "Bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("A JWT, or an issued API key"))
                .build(),
        ),
    );
    components.add_security_scheme(
        "AdminToken",
        header(
            "X-Admin-Token",
            "Guards the admin routes (ASTROCYTE_ADMIN_TOKEN)",
        ),
    );
    components.add_security_scheme(
        "Principal",
        header(
            "X-Astrocyte-Principal",
            "The principal, in dev mode or with the static API key",
        ),
    );
    components.add_security_scheme(
        "TenantHeader",
        header(
            "X-Tenant-Schema",
            "The tenant, set by a trusted proxy (tenant_extension: header)",
        ),
    );
    doc
}

/// The rules the annotations cannot state, patched into the JSON: the identifier patterns of
/// path and query parameters, and each job kind's payload.
pub fn document_json() -> serde_json::Value {
    use serde_json::json;
    let mut doc = serde_json::to_value(document()).unwrap_or_default();
    let bank = json!({"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9._:@-]{0,254}$"});
    let schema_name = json!({"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]{0,62}$"});
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for operation in item.values_mut() {
                let Some(parameters) = operation
                    .get_mut("parameters")
                    .and_then(|p| p.as_array_mut())
                else {
                    continue;
                };
                for parameter in parameters {
                    let pattern = match parameter["name"].as_str() {
                        Some("bank_id") => bank.clone(),
                        Some("tenant") => schema_name.clone(),
                        Some("job_id") | Some("key_id") | Some("memory_id") => {
                            json!({"type": "string", "pattern": "^[^\\x00/]{1,128}$"})
                        }
                        // Browsing: page sizes, cursors as the server writes them, the two
                        // orders, and text filters (no NUL, which no store keeps).
                        Some("limit") => {
                            json!({"type": "integer", "minimum": 1, "maximum": 1000})
                        }
                        Some("cursor") => json!({"type": "string",
                            "pattern": "^(-?[0-9]{1,18}\\.([0-9a-f]{2}){0,128})?$"}),
                        Some("since") => json!({"type": "string",
                            "pattern": "^([0-9]{1,18}|[0-9]{1,19}-[0-9]{1,18})?$"}),
                        Some("order") => {
                            json!({"type": "string", "enum": ["newest", "id"]})
                        }
                        Some("kind") => json!({"type": "string",
                            "enum": ["person", "place", "organization", "product", "other"]}),
                        Some("prefix") => {
                            json!({"type": "string", "pattern": "^[^\\x00]{0,64}$"})
                        }
                        Some("on_conflict") => {
                            json!({"type": "string", "enum": ["skip", "overwrite"]})
                        }
                        Some("start") | Some("end") => {
                            json!({"type": "string", "format": "date-time"})
                        }
                        Some("tags") | Some("fact_type") | Some("contains")
                        | Some("text_prefix") => {
                            json!({"type": "string", "pattern": "^[^\\x00]*$"})
                        }
                        _ => continue,
                    };
                    parameter["schema"] = pattern;
                }
            }
        }
    }
    let payload = |properties: serde_json::Value, required: serde_json::Value| {
        json!({"type": "object", "additionalProperties": false, "required": required,
               "properties": properties})
    };
    let days = json!({"type": ["integer", "null"], "minimum": 0, "maximum": 1_000_000});
    let job = |kind: &str, payload: serde_json::Value| {
        json!({"type": "object", "required": ["kind", "payload"],
               "properties": {"kind": {"type": "string", "enum": [kind]}, "payload": payload,
                              "idempotency_key": {"type": ["string", "null"], "minLength": 1,
                                                  "maxLength": 256, "pattern": "^[^\\x00]*$"}}})
    };
    let jobs = json!({"oneOf": [
        job("reembed", payload(json!({"bank_id": bank}), json!(["bank_id"]))),
        job("lifecycle", json!({"allOf": [
            payload(json!({"bank_id": bank, "archive_after_days": days, "delete_after_days": days,
                           "exempt_tags": {"type": "array", "items": {"type": "string"}}}),
                    json!(["bank_id"])),
            {"anyOf": [
                {"required": ["archive_after_days"], "properties": {"archive_after_days": {"type": "integer"}}},
                {"required": ["delete_after_days"], "properties": {"delete_after_days": {"type": "integer"}}}
            ]}
        ]})),
        job("consolidate", payload(
            json!({"bank_id": bank,
                   "threshold": {"type": ["number", "null"], "minimum": 0.000001, "maximum": 1}}),
            json!(["bank_id"]))),
        job("observe", payload(
            json!({"bank_id": bank,
                   "max_sources": {"type": ["integer", "null"], "minimum": 1,
                                   "maximum": astrocyte_core::jobs::ObserveJob::MAX_SOURCES}}),
            json!(["bank_id"]))),
    ]});
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(|s| s.as_object_mut())
    {
        schemas.insert("EnqueueJobBody".into(), jobs);
        let no_nul = json!({"type": "string", "pattern": "^[^\\x00]*$"});
        let list = |items: serde_json::Value| json!({"type": ["array", "null"], "items": items});
        let key = json!({"type": ["string", "null"], "minLength": 1, "maxLength": 256,
                         "pattern": "^[^\\x00]*$"});
        let datetime_pair = json!({"type": ["array", "null"], "minItems": 2, "maxItems": 2,
                                   "items": {"type": "string", "format": "date-time"}});
        // Numbers beyond ±1e308 do not survive PostgreSQL's jsonb round trip; refused.
        let metadata = json!({"type": ["object", "null"],
                              "propertyNames": {"pattern": "^[^\\x00]{0,256}$"},
                              "additionalProperties": {"maximum": 1e308, "minimum": -1e308}});
        let mut set = |schema: &str, field: &str, value: &serde_json::Value| {
            if let Some(properties) = schemas
                .get_mut(schema)
                .and_then(|s| s.get_mut("properties"))
            {
                properties[field] = value.clone();
            }
        };
        // What the server refuses with a 400 (a NUL character, a blank key, a malformed
        // pair); what it answers 200 with `stored: false` (empty or over-long content, too
        // many tags) stays allowed, as the reference answers it.
        set("RetainBody", "content", &no_nul);
        set("RetainBody", "tags", &list(no_nul.clone()));
        set("RetainBody", "metadata", &metadata);
        set("UpdateMemoryBody", "metadata", &metadata);
        set("RetainBody", "idempotency_key", &key);
        set("RecallBody", "tags", &list(no_nul.clone()));
        set("RecallBody", "banks", &list(bank.clone()));
        set(
            "RecallBody",
            "bank_id",
            &json!({"type": ["string", "null"], "pattern": bank["pattern"]}),
        );
        set("RecallBody", "time_range", &datetime_pair);
        set("HistoryBody", "tags", &list(no_nul.clone()));
        // An edit refuses what a retain would refuse outright (blank or over-long tags, too
        // many, non-scalar metadata, NUL characters); blocked keys are dropped, as at retain.
        let limits = astrocyte_core::pipeline::validate::RetainLimits::default();
        set(
            "UpdateMemoryBody",
            "tags",
            &json!({"type": ["array", "null"], "maxItems": limits.max_tags,
                    "items": {"type": "string", "maxLength": limits.max_tag_chars,
                              "pattern": "^[^\\x00]*[^\\s\\x00][^\\x00]*$"}}),
        );
        set(
            "UpdateMemoryBody",
            "metadata",
            &json!({"type": ["object", "null"], "maxProperties": limits.max_metadata_keys,
                    "propertyNames": {"maxLength": limits.max_metadata_key_chars,
                                      "pattern": "^[^\\x00]*$"},
                    "additionalProperties": {"anyOf": [
                        {"type": "string", "maxLength": limits.max_metadata_value_chars,
                         "pattern": "^[^\\x00]*$"},
                        {"type": ["number", "boolean", "null"], "maximum": 1e308, "minimum": -1e308}]}}),
        );
        set("ForgetBody", "tags", &list(no_nul.clone()));
        set(
            "ForgetBody",
            "memory_ids",
            &list(
                json!({"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[^\\x00]*$"}),
            ),
        );
        set(
            "ForgetBody",
            "scope",
            &json!({"type": ["string", "null"], "enum": ["all", null]}),
        );
        // At least one selector (an empty one would read as "everything").
        if let Some(forget) = schemas.get_mut("ForgetBody") {
            forget["anyOf"] = json!([
                {"required": ["memory_ids"], "properties": {"memory_ids": {"type": "array"}}},
                {"required": ["tags"], "properties": {"tags": {"type": "array"}}},
                {"required": ["before_date"], "properties": {"before_date": {"type": "string", "pattern": "\\S"}}},
                {"required": ["scope"], "properties": {"scope": {"type": "string"}}}
            ]);
        }
        // One bank or a non-empty list of banks.
        if let Some(recall) = schemas.get_mut("RecallBody") {
            recall["anyOf"] = json!([
                {"required": ["bank_id"], "properties": {"bank_id": {"type": "string"}}},
                {"required": ["banks"], "properties": {"banks": {"type": "array", "minItems": 1}}}
            ]);
        }
        if let Some(issue) = schemas.get_mut("IssueKeyBody") {
            issue["properties"]["tenant"] = schema_name;
            issue["properties"]["principal"] = json!({"type": "string", "maxLength": 256,
                        "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"});
        }
    }
    doc
}

/// `GET /openapi.json`.
pub async fn openapi_json() -> Json<serde_json::Value> {
    Json(document_json())
}
