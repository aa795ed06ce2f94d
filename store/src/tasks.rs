//! Tasks: every operation that can take more than a moment. A task has an owner, a log and a
//! final status; tasks found running when dend starts were cut short by a crash and are marked
//! failed by [`Store::fail_interrupted_tasks`].

use super::{now, Store, StoreError};
use den_core::task::{Task, TaskStatus};
use rusqlite::{params, OptionalExtension};

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Task> {
    let status: String = r.get(4)?;
    Ok(Task {
        id: r.get(0)?,
        kind: r.get(1)?,
        target: r.get(2)?,
        owner: r.get(3)?,
        status: match status.as_str() {
            "ok" => TaskStatus::Ok,
            "failed" => TaskStatus::Failed,
            "cancelled" => TaskStatus::Cancelled,
            _ => TaskStatus::Running,
        },
        log: r.get(5)?,
        error: r.get(6)?,
        created: r.get(7)?,
        finished: r.get(8)?,
        progress: r.get::<_, i64>(9)?.clamp(0, 100) as u8,
    })
}

const COLUMNS: &str = "id, kind, target, owner, status, log, error, created, finished, progress";

impl Store {
    /// Records a new running task.
    pub fn insert_task(&self, id: &str, kind: &str, target: &str, owner: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO tasks (id, kind, target, owner, status, created) VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
            params![id, kind, target, owner, now()],
        )?;
        Ok(())
    }

    /// Appends a log line.
    pub fn task_log(&self, id: &str, line: &str) -> Result<(), StoreError> {
        self.lock().execute("UPDATE tasks SET log = log || ?2 || char(10) WHERE id = ?1", params![id, line])?;
        Ok(())
    }

    /// Records how far a task got (percent).
    pub fn task_progress(&self, id: &str, percent: u8) -> Result<(), StoreError> {
        self.lock().execute("UPDATE tasks SET progress = ?2 WHERE id = ?1", params![id, percent.min(100)])?;
        Ok(())
    }

    /// Ends a task (progress 100 when it succeeded).
    pub fn finish_task(&self, id: &str, status: TaskStatus, error: Option<&str>) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE tasks SET status = ?2, error = ?3, finished = ?4,
             progress = CASE WHEN ?2 = 'ok' THEN 100 ELSE progress END WHERE id = ?1",
            params![id, status.as_str(), error, now()],
        )?;
        Ok(())
    }

    /// A task by id.
    pub fn task(&self, id: &str) -> Result<Task, StoreError> {
        self.lock()
            .query_row(&format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1"), [id], row)
            .optional()?
            .ok_or_else(|| StoreError::NotFound { kind: "task", name: id.into() })
    }

    /// The newest `limit` tasks, newest first.
    pub fn tasks(&self, limit: u32) -> Result<Vec<Task>, StoreError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM tasks ORDER BY created DESC, rowid DESC LIMIT ?1"))?;
        let tasks = stmt.query_map([limit], row)?.collect::<Result<_, _>>()?;
        Ok(tasks)
    }

    /// Marks tasks left running by a previous dend as failed; returns them.
    pub fn fail_interrupted_tasks(&self) -> Result<Vec<Task>, StoreError> {
        let running: Vec<Task> = {
            let conn = self.lock();
            let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM tasks WHERE status = 'running'"))?;
            let v = stmt.query_map([], row)?.collect::<Result<_, _>>()?;
            v
        };
        for t in &running {
            self.task_log(&t.id, "dend stopped while this task ran; the next start reconciled its target")?;
            self.finish_task(&t.id, TaskStatus::Failed, Some("interrupted by a dend restart"))?;
        }
        Ok(running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_and_interrupted_tasks() {
        let s = Store::memory().unwrap();
        s.insert_task("t1", "vm.create", "a", "root").unwrap();
        s.task_log("t1", "copying disk").unwrap();
        s.task_log("t1", "done").unwrap();
        s.task_progress("t1", 40).unwrap();
        assert_eq!(s.task("t1").unwrap().progress, 40);
        s.finish_task("t1", TaskStatus::Ok, None).unwrap();
        assert_eq!(s.task("t1").unwrap().progress, 100);
        s.insert_task("t2", "vm.start", "a", "root").unwrap();
        s.task_progress("t2", 30).unwrap();
        let t = s.task("t1").unwrap();
        assert_eq!((t.status, t.log.as_str()), (TaskStatus::Ok, "copying disk\ndone\n"));
        let cut = s.fail_interrupted_tasks().unwrap();
        assert_eq!(cut.len(), 1);
        let t2 = s.task("t2").unwrap();
        assert_eq!((t2.status, t2.progress), (TaskStatus::Failed, 30), "a failed task keeps its progress");
        assert!(t2.error.unwrap().contains("restart"));
        assert_eq!(s.tasks(10).unwrap().len(), 2);
        assert!(s.task("nope").is_err());
    }
}
