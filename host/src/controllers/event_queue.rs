//! Kubernetes Events, published off the reconcile path. A reconcile hands its Event over and
//! goes on; one background task publishes them in the order they came, a few at a time, through
//! kube-runtime's `Recorder` (which folds repeats into an event series).
//!
//! This is how upstream's recorder (client-go's event broadcaster) works, and for the same
//! reasons: Events are best-effort, and a status write that dependants wait for should not
//! queue behind one. When the queue is full (the API server is far behind), new Events are
//! dropped with a warning, as client-go drops them. At shutdown the operator waits a few
//! seconds for the queue to drain.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, Recorder, Reporter},
};
use tokio::sync::mpsc;

/// Events waiting to be published; client-go's broadcaster queues 1,000.
const QUEUE_CAPACITY: usize = 1000;
/// Events being written at once. They start in order, so their timestamps keep the order in
/// which the reconciles recorded them.
const IN_FLIGHT: usize = 8;

pub struct EventQueue {
    sender: mpsc::Sender<(Event, ObjectReference)>,
    /// Events queued or being written.
    pending: Arc<AtomicUsize>,
}

impl EventQueue {
    /// Starts the publishing task on the current Tokio runtime; it ends when the queue is
    /// dropped, after publishing what it holds.
    pub fn start(client: Client, reporter: Reporter) -> Self {
        let (sender, receiver) = mpsc::channel::<(Event, ObjectReference)>(QUEUE_CAPACITY);
        let recorder = Recorder::new(client, reporter);
        let pending = Arc::new(AtomicUsize::new(0));
        let published = pending.clone();
        let queued = futures::stream::unfold(receiver, |mut receiver| async {
            let next = receiver.recv().await?;
            Some((next, receiver))
        });
        tokio::spawn(
            queued
                .map(move |(event, reference)| {
                    let (recorder, published) = (recorder.clone(), published.clone());
                    async move {
                        if let Err(error) = recorder.publish(&event, &reference).await {
                            tracing::warn!(
                                object = ?reference.name, reason = %event.reason, %error, "could not record an Event"
                            );
                        }
                        published.fetch_sub(1, Ordering::Relaxed);
                    }
                })
                .buffered(IN_FLIGHT)
                .for_each(|()| async {}),
        );
        Self { sender, pending }
    }

    /// Queues `event` about `reference`; never waits.
    pub fn publish(&self, event: Event, reference: ObjectReference) {
        self.pending.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = self.sender.try_send((event, reference)) {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            let (event, reference) = match error {
                mpsc::error::TrySendError::Full(queued) | mpsc::error::TrySendError::Closed(queued) => queued,
            };
            tracing::warn!(object = ?reference.name, reason = %event.reason, "the Event queue is full; dropping an Event");
        }
    }

    /// Waits until every queued Event is written, or `timeout` has passed; whether it drained.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.pending.load(Ordering::Relaxed) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}
