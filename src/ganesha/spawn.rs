//! Processes started from inside ganesha.nfsd (the `ctdb` tool) must inherit none of its
//! file descriptors. Ganesha opens exported files without O_CLOEXEC and holds clients'
//! byte-range locks on them as open-file-description locks: a child that inherits such a
//! descriptor keeps the lock alive after Ganesha is gone. The fail-stop SIGKILLs Ganesha
//! while `ctdb ptrans` runs blocked in a CTDB recovery, so the locks outlived it, and the
//! clients that came to reclaim them on the taker were refused (torture seed 7, step 7 of
//! a 100-failover run: four NFSv4 and NLM reclaims NFS4ERR_DENIED / NLM4_DENIED; the
//! orphaned `ctdb ptrans` held t-10.77.1.2-*.dat and ganesha.pid open).

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes `cmd`'s child close every descriptor above stderr when it execs.
pub fn without_inherited_fds(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure runs in the forked child between fork and exec; it makes only
    // async-signal-safe system calls (close_range, sysconf, fcntl) and allocates nothing.
    // Marking descriptors close-on-exec instead of closing them keeps std's own
    // exec-error pipe working.
    unsafe {
        cmd.pre_exec(|| {
            if libc::close_range(
                3,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
            ) != 0
            {
                // Kernels before 5.11: one fcntl per possible descriptor.
                let max = libc::sysconf(libc::_SC_OPEN_MAX).clamp(3, 1 << 20) as libc::c_int;
                for fd in 3..max {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn fds_of_child(cmd: &mut Command) -> String {
        let out = cmd.arg("-c").arg("ls /proc/self/fd").output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A descriptor opened without O_CLOEXEC, as Ganesha opens exported files.
    #[test]
    fn the_child_gets_none_of_the_parents_descriptors() {
        let f = tempfile::tempfile().unwrap();
        let inherited = nix::unistd::dup(f.as_raw_fd()).unwrap();
        let listed = |s: &str| s.lines().any(|l| l.trim() == inherited.to_string());
        assert!(
            listed(&fds_of_child(&mut Command::new("sh"))),
            "a plain child inherits it (the test would prove nothing otherwise)"
        );
        let mut clean = Command::new("sh");
        without_inherited_fds(&mut clean);
        let fds = fds_of_child(&mut clean);
        assert!(!listed(&fds), "fd {inherited} inherited: {fds}");
        assert!(fds.lines().any(|l| l.trim() == "1"), "stdout kept: {fds}");
        nix::unistd::close(inherited).unwrap();
    }
}
