//! Property tests of the request DTOs (`RetainBody`, `RecallBody`, `ForgetBody`,
//! `HistoryBody`) decoded the way the REST layer decodes them (one JSON value through
//! `serde_path_to_error`, nothing after it): arbitrary JSON objects and bytes never panic
//! the decoder, and the lax rules hold for every decoded body: integers as numbers, whole
//! floats or numeric strings, datetimes with an offset or naive (taken as UTC) or a bare date,
//! and anything out of range or malformed refused with an error.

use astrocyte_server::dto::{iso, parse_datetime, ForgetBody, HistoryBody, RecallBody, RetainBody};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

/// What the REST layer does with a body: one value, then only whitespace.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// `value` as the server sees it: written out and parsed back (serde_json's default float
/// parsing is best-effort, so a float's last bit can change; the oracle must see that value).
fn as_sent(value: Value) -> Value {
    serde_json::from_slice(&serde_json::to_vec(&value).expect("serialisable")).expect("parses")
}

fn decode_value<T: DeserializeOwned>(value: &Value) -> Result<T, String> {
    decode(&serde_json::to_vec(value).expect("serialisable"))
}

const FIELDS: &[&str] = &[
    "content",
    "bank_id",
    "metadata",
    "tags",
    "occurred_at",
    "content_type",
    "async",
    "idempotency_key",
    "thread_id",
    "query",
    "banks",
    "max_results",
    "max_tokens",
    "time_range",
    "as_of",
    "memory_ids",
    "before_date",
    "scope",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,24}".prop_map(Value::String),
        arb_datetime_text().prop_map(Value::String),
        any::<i64>().prop_map(|n| Value::String(n.to_string())),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects whose keys are mostly the DTOs' own fields, with arbitrary values.
fn arb_body() -> impl Strategy<Value = Value> {
    let key =
        prop_oneof![4 => prop::sample::select(FIELDS).prop_map(str::to_string), 1 => ".{0,8}"];
    prop::collection::vec((key, arb_json()), 0..10).prop_map(|pairs| {
        let mut map = Map::new();
        for (k, v) in pairs {
            map.insert(k, v);
        }
        Value::Object(map)
    })
}

/// Datetime-looking text: sometimes valid, sometimes with fields out of range.
fn arb_datetime_text() -> impl Strategy<Value = String> {
    (
        0u32..12_000,
        0u32..15,
        0u32..34,
        0u32..26,
        0u32..62,
        0u32..62,
        0usize..6,
    )
        .prop_map(|(y, mo, d, h, mi, s, form)| match form {
            0 => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
            1 => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+05:30"),
            2 => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.5"),
            3 => format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
            4 => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}"),
            _ => format!("{y:04}-{mo:02}-{d:02}"),
        })
}

/// The lax integer rule as an oracle: `Some(Ok(n))` must be accepted as `n`, `Some(Err)` must
/// be refused, `None` may go either way (whole floats within 0.3% of the i64 bounds).
fn expected_int(value: &Value) -> Option<Result<Option<i64>, ()>> {
    match value {
        Value::Null => Some(Ok(None)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(Ok(Some(i)))
            } else {
                let f = n.as_f64().expect("a JSON number is an f64");
                if f.fract() != 0.0 || f.abs() >= 9.3e18 {
                    Some(Err(()))
                } else if f.abs() < 9.2e18 {
                    Some(Ok(Some(f as i64)))
                } else {
                    None
                }
            }
        }
        Value::String(s) => Some(s.trim().parse::<i64>().map(Some).map_err(|_| ())),
        _ => Some(Err(())),
    }
}

/// Checks a decoded integer field against the oracle.
fn check_int(
    field: &str,
    given: Option<&Value>,
    decoded: Option<i64>,
) -> Result<(), TestCaseError> {
    let expected = match given {
        None => Some(Ok(None)),
        Some(value) => expected_int(value),
    };
    match expected {
        Some(Ok(expected)) => prop_assert_eq!(decoded, expected, "{} from {:?}", field, given),
        Some(Err(())) => prop_assert!(
            false,
            "{} = {:?} was accepted as {:?}",
            field,
            given,
            decoded
        ),
        None => {
            if let (Some(Value::Number(n)), Some(d)) = (given, decoded) {
                prop_assert_eq!(d, n.as_f64().expect("f64") as i64);
            }
        }
    }
    Ok(())
}

/// Whether a present datetime value is one a body may be decoded with: a string that parses
/// (blank strings are left open: read as absent or refused).
fn datetime_ok(given: Option<&Value>, decoded: Option<DateTime<Utc>>) -> Result<(), TestCaseError> {
    match given {
        None | Some(Value::Null) => prop_assert_eq!(decoded, None),
        Some(Value::String(s)) if s.trim().is_empty() => prop_assert_eq!(decoded, None),
        Some(Value::String(s)) => {
            let parsed = parse_datetime(s);
            prop_assert!(parsed.is_ok(), "{:?} accepted but does not parse", s);
            prop_assert_eq!(decoded, parsed.ok());
        }
        Some(other) => prop_assert!(false, "a datetime from {:?}", other),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary bytes: every decoder answers, never panics.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode::<RetainBody>(&bytes);
        let _ = decode::<RecallBody>(&bytes);
        let _ = decode::<ForgetBody>(&bytes);
        let _ = decode::<HistoryBody>(&bytes);
    }

    /// Arbitrary objects: no panic, and every body that decodes obeys the lax rules field by
    /// field (and a body missing a required field never decodes).
    #[test]
    fn decoded_bodies_obey_the_lax_rules(body in arb_body()) {
        let body = as_sent(body);
        let get = |k: &str| body.get(k);
        let required = |keys: &[&str]| keys.iter().all(|k| get(k).is_some_and(Value::is_string));
        if let Ok(retain) = decode_value::<RetainBody>(&body) {
            prop_assert!(required(&["content", "bank_id"]));
            prop_assert_eq!(Some(retain.content.as_str()), get("content").and_then(Value::as_str));
            datetime_ok(get("occurred_at"), retain.occurred_at)?;
        }
        match decode_value::<RecallBody>(&body) {
            Ok(recall) => {
                prop_assert!(required(&["query"]));
                check_int("max_results", get("max_results"), recall.max_results)?;
                check_int("max_tokens", get("max_tokens"), recall.max_tokens)?;
                datetime_ok(get("as_of"), recall.as_of)?;
                match (get("time_range"), recall.time_range) {
                    (None | Some(Value::Null), None) => {}
                    (Some(Value::Array(pair)), Some((start, end))) => {
                        prop_assert_eq!(pair.len(), 2);
                        prop_assert_eq!(parse_datetime(pair[0].as_str().expect("a string")).ok(), Some(start));
                        prop_assert_eq!(parse_datetime(pair[1].as_str().expect("a string")).ok(), Some(end));
                    }
                    (given, decoded) => prop_assert!(false, "time_range {:?} decoded as {:?}", given, decoded),
                }
            }
            Err(_) => {
                // Refused although every field is acceptable? Only when the oracle says so.
                let ints_ok = ["max_results", "max_tokens"].iter().all(|k| {
                    get(k).is_none_or(|v| matches!(expected_int(v), Some(Ok(_))))
                });
                let as_of_ok = get("as_of").is_none_or(Value::is_null);
                let simple = ["bank_id", "banks", "tags", "time_range"].iter().all(|k| get(k).is_none_or(Value::is_null));
                prop_assert!(!(required(&["query"]) && ints_ok && as_of_ok && simple), "refused: {}", body);
            }
        }
        if let Ok(forget) = decode_value::<ForgetBody>(&body) {
            prop_assert!(required(&["bank_id"]));
            datetime_ok(get("before_date"), forget.before_date)?;
        }
        if let Ok(history) = decode_value::<HistoryBody>(&body) {
            prop_assert!(required(&["query", "bank_id", "as_of"]));
            let raw = get("as_of").and_then(Value::as_str).expect("as_of is a string");
            prop_assert_eq!(parse_datetime(raw).ok(), Some(history.as_of));
            check_int("max_results", get("max_results"), history.max_results)?;
            check_int("max_tokens", get("max_tokens"), history.max_tokens)?;
        }
    }

    /// Integer fields given every way a client might: numbers, whole and fractional floats,
    /// numeric strings (with spaces), out-of-range numbers and strings, other types.
    #[test]
    fn lax_integers_round_trip_or_are_refused(
        value in prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            (-1.0e19f64..1.0e19).prop_map(|f| json!(f.trunc())),
            any::<i64>().prop_map(|n| json!(format!(" {n} "))),
            any::<i128>().prop_map(|n| json!(n.to_string())),
            "[0-9a-z.+-]{0,12}".prop_map(Value::String),
            any::<bool>().prop_map(Value::Bool),
            Just(json!([1])),
            Just(json!({"n": 1})),
        ]
    ) {
        let value = as_sent(value);
        let recall = decode_value::<RecallBody>(&json!({"query": "q", "max_results": value, "max_tokens": value}));
        let history = decode_value::<HistoryBody>(&json!({"query": "q", "bank_id": "b", "as_of": "2024-01-01", "max_results": value}));
        match expected_int(&value) {
            Some(Ok(expected)) => {
                let recall = recall.map_err(|e| TestCaseError::fail(format!("{value} refused: {e}")))?;
                prop_assert_eq!(recall.max_results, expected);
                prop_assert_eq!(recall.max_tokens, expected);
                prop_assert_eq!(history.map(|h| h.max_results).ok(), Some(expected));
            }
            Some(Err(())) => {
                let refused = recall.as_ref().err().cloned().unwrap_or_default();
                prop_assert!(refused.contains("max_results"), "{} accepted: {:?}", value, recall.map(|r| r.max_results));
                prop_assert!(history.is_err());
            }
            None => {}
        }
    }

    /// Any valid instant written with an offset, naive (UTC), with a space, with fractional
    /// seconds, or as a bare date decodes to that instant in every datetime field.
    #[test]
    fn datetimes_in_every_accepted_form_round_trip(
        seconds in -62_135_596_800i64..253_402_300_799,
        nanos in 0u32..1_000_000_000,
        offset_minutes in -14 * 60i32..=14 * 60,
        form in 0usize..6,
    ) {
        let instant = Utc.timestamp_opt(seconds, nanos).single().expect("in range");
        let naive = instant.naive_utc();
        let (text, expected) = match form {
            0 => (instant.to_rfc3339(), instant),
            1 => {
                let zone = chrono::FixedOffset::east_opt(offset_minutes * 60).expect("offset");
                (instant.with_timezone(&zone).to_rfc3339(), instant)
            }
            2 => (naive.format("%Y-%m-%dT%H:%M:%S%.f").to_string(), instant),
            3 => (naive.format("%Y-%m-%d %H:%M:%S%.f").to_string(), instant),
            4 => {
                let minute = naive.format("%Y-%m-%dT%H:%M").to_string();
                let at = NaiveDate::from(naive).and_hms_opt(0, 0, 0).expect("midnight").and_utc()
                    + chrono::Duration::minutes(i64::from(naive.format("%H").to_string().parse::<u32>().expect("hour") * 60
                        + naive.format("%M").to_string().parse::<u32>().expect("minute")));
                (minute, at)
            }
            _ => {
                let date = NaiveDate::from(naive);
                (date.format("%Y-%m-%d").to_string(), date.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
            }
        };
        let retain: RetainBody = decode_value(&json!({"content": "c", "bank_id": "b", "occurred_at": text}))
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(retain.occurred_at, Some(expected), "{}", text);
        let recall: RecallBody = decode_value(&json!({"query": "q", "as_of": text, "time_range": [text, text]}))
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(recall.as_of, Some(expected));
        prop_assert_eq!(recall.time_range, Some((expected, expected)));
        let forget: ForgetBody = decode_value(&json!({"bank_id": "b", "before_date": text}))
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(forget.before_date, Some(expected));
        let history: HistoryBody = decode_value(&json!({"query": "q", "bank_id": "b", "as_of": text}))
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(history.as_of, expected);
        // What the server writes back (`iso`) decodes to the same instant.
        prop_assert_eq!(parse_datetime(&iso(&expected)).ok(), Some(expected));
    }

    /// Dates with a field out of range (month 13, day 32, hour 24, minute 60, year beyond
    /// 9999) and garbage are refused with an error naming the field, in every datetime field.
    #[test]
    fn out_of_range_and_garbage_datetimes_are_refused(
        text in prop_oneof![
            (13u32..100, 1u32..29).prop_map(|(m, d)| format!("2024-{m:02}-{d:02}")),
            (1u32..13, 32u32..100).prop_map(|(m, d)| format!("2024-{m:02}-{d:02}T00:00:00")),
            (24u32..100).prop_map(|h| format!("2024-01-01T{h:02}:00:00Z")),
            (60u32..100).prop_map(|m| format!("2024-01-01 10:{m:02}:00")),
            (10_000u32..1_000_000).prop_map(|y| format!("{y}-01-01T00:00:00Z")),
            Just("2023-02-29".to_string()),
            "[a-zA-Z!?#]{1,16}",
            "[0-9]{1,7}",
        ]
    ) {
        prop_assert!(parse_datetime(&text).is_err(), "{:?} parsed", text);
        let refused = |result: Result<(), String>, field: &str| -> Result<(), TestCaseError> {
            let error = result.err().ok_or_else(|| TestCaseError::fail(format!("{text:?} accepted in {field}")))?;
            prop_assert!(error.contains(field), "{}: {}", field, error);
            Ok(())
        };
        refused(decode_value::<RetainBody>(&json!({"content": "c", "bank_id": "b", "occurred_at": text})).map(drop), "occurred_at")?;
        refused(decode_value::<RecallBody>(&json!({"query": "q", "as_of": text})).map(drop), "as_of")?;
        refused(decode_value::<RecallBody>(&json!({"query": "q", "time_range": ["2024-01-01", text]})).map(drop), "time_range")?;
        refused(decode_value::<ForgetBody>(&json!({"bank_id": "b", "before_date": text})).map(drop), "before_date")?;
        refused(decode_value::<HistoryBody>(&json!({"query": "q", "bank_id": "b", "as_of": text})).map(drop), "as_of")?;
    }
}

/// Fixed cases the properties rest on, so a regression names itself.
#[test]
fn documented_lax_examples() {
    let recall: RecallBody =
        decode_value(&json!({"query": "q", "max_results": "7", "max_tokens": 12.0}))
            .expect("lax ints");
    assert_eq!((recall.max_results, recall.max_tokens), (Some(7), Some(12)));
    let history: HistoryBody =
        decode_value(&json!({"query": "q", "bank_id": "b", "as_of": "2024-03-01T10:00:00"}))
            .expect("naive");
    assert_eq!(
        history.as_of,
        Utc.with_ymd_and_hms(2024, 3, 1, 10, 0, 0)
            .single()
            .expect("valid")
    );
    for bad in [
        json!(1.5),
        json!("7x"),
        json!("99999999999999999999"),
        json!(1e30),
        json!(true),
    ] {
        assert!(
            decode_value::<RecallBody>(&json!({"query": "q", "max_results": bad})).is_err(),
            "{bad}"
        );
    }
    assert!(
        decode_value::<RecallBody>(&json!({"query": "q", "time_range": ["2024-01-01"]})).is_err()
    );
    assert!(decode::<RecallBody>(br#"{"query": "q"} {"query": "r"}"#).is_err());
}
