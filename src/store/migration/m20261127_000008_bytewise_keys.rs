//! PostgreSQL: the key columns (ids, ticket ids, identity keys, kinds and
//! states) compare bytewise, `COLLATE "C"`, as SQLite's BINARY does.
//!
//! They are opaque keys, so a linguistic collation buys nothing, and every
//! B-tree step paid for it: on a database created with ICU `en-US`,
//! collation was ~6% of the database's CPU under intake (`cargo bench
//! --bench intake`), ~3% on `C.UTF-8`. Equality is unchanged (a deterministic
//! collation already compares equal only byte-equal strings); only the
//! order of lists by id can change, and now matches SQLite's. Names,
//! emails and other text shown to people keep the database's collation.
//!
//! The columns' indexes are rebuilt under an exclusive lock, which holds
//! every replica's calls on these tables until the migration commits: on a
//! large database, run `migrate` in a quiet window. Replicas of the
//! previous release work unchanged afterwards. SQLite and MySQL: nothing to
//! do.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Table, then its key columns with their `varchar` lengths.
const KEYS: &[(&str, &[(&str, u32)])] = &[
    ("customers", &[("id", 36), ("state", 16)]),
    (
        "customer_identities",
        &[
            ("customer_id", 36),
            ("kind", 16),
            ("normalized", 320),
            ("live_key", 320),
        ],
    ),
    ("create_requests", &[("request_id", 128), ("customer_id", 36)]),
    (
        "ticket_links",
        &[("ticket_id", 128), ("customer_id", 36), ("conflicting_customer_id", 36)],
    ),
    (
        "history_entries",
        &[
            ("resource", 64),
            ("id", 36),
            ("import_id", 36),
            ("ticket_id", 128),
            ("organization_id", 36),
        ],
    ),
    ("organizations", &[("id", 36), ("live_name_key", 200)]),
    ("organization_domains", &[("domain", 253), ("organization_id", 36)]),
    ("memberships", &[("organization_id", 36), ("customer_id", 36)]),
];

/// One `ALTER TABLE` per table, so that each index is rebuilt once.
async fn collate(manager: &SchemaManager<'_>, collation: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    for (table, columns) in KEYS {
        let changes: Vec<String> = columns
            .iter()
            .map(|(column, len)| format!("ALTER COLUMN {column} TYPE varchar({len}) COLLATE {collation}"))
            .collect();
        let sql = format!("ALTER TABLE {table} {}", changes.join(", "));
        manager.get_connection().execute_unprepared(&sql).await?;
    }
    Ok(())
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        collate(manager, "\"C\"").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        collate(manager, "\"default\"").await
    }
}
