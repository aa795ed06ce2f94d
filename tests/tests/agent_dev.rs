//! The `dev` image: a full Debian VM booting systemd, with den-agent as a systemd service.
//! A port forward through the agent reaches the guest's sshd.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use den_agent_proto::msg::{ExecRequest, ForwardTarget};
use den_tests::{images, Guest, GuestOptions};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_guest_boots_systemd_and_reaches_sshd() {
    let store = images::shared_store();
    let image = images::build_builtin(&store, "dev");
    let opts = GuestOptions { memory_mib: 1024, agent_timeout: Duration::from_secs(240), ..Default::default() };
    let (mut guest, c) = Guest::boot(&store, &image, opts).await;
    eprintln!("dev guest answered after {:.1}s ({} retries)", guest.boot_secs, guest.retries);

    let info = c.info().await.unwrap();
    assert!(!info.pid1, "in a full VM systemd is PID 1 and the agent is its service");
    let out = c.exec_output(&["cat", "/proc/1/comm"], Bytes::new(), den_tests::EXEC).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "systemd");

    // exec as the normal user
    let req = ExecRequest { argv: vec!["id".into(), "-un".into()], user: Some("dev".into()), ..Default::default() };
    let out = c.exec(req).await.unwrap().run(Bytes::new(), den_tests::EXEC).await.unwrap();
    assert_eq!((out.code, String::from_utf8_lossy(&out.stdout).trim()), (Some(0), "dev"));
    let req = ExecRequest { argv: vec!["pwd".into()], user: Some("dev".into()), ..Default::default() };
    assert_eq!(
        String::from_utf8_lossy(&c.exec(req).await.unwrap().run(Bytes::new(), den_tests::EXEC).await.unwrap().stdout)
            .trim(),
        "/home/dev"
    );

    // SSH keys land with the right owner and mode
    c.set_authorized_keys("dev", &["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRlbg dev@den".into()]).await.unwrap();
    let out = c
        .exec_output(
            &["stat", "-c", "%U %a", "/home/dev/.ssh/authorized_keys", "/home/dev/.ssh"],
            Bytes::new(),
            den_tests::EXEC,
        )
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "dev 600\ndev 700\n");

    // port forward to guest port 22 returns the OpenSSH banner (sshd may still be starting)
    let start = Instant::now();
    let banner = loop {
        match c.forward_io(ForwardTarget::Tcp { host: "127.0.0.1".into(), port: 22 }).await {
            Ok(mut s) => {
                let mut buf = vec![0u8; 256];
                let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await.expect("banner").unwrap();
                break String::from_utf8_lossy(&buf[..n]).to_string();
            }
            Err(e) if start.elapsed() < Duration::from_secs(120) => {
                eprintln!("sshd not ready yet: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => panic!("sshd never answered: {e}\n{}", guest.console_tail(30)),
        }
    };
    assert!(banner.starts_with("SSH-2.0-OpenSSH"), "{banner:?}");

    // a clean power-off through the agent ends the VM
    c.shutdown(false).await.unwrap();
    let st = guest.wait_exit(Duration::from_secs(120));
    assert!(st.is_some(), "guest did not power off:\n{}", guest.console_tail(20));
}
