//! den-vmm in the KVM lab (see `den_tests::lab`): real Linux guests on a real `/dev/kvm`.
//! Slow (an outer TCG boot plus inner boots); all scenarios share one outer guest.

use den_tests::{images, lab::Lab, lab::VMM};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_den_vmm() {
    let lab = Lab::start().await;
    let out = lab.sh(&format!("{VMM} probe")).await;
    assert_eq!(out.code, Some(0), "{}", lab.describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("hardware"), "{}", lab.describe(&out));
    let _ = images::shared_store;
}
