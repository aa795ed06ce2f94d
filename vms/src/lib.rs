//! The VM service: creates, starts, stops and deletes VMs as tasks, watches their processes,
//! applies restart policies and reconciles everything a crashed dend left behind. Data flows
//! API -> here -> engines -> VM processes.

mod autostart;
mod disks;
mod firstboot;
pub mod guest_http;
mod guest_sshd;
mod isos;
mod keeper;
mod lifecycle;
pub mod metrics;
pub mod net_watch;
pub mod paths;
mod reconcile;
mod tasks;

pub use disks::{copy_disk, make_data_disk, DATA_DISK};
pub use isos::Iso;
pub use keeper::VmKeeper;
pub use lifecycle::engine_for;
pub use lifecycle::BootFiles;
pub use tasks::TaskHandle;

use crate::paths::Paths;
use den_core::event::Event;
use den_core::vm::Limits;
use den_core::FieldError;
use den_net::{AllocError, Net, NetError};
use den_store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Service errors, mapped to API errors by the API layer.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A request field is invalid.
    #[error("{}: {}", .0.field, .0.message)]
    Invalid(FieldError),
    /// The state database failed or a record is missing/duplicate.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The VM is not in a state that allows this.
    #[error("VM `{name}` is {state}: {hint}")]
    Conflict {
        /// The VM.
        name: String,
        /// Its state.
        state: &'static str,
        /// What to do.
        hint: &'static str,
    },
    /// A task cannot be cancelled (ended, or of a kind that cannot be undone).
    #[error("task {id} cannot be cancelled: {why}")]
    NotCancellable {
        /// The task.
        id: String,
        /// Why.
        why: &'static str,
    },
    /// The image store failed.
    #[error("image store: {0}")]
    Images(String),
    /// The engine failed.
    #[error("{0}")]
    Engine(String),
    /// Host networking failed.
    #[error("network: {0}")]
    Net(#[from] NetError),
    /// A keeper of special VMs cannot be registered (another keeps the same VMs).
    #[error("{0}")]
    Keeper(String),
}

impl From<AllocError> for VmError {
    fn from(e: AllocError) -> VmError {
        match e {
            AllocError::Field(f) => VmError::Invalid(f),
            AllocError::Net(NetError::Store(s)) => VmError::Store(s),
            AllocError::Net(n) => VmError::Net(n),
        }
    }
}

/// The service, shared by the API handlers and the background tasks.
pub struct Den {
    /// State database.
    pub store: Store,
    /// Directories.
    pub paths: Paths,
    /// Host limits for VM specs.
    pub limits: Limits,
    /// Networking.
    pub net: Net,
    /// Usage graphs of the host and the VMs.
    pub metrics: crate::metrics::Metrics,
    /// The SSH gateway's public key (set at start), installed in guests for their sshd.
    pub gateway_key: std::sync::OnceLock<String>,
    /// Owners of special VMs (the business OS's supervisor), registered at start.
    keepers: Mutex<Vec<Arc<dyn VmKeeper>>>,
    events: broadcast::Sender<Event>,
    /// VMs whose process is being stopped or replaced on purpose (the watcher must not treat
    /// the exit as a crash).
    expected_exit: Mutex<HashMap<String, u64>>,
    /// Cancellation signals of running cancellable tasks, by task id.
    cancels: Mutex<HashMap<String, tokio::sync::watch::Sender<bool>>>,
    /// VMs whose disks are being copied or resized (by id): lifecycle operations wait.
    busy: Mutex<std::collections::HashSet<String>>,
}

impl Den {
    /// A service over `store` and `paths`; the implicit `default` network uses `default_subnet`.
    pub fn new(store: Store, paths: Paths, limits: Limits, default_subnet: &str) -> Arc<Den> {
        let (events, _) = broadcast::channel(1024);
        let net = Net::new(&paths.run, default_subnet);
        Arc::new(Den {
            store,
            paths,
            limits,
            net,
            metrics: Default::default(),
            gateway_key: Default::default(),
            keepers: Mutex::default(),
            events,
            expected_exit: Mutex::new(HashMap::new()),
            busy: Mutex::default(),
            cancels: Mutex::default(),
        })
    }

    /// Records an event and tells subscribers.
    pub fn event(&self, user: &str, kind: &str, target: &str, detail: &str) {
        match self.store.add_event(user, kind, target, detail) {
            Ok(e) => {
                let _ = self.events.send(e);
            }
            Err(e) => tracing::error!(%e, kind, target, "cannot record an event"),
        }
    }

    /// Live events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Marks a VM busy with a disk operation; a conflict when it already is.
    fn claim(&self, vm: &den_core::vm::VmRecord) -> Result<(), VmError> {
        if self.busy.lock().unwrap_or_else(|p| p.into_inner()).insert(vm.id.clone()) {
            return Ok(());
        }
        Err(VmError::Conflict { name: vm.spec.name.clone(), state: "busy", hint: BUSY_HINT })
    }

    /// Ends [`Den::claim`].
    fn release(&self, id: &str) {
        self.busy.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// A conflict when a disk operation holds the VM.
    fn not_busy(&self, vm: &den_core::vm::VmRecord) -> Result<(), VmError> {
        if self.busy.lock().unwrap_or_else(|p| p.into_inner()).contains(&vm.id) {
            return Err(VmError::Conflict { name: vm.spec.name.clone(), state: "busy", hint: BUSY_HINT });
        }
        Ok(())
    }

    /// The image store, opened.
    pub fn images(&self) -> Result<den_images::Store, VmError> {
        den_images::Store::open(&self.paths.images).map_err(|e| VmError::Images(e.to_string()))
    }
}

/// A request field error.
fn invalid(field: &'static str, message: String) -> VmError {
    VmError::Invalid(FieldError { field, message })
}

/// The VM is in the wrong state for this; `hint` says what to do.
fn conflict(vm: &den_core::vm::VmRecord, hint: &'static str) -> VmError {
    VmError::Conflict { name: vm.spec.name.clone(), state: vm.state.as_str(), hint }
}

const BUSY_HINT: &str = "a snapshot, rollback, clone or resize is in progress; try again when its task ends";

/// Longest text from a guest (its stderr, a key line) put into an error, a task log or an
/// event: the tail, which is where errors are.
pub const GUEST_TEXT: usize = 4096;

/// `bytes` a guest sent, as text for a message: at most [`GUEST_TEXT`] bytes (the end), trimmed.
pub fn guest_text(bytes: &[u8]) -> String {
    let tail = &bytes[bytes.len().saturating_sub(GUEST_TEXT)..];
    let text = String::from_utf8_lossy(tail).trim().to_string();
    if tail.len() < bytes.len() {
        format!("…{text}")
    } else {
        text
    }
}
