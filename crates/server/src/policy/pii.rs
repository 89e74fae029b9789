//! The PII barrier: regex detectors (email, phone, SSN, credit card with Luhn, IP address, IBAN
//! with its mod-97 check) and the redact / reject / warn actions applied to retained content.
//! It only sees text; where the text goes is the caller's business.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;

/// Whether the barrier runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PiiMode {
    /// Regex detectors.
    Regex,
    /// No scanning.
    Disabled,
}

impl FromStr for PiiMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "regex" => Ok(PiiMode::Regex),
            "disabled" | "off" | "none" => Ok(PiiMode::Disabled),
            other => Err(format!(
                "unsupported PII mode {other:?} (expected regex or disabled)"
            )),
        }
    }
}

/// What happens to detected PII.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PiiAction {
    /// Replace each match with a typed placeholder such as `[EMAIL_REDACTED]`.
    Redact,
    /// Refuse the content (HTTP 422 with `pii_types`).
    Reject,
    /// Keep the content; log the types found.
    Warn,
}

impl FromStr for PiiAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "redact" => Ok(PiiAction::Redact),
            "reject" => Ok(PiiAction::Reject),
            "warn" => Ok(PiiAction::Warn),
            other => Err(format!(
                "unknown PII action {other:?} (expected redact, reject or warn)"
            )),
        }
    }
}

/// Names of the built-in detectors, as reported in `pii_types`.
pub const DETECTOR_NAMES: &[&str] = &["email", "phone", "ssn", "credit_card", "ip_address", "iban"];

struct Detector {
    name: &'static str,
    regex: Regex,
    replacement: &'static str,
    /// A checksum that must also hold (cuts false positives on random digit runs).
    check: Option<fn(&str) -> bool>,
}

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("built-in PII patterns are valid regexes")
}

// ASCII digit classes on purpose: `\d` would also match other scripts' digits.
static DETECTORS: LazyLock<Vec<Detector>> = LazyLock::new(|| {
    vec![
        Detector {
            name: "email",
            regex: compile(
                r"\b[a-zA-Z0-9](?:[a-zA-Z0-9._%+\-]*[a-zA-Z0-9])?@[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?)*\.[a-zA-Z]{2,}\b",
            ),
            replacement: "[EMAIL_REDACTED]",
            check: None,
        },
        Detector {
            name: "ssn",
            regex: compile(r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b"),
            replacement: "[SSN_REDACTED]",
            check: None,
        },
        Detector {
            name: "credit_card",
            regex: compile(r"\b(?:[0-9]{4}[-\s]?){3}[0-9]{4}\b"),
            replacement: "[CC_REDACTED]",
            check: Some(luhn_valid),
        },
        Detector {
            name: "iban",
            regex: compile(
                r"\b[A-Z]{2}[0-9]{2}\s?[A-Z0-9]{4}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,4})?\b",
            ),
            replacement: "[IBAN_REDACTED]",
            check: Some(iban_valid),
        },
        Detector {
            name: "ip_address",
            regex: compile(
                r"\b(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\b|(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}",
            ),
            replacement: "[IP_REDACTED]",
            check: None,
        },
        Detector {
            name: "phone",
            regex: compile(r"(?:\+?1[-.\s]?)?\(?[0-9]{3}\)?[-.\s]?[0-9]{3}[-.\s]?[0-9]{4}\b"),
            replacement: "[PHONE_REDACTED]",
            check: None,
        },
    ]
});

/// The Luhn checksum of the digits in `candidate` (13–19 digits, as card numbers have).
pub fn luhn_valid(candidate: &str) -> bool {
    let digits: Vec<u32> = candidate.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                *d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The ISO 13616 mod-97 check of an IBAN (spaces ignored).
pub fn iban_valid(candidate: &str) -> bool {
    let compact: Vec<char> = candidate.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.len() < 15 || compact.len() > 34 {
        return false;
    }
    let rearranged = compact[4..].iter().chain(&compact[..4]);
    let mut remainder: u32 = 0;
    for c in rearranged {
        let value = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        // Letters expand to two digits (A=10 … Z=35).
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

/// One detected span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiMatch {
    /// Detector name.
    pub pii_type: &'static str,
    /// Byte offsets in the scanned text.
    pub start: usize,
    /// End byte offset (exclusive).
    pub end: usize,
    replacement: &'static str,
}

/// The result of applying the barrier to a text that may be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiVerdict {
    /// The text to store (redacted where the action says so).
    pub text: String,
    /// Types found, in order of first appearance, without repeats.
    pub found: Vec<&'static str>,
}

/// The barrier refused the content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Content rejected: PII detected ({})", .pii_types.join(", "))]
pub struct PiiRejected {
    /// The types that caused the rejection.
    pub pii_types: Vec<String>,
}

/// A configured PII barrier.
#[derive(Debug, Clone)]
pub struct PiiScanner {
    mode: PiiMode,
    action: PiiAction,
    overrides: BTreeMap<String, PiiAction>,
}

impl PiiScanner {
    /// A scanner with a default action and per-type overrides.
    pub fn new(mode: PiiMode, action: PiiAction, overrides: BTreeMap<String, PiiAction>) -> Self {
        PiiScanner {
            mode,
            action,
            overrides,
        }
    }

    /// Every detected span, overlaps resolved in favour of the earlier, then longer, match.
    pub fn scan(&self, text: &str) -> Vec<PiiMatch> {
        if self.mode == PiiMode::Disabled {
            return Vec::new();
        }
        let mut found: Vec<PiiMatch> = Vec::new();
        for detector in DETECTORS.iter() {
            for m in detector.regex.find_iter(text) {
                if detector.check.is_some_and(|check| !check(m.as_str())) {
                    continue;
                }
                found.push(PiiMatch {
                    pii_type: detector.name,
                    start: m.start(),
                    end: m.end(),
                    replacement: detector.replacement,
                });
            }
        }
        // Stable sort keeps detector priority for identical spans (a card beats a phone).
        found.sort_by_key(|m| (m.start, std::cmp::Reverse(m.end)));
        let mut kept: Vec<PiiMatch> = Vec::with_capacity(found.len());
        for m in found {
            if kept.last().is_none_or(|last| m.start >= last.end) {
                kept.push(m);
            }
        }
        kept
    }

    fn action_for(&self, pii_type: &str) -> PiiAction {
        self.overrides.get(pii_type).copied().unwrap_or(self.action)
    }

    /// Applies the configured actions: rejects when any match's action is reject, otherwise
    /// redacts the matches whose action is redact and leaves warned ones in place.
    pub fn apply(&self, text: &str) -> Result<PiiVerdict, PiiRejected> {
        let matches = self.scan(text);
        let mut found: Vec<&'static str> = Vec::new();
        for m in &matches {
            if !found.contains(&m.pii_type) {
                found.push(m.pii_type);
            }
        }
        let rejected: Vec<String> = found
            .iter()
            .filter(|t| self.action_for(t) == PiiAction::Reject)
            .map(|t| t.to_string())
            .collect();
        if !rejected.is_empty() {
            return Err(PiiRejected {
                pii_types: rejected,
            });
        }
        let mut redacted = String::with_capacity(text.len());
        let mut cursor = 0;
        for m in &matches {
            if self.action_for(m.pii_type) == PiiAction::Redact {
                redacted.push_str(&text[cursor..m.start]);
                redacted.push_str(m.replacement);
                cursor = m.end;
            }
        }
        redacted.push_str(&text[cursor..]);
        Ok(PiiVerdict {
            text: redacted,
            found,
        })
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// On any text, matches are in bounds, on character boundaries, in order and
        /// disjoint; redaction removes every matched span and keeps the rest verbatim.
        #[test]
        fn matches_are_disjoint_spans_and_redaction_keeps_the_rest(
            text in "(\\PC|[0-9@.\\- ]|[a-z]{1,8}@[a-z]{1,8}\\.com|[0-9]{3}-[0-9]{2}-[0-9]{4}){0,60}",
        ) {
            let scanner = PiiScanner::new(PiiMode::Regex, PiiAction::Redact, BTreeMap::new());
            let matches = scanner.scan(&text);
            let mut last_end = 0;
            for m in &matches {
                prop_assert!(m.start < m.end && m.end <= text.len());
                prop_assert!(text.is_char_boundary(m.start) && text.is_char_boundary(m.end));
                prop_assert!(m.start >= last_end, "overlapping or unordered matches");
                last_end = m.end;
            }
            let verdict = scanner.apply(&text).expect("redact never rejects");
            let mut expected = String::new();
            let mut cursor = 0;
            for m in &matches {
                expected.push_str(&text[cursor..m.start]);
                expected.push_str(m.replacement);
                cursor = m.end;
            }
            expected.push_str(&text[cursor..]);
            prop_assert_eq!(verdict.text, expected);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner(action: PiiAction) -> PiiScanner {
        PiiScanner::new(PiiMode::Regex, action, BTreeMap::new())
    }

    fn types(text: &str) -> Vec<&'static str> {
        scanner(PiiAction::Warn)
            .scan(text)
            .into_iter()
            .map(|m| m.pii_type)
            .collect()
    }

    #[test]
    fn each_detector_fires_on_its_kind() {
        assert_eq!(types("mail alice.smith@example.co.uk now"), vec!["email"]);
        assert_eq!(types("call (555) 123-4567 today"), vec!["phone"]);
        assert_eq!(types("ssn 123-45-6789."), vec!["ssn"]);
        assert_eq!(types("card 4111 1111 1111 1111 ok"), vec!["credit_card"]);
        assert_eq!(types("host 192.168.10.1 up"), vec!["ip_address"]);
        assert_eq!(
            types("ip 2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
            vec!["ip_address"]
        );
        assert_eq!(types("iban GB82 WEST 1234 5698 7654 32 paid"), vec!["iban"]);
    }

    #[test]
    fn checksums_cut_false_positives() {
        assert!(!luhn_valid("4111 1111 1111 1112"));
        assert!(luhn_valid("4111-1111-1111-1111"));
        assert!(types("order 4111 1111 1111 1112")
            .iter()
            .all(|t| *t != "credit_card"));
        assert!(iban_valid("DE89370400440532013000"));
        assert!(!iban_valid("DE89370400440532013001"));
        assert!(types("nothing sensitive here, 42 apples").is_empty());
    }

    #[test]
    fn redact_replaces_spans_and_reports_types_once() {
        let verdict = scanner(PiiAction::Redact)
            .apply("a@b.io and c@d.io from 10.0.0.1")
            .expect("redact never rejects");
        assert_eq!(
            verdict.text,
            "[EMAIL_REDACTED] and [EMAIL_REDACTED] from [IP_REDACTED]"
        );
        assert_eq!(verdict.found, vec!["email", "ip_address"]);
    }

    #[test]
    fn reject_and_per_type_overrides() {
        let err = scanner(PiiAction::Reject)
            .apply("ssn 123-45-6789")
            .expect_err("rejects");
        assert_eq!(err.pii_types, vec!["ssn".to_string()]);
        assert_eq!(err.to_string(), "Content rejected: PII detected (ssn)");

        let mut overrides = BTreeMap::new();
        overrides.insert("email".to_string(), PiiAction::Warn);
        let mixed = PiiScanner::new(PiiMode::Regex, PiiAction::Redact, overrides);
        let verdict = mixed.apply("x@y.com 123-45-6789").expect("no reject");
        assert_eq!(verdict.text, "x@y.com [SSN_REDACTED]");

        let off = PiiScanner::new(PiiMode::Disabled, PiiAction::Reject, BTreeMap::new());
        assert_eq!(off.apply("x@y.com").expect("disabled").text, "x@y.com");
    }
}
