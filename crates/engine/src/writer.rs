//! The store on its own thread, so writing a round of steps overlaps deciding it.
//!
//! The driver decides thousands of steps per round (every due timer, every finished task) and
//! each must be in the round's transaction before the round's effects become visible. Writing
//! them on the driver's thread made SQLite a third of a big run's critical path; here the
//! driver hands each step over ([`StoreThread::submit`]) and goes on deciding while this
//! thread writes, and only the round's commit ([`StoreThread::end_group`]) waits. Everything
//! else ([`StoreThread::call`]: reads, durable single steps) runs in submission order, so a
//! read sees every step handed over before it.
//!
//! A step that fails to write rolls back its whole group (see `Store::commit_step`); the steps
//! handed over after it are skipped, and the failure is returned by the group's commit, which
//! stops the driver, exactly as when the driver wrote them itself.

use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::EngineError;
use crate::store::{StepRecord, Store};

type Job = Box<dyn FnOnce(&mut Writer) + Send>;

struct Writer {
    store: Store,
    // The first failure of the open group's handed-over steps, until its commit reports it.
    failed: Option<EngineError>,
}

impl Writer {
    fn write(&mut self, step: &StepRecord) {
        if self.failed.is_none() {
            if let Err(e) = self.store.commit_step(step, false) {
                self.failed = Some(e);
            }
        }
    }
}

pub(crate) struct StoreThread {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    // Steps handed over but not yet sent: they travel in batches, because waking the store
    // thread for every step cost more than writing it.
    unsent: Mutex<Vec<StepRecord>>,
}

/// Steps per hand-over to the store thread.
const BATCH: usize = 128;

/// Polls before blocking: how many times [`recv_spinning`] looks for a message.
const SPINS: u32 = 1 << 12;

/// The next message of `queue`, looked for a few microseconds before blocking. The driver and
/// this thread hand work back and forth once per round (a round's commit waits for its
/// answer); blocking at once put each side to sleep and made the other wake it through the
/// kernel (a futex wake per hand-over), which cost more than the work handed over. A side that
/// is still polling when the message comes needs no wake-up.
fn recv_spinning<T>(queue: &mpsc::Receiver<T>) -> Result<T, mpsc::RecvError> {
    for _ in 0..SPINS {
        match queue.try_recv() {
            Ok(message) => return Ok(message),
            Err(mpsc::TryRecvError::Disconnected) => return Err(mpsc::RecvError),
            Err(mpsc::TryRecvError::Empty) => std::hint::spin_loop(),
        }
    }
    queue.recv()
}

fn stopped() -> EngineError {
    EngineError::store_message("the store thread stopped (a previous store operation panicked)")
}

impl StoreThread {
    pub(crate) fn spawn(store: Store) -> Result<StoreThread, EngineError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("fleetprep-store".into())
            .spawn(move || {
                let mut writer = Writer {
                    store,
                    failed: None,
                };
                // Ends when the engine drops the sender, after draining what was queued.
                while let Ok(job) = recv_spinning(&queue) {
                    job(&mut writer);
                }
            })
            .map_err(|e| EngineError::store("cannot start the store thread", e))?;
        Ok(StoreThread {
            jobs: Mutex::new(Some(jobs)),
            thread: Mutex::new(Some(thread)),
            unsent: Mutex::new(Vec::new()),
        })
    }

    fn unsent(&self) -> std::sync::MutexGuard<'_, Vec<StepRecord>> {
        self.unsent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends the steps handed over so far, as one job.
    fn send_unsent(&self) -> Result<(), EngineError> {
        let steps = std::mem::take(&mut *self.unsent());
        if steps.is_empty() {
            return Ok(());
        }
        self.send_now(Box::new(move |w| {
            for step in steps {
                w.write(&step);
            }
        }))
    }

    fn send_now(&self, job: Job) -> Result<(), EngineError> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())
    }

    /// Sends `job` after the steps handed over before it (order is what makes a read see
    /// every earlier step).
    fn send(&self, job: Job) -> Result<(), EngineError> {
        self.send_unsent()?;
        self.send_now(job)
    }

    fn call_writer<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Writer) -> Result<R, EngineError> + Send + 'static,
    ) -> Result<R, EngineError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Box::new(move |w| {
            let _ = reply.send(f(w));
        }))?;
        recv_spinning(&answer).map_err(|_| stopped())?
    }

    /// Runs `f` on the store after everything handed over before, and returns its result.
    pub(crate) fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, EngineError> + Send + 'static,
    ) -> Result<R, EngineError> {
        self.call_writer(move |w| f(&mut w.store))
    }

    /// Hands a step over without waiting; a failure surfaces at the group's commit.
    pub(crate) fn submit(&self, step: StepRecord) -> Result<(), EngineError> {
        let full = {
            let mut unsent = self.unsent();
            unsent.push(step);
            unsent.len() >= BATCH
        };
        if full {
            self.send_unsent()?;
        }
        Ok(())
    }

    /// Writes a step and, with `durable`, waits until it is committed.
    pub(crate) fn write(&self, step: StepRecord, durable: bool) -> Result<(), EngineError> {
        if durable {
            self.call(move |s| s.commit_step(&step, true))
        } else {
            self.submit(step)
        }
    }

    /// Opens a group commit on the store (no-op when one is open), without waiting; a
    /// failure surfaces at the group's commit.
    pub(crate) fn begin_group(&self) -> Result<(), EngineError> {
        self.send(Box::new(|w| {
            if let Err(e) = w.store.begin_group() {
                w.failed.get_or_insert(e);
            }
        }))
    }

    /// Commits the open group once every handed-over step is written; the first step failure
    /// of the group instead, if there was one (the group is then already rolled back).
    pub(crate) fn end_group(&self) -> Result<(), EngineError> {
        self.call_writer(|w| match w.failed.take() {
            Some(e) => Err(e),
            None => w.store.end_group(),
        })
    }
}

impl Drop for StoreThread {
    fn drop(&mut self) {
        // Closing the queue ends the thread after the queued jobs; joining it closes the
        // database before the engine is gone (a caller may delete the file next).
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}
