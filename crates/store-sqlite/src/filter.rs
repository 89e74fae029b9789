//! Translates a [`RecallFilter`] into SQL conditions over the `memories` table (alias `m`) for
//! one bank. Lists travel as one JSON parameter read with `json_each`, so no query ever hits
//! SQLite's bound-parameter limit and statement shapes stay few enough to cache.
//! Empty tag or fact-type lists mean "no filter", as in the reference.

use astrocyte_core::{BankId, Error, RecallFilter, Timestamp};
use rusqlite::types::Value;

use crate::error::StoreResult;
use crate::rows::to_micros;

/// The rows whose ids a JSON list parameter holds, as alias `m`, looked up by row id one by
/// one. Written as `m.rowid IN (json_each(?)) AND <filter>`, SQLite's planner may prefer an
/// index of the filter instead: with a time range that was a scan of the bank's whole range
/// index (30 ms at 300k rows) to keep a few hundred listed rows (0.5 ms by row id).
pub(crate) const LISTED_ROWS: &str =
    "json_each(?) AS listed CROSS JOIN memories m ON m.rowid = listed.value";

/// SQL conditions joined by `AND` and their positional (`?`) parameters, in textual order.
#[derive(Debug, Clone)]
pub(crate) struct Conditions {
    sql: String,
    params: Vec<Value>,
}

impl Conditions {
    /// The bank, visibility (now, or at `filter.as_of`) and every filter of `filter`.
    pub(crate) fn for_bank(bank: &BankId, filter: &RecallFilter) -> StoreResult<Self> {
        let mut conditions = Conditions::visible_in(bank, filter.as_of);
        if let Some(tags) = non_empty(filter.tags.as_deref()) {
            conditions.push(
                "m.rowid IN (SELECT t.memory_rowid FROM memory_tags t WHERE t.tag IN (SELECT value FROM json_each(?)))",
                [json_list(&tags)],
            );
        }
        if let Some((start, end)) = filter.time_range {
            conditions.push(
                "m.effective_at BETWEEN ? AND ?",
                [
                    Value::Integer(to_micros(start)),
                    Value::Integer(to_micros(end)),
                ],
            );
        }
        if let Some(fact_types) = non_empty(filter.fact_types.as_deref()) {
            conditions.push(
                "m.fact_type IN (SELECT value FROM json_each(?))",
                [json_list(&fact_types)],
            );
        }
        for (key, value) in &filter.metadata {
            conditions.push_metadata(key, value)?;
        }
        Ok(conditions)
    }

    /// The bank and visibility only: visible now, or at `as_of` (retained by then and not
    /// yet forgotten).
    pub(crate) fn visible_in(bank: &BankId, as_of: Option<Timestamp>) -> Self {
        let mut conditions = Conditions {
            sql: "m.bank_id = ?".into(),
            params: vec![Value::Text(bank.as_str().to_string())],
        };
        match as_of {
            None => conditions.push("m.forgotten_at IS NULL", []),
            Some(instant) => {
                let micros = to_micros(instant);
                conditions.push(
                    "m.retained_at <= ? AND (m.forgotten_at IS NULL OR m.forgotten_at > ?)",
                    [Value::Integer(micros), Value::Integer(micros)],
                );
            }
        }
        conditions
    }

    /// Adds one condition.
    pub(crate) fn push<const N: usize>(&mut self, sql: &str, params: [Value; N]) {
        self.sql.push_str(" AND ");
        self.sql.push_str(sql);
        self.params.extend(params);
    }

    /// The conditions, for a `WHERE` clause.
    pub(crate) fn sql(&self) -> &str {
        &self.sql
    }

    /// The parameters of [`Self::sql`], in order.
    pub(crate) fn params(&self) -> &[Value] {
        &self.params
    }

    /// Typed equality on one metadata key: a string matches only a string, a number only a
    /// number (1 equals 1.0), a boolean only that boolean, null only an explicit null.
    fn push_metadata(&mut self, key: &str, value: &serde_json::Value) -> StoreResult<()> {
        let key = Value::Text(key.to_string());
        let base = "EXISTS (SELECT 1 FROM json_each(m.metadata) j WHERE j.key = ? AND ";
        match value {
            serde_json::Value::String(text) => self.push(
                &format!("{base}j.type = 'text' AND j.atom = ?)"),
                [key, Value::Text(text.clone())],
            ),
            serde_json::Value::Bool(true) => self.push(&format!("{base}j.type = 'true')"), [key]),
            serde_json::Value::Bool(false) => self.push(&format!("{base}j.type = 'false')"), [key]),
            serde_json::Value::Null => self.push(&format!("{base}j.type = 'null')"), [key]),
            serde_json::Value::Number(number) => {
                let number = match number.as_i64() {
                    Some(integer) => Value::Integer(integer),
                    None => Value::Real(number.as_f64().unwrap_or(f64::NAN)),
                };
                self.push(
                    &format!("{base}j.type IN ('integer', 'real') AND j.atom = ?)"),
                    [key, number],
                )
            }
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                return Err(Error::invalid(
                    "metadata filter values must be strings, numbers, booleans or null",
                )
                .into())
            }
        }
        Ok(())
    }
}

/// Whether `filter` narrows the bank beyond "visible now": then candidate sets are computed
/// in SQL before vectors are compared.
pub(crate) fn is_selective(filter: &RecallFilter) -> bool {
    non_empty(filter.tags.as_deref()).is_some()
        || filter.time_range.is_some()
        || filter.as_of.is_some()
        || non_empty(filter.fact_types.as_deref()).is_some()
        || !filter.metadata.is_empty()
}

/// The tags of a filter that narrows by tags and nothing else (visibility now), if it is one.
pub(crate) fn tags_only(filter: &RecallFilter) -> Option<Vec<String>> {
    let only_tags = filter.time_range.is_none()
        && filter.as_of.is_none()
        && non_empty(filter.fact_types.as_deref()).is_none()
        && filter.metadata.is_empty();
    only_tags
        .then(|| non_empty(filter.tags.as_deref()))
        .flatten()
}

/// Trimmed, non-empty entries; `None` when nothing is left (no filter).
fn non_empty(values: Option<&[String]>) -> Option<Vec<String>> {
    let values: Vec<String> = values?
        .iter()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    (!values.is_empty()).then_some(values)
}

/// A list as one JSON array parameter.
pub(crate) fn json_list<T: Clone + Into<serde_json::Value>>(values: &[T]) -> Value {
    Value::Text(serde_json::Value::from(values.to_vec()).to_string())
}
