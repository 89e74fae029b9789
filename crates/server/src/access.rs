//! Per-bank access control: grants of read/write/forget/admin to principals, with `*`
//! wildcards for banks, principals and permissions (in the reference a `"*"` permission
//! grants nothing; here it grants everything). Authentication is not done here.

use std::fmt;
use std::str::FromStr;

use astrocyte_core::tenancy::Schema;

/// A permission on a bank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Recall, reflect, history.
    Read,
    /// Retain.
    Write,
    /// Forget selected memories.
    Forget,
    /// Forget a whole bank, export, import.
    Admin,
    /// `*`: every permission.
    All,
}

impl Permission {
    fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Forget => "forget",
            Permission::Admin => "admin",
            Permission::All => "*",
        }
    }

    fn covers(self, wanted: Permission) -> bool {
        self == Permission::All || self == wanted
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read" => Ok(Permission::Read),
            "write" => Ok(Permission::Write),
            "forget" => Ok(Permission::Forget),
            "admin" => Ok(Permission::Admin),
            "*" => Ok(Permission::All),
            other => Err(format!(
                "unknown permission {other:?} (expected read, write, forget, admin or *)"
            )),
        }
    }
}

/// What happens when no grant matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DefaultPolicy {
    /// Only granted principals (the reference's default; same as `deny` without bank owners).
    #[default]
    OwnerOnly,
    /// Everyone is allowed.
    Open,
    /// Nobody is allowed.
    Deny,
}

impl FromStr for DefaultPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "owner_only" => Ok(DefaultPolicy::OwnerOnly),
            "open" => Ok(DefaultPolicy::Open),
            "deny" => Ok(DefaultPolicy::Deny),
            other => Err(format!(
                "unknown default policy {other:?} (expected owner_only, open or deny)"
            )),
        }
    }
}

/// One grant: `principal` may do `permissions` on `bank_id` (optionally only in one tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// A bank id or `*`.
    pub bank_id: String,
    /// A principal (`agent:bot`, `user:alice`; a bare name means `user:<name>`) or `*`.
    pub principal: String,
    /// Granted permissions.
    pub permissions: Vec<Permission>,
    /// Restricts the grant to one tenant; `None` applies in every tenant.
    pub tenant: Option<Schema>,
}

/// The access policy of the server.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    /// Off by default, as in the reference: then everything is allowed.
    pub enabled: bool,
    /// Applied when no grant matches.
    pub default_policy: DefaultPolicy,
    /// The grants.
    pub grants: Vec<Grant>,
}

/// Normalises a principal to the `{type}:{id}` form grants are written in.
fn canonical_principal(principal: &str) -> String {
    if ["agent:", "user:", "service:"]
        .iter()
        .any(|prefix| principal.starts_with(prefix))
    {
        principal.to_string()
    } else {
        format!("user:{principal}")
    }
}

impl AccessPolicy {
    /// Checks that `principal` holds `wanted` on `bank_id` in `tenant`; the error is the
    /// reference's message.
    pub fn check(
        &self,
        tenant: &Schema,
        principal: Option<&str>,
        bank_id: &str,
        wanted: Permission,
    ) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        let Some(principal) = principal else {
            return match self.default_policy {
                DefaultPolicy::Open => Ok(()),
                _ => Err(format!(
                    "Principal 'anonymous' denied '{wanted}' on bank '{bank_id}'"
                )),
            };
        };
        let canonical = canonical_principal(principal);
        let granted = self.grants.iter().any(|g| {
            (g.bank_id == "*" || g.bank_id == bank_id)
                && (g.principal == "*" || canonical_principal(&g.principal) == canonical)
                && g.tenant.as_ref().is_none_or(|t| t == tenant)
                && g.permissions.iter().any(|p| p.covers(wanted))
        });
        if granted || self.default_policy == DefaultPolicy::Open {
            Ok(())
        } else {
            Err(format!(
                "Principal '{canonical}' denied '{wanted}' on bank '{bank_id}'"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(bank: &str, principal: &str, permissions: &[Permission]) -> Grant {
        Grant {
            bank_id: bank.into(),
            principal: principal.into(),
            permissions: permissions.to_vec(),
            tenant: None,
        }
    }

    #[test]
    fn star_permission_grants_everything_and_star_bank_matches_any_bank() {
        let policy = AccessPolicy {
            enabled: true,
            default_policy: DefaultPolicy::Deny,
            grants: vec![grant("*", "agent:bot", &[Permission::All])],
        };
        let public = Schema::public();
        for wanted in [
            Permission::Read,
            Permission::Write,
            Permission::Forget,
            Permission::Admin,
        ] {
            assert!(policy
                .check(&public, Some("agent:bot"), "any-bank", wanted)
                .is_ok());
        }
        assert!(policy
            .check(&public, Some("agent:other"), "any-bank", Permission::Read)
            .is_err());
        assert!(policy
            .check(&public, None, "any-bank", Permission::Read)
            .is_err());
    }

    #[test]
    fn grants_are_per_bank_and_permission_and_bare_names_are_users() {
        let policy = AccessPolicy {
            enabled: true,
            default_policy: DefaultPolicy::OwnerOnly,
            grants: vec![
                grant("notes", "alice", &[Permission::Read]),
                grant("*", "*", &[Permission::Read]),
            ],
        };
        let t = Schema::public();
        assert!(policy
            .check(&t, Some("user:alice"), "notes", Permission::Read)
            .is_ok());
        let denied = policy
            .check(&t, Some("user:alice"), "notes", Permission::Write)
            .expect_err("write not granted");
        assert_eq!(
            denied,
            "Principal 'user:alice' denied 'write' on bank 'notes'"
        );
        assert!(policy
            .check(&t, Some("agent:x"), "other", Permission::Read)
            .is_ok());
    }

    #[test]
    fn tenant_scoped_grants_apply_only_in_their_tenant() {
        let acme = Schema::new("tenant_acme").expect("valid");
        let globex = Schema::new("tenant_globex").expect("valid");
        let policy = AccessPolicy {
            enabled: true,
            default_policy: DefaultPolicy::Deny,
            grants: vec![Grant {
                tenant: Some(acme.clone()),
                ..grant("*", "agent:bot", &[Permission::Read])
            }],
        };
        assert!(policy
            .check(&acme, Some("agent:bot"), "b", Permission::Read)
            .is_ok());
        assert!(policy
            .check(&globex, Some("agent:bot"), "b", Permission::Read)
            .is_err());
    }

    #[test]
    fn disabled_or_open_allows() {
        let t = Schema::public();
        assert!(AccessPolicy::default()
            .check(&t, None, "b", Permission::Admin)
            .is_ok());
        let open = AccessPolicy {
            enabled: true,
            default_policy: DefaultPolicy::Open,
            grants: vec![],
        };
        assert!(open.check(&t, None, "b", Permission::Admin).is_ok());
    }
}
