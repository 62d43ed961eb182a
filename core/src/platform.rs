//! Where a PostgreSQL target runs: self-managed, or a managed service (RDS,
//! Aurora, Cloud SQL, Azure) that gives its customers no superuser. A
//! target declares it in `ward.yaml` (`platform:`); runbook steps say where
//! they work (`platforms:` / `not_on:`), and a session leaves out the steps
//! its target's platform cannot run, saying why in the conclusion.
//!
//! This module only names platforms; it never guesses one from a URL or a
//! server (a wrong guess would hide a step that works).

use serde::{Deserialize, Serialize};

/// Where a target runs. `self-managed` unless `ward.yaml` says otherwise.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// A server you run yourself: superuser, the file system, ALTER SYSTEM.
    #[default]
    #[serde(rename = "self-managed")]
    SelfManaged,
    /// Amazon RDS for PostgreSQL (`rds_superuser`; `rdsadmin` is AWS's).
    Rds,
    /// Amazon Aurora PostgreSQL (as RDS; storage is Aurora's own).
    Aurora,
    /// Google Cloud SQL for PostgreSQL (`cloudsqlsuperuser`;
    /// `cloudsqladmin` is Google's).
    Cloudsql,
    /// Azure Database for PostgreSQL (`azure_pg_admin`; `azure_superuser`
    /// is Microsoft's).
    Azure,
}

impl Platform {
    /// Every platform, in the order the docs list them.
    pub const ALL: [Platform; 5] = [
        Platform::SelfManaged,
        Platform::Rds,
        Platform::Aurora,
        Platform::Cloudsql,
        Platform::Azure,
    ];

    /// The name `ward.yaml` and runbooks use (`self-managed`, `rds`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Platform::SelfManaged => "self-managed",
            Platform::Rds => "rds",
            Platform::Aurora => "aurora",
            Platform::Cloudsql => "cloudsql",
            Platform::Azure => "azure",
        }
    }

    /// The name people know it by (`RDS`, `Cloud SQL`).
    pub fn display(self) -> &'static str {
        match self {
            Platform::SelfManaged => "a self-managed server",
            Platform::Rds => "RDS",
            Platform::Aurora => "Aurora",
            Platform::Cloudsql => "Cloud SQL",
            Platform::Azure => "Azure Database for PostgreSQL",
        }
    }

    /// Whether a provider runs the server and keeps the superuser.
    pub fn is_managed(self) -> bool {
        self != Platform::SelfManaged
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_names_read_back_as_themselves_and_unknown_ones_are_refused() {
        for p in Platform::ALL {
            let read: Platform = serde_yaml::from_str(p.name()).expect("reads");
            assert_eq!(read, p);
        }
        let err = serde_yaml::from_str::<Platform>("heroku").expect_err("unknown");
        assert!(err.to_string().contains("heroku"), "{err}");
        assert_eq!(Platform::default(), Platform::SelfManaged);
    }
}
