//! Running operations as tasks: a record with a log and a final status, executed in the
//! background; the API answers 202 with the task's location at once.

use super::{new_id, Den};
use crate::store::TaskStatus;
use std::future::Future;
use std::sync::Arc;

/// A running task's log.
#[derive(Clone)]
pub struct TaskHandle {
    den: Arc<Den>,
    /// The task's id.
    pub id: String,
}

impl TaskHandle {
    /// Appends a line to the task's log.
    pub fn log(&self, line: impl AsRef<str>) {
        tracing::info!(task = %self.id, "{}", line.as_ref());
        if let Err(e) = self.den.store.task_log(&self.id, line.as_ref()) {
            tracing::error!(task = %self.id, %e, "cannot write the task log");
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
        let handle = TaskHandle { den: self.clone(), id: id.clone() };
        let den = self.clone();
        let task_id = id.clone();
        tokio::spawn(async move {
            let result = work(handle).await;
            let (status, err) = match &result {
                Ok(()) => (TaskStatus::Ok, None),
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
