//! Running operations as tasks: a record with a log and a final status, executed in the
//! background; the API answers 202 with the task's location at once. Tasks whose work can be
//! undone (create, clone, snapshot) can be cancelled: their long steps run through
//! [`TaskHandle::cancellable`], and a cancelled step fails into the task's own cleanup.

use super::Den;
use den_core::new_id;
use den_core::task::TaskStatus;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;

/// Task kinds that may be cancelled.
pub(crate) const CANCELLABLE: [&str; 3] = ["vm.create", "vm.clone", "vm.snapshot"];

/// The error a cancelled step returns.
pub(crate) const CANCELLED: &str = "cancelled on request";

/// A running task's log and cancellation signal.
#[derive(Clone)]
pub struct TaskHandle {
    den: Arc<Den>,
    /// The task's id.
    pub id: String,
    cancel: watch::Receiver<bool>,
}

impl TaskHandle {
    /// Appends a line to the task's log.
    pub fn log(&self, line: impl AsRef<str>) {
        tracing::info!(task = %self.id, "{}", line.as_ref());
        if let Err(e) = self.den.store.task_log(&self.id, line.as_ref()) {
            tracing::error!(task = %self.id, %e, "cannot write the task log");
        }
    }

    /// Records how far the task got (percent).
    pub fn progress(&self, percent: u8) {
        if let Err(e) = self.den.store.task_progress(&self.id, percent) {
            tracing::warn!(task = %self.id, %e, "cannot record progress");
        }
    }

    /// Runs `step` unless the task is cancelled first; a cancelled step is dropped (child
    /// processes it started with `kill_on_drop` die with it) and returns [`CANCELLED`].
    pub async fn cancellable<T>(&self, step: impl Future<Output = Result<T, String>>) -> Result<T, String> {
        let mut cancel = self.cancel.clone();
        tokio::select! {
            r = step => r,
            _ = cancel.wait_for(|c| *c) => {
                self.log("cancelling");
                Err(CANCELLED.into())
            }
        }
    }
}

impl Den {
    /// Starts `work` as a task of `kind` on `target` for `user`; returns the task id.
    pub fn spawn_task<F, Fut>(
        self: &Arc<Self>,
        kind: &str,
        target: &str,
        user: &str,
        work: F,
    ) -> Result<String, super::VmError>
    where
        F: FnOnce(TaskHandle) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let id = new_id();
        self.store.insert_task(&id, kind, target, user)?;
        let (tx, rx) = watch::channel(false);
        if CANCELLABLE.contains(&kind) {
            self.cancels.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), tx);
        }
        let handle = TaskHandle { den: self.clone(), id: id.clone(), cancel: rx };
        let den = self.clone();
        let task_id = id.clone();
        tokio::spawn(async move {
            let result = work(handle).await;
            den.cancels.lock().unwrap_or_else(|p| p.into_inner()).remove(&task_id);
            let (status, err) = match &result {
                Ok(()) => (TaskStatus::Ok, None),
                Err(e) if e == CANCELLED => (TaskStatus::Cancelled, Some(e.as_str())),
                Err(e) => (TaskStatus::Failed, Some(e.as_str())),
            };
            if let Some(e) = err {
                let _ = den.store.task_log(&task_id, &format!("failed: {e}"));
            }
            if let Err(e) = den.store.finish_task(&task_id, status, err) {
                tracing::error!(task = %task_id, %e, "cannot finish the task");
            }
        });
        Ok(id)
    }
}

impl Den {
    /// Asks a running task to stop. Only [`CANCELLABLE`] kinds can; the task ends as
    /// `cancelled` once its current step has been undone.
    pub fn cancel_task(&self, id: &str, user: &str) -> Result<(), super::VmError> {
        let task = self.store.task(id)?;
        let conflict = |why: &'static str| super::VmError::NotCancellable { id: id.into(), why };
        if task.status != TaskStatus::Running {
            return Err(conflict("it has already ended"));
        }
        let sender = self.cancels.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned();
        let Some(tx) = sender else {
            return Err(conflict("only create, clone and snapshot tasks can be cancelled"));
        };
        let _ = tx.send(true);
        self.event(user, "task.cancel_requested", &task.target, &format!("{} {id}", task.kind));
        Ok(())
    }

    /// Waits until task `id` ends, at most `limit`: `Ok` when it succeeded, else why not.
    pub async fn wait_task(&self, id: &str, limit: std::time::Duration) -> Result<(), String> {
        let start = std::time::Instant::now();
        loop {
            let task = self.store.task(id).map_err(|e| e.to_string())?;
            match task.status {
                TaskStatus::Ok => return Ok(()),
                TaskStatus::Failed | TaskStatus::Cancelled => {
                    let why = task.error.unwrap_or_else(|| task.status.as_str().to_string());
                    return Err(format!("{} {} failed: {why}", task.kind, task.target));
                }
                TaskStatus::Running if start.elapsed() > limit => {
                    return Err(format!("{} {} did not finish within {limit:?}", task.kind, task.target));
                }
                TaskStatus::Running => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cancellable_tasks_end_cancelled_and_others_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let paths = crate::paths::Paths::new(dir.path(), &dir.path().join("run"), &dir.path().join("images"));
        let limits = den_core::vm::Limits { max_cpus: 2, max_memory_mib: 1024 };
        let den = Den::new(den_store::Store::memory().unwrap(), paths, limits, "10.87.0.0/24");
        let forever = |t: TaskHandle| async move { t.cancellable(std::future::pending::<Result<(), String>>()).await };
        let id = den.spawn_task("vm.create", "x", "root", forever).unwrap();
        let other = den.spawn_task("vm.start", "x", "root", forever).unwrap();
        assert!(matches!(den.cancel_task(&other, "root"), Err(super::super::VmError::NotCancellable { .. })));
        den.cancel_task(&id, "root").unwrap();
        for _ in 0..100 {
            if den.store.task(&id).unwrap().status != TaskStatus::Running {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let t = den.store.task(&id).unwrap();
        assert_eq!(t.status, TaskStatus::Cancelled, "{t:?}");
        assert!(
            matches!(den.cancel_task(&id, "root"), Err(super::super::VmError::NotCancellable { .. })),
            "already ended"
        );
    }
}
