//! dend on den-vmm in the KVM lab (see `den_tests::lab` and `den_tests::lab_dev`): inside the
//! outer guest, whose `/dev/kvm` has hardware-virtualization semantics, one static dend with
//! `engine: auto` runs, one after the other:
//! - [`vms`]: a VM from memory (agent, `kill -9` of dend and adoption, the jail) and one with a
//!   shared folder;
//! - [`dev`]: the `dev` image (systemd, sshd) reached with the OpenSSH client through the gateway;
//! - [`app`]: an LPK app with two services, answering through the HTTPS ingress;
//! - [`docker`]: the Docker sandbox through the real `docker` CLI, with a shared folder.
//!
//! Every VM runs on den-vmm, jailed. They share one lab, one lab disk and one dend because each
//! lab costs an outer boot under TCG and copies of dend's programs: one lab for the four saves CI
//! minutes. A wedged outer guest reruns them all in a fresh lab ([`Lab::run_with_retry_on`]).

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod app;
mod dev;
mod docker;
mod vms;

use den_images::{ImageRecord, Store};
use den_tests::images;
use den_tests::lab::{ExecOutput, Lab, LabOptions};
use den_tests::lab_dev::{dend, put_dend, DevLab};

/// The outer guest's memory: the largest VM (the Docker sandbox's 1536 MiB), dend and the lab
/// disk's page cache. The scenarios remove their VMs before the next one starts.
const OUTER_MEMORY_MIB: u32 = 3584;

/// dend's configuration in the lab: apps on `box.test`, a Docker sandbox with one shared folder.
const CONFIG: &str = r#"[docker]
memory_mib = 1536
share = ["/lab/disk/shared"]
[apps]
box_domain = "box.test"
box_name = "den1"
"#;

/// dend's arguments: the HTTPS listener (the app ingress) and the SSH gateway on loopback.
const DEND_ARGS: &str = "--config /lab/disk/den.toml --listen 127.0.0.1:8006 --ssh-listen 127.0.0.1:2222";

/// A lab script: the prelude that starts dend unless it runs, then `body`.
fn script(body: &str) -> String {
    format!("{}{body}", dend(DEND_ARGS))
}

/// `labvm`: the base image's kernel, initramfs and vmlinux, no root disk (the guest runs from
/// memory), and a console shell.
fn labvm(base: &ImageRecord) -> ImageRecord {
    let boot = ["kernel", "initramfs", "vmlinux"];
    ImageRecord {
        name: "labvm".into(),
        artifacts: base
            .artifacts
            .iter()
            .filter(|(k, _)| boot.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        cmdline: "console=ttyS0 quiet panic=-1 den.console=shell".into(),
        ..base.clone()
    }
}

/// The lab disk's folder: a store with `labvm`, `dev`, `app` and `docker`, dend's config, and each
/// scenario's files.
fn lab_folder(from: &Store) -> DevLab {
    let base = images::build_builtin(from, "base");
    let app = images::build_builtin(from, "app");
    let docker = images::build_builtin(from, "docker");
    let lab = DevLab::with_images(from, &[&labvm(&base), &app, &docker]);
    std::fs::write(lab.folder().join("den.toml"), CONFIG).unwrap();
    app::files(lab.folder());
    docker::files(lab.folder());
    lab
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_dend_runs_every_kind_of_vm_on_den_vmm() {
    let dev = lab_folder(&images::shared_store());
    let store = Store::open(&dev.folder().join("store")).unwrap();
    // The store has labvm's ELF vmlinux: den-vmm boots it (checked in `vms`).
    assert!(store.image("labvm").unwrap().unwrap().artifacts.contains_key("vmlinux"));
    let opts = LabOptions { memory_mib: OUTER_MEMORY_MIB, ..dev.options() };
    Lab::run_with_retry_on(&opts, |lab| scenarios(lab, &dev)).await;
}

async fn scenarios(lab: Lab, dev: &DevLab) -> Result<(), String> {
    let started = std::time::Instant::now();
    put_dend(&lab, &["/usr/bin/ssh", "/usr/sbin/debugfs", "/usr/bin/curl"]).await;
    lab.put(&dev.alice, "/lab/alice", 0o600).await;
    lab.put(&dev.alice.with_extension("pub"), "/lab/alice.pub", 0o644).await;
    eprintln!("lab: dend and its programs copied in {:.1}s", started.elapsed().as_secs_f64());
    vms::run(&lab).await?;
    dev::run(&lab, dev).await?;
    app::run(&lab).await?;
    docker::run(&lab).await?;
    // dend goes last, and nothing it started outlives the scenarios.
    let out = lab.sh(LAST).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("LAB-ALL-GONE"), "{}", lab.describe(&out));
    Ok(())
}

/// Stops dend, then looks for anything left running.
const LAST: &str = r#"kill $(pidof dend); i=0; while pidof dend >/dev/null && [ $i -lt 100 ]; do i=$((i+1)); sleep 0.1; done
if pidof den-vmm dend || running '/lab/dyn/virtiofs[d]'; then echo LAB-LEFT; else echo LAB-ALL-GONE; fi"#;

/// Runs scenario `name`'s `body` after the prelude, within `limit`; prints its output and time.
async fn run_phase(lab: &Lab, name: &str, body: &str, limit: std::time::Duration) -> Result<ExecOutput, String> {
    let started = std::time::Instant::now();
    let out = lab.try_sh(&script(body), limit).await?;
    eprintln!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("lab: scenario `{name}` took {:.1}s", started.elapsed().as_secs_f64());
    Ok(out)
}
