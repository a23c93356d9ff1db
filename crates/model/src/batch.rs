//! A background writer that drains a bounded queue in batches, so callers never wait on storage.

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;

/// Items per write, at most.
pub const BATCH: usize = 4096;
/// How long the first item of a batch waits for the others.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Spawns a task that calls `write` with batches of what arrives on `receiver` (at most [`BATCH`]
/// items, written at most [`FLUSH_EVERY`] after the first); it ends when every sender is gone,
/// after writing what was queued.
pub fn spawn_writer<T, W, F>(mut receiver: mpsc::Receiver<T>, mut write: W)
where
    T: Send + 'static,
    W: FnMut(Vec<T>) -> F + Send + 'static,
    F: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH);
        while receiver.recv_many(&mut batch, BATCH).await > 0 {
            // The rest of the batch gathers while the task sleeps: a task waiting on the queue is
            // woken by every send (a cross-thread wake-up per item), a sleeping one by none.
            if batch.len() < BATCH {
                tokio::time::sleep(FLUSH_EVERY).await;
                while batch.len() < BATCH {
                    match receiver.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
            }
            write(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sizes of the batches written for `items` sent at once.
    async fn batches_for(items: usize, capacity: usize) -> Vec<usize> {
        let (sender, receiver) = mpsc::channel(capacity);
        let (written, mut writes) = mpsc::unbounded_channel();
        spawn_writer(receiver, move |batch: Vec<usize>| {
            let written = written.clone();
            async move {
                written.send(batch).unwrap();
            }
        });
        for item in 0..items {
            sender.send(item).await.unwrap();
        }
        drop(sender);
        let mut sizes = Vec::new();
        let mut next = 0;
        while let Some(batch) = writes.recv().await {
            assert_eq!(
                batch,
                (next..next + batch.len()).collect::<Vec<_>>(),
                "in order, none lost"
            );
            next += batch.len();
            sizes.push(batch.len());
        }
        sizes
    }

    #[tokio::test(start_paused = true)]
    async fn what_arrives_together_is_written_together() {
        assert_eq!(batches_for(10, 64).await, vec![10]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_never_exceeds_its_size_and_the_queue_is_written_out_at_the_end() {
        assert_eq!(batches_for(BATCH + 5, 2 * BATCH).await, vec![BATCH, 5]);
    }

    #[tokio::test(start_paused = true)]
    async fn items_sent_while_a_batch_gathers_join_it() {
        let (sender, receiver) = mpsc::channel(16);
        let (written, mut writes) = mpsc::unbounded_channel();
        spawn_writer(receiver, move |batch: Vec<u32>| {
            let written = written.clone();
            async move {
                written.send((tokio::time::Instant::now(), batch)).unwrap();
            }
        });
        let started = tokio::time::Instant::now();
        sender.send(1).await.unwrap();
        tokio::time::sleep(FLUSH_EVERY / 2).await;
        sender.send(2).await.unwrap();
        let (at, batch) = writes.recv().await.unwrap();
        assert_eq!(batch, vec![1, 2]);
        assert!(
            at - started <= FLUSH_EVERY + Duration::from_millis(1),
            "written {:?} after the first",
            at - started
        );
    }
}
