//! Input validation and metadata sanitising. Two kinds of rule live here:
//! - the reference's content rules (`check_content`, `sanitize_metadata`), whose failures are
//!   retain outcomes (`stored: false` with its message), as the reference answers them;
//! - the structural rules every store needs (no NUL character, dates both stores can hold,
//!   bounded ids, keys and counts), whose failures are [`Error::InvalidInput`] (HTTP 400). They
//!   run in core, before any store, so SQLite and PostgreSQL accept and reject the same inputs
//!   with the same message.

use crate::error::{Error, Result};
use crate::model::{ForgetSelector, Metadata, RecallRequest, RetainRequest, Timestamp};

/// Longest memory, job or key id accepted, in bytes (the ids we issue are 36-byte UUIDs).
pub const MAX_ID_BYTES: usize = 128;

/// Longest idempotency key accepted, in bytes: PostgreSQL's btree index refuses entries much
/// over 2.7 kB, and a key is an opaque token, not a payload.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// The earliest instant both stores hold, 0001-01-01T00:00:00Z, in Unix seconds. SQLite keeps
/// RFC 3339 text, which sorts in time order only for four-digit years; PostgreSQL reaches further
/// back, but both must accept the same dates.
pub const MIN_TIMESTAMP_SECS: i64 = -62_135_596_800;

/// The latest second both stores hold, 9999-12-31T23:59:59Z, in Unix seconds (any fraction of
/// it is accepted).
pub const MAX_TIMESTAMP_SECS: i64 = 253_402_300_799;

/// `max_query_chars` when none is configured.
pub const DEFAULT_MAX_QUERY_CHARS: usize = 10_000;
/// `max_metadata_keys` when none is configured.
pub const DEFAULT_MAX_METADATA_KEYS: usize = 256;
/// `max_metadata_key_chars` when none is configured.
pub const DEFAULT_MAX_METADATA_KEY_CHARS: usize = 256;
/// `max_metadata_value_chars` when none is configured.
pub const DEFAULT_MAX_METADATA_VALUE_CHARS: usize = 4096;

/// Limits applied to retained content.
#[derive(Debug, Clone)]
pub struct RetainLimits {
    /// Maximum content length in characters.
    pub max_content_chars: usize,
    /// Maximum number of tags.
    pub max_tags: usize,
    /// Maximum length of one tag in characters.
    pub max_tag_chars: usize,
    /// Maximum serialised metadata size in bytes.
    pub max_metadata_bytes: usize,
    /// Metadata keys dropped wherever they appear as a whole `_ . -` separated segment.
    pub blocked_metadata_keys: Vec<String>,
    /// Most metadata keys one memory (or a recall's metadata filter) may carry; more is a 400.
    pub max_metadata_keys: usize,
    /// Longest metadata key in characters; longer is a 400.
    pub max_metadata_key_chars: usize,
    /// Longest metadata string value in characters; longer is a 400.
    pub max_metadata_value_chars: usize,
    /// Longest recall, history or reflect query in characters; longer is a 400.
    pub max_query_chars: usize,
}

impl Default for RetainLimits {
    fn default() -> Self {
        RetainLimits {
            max_content_chars: 50_000,
            max_tags: 100,
            max_tag_chars: 256,
            max_metadata_bytes: 4096,
            blocked_metadata_keys: ["api_key", "password", "token", "secret"]
                .map(String::from)
                .to_vec(),
            max_metadata_keys: DEFAULT_MAX_METADATA_KEYS,
            max_metadata_key_chars: DEFAULT_MAX_METADATA_KEY_CHARS,
            max_metadata_value_chars: DEFAULT_MAX_METADATA_VALUE_CHARS,
            max_query_chars: DEFAULT_MAX_QUERY_CHARS,
        }
    }
}

/// Refuses a NUL character: PostgreSQL cannot store one in text or JSON, so no store may.
pub fn check_text(field: &str, value: &str) -> Result<()> {
    if value.contains('\0') {
        Err(Error::invalid(format!(
            "{field} must not contain a NUL character"
        )))
    } else {
        Ok(())
    }
}

/// Refuses an instant outside 0001-01-01T00:00:00Z..=9999-12-31T23:59:59.999999999Z.
pub fn check_timestamp(field: &str, at: &Timestamp) -> Result<()> {
    if (MIN_TIMESTAMP_SECS..=MAX_TIMESTAMP_SECS).contains(&at.timestamp()) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{field} must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"
        )))
    }
}

/// Refuses an empty id, one over `max_bytes`, or one with a NUL character.
pub fn check_id(field: &str, value: &str, max_bytes: usize) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(format!("{field} must not be empty")));
    }
    if value.len() > max_bytes {
        return Err(Error::invalid(format!(
            "{field} is longer than {max_bytes} bytes"
        )));
    }
    check_text(field, value)
}

/// Refuses an idempotency key that is empty, over [`MAX_IDEMPOTENCY_KEY_BYTES`] or has a NUL.
pub fn check_idempotency_key(key: Option<&str>) -> Result<()> {
    key.map_or(Ok(()), |k| {
        check_id("idempotency_key", k, MAX_IDEMPOTENCY_KEY_BYTES)
    })
}

fn check_texts<'a>(field: &str, values: impl IntoIterator<Item = &'a String>) -> Result<()> {
    values.into_iter().try_for_each(|v| check_text(field, v))
}

/// Refuses metadata with too many keys, an over-long key or string value, or a NUL anywhere.
/// Runs before [`sanitize_metadata`], so its work is bounded by these limits.
pub fn check_metadata_shape(field: &str, metadata: &Metadata, limits: &RetainLimits) -> Result<()> {
    if metadata.len() > limits.max_metadata_keys {
        return Err(Error::invalid(format!(
            "{field} has {} keys, more than {}",
            metadata.len(),
            limits.max_metadata_keys
        )));
    }
    for (key, value) in metadata {
        check_text(&format!("{field} key"), key)?;
        if key.chars().count() > limits.max_metadata_key_chars {
            return Err(Error::invalid(format!(
                "{field} key is longer than {} characters",
                limits.max_metadata_key_chars
            )));
        }
        if let Some(text) = value.as_str() {
            check_text(&format!("{field} value for {key:?}"), text)?;
            if text.chars().count() > limits.max_metadata_value_chars {
                return Err(Error::invalid(format!(
                    "{field} value for {key:?} is longer than {} characters",
                    limits.max_metadata_value_chars
                )));
            }
        }
    }
    Ok(())
}

/// The structural rules of a retain (see the module documentation); the reference's content
/// rules ([`check_content`]) come after and give outcomes instead.
pub fn check_retain_request(request: &RetainRequest, limits: &RetainLimits) -> Result<()> {
    check_text("content", &request.content)?;
    check_texts("tags", &request.tags)?;
    check_metadata_shape("metadata", &request.metadata, limits)?;
    if let Some(at) = &request.occurred_at {
        check_timestamp("occurred_at", at)?;
    }
    if let Some(thread) = &request.thread_id {
        check_text("thread_id", thread)?;
        let most = crate::thread::MAX_THREAD_KEY_CHARS;
        if thread.chars().count() > most {
            return Err(Error::invalid(format!(
                "thread_id is longer than {most} characters"
            )));
        }
    }
    for (field, value) in [
        ("fact_type", &request.fact_type),
        ("source", &request.source),
        ("context", &request.context),
    ] {
        if let Some(value) = value {
            check_text(field, value)?;
        }
    }
    Ok(())
}

fn check_tag_list(field: &str, tags: &[String], limits: &RetainLimits) -> Result<()> {
    if tags.len() > limits.max_tags {
        return Err(Error::invalid(format!(
            "{field} has {} entries, more than {}",
            tags.len(),
            limits.max_tags
        )));
    }
    for tag in tags {
        check_text(field, tag)?;
        if tag.chars().count() > limits.max_tag_chars {
            return Err(Error::invalid(format!(
                "{field} entry is longer than {} characters",
                limits.max_tag_chars
            )));
        }
    }
    Ok(())
}

/// The structural rules of a recall (query, filters and dates).
pub fn check_recall_request(request: &RecallRequest, limits: &RetainLimits) -> Result<()> {
    check_query(&request.query, limits)?;
    let filter = &request.filter;
    if let Some(tags) = &filter.tags {
        check_tag_list("tags", tags, limits)?;
    }
    if let Some(fact_types) = &filter.fact_types {
        check_tag_list("fact_types", fact_types, limits)?;
    }
    if let Some((start, end)) = &filter.time_range {
        check_timestamp("time_range", start)?;
        check_timestamp("time_range", end)?;
    }
    if let Some(at) = &filter.as_of {
        check_timestamp("as_of", at)?;
    }
    check_metadata_shape("metadata filter", &filter.metadata, limits)
}

/// Refuses a query with a NUL character or over `max_query_chars`.
pub fn check_query(query: &str, limits: &RetainLimits) -> Result<()> {
    check_text("query", query)?;
    let chars = query.chars().count();
    if chars > limits.max_query_chars {
        return Err(Error::invalid(format!(
            "query too long: {chars} > {} characters",
            limits.max_query_chars
        )));
    }
    Ok(())
}

/// The structural rules of a forget selector.
pub fn check_forget_selector(selector: &ForgetSelector, limits: &RetainLimits) -> Result<()> {
    if let Some(ids) = &selector.memory_ids {
        ids.iter()
            .try_for_each(|id| check_id("memory_ids", id, MAX_ID_BYTES))?;
    }
    if let Some(tags) = &selector.tags {
        check_tag_list("tags", tags, limits)?;
    }
    if let Some(before) = &selector.before {
        check_timestamp("before_date", before)?;
    }
    Ok(())
}

/// Returns the reason content is rejected, or `None` when it may be stored.
pub fn check_content(content: &str, tags: &[String], limits: &RetainLimits) -> Option<String> {
    let mut errors = Vec::new();
    if content.trim().is_empty() {
        errors.push("Content is empty".to_string());
    }
    let chars = content.chars().count();
    if chars > limits.max_content_chars {
        errors.push(format!(
            "Content too long: {chars} > {}",
            limits.max_content_chars
        ));
    }
    errors.extend(tag_errors(tags, limits));
    (!errors.is_empty()).then(|| errors.join("; "))
}

/// Returns why tags are refused (too many, an empty or over-long one), or `None`.
pub fn check_tags(tags: &[String], limits: &RetainLimits) -> Option<String> {
    let errors = tag_errors(tags, limits);
    (!errors.is_empty()).then(|| errors.join("; "))
}

fn tag_errors(tags: &[String], limits: &RetainLimits) -> Vec<String> {
    let mut errors = Vec::new();
    if tags.len() > limits.max_tags {
        errors.push(format!(
            "Too many tags ({} > {})",
            tags.len(),
            limits.max_tags
        ));
    }
    if let Some(tag) = tags
        .iter()
        .find(|t| t.trim().is_empty() || t.chars().count() > limits.max_tag_chars)
    {
        errors.push(format!(
            "Invalid tag {tag:?}: tags must be non-empty and at most {} characters",
            limits.max_tag_chars
        ));
    }
    errors
}

/// Returns the first metadata value that is not a scalar, as an error message.
pub fn check_metadata_scalars(metadata: &Metadata) -> Option<String> {
    metadata.iter().find_map(|(key, value)| {
        if value.is_array() || value.is_object() {
            return Some(format!(
                "Metadata value for {key:?} must be a string, number, boolean or null"
            ));
        }
        // PostgreSQL prints such a number in full and it no longer reads back as a float.
        value
            .as_f64()
            .filter(|x| x.abs() > 1e308)
            .map(|_| format!("Metadata number for {key:?} must be between -1e308 and 1e308"))
    })
}

fn is_blocked(key: &str, blocked: &[String]) -> bool {
    // The reference's rule: a blocked word matches when it stands alone or as a whole segment
    // delimited by `_`, `.` or `-` (so `user_token` is blocked, `tokens_used` is not).
    let key = key.to_ascii_lowercase();
    let is_separator = |c: Option<char>| c.is_none_or(|c| matches!(c, '_' | '.' | '-'));
    blocked.iter().any(|word| {
        key.match_indices(word.as_str()).any(|(start, _)| {
            let before = key[..start].chars().next_back();
            let after = key[start + word.len()..].chars().next();
            is_separator(before) && is_separator(after)
        })
    })
}

/// Drops blocked keys, then keys in reverse alphabetical order until the metadata fits.
/// Returns the cleaned metadata and a warning per change.
pub fn sanitize_metadata(metadata: Metadata, limits: &RetainLimits) -> (Metadata, Vec<String>) {
    let mut warnings = Vec::new();
    let mut cleaned = Metadata::new();
    for (key, value) in metadata {
        if is_blocked(&key, &limits.blocked_metadata_keys) {
            warnings.push(format!("Blocked metadata key: '{key}'"));
        } else {
            cleaned.insert(key, value);
        }
    }
    // The serialised size is `{` + entries joined by `,` + `}`; each entry is measured once and
    // subtracted as keys go, so truncation is linear (re-serialising per key was quadratic).
    let entry_sizes: Vec<usize> = cleaned
        .iter()
        .map(|(key, value)| json_len(key) + 1 + json_len(value))
        .collect();
    let mut size = 2 + entry_sizes.iter().sum::<usize>() + entry_sizes.len().saturating_sub(1);
    if size > limits.max_metadata_bytes {
        warnings.push(format!(
            "Metadata exceeds {} bytes, truncated",
            limits.max_metadata_bytes
        ));
        for entry in entry_sizes.iter().rev() {
            if size <= limits.max_metadata_bytes || cleaned.pop_last().is_none() {
                break;
            }
            size -= entry + usize::from(!cleaned.is_empty());
        }
    }
    (cleaned, warnings)
}

fn json_len(value: &(impl serde::Serialize + ?Sized)) -> usize {
    // Serialising a string or a JSON value cannot fail.
    serde_json::to_vec(value).map_or(0, |v| v.len())
}

/// Sorts, trims and de-duplicates tags so storage and filters see one canonical form.
pub fn normalize_tags(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = tags.iter().map(|t| t.trim().to_string()).collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn nul_characters_dates_and_ids_are_refused_with_one_message() {
        assert!(check_text("content", "fine").is_ok());
        let error = check_text("content", "a\0b").expect_err("NUL");
        assert_eq!(
            error.to_string(),
            "content must not contain a NUL character"
        );
        let at = |secs: i64| chrono::DateTime::from_timestamp(secs, 0).expect("in chrono range");
        assert!(check_timestamp("as_of", &at(MIN_TIMESTAMP_SECS)).is_ok());
        assert!(check_timestamp("as_of", &at(MAX_TIMESTAMP_SECS)).is_ok());
        let late = chrono::DateTime::from_timestamp(MAX_TIMESTAMP_SECS, 999_999_999).expect("t");
        assert!(check_timestamp("as_of", &late).is_ok());
        assert!(check_timestamp("as_of", &at(MIN_TIMESTAMP_SECS - 1)).is_err());
        assert!(check_timestamp("as_of", &at(MAX_TIMESTAMP_SECS + 1)).is_err());
        assert!(check_id("job_id", &"j".repeat(MAX_ID_BYTES), MAX_ID_BYTES).is_ok());
        assert_eq!(
            check_id("job_id", &"j".repeat(MAX_ID_BYTES + 1), MAX_ID_BYTES)
                .expect_err("long")
                .to_string(),
            "job_id is longer than 128 bytes"
        );
        assert!(check_id("job_id", "", MAX_ID_BYTES).is_err());
        assert!(check_idempotency_key(Some(&"k".repeat(MAX_IDEMPOTENCY_KEY_BYTES))).is_ok());
        assert!(check_idempotency_key(Some(&"k".repeat(1_000_000))).is_err());
        assert!(check_idempotency_key(None).is_ok());
    }

    #[test]
    fn metadata_shape_is_bounded() {
        let limits = RetainLimits::default();
        let many: Metadata = (0..=limits.max_metadata_keys)
            .map(|i| (format!("k{i}"), json!(i)))
            .collect();
        assert!(check_metadata_shape("metadata", &many, &limits).is_err());
        let mut fits = many.clone();
        fits.pop_last();
        assert!(check_metadata_shape("metadata", &fits, &limits).is_ok());
        let long_key: Metadata = [("k".repeat(257), json!(1))].into_iter().collect();
        assert!(check_metadata_shape("metadata", &long_key, &limits).is_err());
        let long_value: Metadata = [("k".into(), json!("v".repeat(4097)))]
            .into_iter()
            .collect();
        assert!(check_metadata_shape("metadata", &long_value, &limits).is_err());
    }

    #[test]
    fn truncating_forty_thousand_keys_is_linear() {
        // Re-serialising after every dropped key made this take tens of seconds.
        let limits = RetainLimits::default();
        let many: Metadata = (0..40_000)
            .map(|i| (format!("key_{i:05}"), json!("value")))
            .collect();
        let (cleaned, warnings) = sanitize_metadata(many, &limits);
        let size = serde_json::to_vec(&cleaned).map(|v| v.len()).unwrap_or(0);
        assert!(size <= limits.max_metadata_bytes && size > limits.max_metadata_bytes - 40);
        assert_eq!(warnings.len(), 1);
    }

    proptest! {
        /// The running size equals the real serialised size: what is kept fits, and the next
        /// key dropped would not have.
        #[test]
        fn truncation_keeps_the_longest_prefix_that_fits(
            entries in proptest::collection::btree_map("[a-z\"\\\\\u{e9}\u{1F600}]{1,12}", prop_oneof![
                "[ -~\u{e9}\n]{0,40}".prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<bool>().prop_map(serde_json::Value::from),
                Just(serde_json::Value::Null),
            ], 0..60),
            max in 2usize..600,
        ) {
            let limits = RetainLimits { max_metadata_bytes: max, blocked_metadata_keys: Vec::new(), ..Default::default() };
            let (cleaned, _) = sanitize_metadata(entries.clone(), &limits);
            let size = |m: &Metadata| serde_json::to_vec(m).map(|v| v.len()).unwrap_or(usize::MAX);
            prop_assert!(size(&cleaned) <= max);
            prop_assert!(cleaned.iter().zip(entries.iter()).all(|(a, b)| a == b), "a prefix");
            if let Some((key, value)) = entries.iter().nth(cleaned.len()) {
                let mut one_more = cleaned.clone();
                one_more.insert(key.clone(), value.clone());
                prop_assert!(size(&one_more) > max);
            }
        }

        /// Whatever the strings, the structural checks never panic and refuse exactly the NULs.
        #[test]
        fn any_text_is_refused_iff_it_holds_a_nul(text in "\\PC{0,40}", nul in any::<bool>()) {
            let text = if nul { format!("{text}\0") } else { text };
            prop_assert_eq!(check_text("x", &text).is_err(), text.contains('\0'));
        }
    }

    #[test]
    fn empty_and_whitespace_content_is_rejected_with_the_reference_message() {
        let limits = RetainLimits::default();
        assert_eq!(
            check_content("", &[], &limits).as_deref(),
            Some("Content is empty")
        );
        assert_eq!(
            check_content(" \n\t", &[], &limits).as_deref(),
            Some("Content is empty")
        );
        assert_eq!(check_content("ok", &[], &limits), None);
    }

    #[test]
    fn length_and_tag_count_limits() {
        let limits = RetainLimits::default();
        let long = "a".repeat(50_001);
        assert!(check_content(&long, &[], &limits)
            .unwrap_or_default()
            .contains("Content too long"));
        assert_eq!(check_content(&"a".repeat(50_000), &[], &limits), None);
        let tags: Vec<String> = (0..101).map(|i| format!("t{i}")).collect();
        assert!(check_content("x", &tags, &limits)
            .unwrap_or_default()
            .contains("Too many tags"));
        assert_eq!(check_content("x", &tags[..100], &limits), None);
    }

    #[test]
    fn blocked_keys_are_dropped_and_others_kept() {
        let limits = RetainLimits::default();
        let mut m = Metadata::new();
        for key in [
            "api_key",
            "Password",
            "user_token",
            "secret.value",
            "my-secret",
            "topic",
            "tokens_used",
        ] {
            m.insert(key.into(), json!("x"));
        }
        let (cleaned, warnings) = sanitize_metadata(m, &limits);
        let keys: Vec<&str> = cleaned.keys().map(String::as_str).collect();
        assert_eq!(keys, vec!["tokens_used", "topic"]);
        assert_eq!(warnings.len(), 5);
    }

    #[test]
    fn oversized_metadata_is_truncated_from_the_end_of_the_alphabet() {
        let limits = RetainLimits::default();
        let mut m = Metadata::new();
        for i in 0..10 {
            m.insert(format!("k{i}"), json!("v".repeat(600)));
        }
        let (cleaned, warnings) = sanitize_metadata(m, &limits);
        assert!(serde_json::to_vec(&cleaned).map(|v| v.len()).unwrap_or(0) <= 4096);
        assert!(cleaned.contains_key("k0"));
        assert!(!cleaned.contains_key("k9"));
        assert!(warnings.iter().any(|w| w.contains("truncated")));
    }

    #[test]
    fn nested_metadata_values_are_rejected() {
        let mut m = Metadata::new();
        m.insert("a".into(), json!({"b": 1}));
        assert!(check_metadata_scalars(&m).is_some());
        m.insert("a".into(), json!(1.5));
        assert!(check_metadata_scalars(&m).is_none());
    }
}
