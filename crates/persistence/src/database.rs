//! The database every repository shares: SQLite in the data directory by default, or a PostgreSQL
//! server that several instances share. Both are reached through sqlx's `Any` driver, so each
//! repository writes its SQL once (`$N` placeholders, which both engines read); the schemas differ
//! only where the engines do (`migrations/sqlite`, `migrations/postgres`), and are brought up to
//! date on open.

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::error::Error;

/// Connections per pool: SQLite serialises writers anyway; PostgreSQL gets a few more readers.
const SQLITE_CONNECTIONS: u32 = 8;
const POSTGRES_CONNECTIONS: u32 = 16;

/// Which engine a pool talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The engine a `postgres://` or `sqlite://` URL names.
    pub fn of_url(url: &str) -> Option<Engine> {
        let scheme = url.split_once(':')?.0;
        match scheme {
            "postgres" | "postgresql" => Some(Engine::Postgres),
            "sqlite" => Some(Engine::Sqlite),
            _ => None,
        }
    }
}

/// A connected database: the pool, its engine, and the URL it came from (a PostgreSQL listener
/// needs a connection of its own).
#[derive(Clone, Debug)]
pub struct Database {
    pub pool: AnyPool,
    pub engine: Engine,
    url: String,
}

impl Database {
    /// Opens (creating if needed) the SQLite file and brings its schema up to date.
    pub async fn open_sqlite(path: &Path) -> Result<Database, Error> {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Database::connect(&url).await
    }

    /// Connects to `postgres://...` or `sqlite://...` and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Database, Error> {
        sqlx::any::install_default_drivers();
        let engine = Engine::of_url(url).ok_or_else(|| Error::UnsupportedUrl(redacted(url)))?;
        let options: AnyConnectOptions = url.parse()?;
        let pool = match engine {
            Engine::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(SQLITE_CONNECTIONS)
                    .after_connect(|connection, _| {
                        Box::pin(async move {
                            // WAL lets readers run beside the writer; FULL makes a committed
                            // transaction survive a power loss (NORMAL in WAL mode may lose the last
                            // ones), so a record the server acknowledged stays.
                            connection
                                .execute(
                                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                                )
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Engine::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(POSTGRES_CONNECTIONS)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await?
            }
        };
        match engine {
            Engine::Sqlite => sqlx::migrate!("../../migrations/sqlite").run(&pool).await?,
            Engine::Postgres => sqlx::migrate!("../../migrations/postgres").run(&pool).await?,
        }
        Ok(Database {
            pool,
            engine,
            url: url.to_owned(),
        })
    }

    /// The URL this database was opened with (it may hold a password: not for logs).
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Opens (creating if needed) the SQLite file and brings its schema up to date.
pub async fn open(path: &Path) -> Result<AnyPool, Error> {
    Ok(Database::open_sqlite(path).await?.pool)
}

/// The URL with any password replaced, fit for an error message.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(an unparsable URL)".to_owned(),
    }
}

/// The engine behind a pool.
pub(crate) fn engine_of(pool: &AnyPool) -> Engine {
    Engine::of_url(pool.connect_options().database_url.as_str()).unwrap_or(Engine::Sqlite)
}

/// Placeholder groups for a multi-row INSERT of `rows` rows of `columns` values, bound in order:
/// `($1, $2), ($3, $4)` for PostgreSQL, `(?, ?), (?, ?)` for SQLite. (sqlx's query builder writes
/// `?` for the Any driver, which PostgreSQL does not read; and SQLite looks each `$N` up among the
/// statement's earlier names, which makes thousands of them cost 30 times the plain `?`.)
pub(crate) fn value_rows(engine: Engine, rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 6);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            match engine {
                Engine::Postgres => {
                    sql.push('$');
                    sql.push_str(&(row * columns + column + 1).to_string());
                }
                Engine::Sqlite => sql.push('?'),
            }
        }
        sql.push(')');
    }
    sql
}

/// A column filled from a JSON row, and what the database reads its value as.
#[derive(Clone, Copy, Debug)]
pub(crate) enum JsonColumn {
    Text(&'static str),
    Integer(&'static str),
}

/// An INSERT of every row of the JSON array bound as `$1` into `table`, in the array's order, each
/// row an array of the `columns`' values in order: `jsonb_each` on SQLite (which keeps each row
/// binary, where `json_each` turned it back into text to parse again), `json_array_elements` on
/// PostgreSQL. A batch as one parameter: through the `Any` driver, values bound one by one cost more
/// CPU than writing their rows.
pub(crate) fn insert_json_rows(engine: Engine, table: &str, columns: &[JsonColumn]) -> String {
    let names: Vec<&str> = columns
        .iter()
        .map(|column| match column {
            JsonColumn::Text(name) | JsonColumn::Integer(name) => *name,
        })
        .collect();
    let values: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, column)| match (engine, column) {
            (Engine::Postgres, JsonColumn::Integer(_)) => format!("(value->>{i})::bigint"),
            _ => format!("value->>{i}"),
        })
        .collect();
    let rows = match engine {
        Engine::Sqlite => "jsonb_each($1)",
        Engine::Postgres => "json_array_elements($1::json) WITH ORDINALITY AS batch(value, n) ORDER BY n",
    };
    format!(
        "INSERT INTO {table} ({}) SELECT {} FROM {rows}",
        names.join(", "),
        values.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_rows_are_read_in_column_order_and_cast_where_the_engine_needs_it() {
        let columns = [JsonColumn::Text("a"), JsonColumn::Integer("b")];
        assert_eq!(
            insert_json_rows(Engine::Sqlite, "t", &columns),
            "INSERT INTO t (a, b) SELECT value->>0, value->>1 FROM jsonb_each($1)"
        );
        assert_eq!(
            insert_json_rows(Engine::Postgres, "t", &columns),
            "INSERT INTO t (a, b) SELECT value->>0, (value->>1)::bigint \
             FROM json_array_elements($1::json) WITH ORDINALITY AS batch(value, n) ORDER BY n"
        );
    }

    #[test]
    fn placeholders_number_every_value_once() {
        assert_eq!(value_rows(Engine::Postgres, 2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(value_rows(Engine::Postgres, 1, 1), "($1)");
        assert_eq!(value_rows(Engine::Sqlite, 2, 2), "(?, ?), (?, ?)");
    }

    #[test]
    fn engines_are_told_by_the_scheme_and_passwords_stay_out_of_messages() {
        assert_eq!(Engine::of_url("postgres://u@h/db"), Some(Engine::Postgres));
        assert_eq!(Engine::of_url("postgresql://h/db"), Some(Engine::Postgres));
        assert_eq!(Engine::of_url("sqlite:///tmp/x.db"), Some(Engine::Sqlite));
        assert_eq!(Engine::of_url("mysql://h/db"), None);
        assert_eq!(
            redacted("postgres://me:secret@db.example:5432/streams"),
            "postgres://me:***@db.example:5432/streams"
        );
    }
}
