/*
 * nsexec: tsbuild's native namespace entry, the fast twin of sys/nsexec.ts (same operations, same exit codes).
 * sys/namespaces.ts compiles it with the host's cc on first use and documents the protocol:
 *
 *   nsexec PARENT_PID NSFLAGS OP ARG... OP ARG... exec INIT N ARG0 ... ARGN-1
 *
 * NSFLAGS lists the namespaces besides pid: m(ount) u(ts) i(pc) n(et). The first process (outside) enters a new PID
 * namespace, forks PID 1, forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2/SIGWINCH to it and exits the way it
 * exits (same code, or killed by the same signal). PID 1 enters the other namespaces, runs the operations in order
 * and execve()s the command, so the command is PID 1 (or, with INIT=1, the child of a reaping init).
 * Exit codes: 125 setup failed, 126 command not executable, 127 command not found.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_ENV 4096

static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};

static void die(int code, const char *what, const char *arg, int err) {
  fprintf(stderr, "tsbuild: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", strerror(err));
  _exit(code);
}

static void fail(const char *what, const char *arg) { die(125, what, arg, errno); }

static char *nul(char *s) { return *s ? s : NULL; }

static unsigned long num(const char *s, int base) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, base);
  if (errno || *end || !*s) die(125, "bad number", s, EINVAL);
  return v;
}

static void mkdir_p(char *path, mode_t mode) {
  for (char *p = path + 1;; p++) {
    if (*p == '/' || *p == '\0') {
      char c = *p;
      *p = '\0';
      if (mkdir(path, mode) < 0 && errno != EEXIST) fail("mkdir", path);
      *p = c;
      if (c == '\0') break;
    }
  }
}

static void touch(char *path) {
  char *slash = strrchr(path, '/');
  if (slash && slash != path) {
    *slash = '\0';
    mkdir_p(path, 0755);
    *slash = '/';
  }
  int fd = open(path, O_CREAT | O_RDONLY | O_CLOEXEC, 0644);
  if (fd < 0) fail("create", path);
  close(fd);
}

static void pivot(const char *root) {
  int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (oldroot < 0) fail("open", "/");
  if (chdir(root) < 0) fail("chdir", root);
  if (syscall(SYS_pivot_root, ".", ".") < 0) fail("pivot_root", root);
  if (fchdir(oldroot) < 0) fail("fchdir", "old root");
  if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0) fail("make old root slave", NULL);
  if (umount2(".", MNT_DETACH) < 0) fail("detach old root", NULL);
  if (chdir("/") < 0) fail("chdir", "/");
  close(oldroot);
}

static void mask(const char *path) {
  struct stat st;
  if (stat(path, &st) < 0) {
    if (errno == ENOENT) return;
    fail("stat", path);
  }
  int r = S_ISDIR(st.st_mode) ? mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)
                              : mount("/dev/null", path, NULL, MS_BIND, NULL);
  if (r < 0) fail("mask", path);
}

static void readonly(const char *path) {
  struct stat st;
  if (stat(path, &st) < 0) {
    if (errno == ENOENT) return;
    fail("stat", path);
  }
  if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) fail("bind", path);
  if (mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
    fail("remount read-only", path);
}

/* set_mount_attr applies MOUNT_ATTR_* bits to a mount and every mount below it (Linux >= 5.12); older kernels get
 * a bind remount of the top mount only. */
static void set_mount_attr(const char *path, unsigned long long set) {
  struct {
    unsigned long long set, clr, propagation, userns_fd;
  } attr = {set, 0, 0, 0};
  if (syscall(442 /* SYS_mount_setattr */, AT_FDCWD, path, 0x8000 /* AT_RECURSIVE */, &attr, sizeof attr) == 0) return;
  if (errno != ENOSYS) fail("set mount attributes of", path);
  unsigned long flags = MS_BIND | MS_REMOUNT | ((set & 0x1) ? MS_RDONLY : 0) | ((set & 0x2) ? MS_NOSUID : 0) |
                        ((set & 0x4) ? MS_NODEV : 0) | ((set & 0x8) ? MS_NOEXEC : 0);
  if (mount(NULL, path, NULL, flags, NULL) < 0) fail("remount", path);
}

/* sync_parent tells the parent our host pid (what the host's /proc, still mounted at /proc before pivot, calls
 * "self") and waits for one byte: the parent attached the network stack to our namespace. EOF: it gave up. */
static void sync_parent(int fd) {
  char line[32];
  ssize_t n = readlink("/proc/self", line, sizeof line - 1);
  if (n < 0) fail("readlink", "/proc/self");
  line[n++] = '\n';
  if (write(fd, line, (size_t)n) != n) fail("report the pid to the parent", NULL);
  char c;
  ssize_t r;
  do r = read(fd, &c, 1);
  while (r < 0 && errno == EINTR);
  if (r < 0) fail("wait for the network", NULL);
  if (r == 0) die(125, "wait for the network", NULL, ECONNABORTED);
  close(fd);
}

static void loopback_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) fail("socket", NULL);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) fail("get flags of", "lo");
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) fail("bring up", "lo");
  close(s);
}

static void drop_bounding(unsigned long long keep) {
  for (int cap = 0; cap < 64; cap++) {
    if (keep & (1ULL << cap)) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
      if (errno == EINVAL) break; /* past the kernel's last capability */
      fail("drop capability from the bounding set", NULL);
    }
  }
}

static void set_caps(unsigned long long caps) {
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  data[0].effective = data[0].permitted = (unsigned)caps;
  data[1].effective = data[1].permitted = (unsigned)(caps >> 32);
  if (syscall(SYS_capset, &hdr, data) < 0) fail("capset", NULL);
}

static void set_user(const char *uid, const char *gid, char *groups) {
  gid_t list[256];
  size_t n = 0;
  for (char *tok = strtok(groups, ","); tok && n < 256; tok = strtok(NULL, ",")) list[n++] = (gid_t)num(tok, 10);
  if (setgroups(n, list) < 0) fail("setgroups", NULL);
  gid_t g = (gid_t)num(gid, 10);
  uid_t u = (uid_t)num(uid, 10);
  if (setresgid(g, g, g) < 0) fail("setgid", gid);
  if (setresuid(u, u, u) < 0) fail("setuid", uid);
}

/* resolve finds argv0 the way execvp would, in PATH from the container's environment; exits 126/127 if it can't. */
static const char *resolve(const char *arg0, char **env, char *buf, size_t size) {
  if (strchr(arg0, '/')) return arg0;
  const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (char **e = env; *e; e++)
    if (strncmp(*e, "PATH=", 5) == 0) path = *e + 5;
  int denied = 0;
  for (const char *p = path;; p++) {
    const char *end = strchrnul(p, ':');
    int len = (int)(end - p);
    snprintf(buf, size, "%.*s%s%s", len, p, len ? "/" : "", arg0);
    struct stat st;
    if (stat(buf, &st) == 0 && S_ISREG(st.st_mode)) {
      if (access(buf, X_OK) == 0) return buf;
      denied = 1;
    }
    if (!*end) break;
    p = end;
  }
  if (denied) die(126, "exec", arg0, EACCES);
  fprintf(stderr, "tsbuild: exec %s: executable file not found in $PATH\n", arg0);
  _exit(127);
}

static void exec_or_exit(const char *path, char **argv, char **env) {
  execve(path, argv, env);
  die(errno == ENOENT || errno == ENOTDIR ? 127 : 126, "exec", argv[0], errno);
}

static void unblock_all(void) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
}

static rlim_t rlim(const char *s) { return strcmp(s, "inf") ? (rlim_t)num(s, 10) : RLIM_INFINITY; }

/* The container's seccomp filter (BPF from sys/seccomp/bpf.ts), installed just before the command runs. */
static struct sock_fprog filter;

static void load_filter(const char *hex) {
  size_t len = strlen(hex);
  if (len == 0 || len % 16 != 0 || len / 16 > BPF_MAXINSNS) die(125, "bad seccomp program", NULL, EINVAL);
  unsigned char *bytes = malloc(len / 2);
  if (!bytes) fail("allocate", NULL);
  for (size_t k = 0; k < len / 2; k++) {
    char pair[3] = {hex[2 * k], hex[2 * k + 1], 0};
    bytes[k] = (unsigned char)num(pair, 16);
  }
  filter.len = (unsigned short)(len / 16);
  filter.filter = (struct sock_filter *)bytes;
}

static void install_filter(void) {
  if (filter.filter && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter, 0, 0) < 0) fail("install seccomp filter", NULL);
}

static int status_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

/* run_init forks the command and stays PID 1: it reaps every zombie, forwards signals to the command, and exits
 * with the command's status (128+n if a signal killed it). */
static void run_init(const char *path, char **argv, char **env, int tty, char *area, size_t area_len) {
  /* Keep private copies, then blank our own argv so /proc/1/cmdline does not show the operations (host paths). */
  size_t n = 0, m = 0;
  while (argv[n]) n++;
  while (env[m]) m++;
  char **args = calloc(n + 1, sizeof *args), **envs = calloc(m + 1, sizeof *envs);
  char *file = strdup(path);
  if (!args || !envs || !file) fail("allocate", NULL);
  for (size_t k = 0; k < n; k++)
    if (!(args[k] = strdup(argv[k]))) fail("allocate", NULL);
  for (size_t k = 0; k < m; k++)
    if (!(envs[k] = strdup(env[k]))) fail("allocate", NULL);
  memset(area, 0, area_len);
  snprintf(area, area_len, "tsbuild-init");
  path = file;
  argv = args;
  env = envs;
  sigset_t set;
  sigemptyset(&set);
  for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++) sigaddset(&set, forwarded[i]);
  sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set, NULL);
  pid_t child = fork();
  if (child < 0) fail("fork", NULL);
  if (child == 0) {
    setpgid(0, 0);
    if (tty) {
      signal(SIGTTOU, SIG_IGN);
      tcsetpgrp(0, getpid());
      signal(SIGTTOU, SIG_DFL);
    }
    unblock_all();
    exec_or_exit(path, argv, env);
  }
  for (;;) {
    siginfo_t info;
    int sig = sigwaitinfo(&set, &info);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      kill(child, sig);
      continue;
    }
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
      if (pid == child) _exit(status_code(status));
  }
}

static int inside(int argc, char **argv, int i) {
  static char *env[MAX_ENV + 1];
  int nenv = 0;
  int tty = 0;
  unblock_all();
  /* The command inherits stdin, stdout and stderr only. */
  if (syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */) < 0) fail("close_range", NULL);
  while (i < argc) {
    const char *op = argv[i++];
    char **a = argv + i;
#define NEED(n)                                                      \
  do {                                                               \
    if (i + (n) > argc) die(125, "missing arguments of", op, EINVAL); \
    i += (n);                                                        \
  } while (0)
    if (!strcmp(op, "cgroup")) {
      NEED(1);
      int fd = open(a[0], O_WRONLY | O_CLOEXEC);
      if (fd < 0 || write(fd, "0", 1) != 1) fail("join cgroup", a[0]);
      close(fd);
    } else if (!strcmp(op, "sync")) {
      NEED(1);
      sync_parent((int)num(a[0], 10));
    } else if (!strcmp(op, "mount")) {
      NEED(5);
      if (mount(nul(a[0]), a[1], nul(a[2]), num(a[3], 10), nul(a[4])) < 0) fail("mount", a[1]);
    } else if (!strcmp(op, "mountattr")) {
      NEED(2);
      set_mount_attr(a[0], num(a[1], 16));
    } else if (!strcmp(op, "mkdir")) {
      NEED(2);
      mkdir_p(a[0], (mode_t)num(a[1], 8));
    } else if (!strcmp(op, "touch")) {
      NEED(1);
      touch(a[0]);
    } else if (!strcmp(op, "mknod")) {
      NEED(4);
      mode_t mode = (mode_t)num(a[1], 8);
      if (mknod(a[0], mode, makedev(num(a[2], 10), num(a[3], 10))) < 0 && errno != EEXIST) fail("mknod", a[0]);
      if (chmod(a[0], mode & 07777) < 0) fail("chmod", a[0]);
    } else if (!strcmp(op, "symlink")) {
      NEED(2);
      if (symlink(a[0], a[1]) < 0 && errno != EEXIST) fail("symlink", a[1]);
    } else if (!strcmp(op, "pivot")) {
      NEED(1);
      pivot(a[0]);
    } else if (!strcmp(op, "mask")) {
      NEED(1);
      mask(a[0]);
    } else if (!strcmp(op, "ro")) {
      NEED(1);
      readonly(a[0]);
    } else if (!strcmp(op, "hostname")) {
      NEED(1);
      if (sethostname(a[0], strlen(a[0])) < 0) fail("sethostname", a[0]);
    } else if (!strcmp(op, "loup")) {
      loopback_up();
    } else if (!strcmp(op, "umask")) {
      NEED(1);
      umask((mode_t)num(a[0], 8));
    } else if (!strcmp(op, "ctty")) {
      tty = 1;
      if (setsid() < 0) fail("setsid", NULL);
      if (ioctl(0, TIOCSCTTY, 0) < 0) fail("set the controlling terminal", NULL);
    } else if (!strcmp(op, "capbset")) {
      NEED(1);
      drop_bounding(num(a[0], 16));
    } else if (!strcmp(op, "user")) {
      NEED(3);
      set_user(a[0], a[1], a[2]);
    } else if (!strcmp(op, "capset")) {
      NEED(1);
      set_caps(num(a[0], 16));
    } else if (!strcmp(op, "seccomp")) {
      NEED(1);
      load_filter(a[0]);
    } else if (!strcmp(op, "rlimit")) {
      NEED(3);
      struct rlimit rl = {rlim(a[1]), rlim(a[2])};
      if (setrlimit((int)num(a[0], 10), &rl) < 0) fail("setrlimit", a[0]);
    } else if (!strcmp(op, "nnp")) {
      if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail("set no_new_privs", NULL);
    } else if (!strcmp(op, "pdeathsig")) {
      NEED(1);
      if (prctl(PR_SET_PDEATHSIG, num(a[0], 10), 0, 0, 0) < 0) fail("set the parent-death signal", NULL);
    } else if (!strcmp(op, "chdir")) {
      NEED(1);
      if (chdir(a[0]) < 0) fail("chdir", a[0]);
    } else if (!strcmp(op, "env")) {
      NEED(1);
      if (nenv == MAX_ENV) die(125, "too many environment variables", NULL, E2BIG);
      env[nenv++] = a[0];
    } else if (!strcmp(op, "exec")) {
      NEED(2);
      int init = (int)num(a[0], 10);
      int n = (int)num(a[1], 10);
      if (n < 1 || i + n != argc) die(125, "bad exec arguments", NULL, EINVAL);
      char **args = argv + i;
      env[nenv] = NULL;
      static char buf[4096];
      const char *path = resolve(args[0], env, buf, sizeof buf);
      install_filter();
      if (init) run_init(path, args, env, tty, argv[0], (size_t)(argv[argc - 1] + strlen(argv[argc - 1]) + 1 - argv[0]));
      exec_or_exit(path, args, env);
    } else {
      die(125, "unknown operation", op, EINVAL);
    }
  }
  die(125, "no exec operation", NULL, EINVAL);
  return 125;
}

static int nsflags(const char *s) {
  int flags = 0;
  for (; *s; s++) switch (*s) {
      case 'm': flags |= CLONE_NEWNS; break;
      case 'u': flags |= CLONE_NEWUTS; break;
      case 'i': flags |= CLONE_NEWIPC; break;
      case 'n': flags |= CLONE_NEWNET; break;
      case '-': break;
      default: die(125, "unknown namespace flag", s, EINVAL);
    }
  return flags;
}

int main(int argc, char **argv) {
  if (argc < 4) die(125, "usage: nsexec PARENT_PID NSFLAGS OP...", NULL, EINVAL);
  /* Die with the Node parent; if it is already gone, do not start. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) fail("set the parent-death signal", NULL);
  if ((unsigned long)getppid() != num(argv[1], 10)) _exit(125);
  int flags = nsflags(argv[2]);

  sigset_t set;
  sigemptyset(&set);
  for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++) sigaddset(&set, forwarded[i]);
  sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set, NULL);

  int alive[2];
  if (pipe2(alive, O_CLOEXEC) < 0) fail("pipe", NULL);
  if (unshare(CLONE_NEWPID) < 0) fail("unshare", "pid");
  pid_t child = fork();
  if (child < 0) fail("fork", NULL);
  if (child == 0) {
    close(alive[1]);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) fail("set the parent-death signal", NULL);
    struct pollfd pfd = {alive[0], POLLIN, 0};
    if (poll(&pfd, 1, 0) > 0) _exit(125); /* the outer process died before PR_SET_PDEATHSIG took effect */
    close(alive[0]);
    if (unshare(flags) < 0) fail("unshare", argv[2]);
    return inside(argc, argv, 3);
  }
  close(alive[0]);
  for (;;) {
    siginfo_t info;
    int sig = sigwaitinfo(&set, &info);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      kill(child, sig);
      continue;
    }
    int status;
    if (waitpid(child, &status, WNOHANG) != child) continue;
    if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
    /* Die of the same signal, without a core dump of our own. */
    int term = WTERMSIG(status);
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    signal(term, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, term);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    kill(getpid(), term);
    _exit(128 + term);
  }
}
