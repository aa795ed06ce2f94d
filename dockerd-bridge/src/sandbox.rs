//! The sandbox VM that runs dockerd: made from the `docker` image on first use, started when a
//! request needs it, and ready once dockerd answers `/_ping` on its socket inside the guest.
//! Requests wait for it; only one of them creates or starts it.

use crate::DockerConfig;
use den_agent_proto::AgentClient;
use den_core::vm::{Share, VmRecord, VmSpec, VmState};
use den_store::StoreError;
use den_vms::{Den, VmError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// dockerd's socket inside the guest.
pub const GUEST_SOCKET: &str = "/run/docker.sock";
/// Who Den's own actions on the sandbox are recorded as.
const DEND: &str = "dend";
/// How long creating (copying the root disk) may take.
const CREATE_WAIT: Duration = Duration::from_secs(600);
/// How long from start until dockerd answers.
const READY_WAIT: Duration = Duration::from_secs(300);

/// The sandbox VM.
pub struct Sandbox {
    cfg: DockerConfig,
    lock: tokio::sync::Mutex<()>,
}

impl Sandbox {
    /// The sandbox `cfg` describes.
    pub fn new(cfg: DockerConfig) -> Sandbox {
        Sandbox { cfg, lock: Default::default() }
    }

    /// The VM's name.
    pub fn name(&self) -> &str {
        &self.cfg.vm
    }

    fn spec(&self) -> Result<VmSpec, String> {
        serde_json::from_value(serde_json::json!({
            "name": self.cfg.vm,
            "image": self.cfg.image,
            "kind": "app",
            "cpus": self.cfg.cpus,
            "memory_mib": self.cfg.memory_mib,
            "data_disk_mib": self.cfg.data_disk_mib,
            "restart": "on-failure",
            "nics": [{"network": "default"}],
            "shares": self.shares(),
        }))
        .map_err(|e| e.to_string())
    }

    /// The configured shared folders, each at the same path in the sandbox.
    fn shares(&self) -> Vec<Share> {
        self.cfg.share.iter().map(|p| Share { host: p.clone(), guest: None, readonly: false }).collect()
    }

    /// A stopped sandbox made under another `share` setting gets the current one before it starts.
    fn follow_shares(&self, den: &Arc<Den>, vm: &VmRecord) -> Result<(), String> {
        if vm.spec.shares == self.shares() {
            return Ok(());
        }
        let mut vm = vm.clone();
        vm.spec.shares = self.shares();
        vm.spec.validate(den.limits).map_err(|e| format!("[docker] share: {}", e.message))?;
        tracing::info!(vm = %vm.spec.name, shares = ?self.cfg.share, "the Docker sandbox's shared folders follow den.toml");
        den.store.set_vm_spec(&vm).map_err(|e| e.to_string())
    }

    /// The agent of the running sandbox, with dockerd answering: made and started as needed.
    pub async fn ready(&self, den: &Arc<Den>) -> Result<AgentClient, String> {
        let _one = self.lock.lock().await;
        let start = Instant::now();
        loop {
            let vm = match den.store.vm(&self.cfg.vm) {
                Ok(vm) => vm,
                Err(StoreError::NotFound { .. }) => {
                    let (task, _) = den.create(self.spec()?, DEND).map_err(|e| self.why(e))?;
                    den.wait_task(&task, CREATE_WAIT).await?;
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            };
            if vm.owner != DEND {
                return Err(format!(
                    "a VM named `{}` exists but Den did not make it; rename it, or set another name with `vm` under `[docker]`",
                    self.cfg.vm
                ));
            }
            match vm.state {
                // A changed `share` setting applies at the sandbox's next start.
                VmState::Running => return self.dockerd(den, &vm).await,
                VmState::Stopped | VmState::Crashed => {
                    self.follow_shares(den, &vm)?;
                    let task = den.start(&self.cfg.vm, DEND).map_err(|e| self.why(e))?;
                    den.wait_task(&task, READY_WAIT).await?;
                }
                VmState::Paused => {
                    den.set_paused(&self.cfg.vm, false, DEND).await.map_err(|e| self.why(e))?;
                }
                VmState::Creating | VmState::Starting | VmState::Stopping => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                VmState::Deleting => return Err(format!("the sandbox VM `{}` is being deleted", self.cfg.vm)),
            }
            if start.elapsed() > CREATE_WAIT + READY_WAIT {
                return Err(format!("the sandbox VM `{}` did not come up", self.cfg.vm));
            }
        }
    }

    /// Stops the sandbox when it runs and `still_idle()` holds once no request can be starting
    /// it: whether it stopped.
    pub async fn stop_if_idle(&self, den: &Arc<Den>, still_idle: impl Fn() -> bool) -> Result<bool, String> {
        let _one = self.lock.lock().await;
        let running = den.store.vm(&self.cfg.vm).is_ok_and(|v| v.state == VmState::Running);
        if !running || !still_idle() {
            return Ok(false);
        }
        let task = den.stop(&self.cfg.vm, DEND).map_err(|e| e.to_string())?;
        den.wait_task(&task, READY_WAIT).await?;
        Ok(true)
    }

    fn why(&self, e: VmError) -> String {
        match e {
            VmError::Invalid(f) if f.field == "image" => format!(
                "the Docker sandbox needs the `{}` image: build it with `den image build {}`",
                self.cfg.image, self.cfg.image
            ),
            e => e.to_string(),
        }
    }

    /// Waits for the agent, then for dockerd's `/_ping`.
    async fn dockerd(&self, den: &Arc<Den>, vm: &VmRecord) -> Result<AgentClient, String> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < READY_WAIT {
            match den.agent(vm).await {
                Ok(agent) => match ping(&agent).await {
                    Ok(()) => return Ok(agent),
                    Err(e) => last = e,
                },
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(format!("dockerd in the sandbox VM `{}` did not answer: {last}", self.cfg.vm))
    }
}

/// `GET /_ping` to dockerd through the agent: `Ok` on 200.
pub async fn ping(agent: &AgentClient) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(5), super::upstream::get(agent, "/_ping")).await {
        Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
        Ok(Ok(resp)) => Err(format!("dockerd answered {}", resp.status())),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("dockerd did not answer /_ping within 5 s".into()),
    }
}
