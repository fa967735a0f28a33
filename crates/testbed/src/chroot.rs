//! Running daemons of another Debian release: its packages in a root directory built by
//! scripts/chroots.sh (debootstrap), entered with chroot(8) inside the test's own mount
//! namespace. Every path the test shares with the daemon (its work directory, a socket, a
//! log) is bind-mounted at the same absolute path inside the root, so paths mean the same
//! on both sides; the namespace (`ip netns exec` makes one per command) takes the mounts
//! with it when its last process exits.

use std::path::{Path, PathBuf};

/// Where scripts/chroots.sh keeps its roots (GANESHA_CTDB_CHROOTS, as there).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("GANESHA_CTDB_CHROOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/ganesha-ctdb/chroots"))
}

/// The root of `suite` (trixie, sid), once scripts/chroots.sh has built it.
pub fn root(suite: &str) -> Result<PathBuf, String> {
    let dir = cache_dir().join(suite);
    if dir.join(".ganesha-ctdb-stamp").exists() {
        Ok(dir)
    } else {
        Err(format!(
            "no {suite} root in {}: run scripts/chroots.sh {suite} (scripts/test.sh does)",
            cache_dir().display()
        ))
    }
}

/// `s` as one word for sh, whatever it holds.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `words` as sh words, each quoted.
pub fn shell_words<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(p: &Path) -> String {
    shell_quote(&p.display().to_string())
}

/// A shell snippet that enters `root` and runs `cmd` (shell words) there, with /proc,
/// /sys and /dev of the running namespace and each of `shared` at its own path.
pub fn wrap(root: &Path, shared: &[&Path], cmd: &str) -> String {
    wrap_binds(root, shared, &[], cmd)
}

/// As [`wrap`], and each `(outside, inside)` of `binds` mounted at `inside` of the root
/// (a node's private /run, so that tools which only know the default socket path find it).
pub fn wrap_binds(root: &Path, shared: &[&Path], binds: &[(&Path, &Path)], cmd: &str) -> String {
    format!(
        "{}exec chroot {} {cmd}",
        mounts(root, shared, binds),
        quote(root)
    )
}

/// The shell commands [`wrap_binds`] runs before it enters `root`: the running namespace's
/// /proc, /sys and /dev, each of `shared` at its own path, each of `binds` at its inside
/// path. They belong in a mount namespace of the caller's own.
pub fn mounts(root: &Path, shared: &[&Path], binds: &[(&Path, &Path)]) -> String {
    let r = quote(root);
    let mut s = String::from("set -e; mount --make-rslave / 2>/dev/null || true; ");
    for d in ["proc", "sys", "dev"] {
        s.push_str(&format!("mount --rbind /{d} {r}/{d}; "));
    }
    for (outside, inside) in shared.iter().map(|p| (*p, *p)).chain(binds.iter().copied()) {
        let inside = root.join(inside.strip_prefix("/").unwrap_or(inside));
        s.push_str(&format!(
            "mkdir -p {i}; mount --bind {o} {i}; ",
            i = quote(&inside),
            o = quote(outside)
        ));
    }
    s
}
