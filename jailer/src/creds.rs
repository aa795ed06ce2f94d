//! Step 4: resource limits, the VM's own user, no privileges, and the `execve` of den-vmm.

use crate::spec::{JailSpec, VMM_IN_JAIL};
use crate::JailError;
use nix::sys::resource::{setrlimit, Resource};
use std::convert::Infallible;
use std::ffi::CString;

/// `SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
/// SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED`: uid 0 never regains
/// capabilities through `execve`, and neither setting can be undone. (`SECBIT_KEEP_CAPS` stays
/// off, so the uid change below clears every capability.)
const SECUREBITS: libc::c_ulong = 0x01 | 0x02 | 0x20 | 0x40 | 0x80;

/// Sets den-vmm's resource limits: descriptors, processes, no core dumps, no locked memory.
pub fn limit(spec: &JailSpec) -> Result<(), JailError> {
    let pids = u64::from(spec.pids);
    for (r, v, what) in [
        (Resource::RLIMIT_NOFILE, spec.files, "descriptors"),
        (Resource::RLIMIT_NPROC, pids, "processes"),
        (Resource::RLIMIT_CORE, 0, "core dumps"),
        (Resource::RLIMIT_MEMLOCK, 0, "locked memory"),
    ] {
        setrlimit(r, v, v).map_err(JailError::nix(format!("limit {what} to {v}")))?;
    }
    Ok(())
}

fn prctl(what: &str, option: libc::c_int, arg: libc::c_ulong) -> Result<libc::c_int, JailError> {
    // SAFETY: prctl with integer arguments only; no memory is passed.
    let r = unsafe { libc::prctl(option, arg, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    if r < 0 {
        return Err(JailError::io(what.to_string())(std::io::Error::last_os_error()));
    }
    Ok(r)
}

/// Empties the inheritable capability set (the uid change below clears the permitted and
/// effective sets, not this one).
fn clear_inheritable() -> Result<(), JailError> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header { version: VERSION_3, pid: 0 };
    let mut data = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: capget/capset with a v3 header and two data structs, as the kernel expects.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut header as *mut Header, data.as_mut_ptr()) != 0 {
            return Err(JailError::io("read capabilities")(std::io::Error::last_os_error()));
        }
        for d in &mut data {
            d.inheritable = 0;
        }
        if libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) != 0 {
            return Err(JailError::io("clear the inheritable capabilities")(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Drops to the spec's uid and gid with no supplementary groups and no capabilities, for good.
pub fn drop_privileges(spec: &JailSpec) -> Result<(), JailError> {
    prctl("clear the ambient capabilities", libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as _)?;
    for cap in 0..=63 {
        // SAFETY: as in `prctl`; EINVAL past the last capability this kernel knows ends the loop.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(JailError::io(format!("drop capability {cap} from the bounding set"))(
                std::io::Error::last_os_error(),
            ));
        }
    }
    prctl("lock the securebits", libc::PR_SET_SECUREBITS, SECUREBITS)?;
    clear_inheritable()?;
    let (uid, gid) = (nix::unistd::Uid::from_raw(spec.uid), nix::unistd::Gid::from_raw(spec.gid));
    nix::unistd::setgroups(&[]).map_err(JailError::nix("drop supplementary groups"))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(JailError::nix(format!("become group {gid}")))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(JailError::nix(format!("become user {uid}")))?;
    prctl("set no_new_privs", libc::PR_SET_NO_NEW_PRIVS, 1)?;
    // A process that could regain root would not get here; check the result anyway.
    if nix::unistd::setresuid(nix::unistd::Uid::from_raw(0), uid, uid).is_ok() {
        return Err(JailError::Invalid("still able to become root after dropping privileges".into()));
    }
    Ok(())
}

/// Replaces this process with den-vmm (`/den-vmm` in the jail), with an empty environment.
pub fn exec(spec: &JailSpec) -> Result<Infallible, JailError> {
    let cstr = |s: &str| CString::new(s).map_err(|_| JailError::Invalid(format!("argument `{s}` holds a NUL byte")));
    let prog = cstr(VMM_IN_JAIL)?;
    let mut argv = vec![prog.clone()];
    for a in &spec.args {
        argv.push(cstr(a)?);
    }
    let env: [CString; 0] = [];
    nix::unistd::execve(&prog, &argv, &env).map_err(JailError::nix(format!("execute {VMM_IN_JAIL} in the jail")))
}
