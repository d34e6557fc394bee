//! The numbered schema migrations of both backends and the one routine that
//! decides which of them a store still needs, in order.
//!
//! Each migration exists twice, `schema/postgres/NNNN_name.sql` and
//! `schema/sqlite/NNNN_name.sql`, with the same number and meaning. The
//! backends only run SQL (through [`Target`]); the order, the version
//! bookkeeping and the "schema newer than this binary" refusal live here.
//! Applied versions are recorded in `schema_migrations(version, name, applied_at)`.
//!
//! May use: `store` (its `Error`).

use super::{Error, ErrorKind, Result};

/// One schema change.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Which SQL dialect a migration list is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../../schema/postgres/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "queue_index",
        sql: include_str!("../../schema/postgres/0002_queue_index.sql"),
    },
];

const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../../schema/sqlite/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "queue_index",
        sql: include_str!("../../schema/sqlite/0002_queue_index.sql"),
    },
];

/// The newest schema version this binary knows.
pub const LATEST: i32 = 2;

/// Every migration of `dialect`, oldest first.
pub fn migrations(dialect: Dialect) -> &'static [Migration] {
    match dialect {
        Dialect::Postgres => POSTGRES,
        Dialect::Sqlite => SQLITE,
    }
}

/// A store being migrated, inside one transaction the backend owns.
pub trait Target {
    /// Creates `schema_migrations` when missing and returns the highest
    /// version recorded in it (0 for an empty store).
    fn recorded_version(&mut self) -> Result<i32>;

    /// Runs one migration's SQL and records it in `schema_migrations`.
    fn apply(&mut self, migration: &Migration) -> Result<()>;
}

/// What [`run`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The version the store was at (0 = empty).
    pub from: i32,
    /// The version it is at now.
    pub to: i32,
}

/// Brings the store behind `target` to [`LATEST`], or refuses with
/// [`ErrorKind::SchemaTooNew`] when it is already past it.
pub fn run(dialect: Dialect, target: &mut dyn Target) -> Result<Applied> {
    let from = target.recorded_version()?;
    let todo = pending(dialect, from)?;
    let mut to = from;
    for migration in todo {
        target.apply(migration).map_err(|e| {
            Error::new(
                e.kind(),
                format!(
                    "migration {:04}_{} failed: {}",
                    migration.version, migration.name, e
                ),
            )
        })?;
        to = migration.version;
    }
    Ok(Applied { from, to })
}

/// The migrations a store at version `current` still needs, oldest first.
pub fn pending(dialect: Dialect, current: i32) -> Result<&'static [Migration]> {
    if current > LATEST {
        return Err(too_new(current));
    }
    let all = migrations(dialect);
    let first_new = all
        .iter()
        .position(|m| m.version > current)
        .unwrap_or(all.len());
    Ok(&all[first_new..])
}

fn too_new(found: i32) -> Error {
    Error::new(
        ErrorKind::SchemaTooNew,
        format!(
            "the store has schema version {found}, but this jobengine knows only up to \
             version {LATEST}: run a jobengine at least as new as the one that migrated it"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_have_the_same_numbered_migrations() {
        let pg: Vec<_> = POSTGRES.iter().map(|m| (m.version, m.name)).collect();
        let lite: Vec<_> = SQLITE.iter().map(|m| (m.version, m.name)).collect();
        assert_eq!(pg, lite);
        for (i, m) in POSTGRES.iter().enumerate() {
            assert_eq!(
                m.version,
                i as i32 + 1,
                "versions count up from 1 without gaps"
            );
        }
        assert_eq!(POSTGRES.last().map(|m| m.version), Some(LATEST));
    }

    #[test]
    fn pending_starts_after_the_recorded_version() {
        assert_eq!(pending(Dialect::Sqlite, 0).unwrap().len(), SQLITE.len());
        assert!(pending(Dialect::Postgres, LATEST).unwrap().is_empty());
        let err = pending(Dialect::Postgres, LATEST + 3).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::SchemaTooNew);
        let msg = err.to_string();
        assert!(msg.contains(&format!("version {}", LATEST + 3)), "{msg}");
        assert!(msg.contains(&format!("version {LATEST}")), "{msg}");
    }

    struct Fake {
        at: i32,
        applied: Vec<i32>,
    }

    impl Target for Fake {
        fn recorded_version(&mut self) -> Result<i32> {
            Ok(self.at)
        }
        fn apply(&mut self, m: &Migration) -> Result<()> {
            self.applied.push(m.version);
            Ok(())
        }
    }

    #[test]
    fn run_applies_in_order_and_reports_versions() {
        let mut fake = Fake {
            at: 0,
            applied: vec![],
        };
        let done = run(Dialect::Sqlite, &mut fake).unwrap();
        assert_eq!(
            done,
            Applied {
                from: 0,
                to: LATEST
            }
        );
        assert_eq!(fake.applied, (1..=LATEST).collect::<Vec<_>>());

        let mut fake = Fake {
            at: LATEST,
            applied: vec![],
        };
        assert_eq!(
            run(Dialect::Postgres, &mut fake).unwrap(),
            Applied {
                from: LATEST,
                to: LATEST
            }
        );
        assert!(fake.applied.is_empty());
    }
}
