//! A background writer that drains a bounded queue in batches, so callers never wait on storage.

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;

/// Items per write, at most.
pub const BATCH: usize = 512;
/// How long an item may wait for its batch.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// Spawns a task that calls `write` with batches of what arrives on `receiver` (at most [`BATCH`]
/// items, at most [`FLUSH_EVERY`] after the first); it ends when every sender is gone.
pub fn spawn_writer<T, W, F>(mut receiver: mpsc::Receiver<T>, mut write: W)
where
    T: Send + 'static,
    W: FnMut(Vec<T>) -> F + Send + 'static,
    F: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        while let Some(first) = receiver.recv().await {
            let mut batch = Vec::with_capacity(BATCH);
            batch.push(first);
            let deadline = tokio::time::sleep(FLUSH_EVERY);
            tokio::pin!(deadline);
            while batch.len() < BATCH {
                tokio::select! {
                    next = receiver.recv() => match next {
                        Some(item) => batch.push(item),
                        None => break,
                    },
                    _ = &mut deadline => break,
                }
            }
            write(batch).await;
        }
    });
}
