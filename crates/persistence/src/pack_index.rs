//! The index of the pack store: for each block (by multihash), the pack file holding it and the
//! byte range of its data. SQLite in the data dir (`blocks.db`), of this instance alone whatever
//! database holds the records, since the packs it describes are this instance's own files.
//!
//! Writes of an import's rows are durable before they return (`synchronous = FULL` for that
//! transaction); deletes and kept cache blocks are not (`NORMAL`): a lost delete brings a block
//! back for the next collection, and a lost cache entry is fetched again.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection, Row};

use crate::error::Error;

/// Rows per INSERT statement (4 values each, far under SQLite's limit of bound values).
const ROWS_PER_INSERT: usize = 256;

/// Where a block's data is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: String,
    pub offset: u64,
    pub length: u64,
}

/// One block's row, as a batch records it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The multihash's bytes.
    pub key: Vec<u8>,
    pub offset: u64,
    pub length: u64,
}

/// What a pack still holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackUsage {
    pub blocks: u64,
    /// Bytes of the records still indexed, headers included.
    pub bytes: u64,
}

#[derive(Clone)]
pub struct PackIndex {
    pool: SqlitePool,
}

/// How durable a write must be before it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// On the device (an acknowledged import).
    Synced,
    /// In the log, synced at the next checkpoint or durable write (deletes, cache).
    Lazy,
}

impl PackIndex {
    /// Opens (creating) the index file and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("../../migrations/blocks").run(&pool).await?;
        Ok(Self { pool })
    }

    pub async fn locate(&self, key: &[u8]) -> Result<Option<Location>, Error> {
        let row = sqlx::query("SELECT pack, data_offset, data_length FROM blocks WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| location_at(&row, 0)))
    }

    /// A block's location and the locations of the blocks after it in its pack, in pack order,
    /// `count` in all at most; empty when the block is not indexed.
    pub async fn locate_run(&self, key: &[u8], count: u32) -> Result<Vec<(Vec<u8>, Location)>, Error> {
        let rows = sqlx::query(
            "SELECT next.key, next.pack, next.data_offset, next.data_length \
             FROM blocks AS wanted JOIN blocks AS next \
               ON next.pack = wanted.pack AND next.data_offset >= wanted.data_offset \
             WHERE wanted.key = ? ORDER BY next.data_offset LIMIT ?",
        )
        .bind(key)
        .bind(count)
        .fetch_all(&self.pool)
        .await?;
        Ok(keyed_locations(rows))
    }

    pub async fn contains(&self, key: &[u8]) -> Result<bool, Error> {
        Ok(sqlx::query("SELECT 1 FROM blocks WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Points every entry's key at `pack`, in one transaction: all become visible at once.
    pub async fn insert(&self, pack: &str, entries: &[Entry], durability: Durability) -> Result<(), Error> {
        let mut connection = self.pool.acquire().await?;
        if durability == Durability::Synced {
            sqlx::query("PRAGMA synchronous = FULL")
                .execute(&mut *connection)
                .await?;
        }
        let written = async {
            let mut transaction = connection.begin().await?;
            for rows in entries.chunks(ROWS_PER_INSERT) {
                let sql = format!(
                    "INSERT OR REPLACE INTO blocks (key, pack, data_offset, data_length) VALUES {}",
                    vec!["(?, ?, ?, ?)"; rows.len()].join(", ")
                );
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for entry in rows {
                    query = query
                        .bind(entry.key.as_slice())
                        .bind(pack)
                        .bind(entry.offset as i64)
                        .bind(entry.length as i64);
                }
                query.execute(&mut *transaction).await?;
            }
            transaction.commit().await
        }
        .await;
        if durability == Durability::Synced {
            sqlx::query("PRAGMA synchronous = NORMAL")
                .execute(&mut *connection)
                .await?;
        }
        Ok(written?)
    }

    /// Removes a block's row; true if it was there.
    pub async fn remove(&self, key: &[u8]) -> Result<bool, Error> {
        let done = sqlx::query("DELETE FROM blocks WHERE key = ?")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every key indexed.
    pub async fn keys(&self) -> Result<Vec<Vec<u8>>, Error> {
        let rows = sqlx::query("SELECT key FROM blocks").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|row| row.get(0)).collect())
    }

    /// What each pack that still holds a block holds.
    pub async fn usage_by_pack(&self) -> Result<HashMap<String, PackUsage>, Error> {
        let rows =
            sqlx::query("SELECT pack, COUNT(*), SUM(data_length + ?) + SUM(LENGTH(key)) FROM blocks GROUP BY pack")
                .bind(crate::fs_blocks::RECORD_HEADER_FIXED as i64)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let usage = PackUsage {
                    blocks: row.get::<i64, _>(1) as u64,
                    bytes: row.get::<i64, _>(2) as u64,
                };
                (row.get(0), usage)
            })
            .collect())
    }

    /// The blocks of one pack, in the order they were written.
    pub async fn in_pack(&self, pack: &str) -> Result<Vec<(Vec<u8>, Location)>, Error> {
        let rows =
            sqlx::query("SELECT key, pack, data_offset, data_length FROM blocks WHERE pack = ? ORDER BY data_offset")
                .bind(pack)
                .fetch_all(&self.pool)
                .await?;
        Ok(keyed_locations(rows))
    }
}

/// The location in a row's columns `first..first + 3` (pack, data offset, data length).
fn location_at(row: &SqliteRow, first: usize) -> Location {
    Location {
        pack: row.get(first),
        offset: row.get::<i64, _>(first + 1) as u64,
        length: row.get::<i64, _>(first + 2) as u64,
    }
}

/// Rows of (key, pack, data offset, data length) as keys and their locations.
fn keyed_locations(rows: Vec<SqliteRow>) -> Vec<(Vec<u8>, Location)> {
    rows.into_iter().map(|row| (row.get(0), location_at(&row, 1))).collect()
}
