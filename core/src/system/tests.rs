use super::*;

const RULES: Rules = Rules { window: 60_000, ready: 90_000, max_failed_boots: 3 };

fn info(version: &str) -> SlotInfo {
    SlotInfo {
        image: "system".into(),
        version: version.into(),
        spec_digest: "0123456789abcdef0123".into(),
        kernel_release: "6.1.0".into(),
        cmdline: "console=ttyS0".into(),
        artifacts: BTreeMap::new(),
        written: 0,
        failed: None,
    }
}

/// Slot A runs version 1; an update to version 2 has just written slot B.
fn on_trial() -> SystemState {
    let mut st = SystemState { a: Some(info("1")), b: Some(info("2")), ..Default::default() };
    let update = st.add_update(Update {
        id: 0,
        kind: "update".into(),
        user: "root".into(),
        to_label: "system 2".into(),
        from_label: "system 1".into(),
        slot: Slot::B,
        started: 0,
        ended: None,
        outcome: Outcome::InProgress,
        why: String::new(),
        steps: vec![],
    });
    st.phase = Phase::Trial { update, slot: Slot::B, since: None, failed_boots: 0, healthy_since: None };
    st
}

fn up(slot: Slot, ok: Option<bool>) -> Seen {
    Seen::Up {
        slot: Some(slot),
        check: ok.map(|ok| Check { ok, agent: ok, detail: if ok { "ok" } else { "no" }.into() }),
    }
}

fn outcome(st: &SystemState) -> Outcome {
    st.updates.last().unwrap().outcome
}

#[test]
fn steady_restarts_crashes_only_and_follows_the_active_slot() {
    let mut st = SystemState { a: Some(info("1")), ..Default::default() };
    assert_eq!(decide(&mut st, &Seen::Down(Down::Crashed), 0, &RULES), Action::Boot);
    assert_eq!(decide(&mut st, &Seen::Down(Down::Stopped), 0, &RULES), Action::Wait, "stopped on purpose");
    assert_eq!(decide(&mut st, &up(Slot::A, Some(false)), 0, &RULES), Action::Wait);
    assert_eq!(decide(&mut st, &up(Slot::B, None), 0, &RULES), Action::Reboot, "runs a slot that is not active");
    assert_eq!(decide(&mut st, &Seen::Down(Down::ForBoot), 0, &RULES), Action::Boot, "and is stopped for it");
    assert_eq!(st.phase, Phase::Steady);
}

#[test]
fn a_good_update_stops_the_old_os_boots_the_new_and_commits_after_the_window() {
    let mut st = on_trial();
    assert_eq!(decide(&mut st, &up(Slot::A, Some(true)), 1_000, &RULES), Action::Reboot, "old OS stops first");
    assert_eq!(decide(&mut st, &Seen::Down(Down::ForBoot), 2_000, &RULES), Action::Boot);
    assert_eq!(st.boot_slot(), Slot::B);
    assert!(matches!(st.phase, Phase::Trial { since: Some(2_000), .. }), "the ready timeout runs from the boot");
    assert_eq!(decide(&mut st, &up(Slot::B, Some(false)), 10_000, &RULES), Action::Wait, "still booting");
    assert_eq!(decide(&mut st, &up(Slot::B, Some(true)), 12_000, &RULES), Action::Wait);
    assert_eq!(decide(&mut st, &up(Slot::B, None), 40_000, &RULES), Action::Wait);
    assert_eq!(decide(&mut st, &up(Slot::B, Some(true)), 71_000, &RULES), Action::Wait);
    assert!(matches!(st.phase, Phase::Trial { .. }), "59 s healthy is not yet the window");
    assert_eq!(decide(&mut st, &up(Slot::B, Some(true)), 72_000, &RULES), Action::Wait);
    assert_eq!((st.phase.clone(), st.active, outcome(&st)), (Phase::Steady, Slot::B, Outcome::Committed));
    assert_eq!(st.updates[0].ended, Some(72_000));
}

#[test]
fn a_failed_check_inside_the_window_rolls_back_at_once() {
    let mut st = on_trial();
    decide(&mut st, &Seen::Down(Down::ForBoot), 0, &RULES);
    decide(&mut st, &up(Slot::B, Some(true)), 10_000, &RULES);
    assert_eq!(decide(&mut st, &up(Slot::B, Some(false)), 20_000, &RULES), Action::Reboot);
    assert!(matches!(&st.phase, Phase::RollingBack { why, .. } if why.contains("during the window: no")));
    assert_eq!(st.boot_slot(), Slot::A);
    assert_eq!(decide(&mut st, &up(Slot::B, None), 21_000, &RULES), Action::Reboot, "still on the bad slot");
    assert_eq!(decide(&mut st, &Seen::Down(Down::ForBoot), 22_000, &RULES), Action::Boot);
    assert_eq!(decide(&mut st, &up(Slot::A, Some(false)), 30_000, &RULES), Action::Wait);
    assert_eq!(outcome(&st), Outcome::InProgress, "rolled back only once the old OS is healthy");
    decide(&mut st, &up(Slot::A, Some(true)), 31_000, &RULES);
    assert_eq!((st.phase.clone(), st.active, outcome(&st)), (Phase::Steady, Slot::A, Outcome::RolledBack));
    let b = st.b.clone().unwrap();
    assert_eq!(b.version, "2", "the failed OS stays in its slot for inspection");
    assert!(b.failed.unwrap().contains("during the window"), "marked failed: not offered to go back to");
}

#[test]
fn a_rollback_whose_previous_os_stays_unhealthy_still_ends() {
    let mut st = on_trial();
    decide(&mut st, &Seen::Down(Down::ForBoot), 0, &RULES);
    assert_eq!(decide(&mut st, &Seen::Down(Down::Crashed), 1_000, &RULES), Action::Boot);
    decide(&mut st, &Seen::Down(Down::Crashed), 2_000, &RULES);
    decide(&mut st, &Seen::Down(Down::Crashed), 3_000, &RULES);
    assert!(matches!(st.phase, Phase::RollingBack { since: 3_000, .. }), "{:?}", st.phase);
    assert_eq!(decide(&mut st, &up(Slot::A, Some(false)), 100_000, &RULES), Action::Wait);
    assert_eq!(outcome(&st), Outcome::InProgress);
    assert_eq!(decide(&mut st, &up(Slot::A, Some(false)), 153_000, &RULES), Action::Wait);
    assert_eq!((st.phase.clone(), outcome(&st)), (Phase::Steady, Outcome::RolledBack));
    assert!(st.updates[0].steps.last().unwrap().what.contains("passed no check within 150 s"));
}

#[test]
fn a_trial_started_outside_the_rules_gets_its_clock_when_seen_up() {
    let mut st = on_trial();
    assert_eq!(decide(&mut st, &up(Slot::B, None), 5_000, &RULES), Action::Wait);
    assert!(matches!(st.phase, Phase::Trial { since: Some(5_000), .. }));
    assert_eq!(decide(&mut st, &up(Slot::B, Some(false)), 95_000, &RULES), Action::Reboot, "ready timeout");
}

#[test]
fn panicking_boots_are_retried_then_rolled_back() {
    let mut st = on_trial();
    decide(&mut st, &Seen::Down(Down::ForBoot), 0, &RULES);
    assert_eq!(decide(&mut st, &Seen::Down(Down::Crashed), 5_000, &RULES), Action::Boot);
    assert_eq!(decide(&mut st, &Seen::Down(Down::Crashed), 10_000, &RULES), Action::Boot);
    assert_eq!(decide(&mut st, &Seen::Down(Down::Crashed), 15_000, &RULES), Action::Reboot);
    assert!(matches!(&st.phase, Phase::RollingBack { why, .. } if why.contains("failed 3 boot(s) in a row")));
    assert_eq!(decide(&mut st, &Seen::Down(Down::Crashed), 16_000, &RULES), Action::Boot);
    assert_eq!(st.boot_slot(), Slot::A);
}

#[test]
fn an_os_that_never_reports_rolls_back_at_the_ready_timeout() {
    let mut st = on_trial();
    decide(&mut st, &Seen::Down(Down::ForBoot), 1_000, &RULES);
    assert_eq!(decide(&mut st, &up(Slot::B, Some(false)), 90_000, &RULES), Action::Wait);
    assert_eq!(decide(&mut st, &up(Slot::B, None), 91_000, &RULES), Action::Reboot);
    assert!(matches!(&st.phase, Phase::RollingBack { why, .. } if why.contains("within 90 s")));
}

#[test]
fn crashing_boots_past_the_ready_timeout_roll_back_before_the_boot_limit() {
    let rules = Rules { max_failed_boots: 10, ..RULES };
    let mut st = on_trial();
    decide(&mut st, &Seen::Down(Down::ForBoot), 0, &rules);
    assert_eq!(decide(&mut st, &Seen::Down(Down::Crashed), 50_000, &rules), Action::Boot);
    assert_eq!(decide(&mut st, &Seen::Down(Down::Crashed), 95_000, &rules), Action::Reboot);
    assert!(matches!(&st.phase, Phase::RollingBack { why, .. } if why.contains("kept failing")));
}

#[test]
fn stopping_the_vm_by_hand_during_a_trial_rolls_back() {
    let mut st = on_trial();
    decide(&mut st, &Seen::Down(Down::ForBoot), 0, &RULES);
    decide(&mut st, &up(Slot::B, Some(true)), 5_000, &RULES);
    assert_eq!(decide(&mut st, &Seen::Down(Down::Stopped), 6_000, &RULES), Action::Reboot);
    assert!(matches!(&st.phase, Phase::RollingBack { why, .. } if why.contains("stopped by hand")));
    assert!(abort_trial(&mut on_trial(), 0, "ann"));
    assert!(!abort_trial(&mut SystemState::default(), 0, "ann"), "no trial, nothing to abort");
}

#[test]
fn update_records_are_numbered_and_bounded() {
    let mut st = on_trial();
    let template = st.updates[0].clone();
    for _ in 0..KEEP_UPDATES + 5 {
        st.add_update(template.clone());
    }
    assert_eq!(st.updates.len(), KEEP_UPDATES);
    assert_eq!(st.updates.last().unwrap().id, KEEP_UPDATES as u64 + 6);
    assert_eq!(info("").label(), "system@0123456789ab");
    assert_eq!(info("2").label(), "system 2");
}
