//! Which streams of a connection want to be polled: each stream has a waker
//! of its own that queues its identifier and wakes the connection's task,
//! so a wake-up polls that stream and not every stream of the connection.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Wake, Waker},
};

#[derive(Debug, Default)]
pub struct ReadySet {
    ids: Mutex<Vec<u32>>,
    task: Mutex<Option<Waker>>,
}

impl ReadySet {
    /// The connection's task, woken when a stream is.
    pub fn register(&self, waker: &Waker) {
        let mut task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if !task.as_ref().is_some_and(|t| t.will_wake(waker)) {
            *task = Some(waker.clone());
        }
    }

    /// A waker for `stream`, and the handle that marks it polled.
    pub fn waker(self: &Arc<Self>, stream: u32) -> (Waker, Arc<StreamWake>) {
        let wake = Arc::new(StreamWake { stream, queued: AtomicBool::new(false), set: self.clone() });
        (Waker::from(wake.clone()), wake)
    }

    /// Takes the streams woken since the last call.
    pub fn take(&self, into: &mut Vec<u32>) {
        into.append(&mut self.ids.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

#[derive(Debug)]
pub struct StreamWake {
    stream: u32,
    /// In the set already: a second wake adds nothing.
    queued: AtomicBool,
    set: Arc<ReadySet>,
}

impl StreamWake {
    /// The stream is about to be polled: a wake from now on queues it again.
    pub fn polled(&self) {
        self.queued.store(false, Ordering::Release);
    }
}

impl Wake for StreamWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.set.ids.lock().unwrap_or_else(|p| p.into_inner()).push(self.stream);
            if let Some(task) = &*self.set.task.lock().unwrap_or_else(|p| p.into_inner()) {
                task.wake_by_ref();
            }
        }
    }
}
