//! The events log: every lifecycle change with the user who caused it. It is also the audit log,
//! so it is kept (never rotated by dend).

use super::{now, Store, StoreError};
use den_core::event::Event;
use rusqlite::params;

/// Longest detail kept with an event: details may quote what a guest said, and the log is kept.
pub(crate) const MAX_DETAIL: usize = 4096;

/// `detail`, cut to [`MAX_DETAIL`] bytes (on a character boundary) with a mark when cut.
fn bounded(detail: &str) -> std::borrow::Cow<'_, str> {
    if detail.len() <= MAX_DETAIL {
        return detail.into();
    }
    let mut end = MAX_DETAIL - 3;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &detail[..end]).into()
}

impl Store {
    /// Appends an event (its detail cut to [`MAX_DETAIL`] bytes); returns it with its sequence
    /// number.
    pub fn add_event(&self, user: &str, kind: &str, target: &str, detail: &str) -> Result<Event, StoreError> {
        let detail = &*bounded(detail);
        let time = now();
        let conn = self.lock();
        conn.execute(
            "INSERT INTO events (time, user, kind, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![time, user, kind, target, detail],
        )?;
        let seq = conn.last_insert_rowid();
        Ok(Event { seq, time, user: user.into(), kind: kind.into(), target: target.into(), detail: detail.into() })
    }

    /// Events after `after_seq`, oldest first, at most `limit`.
    pub fn events(&self, after_seq: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, time, user, kind, target, detail FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let v = stmt.query_map(params![after_seq, limit], row)?.collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// The newest `n` events, oldest first.
    pub fn recent_events(&self, n: u32) -> Result<Vec<Event>, StoreError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare_cached("SELECT seq, time, user, kind, target, detail FROM events ORDER BY seq DESC LIMIT ?1")?;
        let mut v: Vec<Event> = stmt.query_map(params![n], row)?.collect::<Result<_, _>>()?;
        v.reverse();
        Ok(v)
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        seq: r.get(0)?,
        time: r.get(1)?,
        user: r.get(2)?,
        kind: r.get(3)?,
        target: r.get(4)?,
        detail: r.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_bounded() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(MAX_DETAIL);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_DETAIL && cut.ends_with('…'));
    }

    #[test]
    fn events_are_ordered_and_paged() {
        let s = Store::memory().unwrap();
        for i in 0..5 {
            s.add_event("root", "vm.started", &format!("vm{i}"), "").unwrap();
        }
        let all = s.events(0, 100).unwrap();
        assert_eq!(all.len(), 5);
        let later = s.events(all[2].seq, 100).unwrap();
        assert_eq!(later.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["vm3", "vm4"]);
        let tail = s.recent_events(2).unwrap();
        assert_eq!(tail, later, "the newest, oldest first");
    }
}
