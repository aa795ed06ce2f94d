//! One-shot console tickets. A browser cannot put an `Authorization` header on a WebSocket, so
//! the web console first asks for a ticket (an authenticated `POST`), then opens the console's
//! WebSocket with `?ticket=...`. A ticket is bound to its user and to one VM, lives
//! [`TICKET_TTL`], and is gone after its first use, so a leaked URL is worth nothing.

use super::{token, Caller};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a ticket may wait for its WebSocket.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// At most this many unused tickets are kept; the oldest go first.
const MAX_OUTSTANDING: usize = 1024;

struct Ticket {
    caller: Caller,
    vm_id: String,
    issued: Instant,
}

/// The outstanding tickets.
#[derive(Default)]
pub struct Tickets {
    open: Mutex<HashMap<String, Ticket>>,
}

impl Tickets {
    /// A new ticket for `caller` on the VM with id `vm_id`.
    pub fn issue(&self, caller: &Caller, vm_id: &str) -> Result<String, String> {
        self.issue_at(caller, vm_id, Instant::now())
    }

    fn issue_at(&self, caller: &Caller, vm_id: &str, now: Instant) -> Result<String, String> {
        let mut b = [0u8; 24];
        token::getrandom(&mut b)?;
        let ticket = hex::encode(b);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, t| now.duration_since(t.issued) < TICKET_TTL);
        if open.len() >= MAX_OUTSTANDING {
            if let Some(oldest) = open.iter().min_by_key(|(_, t)| t.issued).map(|(k, _)| k.clone()) {
                open.remove(&oldest);
            }
        }
        open.insert(ticket.clone(), Ticket { caller: caller.clone(), vm_id: vm_id.into(), issued: now });
        Ok(ticket)
    }

    /// Uses up `ticket`: the caller it was issued to, when it is valid for the VM `vm_id`. A
    /// ticket presented for another VM is used up all the same.
    pub fn redeem(&self, ticket: &str, vm_id: &str) -> Option<Caller> {
        self.redeem_at(ticket, vm_id, Instant::now())
    }

    fn redeem_at(&self, ticket: &str, vm_id: &str, now: Instant) -> Option<Caller> {
        let t = self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(ticket)?;
        (t.vm_id == vm_id && now.duration_since(t.issued) < TICKET_TTL).then_some(t.caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_one_shot_bound_and_short_lived() {
        let tickets = Tickets::default();
        let alice = Caller::local_admin("alice");
        let t0 = Instant::now();
        let t = tickets.issue_at(&alice, "vm-1", t0).unwrap();
        assert_eq!(t.len(), 48);
        assert_eq!(tickets.redeem_at(&t, "vm-1", t0).map(|c| c.user), Some("alice".into()));
        assert!(tickets.redeem_at(&t, "vm-1", t0).is_none(), "a second use fails");

        let t = tickets.issue_at(&alice, "vm-1", t0).unwrap();
        assert!(tickets.redeem_at(&t, "vm-2", t0).is_none(), "bound to its VM");
        assert!(tickets.redeem_at(&t, "vm-1", t0).is_none(), "and used up by the wrong try");

        let t = tickets.issue_at(&alice, "vm-1", t0).unwrap();
        assert!(tickets.redeem_at(&t, "vm-1", t0 + TICKET_TTL).is_none(), "expired");
        assert!(tickets.redeem_at("nonsense", "vm-1", t0).is_none());
    }

    #[test]
    fn outstanding_tickets_are_bounded() {
        let tickets = Tickets::default();
        let c = Caller::local_admin("alice");
        let t0 = Instant::now();
        let first = tickets.issue_at(&c, "vm", t0).unwrap();
        for i in 0..MAX_OUTSTANDING {
            tickets.issue_at(&c, "vm", t0 + Duration::from_millis(1 + i as u64)).unwrap();
        }
        assert!(tickets.open.lock().unwrap().len() <= MAX_OUTSTANDING);
        assert!(tickets.redeem_at(&first, "vm", t0).is_none(), "the oldest went first");
    }
}
