//! berth's default seccomp profile, as data.
//!
//! An allow-list: every syscall not named here fails with `EPERM`. The lists are grouped by what
//! programs use them for, so that a reader can check each group's reason instead of a flat list
//! of 300 names. Names are libseccomp's; a name the host's libseccomp or kernel does not know is
//! skipped by the OCI runtime, so one list serves old and new kernels alike (runc also answers
//! `ENOSYS`, not `EPERM`, for syscalls newer than any it knows, which keeps libc fallbacks working).
//!
//! What is *not* here is the point of the profile. The syscalls that reach kernel state no
//! namespace isolates (clocks, modules, keyrings, swap, reboot), that widen the kernel's attack
//! surface for little use in a container (`userfaultfd`, `io_uring`, `bpf`), or that would let a
//! process escape its namespaces (`mount`, `setns`, `unshare`, namespace flags to `clone`) stay
//! denied unless the container holds the capability that makes them legitimate: see
//! [`BY_CAPABILITY`]. [`ALWAYS_DENIED`] lists those no capability short of `privileged` unlocks.

use oci_spec::runtime::Capability;

/// Reading and writing open files, pipes, and moving data between descriptors.
const FILE_IO: &[&str] = &[
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "open",
    "openat",
    "openat2",
    "creat",
    "close",
    "close_range",
    "lseek",
    "_llseek",
    "dup",
    "dup2",
    "dup3",
    "pipe",
    "pipe2",
    "fcntl",
    "fcntl64",
    // Device and terminal control; what a device allows is the device cgroup's and the driver's
    // business, not the syscall filter's.
    "ioctl",
    "flock",
    "fsync",
    "fdatasync",
    "sync",
    "syncfs",
    "sync_file_range",
    "fallocate",
    "fadvise64",
    "fadvise64_64",
    "readahead",
    "truncate",
    "truncate64",
    "ftruncate",
    "ftruncate64",
    "sendfile",
    "sendfile64",
    "splice",
    "tee",
    "vmsplice",
    "copy_file_range",
    "memfd_create",
    "cachestat",
];

/// Names in the file system: lookups, directories, links, timestamps. Permission checks are the
/// file system's (and `mknod` of a device needs CAP_MKNOD and the device cgroup's consent).
const FILE_NAMES: &[&str] = &[
    "stat",
    "lstat",
    "fstat",
    "stat64",
    "lstat64",
    "fstat64",
    "fstatat64",
    "newfstatat",
    "statx",
    "statfs",
    "statfs64",
    "fstatfs",
    "fstatfs64",
    "access",
    "faccessat",
    "faccessat2",
    "getdents",
    "getdents64",
    "getcwd",
    "chdir",
    "fchdir",
    "mkdir",
    "mkdirat",
    "rmdir",
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "unlink",
    "unlinkat",
    "readlink",
    "readlinkat",
    "mknod",
    "mknodat",
    "umask",
    "utime",
    "utimes",
    "utimensat",
    "utimensat_time64",
    "futimesat",
    "inotify_init",
    "inotify_init1",
    "inotify_add_watch",
    "inotify_rm_watch",
];

/// Ownership, modes and extended attributes; the kernel checks CAP_CHOWN / CAP_FOWNER itself.
const FILE_ATTRIBUTES: &[&str] = &[
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "fchown",
    "lchown",
    "fchownat",
    "chown32",
    "fchown32",
    "lchown32",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "getxattrat",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "setxattrat",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "listxattrat",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "removexattrat",
];

/// The process's own address space. NUMA policy calls are not here: see CAP_SYS_NICE.
const MEMORY: &[&str] = &[
    "brk",
    "mmap",
    "mmap2",
    "munmap",
    "mremap",
    "mprotect",
    "madvise",
    "mincore",
    "msync",
    "mlock",
    "mlock2",
    "munlock",
    "mlockall",
    "munlockall",
    "remap_file_pages",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "membarrier",
    "map_shadow_stack",
    "mseal",
    "process_mrelease",
];

/// Running programs and managing one's own processes. `clone` and `clone3` are not here: they can
/// create namespaces, so they get the conditional rules of `seccomp.rs`.
const PROCESSES: &[&str] = &[
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
    "kill",
    "tkill",
    "tgkill",
    "getpid",
    "getppid",
    "gettid",
    "getpgid",
    "setpgid",
    "getpgrp",
    "getsid",
    "setsid",
    "set_tid_address",
    "set_robust_list",
    "get_robust_list",
    "rseq",
    "prctl",
    "capget",
    "capset",
    "pidfd_open",
    "pidfd_send_signal",
    "uname",
    "sysinfo",
    "getrusage",
    "times",
    "getrlimit",
    "setrlimit",
    "ugetrlimit",
    "prlimit64",
    "getrandom",
    "getcpu",
    "restart_syscall",
];

/// Threads, their synchronisation and scheduling. Real-time priorities still need CAP_SYS_NICE or
/// RLIMIT_RTPRIO, which the kernel checks.
const THREADS: &[&str] = &[
    "futex",
    "futex_time64",
    "futex_waitv",
    "futex_wait",
    "futex_wake",
    "futex_requeue",
    "sched_yield",
    "sched_getaffinity",
    "sched_setaffinity",
    "sched_getparam",
    "sched_setparam",
    "sched_getscheduler",
    "sched_setscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_getattr",
    "sched_setattr",
    "getpriority",
    "setpriority",
    "ioprio_get",
    "ioprio_set",
];

/// User and group identities: reading them, and changing them within what CAP_SETUID / CAP_SETGID
/// allow (the `*32` forms are the 32-bit ABIs').
const CREDENTIALS: &[&str] = &[
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "getgroups",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setgroups",
    "setfsuid",
    "setfsgid",
    "getuid32",
    "geteuid32",
    "getgid32",
    "getegid32",
    "getresuid32",
    "getresgid32",
    "getgroups32",
    "setuid32",
    "setgid32",
    "setreuid32",
    "setregid32",
    "setresuid32",
    "setresgid32",
    "setgroups32",
    "setfsuid32",
    "setfsgid32",
];

/// Signals, including the legacy forms 32-bit programs use.
const SIGNALS: &[&str] = &[
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigpending",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "sigaction",
    "sigprocmask",
    "sigreturn",
    "sigpending",
    "sigsuspend",
    "signal",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "pause",
    "alarm",
];

/// Reading clocks, sleeping and timers. Setting a clock is not here: clocks are not namespaced
/// (see CAP_SYS_TIME).
const TIME: &[&str] = &[
    "clock_gettime",
    "clock_gettime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "nanosleep",
    "gettimeofday",
    "time",
    "getitimer",
    "setitimer",
    "timer_create",
    "timer_delete",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timer_getoverrun",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
];

/// Waiting for descriptors and events, and POSIX AIO. io_uring is not here: see [`ALWAYS_DENIED`].
const EVENTS: &[&str] = &[
    "poll",
    "ppoll",
    "ppoll_time64",
    "select",
    "_newselect",
    "pselect6",
    "pselect6_time64",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_wait",
    "epoll_wait_old",
    "epoll_pwait",
    "epoll_pwait2",
    "eventfd",
    "eventfd2",
    "io_setup",
    "io_destroy",
    "io_submit",
    "io_cancel",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
];

/// Sockets (`socketcall` is the 32-bit x86 multiplexer of them). Raw and packet sockets still need
/// CAP_NET_RAW, which the kernel checks; the network namespace bounds the rest.
const NETWORK: &[&str] = &[
    "socket",
    "socketpair",
    "socketcall",
    "bind",
    "connect",
    "listen",
    "accept",
    "accept4",
    "getsockname",
    "getpeername",
    "getsockopt",
    "setsockopt",
    "send",
    "sendto",
    "sendmsg",
    "sendmmsg",
    "recv",
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "recvmmsg_time64",
    "shutdown",
];

/// System V and POSIX IPC, isolated by the pod's IPC namespace (`ipc` is the 32-bit multiplexer).
const IPC: &[&str] = &[
    "shmget",
    "shmat",
    "shmdt",
    "shmctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "semctl",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "ipc",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_notify",
    "mq_getsetattr",
];

/// Calls that only ever take privilege away: a program sandboxing itself further is welcome.
const SELF_SANDBOXING: &[&str] = &["seccomp", "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self"];

/// Every group above: allowed in every container the default profile applies to.
pub(super) const ALLOWED: &[&[&str]] = &[
    FILE_IO,
    FILE_NAMES,
    FILE_ATTRIBUTES,
    MEMORY,
    PROCESSES,
    THREADS,
    CREDENTIALS,
    SIGNALS,
    TIME,
    EVENTS,
    NETWORK,
    IPC,
    SELF_SANDBOXING,
];

/// x86 only: thread-local storage setup. `modify_ldt` is left out: only 16-bit and some emulation
/// code needs it, and it has a history of kernel bugs.
pub(super) const X86_ONLY: &[&str] = &["arch_prctl", "set_thread_area", "get_thread_area"];

/// 32-bit ARM only: its variants of common calls, cache flushing for JITs, TLS setup.
pub(super) const ARM_ONLY: &[&str] =
    &["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"];

/// `personality` is allowed only with these arguments: Linux (0x0), 32-bit Linux (PER_LINUX32,
/// 0x8), the 2.6-style uname some old software wants (UNAME26, 0x20000), both (0x20008), and the
/// query 0xffffffff. Other personalities change how the kernel treats the process (e.g. disable
/// address-space randomisation with ADDR_NO_RANDOMIZE), which is not the program's call to make.
pub(super) const PERSONALITY_VALUES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The namespace flags of `clone(2)`: CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
/// CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET. Without CAP_SYS_ADMIN `clone` is allowed only when
/// none of them is set: new namespaces (a user namespace above all) open kernel code paths that
/// are a frequent source of privilege escalations.
pub(super) const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// Syscalls a capability makes legitimate, allowed when the container's bounding set holds it.
/// The kernel still checks the capability itself; the filter only stops denying what the
/// container was explicitly trusted with (`clone` and `clone3` lose their conditions under
/// CAP_SYS_ADMIN: see `seccomp.rs`).
pub(super) const BY_CAPABILITY: &[(Capability, &[&str])] = &[
    // Mounts, namespaces, host and domain names, quotas, and the tracing and eBPF facilities
    // CAP_SYS_ADMIN has always covered.
    (
        Capability::SysAdmin,
        &[
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "setns",
            "unshare",
            "clone",
            "clone3",
            "sethostname",
            "setdomainname",
            "quotactl",
            "quotactl_fd",
            "fanotify_init",
            "fanotify_mark",
            "lookup_dcookie",
            "bpf",
            "perf_event_open",
            "syslog",
        ],
    ),
    // Inspecting and changing other processes: tracers and debuggers. Docker allows ptrace on
    // kernels from 4.8 (older ones let a tracer rewrite a syscall after the filter had checked
    // it); berth keeps it behind the capability because the filter cannot tell a debugger from an
    // intruder reading secrets out of another process of the same user, which in a pod sharing
    // one PID namespace can be another container's.
    (Capability::SysPtrace, &["ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd"]),
    // The system clock is shared with the host and every other container.
    (
        Capability::SysTime,
        &["settimeofday", "stime", "clock_settime", "clock_settime64", "adjtimex", "clock_adjtime", "clock_adjtime64"],
    ),
    // Loading and removing kernel modules changes the host kernel.
    (Capability::SysModule, &["init_module", "finit_module", "delete_module"]),
    // In a PID namespace, reboot only ends the namespace's init; still, only for those trusted.
    (Capability::SysBoot, &["reboot"]),
    // Process accounting is host-wide.
    (Capability::SysPacct, &["acct"]),
    // Raw port I/O (x86).
    (Capability::SysRawio, &["iopl", "ioperm"]),
    // NUMA placement: can degrade other workloads on the node.
    (Capability::SysNice, &["get_mempolicy", "set_mempolicy", "set_mempolicy_home_node", "mbind", "move_pages"]),
    // The kernel log is the host's.
    (Capability::Syslog, &["syslog"]),
    // eBPF and perf, each with its own narrower capability since Linux 5.8.
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
    // File handles bypass path-based checks: open_by_handle_at was the "shocker" container escape.
    (Capability::DacReadSearch, &["open_by_handle_at", "name_to_handle_at"]),
    (Capability::SysChroot, &["chroot"]),
    (Capability::SysTtyConfig, &["vhangup"]),
];

/// Denied whatever the capabilities: only a privileged (unfiltered) container can call these.
/// Nothing needs the list to deny them (not being allowed is enough); it is kept so that the
/// reasons are written down and tests can hold the profile to it.
#[cfg(test)]
pub(super) const ALWAYS_DENIED: &[&str] = &[
    // Kernel keyrings are not isolated per container.
    "add_key",
    "request_key",
    "keyctl",
    // Replacing the running kernel.
    "kexec_load",
    "kexec_file_load",
    // Obsolete module interfaces.
    "create_module",
    "get_kernel_syms",
    "query_module",
    // Swap is host-wide.
    "swapon",
    "swapoff",
    // Obsolete or deprecated calls no current program needs: less reachable kernel code.
    "nfsservctl",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "vm86",
    "vm86old",
    "modify_ldt",
    // Favourite tools of kernel exploits (stalling the kernel mid-copy), rarely needed otherwise.
    "userfaultfd",
    // io_uring has had a long run of privilege escalations, and its operations bypass this filter
    // altogether (they are not syscalls).
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
];
