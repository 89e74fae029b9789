//! Request policy at the gateway: per-tenant and per-bank rate limits, daily quotas, and the
//! PII barrier on retained content. Content validation stays in core's pipeline.

pub mod pii;
pub mod rate;

use astrocyte_core::tenancy::Schema;

use crate::config::{PiiSettings, QuotaSettings, RateLimitSettings};
use crate::error::ApiError;
use pii::PiiScanner;
use rate::{DailyQuotas, TokenBuckets};

/// An operation subject to per-bank limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Retain.
    Retain,
    /// Recall and history.
    Recall,
    /// Reflect.
    Reflect,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Retain => "retain",
            Operation::Recall => "recall",
            Operation::Reflect => "reflect",
        }
    }
}

/// A quota use taken before an operation; give it back with [`Policy::refund`] on failure.
#[derive(Debug)]
#[must_use = "refund the quota when the operation fails"]
pub struct QuotaTicket {
    key: Option<String>,
}

/// The configured policy.
pub struct Policy {
    tenant_rate: Option<TokenBuckets>,
    retain_rate: Option<TokenBuckets>,
    recall_rate: Option<TokenBuckets>,
    reflect_rate: Option<TokenBuckets>,
    quotas: QuotaSettings,
    quota_counters: DailyQuotas,
    pii: PiiScanner,
}

/// The key of one bank's bucket or counter for one operation.
fn bank_key(schema: &Schema, bank_id: &str, operation: Operation) -> String {
    format!("{schema}\u{1f}{bank_id}\u{1f}{}", operation.as_str())
}

impl Policy {
    /// Builds the policy from configuration.
    pub fn new(rates: &RateLimitSettings, quotas: &QuotaSettings, pii: &PiiSettings) -> Self {
        Policy {
            tenant_rate: rates.tenant_per_second.map(TokenBuckets::per_second),
            retain_rate: rates.retain_per_minute.map(TokenBuckets::per_minute),
            recall_rate: rates.recall_per_minute.map(TokenBuckets::per_minute),
            reflect_rate: rates.reflect_per_minute.map(TokenBuckets::per_minute),
            quotas: quotas.clone(),
            quota_counters: DailyQuotas::default(),
            pii: PiiScanner::new(pii.mode, pii.action, pii.type_overrides.clone()),
        }
    }

    /// The per-tenant request limit, checked once per authenticated request.
    pub fn admit_tenant(&self, schema: &Schema) -> Result<(), ApiError> {
        match &self.tenant_rate {
            None => Ok(()),
            Some(buckets) => {
                buckets
                    .try_take(schema.as_str())
                    .map_err(|retry| ApiError::RateLimited {
                        detail: "Rate limit exceeded".into(),
                        retry_after_seconds: retry,
                    })
            }
        }
    }

    /// The per-bank rate limit and daily quota of one operation.
    pub fn admit_bank(
        &self,
        schema: &Schema,
        bank_id: &str,
        operation: Operation,
    ) -> Result<QuotaTicket, ApiError> {
        let key = bank_key(schema, bank_id, operation);
        if let Some(buckets) = self.limiter(operation) {
            buckets
                .try_take(&key)
                .map_err(|retry| ApiError::RateLimited {
                    detail: format!(
                        "Rate limited: {} on bank '{bank_id}' (retry after {retry:.1}s)",
                        operation.as_str()
                    ),
                    retry_after_seconds: retry,
                })?;
        }
        let limit = match operation {
            Operation::Retain => self.quotas.retain_per_day,
            Operation::Reflect => self.quotas.reflect_per_day,
            Operation::Recall => None,
        };
        match limit {
            None => Ok(QuotaTicket { key: None }),
            Some(limit) => {
                self.quota_counters
                    .try_acquire(&key, limit)
                    .map_err(|retry| ApiError::RateLimited {
                        detail: format!(
                            "Rate limited: {} on bank '{bank_id}' (daily quota of {limit} reached)",
                            operation.as_str()
                        ),
                        retry_after_seconds: retry,
                    })?;
                Ok(QuotaTicket { key: Some(key) })
            }
        }
    }

    /// The recall rate limit of several distinct banks: a token from each, or, when one is
    /// refused, none taken from any.
    pub fn admit_recall(&self, schema: &Schema, banks: &[&str]) -> Result<(), ApiError> {
        for (i, bank_id) in banks.iter().enumerate() {
            // Recall has rate limits but no quota: nothing to refund.
            if let Err(refused) = self.admit_bank(schema, bank_id, Operation::Recall) {
                if let Some(buckets) = self.limiter(Operation::Recall) {
                    for taken in &banks[..i] {
                        buckets.give_back(&bank_key(schema, taken, Operation::Recall));
                    }
                }
                return Err(refused);
            }
        }
        Ok(())
    }

    fn limiter(&self, operation: Operation) -> Option<&TokenBuckets> {
        match operation {
            Operation::Retain => self.retain_rate.as_ref(),
            Operation::Recall => self.recall_rate.as_ref(),
            Operation::Reflect => self.reflect_rate.as_ref(),
        }
    }

    /// Gives back a quota use whose operation failed.
    pub fn refund(&self, ticket: QuotaTicket) {
        if let Some(key) = ticket.key {
            self.quota_counters.release(&key);
        }
    }

    /// The PII barrier.
    pub fn pii(&self) -> &PiiScanner {
        &self.pii
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_recall_of_several_banks_takes_no_token() {
        let rates = RateLimitSettings {
            recall_per_minute: Some(2),
            ..RateLimitSettings::default()
        };
        let policy = Policy::new(&rates, &QuotaSettings::default(), &PiiSettings::default());
        let schema = Schema::new("tenant_a").expect("schema");
        // "b" is spent, so a recall of "a" and "b" is refused and leaves "a" whole.
        policy.admit_recall(&schema, &["b"]).expect("first b");
        policy.admit_recall(&schema, &["b"]).expect("second b");
        policy
            .admit_recall(&schema, &["a", "b"])
            .expect_err("b is spent");
        policy.admit_recall(&schema, &["a"]).expect("first a");
        policy.admit_recall(&schema, &["a"]).expect("second a");
        policy
            .admit_recall(&schema, &["a"])
            .expect_err("a is spent");
    }
}
