//! dend: Den's host daemon. It owns the VMs, their state and who may touch them.
//! Data flows one way: [`api`] -> `den-vms` -> `den-engine` -> VM processes.
//!
//! - [`api`]: the REST API (`/api/v1/`), JSON errors with stable codes;
//! - `den-auth` (crate `auth/`): accounts, per-VM grants, API tokens, sessions, argon2id
//!   passwords, login and connection limits, and the one authorization function;
//! - [`service`]: dend under systemd (readiness) and committing its own updates;
//! - [`server`]: serving it on the local Unix socket (callers from peer credentials) and on
//!   HTTPS (bearer tokens), with [`tls`] holding the certificate;
//! - [`sshgw`]: the SSH gateway into VMs (keys pick the user, the user name picks the VM);
//! - `den-vms` (crate `vms/`): the VM service (tasks, lifecycle, watchers, reconciliation after a
//!   restart, metrics, paths), with hooks for the owners of special VMs;
//! - [`system`]: the business OS: one always-on VM, A/B slots, health checks, updates that
//!   commit or roll back by themselves;
//! - [`apps`]: LPK apps (install, run as microVMs, uninstall), built on `den-vms` and `den-net`;
//! - `den-engine` (crate `engine/`): starting, finding again, stopping VM processes (QEMU over
//!   QMP, den-vmm);
//! - `den-net` (crate `net/`): bridges, TAPs, DHCP/DNS (dnsmasq), NAT, isolation and port
//!   forwards (nftables);
//! - `den-core` (crate `core/`): what a VM, a network, a role and the business OS's state are,
//!   and their validation;
//! - `den-store` (crate `store/`): the transactional state database (VMs, tasks, events);

pub mod api;
pub mod apps;
pub mod config;
pub mod docker;
pub mod server;
pub mod service;
pub mod system;
pub mod tls;
pub mod web;
