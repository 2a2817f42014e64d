//! Look-alikes of every image critest (cri-tools' validation suite) pulls, built
//! offline and pushed to a test [`Registry`] under the upstream repository paths
//! and tags, so that a berth whose `gcr.io`, `registry.k8s.io`, `k8s.gcr.io` and
//! `docker.io` mirrors point at that registry pulls them by their real names
//! (critest compares RepoTags with those names).
//!
//! The base is Debian's *dynamic* busybox (fetched by `hack/setup.sh` into
//! [`busybox_dir`]), copied with its glibc libraries and with every applet a
//! hard link in `/bin`: the static build runs applets in-process (`sh -c ls`
//! never execs `/bin/ls`, which critest's MaskedPaths spec masks), and a
//! symlinked `/bin/ls` would make the runtime mask `/bin/busybox` itself.
//! nginx, httpd, pause and the setuid `nnp` are small static C programs
//! ([`HELPERS`]) compiled once per content into [`helper_cache`].
//!
//! See /work/shared/CRITEST-IMAGES.md for what each image must hold.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::image::{BuiltImage, Compression, ImageBuilder, Layer};
use super::registry::Registry;
use super::tools;

/// Where `hack/setup.sh` unpacks Debian's `busybox` package (`root/bin/busybox`).
pub fn busybox_dir() -> PathBuf {
    tools::cache_dir().join("busybox")
}

/// Compiled helper binaries, one directory per hash of their sources and flags.
pub fn helper_cache() -> PathBuf {
    tools::cache_dir().join("critest-helpers")
}
/// The image berth should use as `sandbox_image`: pushed with the others but
/// never pulled by critest, and distinct from `pause:3.9` (critest expects that
/// image to carry exactly its two tags).
pub const SANDBOX_IMAGE: &str = "registry.k8s.io/pause:3.10";
/// The registries critest names, each to be mirrored to the test registry.
pub const MIRRORED_REGISTRIES: [&str; 4] = ["gcr.io", "registry.k8s.io", "k8s.gcr.io", "docker.io"];
/// The one image critest pulls that cannot be rebuilt: its reference pins an
/// upstream content digest.
pub const UNBUILDABLE: &str = "gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf";

const STAGING: &str = "gcr.io/k8s-staging-cri-tools";
const E2E: &str = "registry.k8s.io/e2e-test-images";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// busybox's image `/etc/passwd` and `/etc/group`, as upstream ships them.
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
";
const GROUP: &str = "root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
";

/// Debian's busybox has no `pgrep`; critest runs `pgrep sleep`.
const PGREP: &str = r#"#!/bin/sh
# pgrep PATTERN: the PIDs whose name matches PATTERN (a stand-in: Debian's
# busybox has no pgrep applet).
[ $# -eq 1 ] || { echo "usage: pgrep PATTERN" >&2; exit 2; }
status=1
for dir in /proc/[0-9]*; do
  read -r comm < "$dir/comm" 2>/dev/null || continue
  if echo "$comm" | grep -q -e "$1"; then
    echo "${dir#/proc/}"
    status=0
  fi
done
exit $status
"#;

/// Debian's busybox has no `ipcs`; critest runs `ipcs -m` to see the shared
/// memory segments of the container's IPC namespace.
const IPCS: &str = r#"#!/bin/sh
# ipcs [-m]: the System V shared memory segments of this IPC namespace (a
# stand-in reading /proc/sysvipc/shm: Debian's busybox has no ipcs applet).
echo
echo "------ Shared Memory Segments --------"
printf '%-10s %-10s %-10s %-10s %-10s %-10s\n' key shmid owner perms bytes nattch
tail -n +2 /proc/sysvipc/shm 2>/dev/null | while read -r key shmid perms size cpid lpid nattch uid rest; do
  printf '0x%08x %-10s %-10s %-10s %-10s %-10s\n' "$key" "$shmid" "$uid" "$perms" "$size" "$nattch"
done
echo
"#;

/// The C sources of the helper binaries, by name.
pub const HELPERS: [(&str, &str); 3] = [("web", WEB_C), ("pause", PAUSE_C), ("nnp", NNP_C)];

/// nginx and httpd: answers every HTTP request with 200.
const WEB_C: &str = r#"/* Stand-in for the nginx and httpd of critest's images: answers every HTTP
 * request with 200. Run as "nginx" it retitles itself as nginx's master does
 * ("nginx: master process nginx -g daemon off;"), writes /var/run/nginx.pid
 * and listens on $NGINX_PORT (default 80); run under any other name (httpd)
 * it logs Apache's "Command line" start-up line and listens on 80. */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define NGINX_TITLE "nginx: master process nginx -g daemon off;"

static void quit(int sig) { (void)sig; _exit(0); }

int main(int argc, char **argv) {
    (void)argc;
    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    int nginx = strncmp(base, "nginx", 5) == 0;
    int port = 80;
    if (nginx) {
        if (strcmp(argv[0], NGINX_TITLE) != 0) {
            /* exec by its real path keeps the comm "nginx"; argv[0] (the
             * cmdline) becomes the master's title */
            char self[4096];
            ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
            if (n > 0) {
                self[n] = 0;
                char *args[] = {NGINX_TITLE, NULL};
                execv(self, args);
            }
            perror("re-exec");
        }
        const char *p = getenv("NGINX_PORT");
        if (p && atoi(p) > 0) port = atoi(p);
    }
    /* as PID 1 of a container, signals without a handler are ignored */
    signal(SIGTERM, quit);
    signal(SIGINT, quit);
    signal(SIGQUIT, quit);
    signal(SIGCHLD, SIG_IGN); /* reap whatever is reparented to us */
    signal(SIGPIPE, SIG_IGN);

    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    int v6 = fd >= 0;
    if (!v6) fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) { perror("socket"); return 1; }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc;
    if (v6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        struct sockaddr_in6 a = {0};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(port);
        a.sin6_addr = in6addr_any;
        rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    } else {
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_ANY);
        rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    }
    if (rc < 0 || listen(fd, 64) < 0) { perror("bind/listen"); return 1; }

    if (nginx) {
        FILE *f = fopen("/var/run/nginx.pid", "w");
        if (f) { fprintf(f, "%d\n", getpid()); fclose(f); }
    } else {
        fprintf(stderr, "[core:notice] [pid %d] AH00094: Command line: 'httpd -D FOREGROUND'\n", getpid());
    }
    fflush(stderr);

    static const char body[] = "<html><body><h1>It works!</h1></body></html>\n";
    char response[512];
    int len = snprintf(response, sizeof response,
                       "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                       sizeof body - 1, body);
    for (;;) {
        int c = accept(fd, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            perror("accept");
            return 1;
        }
        struct timeval tv = {5, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        /* read the request head; what it asks for does not matter */
        char buf[4096];
        size_t have = 0;
        while (have < sizeof buf - 1) {
            ssize_t n = read(c, buf + have, sizeof buf - 1 - have);
            if (n <= 0) break;
            have += n;
            buf[have] = 0;
            if (strstr(buf, "\r\n\r\n")) break;
        }
        if (write(c, response, len) < 0) { /* the client went away */ }
        shutdown(c, SHUT_WR);
        close(c);
    }
}
"#;

/// registry.k8s.io/pause.
const PAUSE_C: &str = r#"/* Stand-in for registry.k8s.io/pause: sleeps, reaps children, exits on TERM/INT. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(void) {
    signal(SIGTERM, quit);
    signal(SIGINT, quit);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
"#;

/// e2e-test-images/nonewprivs: installed setuid root.
const NNP_C: &str = r#"/* Stand-in for e2e-test-images/nonewprivs: installed setuid root, it shows
 * whether exec granted the privilege (no_new_privs forbids it). */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    printf("Effective uid: %d\n", (int)geteuid());
    return 0;
}
"#;

const GCC_FLAGS: [&str; 4] = ["-static", "-Os", "-s", "-Wall"];

/// The compiled helper `name` of [`HELPERS`], built once per content.
pub fn helper(name: &str) -> Vec<u8> {
    let source = HELPERS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s).expect("a known helper");
    let mut hasher = Sha256::new();
    hasher.update(source);
    hasher.update(GCC_FLAGS.join(" "));
    let dir = helper_cache().join(&hex::encode(hasher.finalize())[..16]);
    let binary = dir.join(name);
    if !binary.is_file() {
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        // Unique temp names, renamed into place: tests building at once never
        // see a half-written binary.
        let tmp = dir.join(format!(".{name}.{}.{}", std::process::id(), berth::ids::new_id()));
        let c_file = tmp.with_extension("c");
        std::fs::write(&c_file, source).expect("writing a helper's source");
        let output = Command::new("gcc")
            .args(GCC_FLAGS)
            .arg("-o")
            .arg(&tmp)
            .arg(&c_file)
            .output()
            .expect("running gcc (Debian packages gcc and libc6-dev)");
        let _ = std::fs::remove_file(&c_file);
        assert!(output.status.success(), "gcc failed on helper {name}:\n{}", String::from_utf8_lossy(&output.stderr));
        std::fs::rename(&tmp, &binary).expect("moving a helper into the cache");
    }
    std::fs::read(&binary).unwrap_or_else(|e| panic!("reading {}: {e}", binary.display()))
}

/// Debian's dynamic busybox, unpacked by `hack/setup.sh`.
pub fn busybox_binary() -> PathBuf {
    let path = busybox_dir().join("root/bin/busybox");
    assert!(path.is_file(), "{} is missing: run hack/setup.sh (it fetches Debian's dynamic busybox)", path.display());
    path
}

/// The shared libraries `binary` loads, as (path in the image, path to read),
/// from `ldd`: each library lives in the image where the loader looks for it.
fn shared_libraries(binary: &Path) -> Vec<String> {
    let output = Command::new("ldd").arg(binary).output().expect("running ldd");
    assert!(output.status.success(), "ldd {}: {}", binary.display(), String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    let mut libraries: Vec<String> = text
        .lines()
        .filter_map(|line| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"; vdso has no file.
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_string())
        })
        .collect();
    libraries.sort();
    libraries.dedup();
    libraries
}

/// Every parent directory of `path`, outermost first ("/a/b/c" gives "/a", "/a/b").
fn parents(path: &str) -> Vec<String> {
    let mut dirs = Vec::new();
    let mut current = String::new();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        current.push('/');
        current.push_str(part);
        dirs.push(current.clone());
    }
    dirs
}

/// The layer every critest image starts from: dynamic busybox with its
/// libraries, applets hard-linked in `/bin`, `pgrep` and `ipcs` stand-ins, and
/// upstream busybox's `/etc/passwd` and `/etc/group`.
pub fn busybox_layer() -> Layer {
    busybox_layer_with(PASSWD, GROUP)
}

fn busybox_layer_with(passwd: &str, group: &str) -> Layer {
    let busybox = busybox_binary();
    #[rustfmt::skip]
    const DIRS: [&str; 12] =
        ["/bin", "/dev", "/etc", "/home", "/proc", "/sys", "/usr", "/usr/bin", "/usr/sbin", "/var", "/var/run", "/var/www"];
    let mut dirs: Vec<String> = DIRS.iter().map(|d| d.to_string()).collect();
    let libraries = shared_libraries(&busybox);
    for library in &libraries {
        dirs.extend(parents(library));
    }
    dirs.sort();
    dirs.dedup();
    let mut layer = Layer::new();
    for dir in &dirs {
        layer = layer.dir(dir.as_str(), 0o755);
    }
    layer = layer.dir("/root", 0o700).dir("/tmp", 0o1777);
    for library in &libraries {
        // fs::read follows the host's symlinks (ld.so is one): the image gets
        // the content at the path the loader asks for.
        let content = std::fs::read(library).unwrap_or_else(|e| panic!("reading {library}: {e}"));
        layer = layer.file(library.as_str(), content, 0o755);
    }
    let content = std::fs::read(&busybox).expect("reading busybox");
    layer = layer.file("/bin/busybox", content, 0o755);
    let listed = Command::new(&busybox).arg("--list").output().expect("busybox --list");
    let mut applets: Vec<String> =
        String::from_utf8_lossy(&listed.stdout).split_whitespace().map(str::to_string).collect();
    applets.sort();
    for applet in applets.iter().filter(|a| a.as_str() != "busybox") {
        layer = layer.hardlink(format!("/bin/{applet}"), "/bin/busybox");
    }
    layer
        .file("/bin/pgrep", PGREP, 0o755)
        .file("/bin/ipcs", IPCS, 0o755)
        .file("/etc/passwd", passwd, 0o644)
        .file("/etc/group", group, 0o644)
        .file("/etc/hostname", "", 0o644)
        .file("/etc/hosts", "127.0.0.1\tlocalhost\n", 0o644)
        .file("/etc/resolv.conf", "", 0o644)
}

/// An image on the busybox layer, `PATH` set and `CMD ["sh"]`, as upstream busybox.
fn busybox_image(base: &Layer) -> ImageBuilder {
    ImageBuilder::new().layer(base.clone(), Compression::Gzip).env([PATH_ENV]).cmd(["sh"])
}

/// busybox plus `/<marker>`, so that each image has its own ID.
fn marked_image(base: &Layer, marker: &str) -> BuiltImage {
    busybox_image(base).layer(Layer::new().file(format!("/{marker}"), marker, 0o644), Compression::Gzip).build()
}

/// The images to push, as (full reference `host/path:tag`, image).
pub fn critest_images() -> Vec<(String, BuiltImage)> {
    let base = busybox_layer();
    let mut images: Vec<(String, BuiltImage)> = Vec::new();

    let busybox = busybox_image(&base).build();
    images.push((format!("{E2E}/busybox:1.29-2"), busybox.clone()));
    images.push(("docker.io/library/busybox:1.29".into(), busybox));

    let pause = |stamp: &str| {
        ImageBuilder::new()
            .layer(Layer::new().file("/pause", helper("pause"), 0o755), Compression::Gzip)
            .entrypoint(["/pause"])
            .user("65535:65535")
            .label("berth.test/pause", stamp)
            .build()
    };
    let pause_3_9 = pause("3.9");
    images.push(("registry.k8s.io/pause:3.9".into(), pause_3_9.clone()));
    images.push(("k8s.gcr.io/pause:3.9".into(), pause_3_9));
    images.push((SANDBOX_IMAGE.into(), pause("3.10")));

    for name in ["test-image-latest:latest", "test-image-tag:test", "test-image-tag:all"] {
        let marker = name.replace(':', "-");
        images.push((format!("{STAGING}/{name}"), marked_image(&base, &marker)));
    }
    for n in 1..=3 {
        images.push((format!("{STAGING}/test-image-{n}:latest"), marked_image(&base, &format!("test-image-{n}"))));
    }
    let tags = marked_image(&base, "test-image-tags");
    for n in 1..=3 {
        images.push((format!("{STAGING}/test-image-tags:{n}"), tags.clone()));
    }

    for (name, user) in [
        ("test-image-user-uid", "1002"),
        ("test-image-user-username", "www-data"),
        ("test-image-user-uid-group", "1003:1004"),
        ("test-image-user-username-group", "www-data:1004"),
    ] {
        images.push((format!("{STAGING}/{name}:latest"), busybox_image(&base).user(user).build()));
    }
    let predefined = busybox_layer_with(
        &format!("{PASSWD}default-user:x:1000:1000::/home/default-user:/bin/sh\n"),
        &format!("{GROUP}default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"),
    );
    images.push((
        format!("{STAGING}/test-image-predefined-group:latest"),
        ImageBuilder::new()
            .layer(predefined, Compression::Gzip)
            .layer(Layer::new().dir_owned("/home/default-user", 0o755, 1000, 1000), Compression::Gzip)
            .env([PATH_ENV])
            .cmd(["sh"])
            .user("1000")
            .build(),
    ));

    let web = helper("web");
    let nginx = |port: Option<&str>| {
        let mut env = vec![PATH_ENV.to_string()];
        if let Some(port) = port {
            env.push(format!("NGINX_PORT={port}"));
        }
        busybox_image(&base)
            .layer(Layer::new().dir("/usr/sbin", 0o755).file("/usr/sbin/nginx", web.clone(), 0o755), Compression::Gzip)
            .env(env)
            .cmd(["nginx", "-g", "daemon off;"])
            .exposed_port(format!("{}/tcp", port.unwrap_or("80")))
            .stop_signal("SIGTERM")
            .build()
    };
    images.push((format!("{E2E}/nginx:1.14-2"), nginx(None)));
    images.push((
        format!("{STAGING}/hostnet-nginx-{}:latest", super::image::Platform::host().architecture),
        nginx(Some("12003")),
    ));

    images.push((
        format!("{E2E}/httpd:2.4.39-4"),
        busybox_image(&base)
            .layer(
                Layer::new()
                    .dir("/usr/local", 0o755)
                    .dir("/usr/local/apache2", 0o755)
                    .dir("/usr/local/apache2/bin", 0o755)
                    .file("/usr/local/apache2/bin/httpd", web, 0o755),
                Compression::Gzip,
            )
            .env([format!("PATH=/usr/local/apache2/bin:{}", PATH_ENV.trim_start_matches("PATH="))])
            .cmd(["httpd", "-D", "FOREGROUND"])
            .exposed_port("80/tcp")
            .build(),
    ));

    images.push((
        format!("{E2E}/nonewprivs:1.3"),
        busybox_image(&base)
            .layer(
                Layer::new().dir("/usr/local", 0o755).dir("/usr/local/bin", 0o755).file(
                    "/usr/local/bin/nnp",
                    helper("nnp"),
                    0o4755,
                ),
                Compression::Gzip,
            )
            .entrypoint(["/usr/local/bin/nnp"])
            .cmd(Vec::<String>::new())
            .build(),
    ));
    images
}

/// Splits `host/path:tag` into (`path`, `tag`): the repository and tag in the
/// mirror, which keeps the path of the name.
fn repository_and_tag(reference: &str) -> (String, String) {
    let (_, rest) = reference.split_once('/').expect("a reference with a registry host");
    let (path, tag) = rest.rsplit_once(':').expect("a reference with a tag");
    (path.to_string(), tag.to_string())
}

/// Builds every image of [`critest_images`] and pushes it to `registry`;
/// returns the references pushed. Repositories are pushed at once, but the tags
/// of one repository one after another: Debian's docker-registry can lose a
/// blob's link when two uploads of it to one repository finish together (a
/// later manifest PUT then answers MANIFEST_BLOB_UNKNOWN).
pub async fn push_critest_images(registry: &Registry) -> Vec<String> {
    let images = tokio::task::spawn_blocking(critest_images).await.expect("building critest's images");
    let mut by_repository: std::collections::BTreeMap<String, Vec<(String, _)>> = std::collections::BTreeMap::new();
    let mut references = Vec::new();
    for (reference, image) in images {
        references.push(reference.clone());
        let (repository, tag) = repository_and_tag(&reference);
        by_repository.entry(repository).or_default().push((tag, image));
    }
    let mut pushes = tokio::task::JoinSet::new();
    for (repository, tags) in by_repository {
        let client = super::image::RegistryClient::new(registry);
        pushes.spawn(async move {
            for (tag, image) in tags {
                client.push_image(&repository, &tag, &image).await;
            }
        });
    }
    while let Some(pushed) = pushes.join_next().await {
        pushed.expect("pushing a critest image");
    }
    references
}

/// The berth config that mirrors every registry critest names to `registry`,
/// keeping the image names, with [`SANDBOX_IMAGE`] as the sandbox image.
/// Top-level keys first, as [`super::berth::BerthBuilder::config`] requires.
pub fn berth_config(registry: &Registry) -> String {
    let mut config = format!("sandbox_image = {SANDBOX_IMAGE:?}\n");
    for host in MIRRORED_REGISTRIES {
        config.push_str(&format!("\n[registries.{host:?}]\nmirrors = [{:?}]\n", registry.url()));
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_the_mirror_path_and_tag() {
        assert_eq!(
            repository_and_tag("registry.k8s.io/e2e-test-images/busybox:1.29-2"),
            ("e2e-test-images/busybox".to_string(), "1.29-2".to_string())
        );
        assert_eq!(repository_and_tag("docker.io/library/busybox:1.29"), ("library/busybox".into(), "1.29".into()));
    }

    #[test]
    fn parents_lists_every_enclosing_directory() {
        assert_eq!(parents("/lib/x86_64-linux-gnu/libc.so.6"), ["/lib", "/lib/x86_64-linux-gnu"]);
        assert!(parents("/busybox").is_empty());
    }
}
