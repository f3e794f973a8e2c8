//! Owners across `fork()`: a forked child shares its parent's memory image (the process nonce,
//! thread numbers, task ids), yet must never be the same owner, or parent and child would
//! re-enter each other's holds on a shared Redis server.

#![cfg(unix)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;

use lock_core::Owner;

#[test]
fn a_forked_child_is_a_different_owner() {
    // The parent makes its nonce (and its thread number) before forking: the child inherits both.
    let parent = Owner::current();
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    let (read_end, write_end) = (fds[0], fds[1]);
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // The child: its owner and nonce, formatted on the stack, written, and out at once.
        let child = Owner::current();
        let mut shown = [0u8; 128];
        let mut unused = &mut shown[..];
        let _ = write!(unused, "{child} {:016x}", child.process_nonce());
        let len = 128 - unused.len();
        unsafe {
            libc::write(write_end, shown.as_ptr().cast(), len);
            libc::_exit(0);
        }
    }
    unsafe { libc::close(write_end) };
    let mut reply = String::new();
    unsafe { File::from_raw_fd(read_end) }
        .read_to_string(&mut reply)
        .expect("the child's reply");
    let mut status = 0;
    assert_eq!(
        unsafe { libc::waitpid(pid, &mut status, 0) },
        pid,
        "waitpid"
    );
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status}"
    );

    let (child_owner, child_nonce) = reply.split_once(' ').expect("owner and nonce");
    let child_nonce = u64::from_str_radix(child_nonce, 16).expect("a hex nonce");
    assert_ne!(
        child_owner,
        parent.to_string(),
        "the forked child is its parent's owner"
    );
    assert_ne!(
        child_nonce,
        parent.process_nonce(),
        "the forked child has its parent's process nonce"
    );
    // The parent keeps its own.
    assert_eq!(Owner::current(), parent);
}
