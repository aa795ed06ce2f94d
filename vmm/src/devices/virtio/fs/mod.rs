//! virtio-fs (device type 26) whose requests a vhost-user backend serves: Debian's `virtiofsd`.
//! den-vmm keeps the virtio-mmio transport and the configuration space (the tag); the backend
//! maps the guest's RAM (a shared memfd, [`crate::memory::Backing::Shared`]) and works the
//! queues itself. den-vmm tells it where they are and turns its "used buffers" signals into the
//! device's interrupt; the guest's notifications reach it straight from KVM (each queue's kick
//! eventfd is the queue's ioeventfd), or through den-vmm where KVM has none.
//!
//! The vhost-user conversation is the rust-vmm `vhost` crate's [`Frontend`]. Every address den-vmm
//! hands the backend is one the transport checked to lie in guest memory; the backend checks
//! descriptors itself. A backend that stops answering (a guest can wedge virtiofsd's workers,
//! and a ring stop waits for them) is cut off by a [`watchdog::Watchdog`] after [`REPLY_TIMEOUT`]:
//! the device then needs a reset and its folder is gone for this boot, but the vCPU that was
//! waiting runs on and den-vmm still stops.

#[cfg(any(test, feature = "testkit"))]
pub mod fake_backend;
pub mod watchdog;

use super::{types, VirtioDevice};
use crate::event_loop::{Interest, Registrar, Registration};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;
use vhost::vhost_user::message::{VhostUserHeaderFlag, VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

/// Queues: one high-priority queue (FUSE interrupts and forgets) and one request queue. Linux
/// caps a FUSE request at the request queue's size less 4 pages: with 256 entries a 1 MiB write
/// went out as 1008 KiB and 16 KiB, twice the requests (and round trips) QEMU's guests send; with
/// 1024 the cap is FUSE's own 256 pages (1 MiB), as Cloud Hypervisor and QEMU users configure.
const QUEUE_SIZES: [u16; 2] = [256, 1024];
/// How long den-vmm waits for one answer from the backend.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Ring features the backend implements and the guest may use: indirect descriptors, event index.
const RING_FEATURES: u64 = (1 << 28) | (1 << 29);

/// A virtio-fs device in front of a vhost-user backend.
pub struct Fs {
    /// Dropped before the frontend closes the socket it watches.
    watchdog: watchdog::Watchdog,
    frontend: Frontend,
    config: [u8; 40],
    backend_features: u64,
    protocol: bool,
    reply_ack: bool,
    kicks: Vec<EventFd>,
    calls: Vec<EventFd>,
    registrar: Registrar,
    /// The event loop's watch on each running queue's signal, by queue index.
    watches: Vec<Option<Registration>>,
    /// Queues the backend runs now (reset stops them).
    started: Vec<usize>,
    kicked: u64,
    signalled: u64,
    failures: u64,
}

/// The backend could not be reached or refused the start of the conversation.
#[derive(Debug, thiserror::Error)]
#[error("vhost-user backend for virtio-fs tag `{tag}`: {why}")]
pub struct FsError {
    /// The device's tag.
    pub tag: String,
    /// What went wrong.
    pub why: String,
}

impl Fs {
    /// Starts the conversation with the backend on `stream` (a connected vhost-user socket):
    /// takes ownership of it and asks what it offers. `tag` must be valid
    /// ([`crate::config::FsConfig::validate`]); used-buffer signals arrive through `registrar`.
    pub fn new(stream: UnixStream, tag: &str, registrar: Registrar) -> Result<Fs, FsError> {
        Fs::with_timeout(stream, tag, registrar, REPLY_TIMEOUT)
    }

    /// [`Fs::new`] with another limit on the backend's answers.
    pub fn with_timeout(stream: UnixStream, tag: &str, registrar: Registrar, limit: Duration) -> Result<Fs, FsError> {
        let fail = |why: String| FsError { tag: tag.into(), why };
        let watchdog =
            watchdog::Watchdog::start(stream.as_raw_fd(), limit).map_err(|e| fail(format!("watchdog: {e}")))?;
        let mut frontend = Frontend::from_stream(stream, QUEUE_SIZES.len() as u64);
        let _guard = watchdog.arm();
        frontend.set_owner().map_err(|e| fail(format!("SET_OWNER: {e}")))?;
        let backend_features = frontend.get_features().map_err(|e| fail(format!("GET_FEATURES: {e}")))?;
        let protocol = backend_features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0;
        let mut reply_ack = false;
        if protocol {
            // Only what den-vmm uses: replies that say whether a request worked.
            let offered = frontend.get_protocol_features().map_err(|e| fail(format!("GET_PROTOCOL_FEATURES: {e}")))?;
            let wanted = offered & VhostUserProtocolFeatures::REPLY_ACK;
            frontend.set_protocol_features(wanted).map_err(|e| fail(format!("SET_PROTOCOL_FEATURES: {e}")))?;
            reply_ack = !wanted.is_empty();
        }
        let mut config = [0u8; 40];
        config[..tag.len().min(crate::config::MAX_FS_TAG)]
            .copy_from_slice(&tag.as_bytes()[..tag.len().min(crate::config::MAX_FS_TAG)]);
        config[36..].copy_from_slice(&1u32.to_le_bytes()); // num_request_queues
        let eventfd =
            || EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC).map_err(|e| fail(format!("eventfd: {e}")));
        let kicks = QUEUE_SIZES.iter().map(|_| eventfd()).collect::<Result<Vec<_>, _>>()?;
        let calls = QUEUE_SIZES.iter().map(|_| eventfd()).collect::<Result<Vec<_>, _>>()?;
        drop(_guard);
        Ok(Fs {
            watchdog,
            frontend,
            config,
            backend_features,
            protocol,
            reply_ack,
            kicks,
            calls,
            registrar,
            watches: QUEUE_SIZES.iter().map(|_| None).collect(),
            started: Vec::new(),
            kicked: 0,
            signalled: 0,
            failures: 0,
        })
    }

    /// Hands the backend the guest's memory and the ready queues, and starts them.
    fn start(&mut self, features: u64, queues: &[Queue], mem: &GuestMemoryMmap) -> Result<(), String> {
        let mut acked = features & (self.backend_features | super::VIRTIO_F_VERSION_1);
        if self.protocol {
            acked |= VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        }
        self.frontend.set_features(acked).map_err(|e| format!("SET_FEATURES: {e}"))?;
        let regions = mem
            .iter()
            .map(VhostUserMemoryRegionInfo::from_guest_region)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("guest RAM is not shared memory: {e}"))?;
        // The backend says whether it could map the memory (REPLY_ACK), so a failure shows here
        // instead of as a guest whose requests go unanswered.
        if self.reply_ack {
            self.frontend.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        }
        let mapped = self.frontend.set_mem_table(&regions);
        self.frontend.set_hdr_flags(VhostUserHeaderFlag::empty());
        mapped.map_err(|e| format!("SET_MEM_TABLE: {e}"))?;
        let host = |a: u64| mem.get_host_address(GuestAddress(a)).map(|p| p as u64).map_err(|e| e.to_string());
        for (i, q) in queues.iter().enumerate().filter(|(_, q)| q.ready()) {
            let ring = VringConfigData {
                queue_max_size: q.max_size(),
                queue_size: q.size(),
                flags: 0,
                desc_table_addr: host(q.desc_table())?,
                used_ring_addr: host(q.used_ring())?,
                avail_ring_addr: host(q.avail_ring())?,
                log_addr: None,
            };
            let f = &mut self.frontend;
            f.set_vring_num(i, q.size()).map_err(|e| format!("SET_VRING_NUM {i}: {e}"))?;
            f.set_vring_addr(i, &ring).map_err(|e| format!("SET_VRING_ADDR {i}: {e}"))?;
            f.set_vring_base(i, 0).map_err(|e| format!("SET_VRING_BASE {i}: {e}"))?;
            f.set_vring_call(i, &self.calls[i]).map_err(|e| format!("SET_VRING_CALL {i}: {e}"))?;
            f.set_vring_kick(i, &self.kicks[i]).map_err(|e| format!("SET_VRING_KICK {i}: {e}"))?;
            if self.protocol {
                f.set_vring_enable(i, true).map_err(|e| format!("SET_VRING_ENABLE {i}: {e}"))?;
            }
            self.started.push(i);
            let watch = self
                .registrar
                .register(self.calls[i].as_raw_fd(), i as u32, Interest::READ)
                .map_err(|e| format!("watching queue {i}'s signal: {e}"))?;
            self.watches[i] = Some(watch);
        }
        Ok(())
    }

    /// Stops the queues the backend runs (GET_VRING_BASE stops a ring, vhost-user 1.0). The
    /// caller arms the watchdog.
    fn stop(&mut self) {
        self.watches.iter_mut().for_each(|w| *w = None);
        for i in std::mem::take(&mut self.started) {
            if self.protocol && self.frontend.set_vring_enable(i, false).is_err() {
                self.failures += 1;
            }
            if self.frontend.get_vring_base(i).is_err() {
                self.failures += 1;
            }
        }
    }
}

impl VirtioDevice for Fs {
    fn device_type(&self) -> u32 {
        types::FS
    }

    fn queue_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        self.backend_features & RING_FEATURES
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_window(&self.config, offset, data);
    }

    fn activate_queues(&mut self, features: u64, queues: &[Queue], mem: &GuestMemoryMmap) -> Result<(), String> {
        // One deadline for the whole exchange: the transport's lock is held all along.
        let _guard = self.watchdog.arm();
        self.stop();
        let started = self.start(features, queues, mem);
        if started.is_err() {
            self.failures += 1;
            self.stop();
        }
        started
    }

    fn queue_notifiers(&self) -> Vec<EventFd> {
        self.kicks.iter().filter_map(|k| k.try_clone().ok()).collect()
    }

    /// Only notifications KVM did not take (no ioeventfd) arrive here.
    fn process_queue(&mut self, index: usize, _queues: &mut [Queue], _mem: &GuestMemoryMmap) -> bool {
        if let Some(kick) = self.kicks.get(index) {
            self.kicked += 1;
            if kick.write(1).is_err() {
                self.failures += 1;
            }
        }
        false
    }

    fn host_event(&mut self, token: u32, _queues: &mut [Queue], _mem: &GuestMemoryMmap) -> bool {
        let i = token as usize;
        let (Some(call), Some(Some(watch))) = (self.calls.get(i), self.watches.get(i)) else {
            return false;
        };
        // Drained before re-arming, so a signal that lands in between wakes the loop again.
        let fired = call.read().is_ok();
        let _ = watch.set_interest(Interest::READ);
        if fired {
            self.signalled += 1;
        }
        fired
    }

    fn reset(&mut self) {
        let _guard = self.watchdog.arm();
        self.stop();
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("kicks", self.kicked),
            ("signals", self.signalled),
            ("backend_failures", self.failures),
            ("backend_cut_off", u64::from(self.watchdog.cut())),
        ]
    }
}

#[cfg(test)]
mod tests;
