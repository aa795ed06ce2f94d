//! The interactive menu of a plain `ssh host -p 2222` (no VM named): the VMs the user may
//! enter, picked by number or name; and the offer to start a stopped VM. Pure line editing and
//! choices: the session does the I/O and the starting.

use den_core::vm::VmState;

/// What the menu decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Enter this running VM.
    Enter(String),
    /// Start this stopped VM, then enter it.
    Start(String),
    /// Leave.
    Quit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Pick,
    Confirm(String),
}

/// The menu's state.
#[derive(Debug)]
pub(crate) struct Menu {
    vms: Vec<(String, VmState)>,
    step: Step,
    line: String,
}

impl Menu {
    /// The list of `vms` with its prompt; the text to show first.
    pub(crate) fn pick(vms: Vec<(String, VmState)>) -> (Menu, String) {
        let mut text = String::from("Den: your VMs\r\n");
        if vms.is_empty() {
            text.push_str("  (none: an admin can grant you one)\r\n");
        }
        for (i, (name, state)) in vms.iter().enumerate() {
            text.push_str(&format!("  {:>2}) {name:<24} {}\r\n", i + 1, state.as_str()));
        }
        text.push_str(PICK_PROMPT);
        (Menu { vms, step: Step::Pick, line: String::new() }, text)
    }

    /// The offer to start stopped VM `vm`; the text to show first.
    pub(crate) fn confirm(vm: &str) -> (Menu, String) {
        let text = confirm_prompt(vm);
        (Menu { vms: Vec::new(), step: Step::Confirm(vm.into()), line: String::new() }, text)
    }

    /// Takes typed bytes: the text to echo or show, and an outcome once a line is complete.
    pub(crate) fn keys(&mut self, bytes: &[u8]) -> (String, Option<Outcome>) {
        let mut shown = String::new();
        for &b in bytes {
            match b {
                b'\r' | b'\n' => {
                    shown.push_str("\r\n");
                    let line = std::mem::take(&mut self.line);
                    let (text, outcome) = self.answer(line.trim());
                    shown.push_str(&text);
                    if outcome.is_some() {
                        return (shown, outcome);
                    }
                }
                // Ctrl-C, Ctrl-D.
                3 | 4 => return (shown + "\r\n", Some(Outcome::Quit)),
                // Backspace, DEL.
                8 | 127 if self.line.pop().is_some() => shown.push_str("\x08 \x08"),
                b if (0x20..0x7f).contains(&b) && self.line.len() < 64 => {
                    self.line.push(b as char);
                    shown.push(b as char);
                }
                _ => {}
            }
        }
        (shown, None)
    }

    fn answer(&mut self, line: &str) -> (String, Option<Outcome>) {
        match self.step.clone() {
            Step::Confirm(vm) => match line {
                "y" | "Y" | "yes" => (String::new(), Some(Outcome::Start(vm))),
                _ => (String::new(), Some(Outcome::Quit)),
            },
            Step::Pick if line.is_empty() || line == "q" => (String::new(), Some(Outcome::Quit)),
            Step::Pick => {
                let by_number = line.parse::<usize>().ok().and_then(|n| self.vms.get(n.wrapping_sub(1)));
                let found = by_number.or_else(|| self.vms.iter().find(|v| v.0 == line)).cloned();
                match found {
                    Some((name, VmState::Running)) => (String::new(), Some(Outcome::Enter(name))),
                    Some((name, VmState::Stopped)) => {
                        self.step = Step::Confirm(name.clone());
                        (confirm_prompt(&name), None)
                    }
                    Some((name, state)) => {
                        (format!("VM `{name}` is {}; pick another\r\n{PICK_PROMPT}", state.as_str()), None)
                    }
                    None => (format!("no VM `{line}` here\r\n{PICK_PROMPT}"), None),
                }
            }
        }
    }
}

const PICK_PROMPT: &str = "VM (number or name, empty to quit): ";

fn confirm_prompt(vm: &str) -> String {
    format!("VM `{vm}` is stopped. Start it? [y/N] ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vms() -> Vec<(String, VmState)> {
        vec![("db".into(), VmState::Stopped), ("web1".into(), VmState::Running), ("x".into(), VmState::Paused)]
    }

    #[test]
    fn picks_by_number_or_name_and_offers_to_start() {
        let (mut m, text) = Menu::pick(vms());
        assert!(text.contains(" 2) web1") && text.ends_with(PICK_PROMPT));
        assert_eq!(m.keys(b"2\r").1, Some(Outcome::Enter("web1".into())));
        let (mut m, _) = Menu::pick(vms());
        assert_eq!(m.keys(b"wez\x7fb1\r"), ("wez\x08 \x08b1\r\n".into(), Some(Outcome::Enter("web1".into()))));
        let (mut m, _) = Menu::pick(vms());
        let (text, out) = m.keys(b"db\r");
        assert!(out.is_none() && text.contains("is stopped. Start it?"));
        assert_eq!(m.keys(b"y\r").1, Some(Outcome::Start("db".into())));
        let (mut m, _) = Menu::pick(vms());
        assert!(m.keys(b"x\r").0.contains("is paused; pick another"));
        assert!(m.keys(b"9\r").0.contains("no VM `9` here"));
        assert_eq!(m.keys(b"\r").1, Some(Outcome::Quit));
        let (mut m, _) = Menu::confirm("db");
        assert_eq!(m.keys(b"n\r").1, Some(Outcome::Quit));
        let (mut m, _) = Menu::pick(vms());
        assert_eq!(m.keys(b"\x03").1, Some(Outcome::Quit));
    }
}
