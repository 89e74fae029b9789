//! Retain input validation and metadata sanitising, with the reference's outcomes and messages.

use crate::model::Metadata;

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
        }
    }
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
    (!errors.is_empty()).then(|| errors.join("; "))
}

/// Returns the first metadata value that is not a scalar, as an error message.
pub fn check_metadata_scalars(metadata: &Metadata) -> Option<String> {
    metadata.iter().find_map(|(key, value)| {
        (value.is_array() || value.is_object()).then(|| {
            format!("Metadata value for {key:?} must be a string, number, boolean or null")
        })
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
    let size = |m: &Metadata| serde_json::to_vec(m).map(|v| v.len()).unwrap_or(usize::MAX);
    if size(&cleaned) > limits.max_metadata_bytes {
        warnings.push(format!(
            "Metadata exceeds {} bytes, truncated",
            limits.max_metadata_bytes
        ));
        while size(&cleaned) > limits.max_metadata_bytes {
            if cleaned.pop_last().is_none() {
                break;
            }
        }
    }
    (cleaned, warnings)
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
    use serde_json::json;

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
