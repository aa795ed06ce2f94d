//! dend: Den's host daemon, composed from the crates that own each part (see
//! `docs/architecture.md`). Data flows one way: clients -> [`api`] (and the SSH gateway, the
//! Docker socket, the app ingress) -> the services -> `den-vms` -> `den-engine` -> VM processes.
//!
//! What is left here is the front and the wiring:
//! - [`api`]: the REST API (`/api/v1/`), JSON errors with stable codes, the permission table and
//!   the OpenAPI document, over [`api::Services`] (the VM service and the parts beside it);
//! - [`web`]: the web console's files, embedded at build time;
//! - [`server`]: serving the API on the local Unix socket (callers from peer credentials) and
//!   HTTPS (bearer tokens, sessions), with the app ingress in front, [`tls`] holding the
//!   certificate;
//! - [`config`]: den.toml, composed from each part's own section;
//! - [`service`]: dend under systemd (readiness) and committing its own updates;
//! - `main.rs`: start-up order (reconcile, the business OS first, autostart) and shutdown.
//!
//! The parts: `den-vms` (the VM service), `den-system` (the business OS), `den-lpk-host` (LPK
//! apps), `den-dockerd-bridge` (the Docker socket), `den-sshgw` (the SSH gateway), `den-auth`,
//! `den-net`, `den-store`, `den-engine`, `den-core`.

pub mod config;
pub mod service;
pub mod tls;
