//! [`PeerEvents`] over PostgreSQL: `LISTEN` for the announcements of the other instances sharing
//! the database, then read the announced rows from the `notifications` table.
//!
//! A notification carries ids, not events (PostgreSQL caps its payload at 8000 bytes). Each
//! instance writes its events one batch at a time, so the rows of one announcement are that
//! instance's rows between the two ids. When the listening connection drops, a new one is opened
//! and the table is read for what was written meanwhile, from where each instance was last seen.

use std::collections::HashMap;

use async_trait::async_trait;
use model::notifications::{Notification, PeerEvents};
use sqlx::AnyPool;
use sqlx::postgres::PgListener;

use crate::database::{Database, Engine};
use crate::error::Error;
use crate::notifications::{EVENTS_CHANNEL, notification};

/// Rows read back at most after a reconnection.
const CATCH_UP_LIMIT: i64 = 10_000;

/// The events of the other instances sharing a PostgreSQL database.
pub struct PgPeerEvents {
    url: String,
    pool: AnyPool,
    instance: String,
    listener: Option<PgListener>,
    /// The last id delivered of each instance.
    seen: HashMap<String, i64>,
    /// When the listener was lost, if it was: what was written since is read from the table.
    lost_at_ms: Option<i64>,
}

impl PgPeerEvents {
    /// Starts listening; `instance` is this instance's own name, whose events are skipped.
    pub async fn listen(database: &Database, instance: &str) -> Result<PgPeerEvents, Error> {
        if database.engine != Engine::Postgres {
            return Err(Error::UnsupportedUrl(
                "events of other instances need PostgreSQL".into(),
            ));
        }
        let mut events = PgPeerEvents {
            url: database.url().to_owned(),
            pool: database.pool.clone(),
            instance: instance.to_owned(),
            listener: None,
            seen: HashMap::new(),
            lost_at_ms: None,
        };
        events.connect().await?;
        Ok(events)
    }

    async fn connect(&mut self) -> Result<&mut PgListener, Error> {
        if self.listener.is_none() {
            let mut listener = PgListener::connect(&self.url).await?;
            listener.listen(EVENTS_CHANNEL).await?;
            self.listener = Some(listener);
        }
        Ok(self.listener.as_mut().expect("connected just above"))
    }

    /// The rows one announcement names, oldest first.
    async fn announced(&mut self, instance: &str, first: i64, last: i64) -> Result<Vec<Notification>, Error> {
        let rows = sqlx::query(
            "SELECT id, kind, data, timestamp_ms, source FROM notifications
             WHERE instance = $1 AND id >= $2 AND id <= $3 ORDER BY id",
        )
        .bind(instance)
        .bind(first.max(self.seen.get(instance).map_or(i64::MIN, |seen| seen + 1)))
        .bind(last)
        .fetch_all(&self.pool)
        .await?;
        self.seen
            .entry(instance.to_owned())
            .and_modify(|seen| *seen = (*seen).max(last))
            .or_insert(last);
        rows.iter().map(notification).collect()
    }

    /// What other instances wrote while the listener was away: rows past each instance's last
    /// delivered id, and those of instances not heard from yet written since the loss.
    async fn catch_up(&mut self, lost_at_ms: i64) -> Result<Vec<Notification>, Error> {
        use sqlx::Row;
        let floor = self.seen.values().min().copied().unwrap_or(0);
        let rows = sqlx::query(
            "SELECT id, instance, kind, data, timestamp_ms, source FROM notifications
             WHERE instance <> $1 AND (id > $2 OR timestamp_ms >= $3) ORDER BY id LIMIT $4",
        )
        .bind(&self.instance)
        .bind(floor)
        .bind(lost_at_ms - 1000)
        .bind(CATCH_UP_LIMIT)
        .fetch_all(&self.pool)
        .await?;
        let mut missed = Vec::new();
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let instance: String = row.try_get("instance")?;
            let seen = self.seen.get(&instance).copied();
            if seen.is_some_and(|seen| id <= seen) {
                continue;
            }
            if seen.is_none() && row.try_get::<i64, _>("timestamp_ms")? < lost_at_ms - 1000 {
                continue;
            }
            self.seen.insert(instance, id);
            missed.push(notification(row)?);
        }
        Ok(missed)
    }
}

#[async_trait]
impl PeerEvents for PgPeerEvents {
    async fn next_batch(&mut self) -> model::Result<Vec<Notification>> {
        loop {
            if let Some(lost_at_ms) = self.lost_at_ms {
                // Listen again first, then read: a row written in between is both announced and
                // read, and the second copy is skipped by its id.
                self.connect().await?;
                let missed = self.catch_up(lost_at_ms).await?;
                self.lost_at_ms = None;
                if !missed.is_empty() {
                    tracing::info!(
                        events = missed.len(),
                        "events of other instances read back after a reconnection"
                    );
                    return Ok(missed);
                }
            }
            let listener = self.connect().await?;
            let received = match listener.try_recv().await {
                Ok(received) => received,
                Err(error) => {
                    self.lose();
                    return Err(Error::from(error).into());
                }
            };
            let Some(announcement) = received else {
                self.lose();
                continue;
            };
            let Some((instance, first, last)) = parse(announcement.payload()) else {
                tracing::warn!(
                    payload = announcement.payload(),
                    "an unreadable event announcement; ignored"
                );
                continue;
            };
            if instance == self.instance {
                continue;
            }
            match self.announced(instance, first, last).await {
                Ok(events) if events.is_empty() => continue,
                Ok(events) => return Ok(events),
                Err(error) => {
                    // Read again with the rest once the database answers.
                    self.lose();
                    return Err(error.into());
                }
            }
        }
    }
}

impl PgPeerEvents {
    fn lose(&mut self) {
        self.listener = None;
        self.lost_at_ms.get_or_insert_with(model::clock::now_ms);
    }
}

/// `{instance} {first} {last}`; the instance name may hold spaces, the ids do not.
fn parse(payload: &str) -> Option<(&str, i64, i64)> {
    let (rest, last) = payload.rsplit_once(' ')?;
    let (instance, first) = rest.rsplit_once(' ')?;
    Some((instance, first.parse().ok()?, last.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn announcements_name_an_instance_and_an_id_range() {
        assert_eq!(parse("node a 10 12"), Some(("node a", 10, 12)));
        assert_eq!(parse("a 1 x"), None);
        assert_eq!(parse("12"), None);
    }
}
