//! The texts of `cgmalloc --help` and of the short usage printed when `cgmalloc` is run
//! without arguments.

/// Printed to stderr (exit 2) when `cgmalloc` runs without arguments.
pub const USAGE: &str = "\
usage: cgmalloc run [OPTIONS] -- COMMAND [ARGS...]
       cgmalloc ps
       cgmalloc stat PID [GROUP] [--json | --prometheus]
       cgmalloc top [PID...] [-n N | --once] [-d SECONDS] [-s KEY]
       cgmalloc set PID GROUP FILE VALUE
       cgmalloc --version | --help
Run `cgmalloc --help` for the options.
";

/// `cgmalloc --help`.
pub const HELP: &str = "\
cgmalloc - run a program under the cgmalloc allocator, with memory limits

usage: cgmalloc run [OPTIONS] -- COMMAND [ARGS...]
       cgmalloc ps
       cgmalloc stat PID [GROUP] [--json | --prometheus]
       cgmalloc top [PID...] [-n N | --once] [-d SECONDS] [-s KEY]
       cgmalloc set PID GROUP FILE VALUE
       cgmalloc --version | --help

`cgmalloc run` starts COMMAND (searched on PATH) with libcgmalloc.so preloaded and its
options passed to the library as CGMALLOC_* environment variables, and exits with
COMMAND's exit status (128+N if COMMAND died of signal N). The `--` may be left out when
COMMAND does not start with `-`. Options override the same variables inherited from the
environment; variables no option sets are passed on unchanged.

SIZE is a number with an optional K, M, G or T suffix (powers of 1024, either case),
`max` (no limit), or N% (a percentage, 0-100, of the container's memory limit, or
of the machine's memory, MemTotal, when there is none).
A group PATH is /name/name/..., names of 1-64 characters from [A-Za-z0-9_.-].

Options of `run`:
  --max SIZE            the process-wide hard limit: allocations past it fail  [CGMALLOC_MAX]
                          e.g. cgmalloc run --max 256M -- python3 job.py
  --high SIZE           the throttle limit: past it, reclaim and slow down     [CGMALLOC_HIGH]
                          e.g. cgmalloc run --high 200M -- ./server
  --low SIZE            best-effort protection from reclaim                    [CGMALLOC_LOW]
                          e.g. cgmalloc run --low 64M -- ./server
  --min SIZE            hard protection from reclaim                           [CGMALLOC_MIN]
                          e.g. cgmalloc run --min 32M -- ./server
  --group PATH:KEY=VALUE,...
                        create group PATH (and missing parents) with settings;
                        keys max high low min soft_limit (SIZE values), oom
                        (fail|abort|force) and enforce (on|warn|off); a bare
                        PATH creates the group with
                        none; repeatable, joined with `;`                      [CGMALLOC_GROUPS]
                          e.g. --group /workers:max=256M,high=200M --group /workers/io:max=64M
  --thread GLOB=PATH    attach threads whose name (pthread_setname_np) matches
                        GLOB to group PATH (`/`, or a group a --group
                        creates or one of its parents); repeatable,
                        joined with `;`                                        [CGMALLOC_THREADS]
                          e.g. --thread 'worker-*=/workers'
  --attach PATH         start COMMAND's first thread, and so the threads it
                        creates, in group PATH: `/`, or a group a --group
                        creates (or one of its parents)                        [CGMALLOC_ATTACH]
                          e.g. cgmalloc run --group /job:max=1G --attach /job -- ./job
  --enforce on|warn|off  whether the root's own max and high hold allocations
                        back (on, the default), are only reported (warn: a
                        warning line, max and warn events) or are ignored
                        (off); a group's: the key enforce of --group  [CGMALLOC_GROUPS]
                          e.g. cgmalloc run --max 1G --enforce warn -- ./server
  --oom fail|abort|force
                        what an allocation that hits the root's limit does:
                        fail (return NULL, the default), abort (print the group
                        table and abort) or force (allocate past the limit)    [CGMALLOC_OOM]
                          e.g. cgmalloc run --max 1G --oom abort -- ./batch
  --stats[=FILE|=json]  when COMMAND exits, print one report for the whole run:
                        a line per process (pid, command, root peak, exit,
                        events; those under 1 MiB with no events folded into
                        one line), then the group table (current, peak,
                        limits, events) of COMMAND's process and of every
                        process that hit a limit; to stderr, or to FILE
                        (created first); as JSON with =json (to stderr) or a
                        FILE ending in .json                                 [CGMALLOC_REPORT]
                          e.g. cgmalloc run --stats -- make -j8
                               cgmalloc run --stats=usage.json -- ./job
  --no-cgroup           do not read the container's (cgroup's) memory limit;
                        N% sizes are then shares of MemTotal         [CGMALLOC_CGROUP=off]
                          e.g. cgmalloc run --no-cgroup --max 1G -- ./job
  --lib PATH            the library to preload; default $CGMALLOC_LIB, else
                        libcgmalloc.so beside the cgmalloc executable
                          e.g. cgmalloc run --lib ./target/release/libcgmalloc.so -- ls
  -h, --help            print this help and exit
                          e.g. cgmalloc run --help
  -V, --version         print the version and exit
                          e.g. cgmalloc --version

Watching a running program (any process running cgmalloc, under `run` or not):
  ps                    list the processes you may inspect that run cgmalloc: pid,
                        command, the root's memory.current and memory.max, groups
                          e.g. cgmalloc ps
  stat PID [GROUP]      every group of PID (or GROUP only) with its interface
                        files' values: memory.current, peak, max, high, low, min,
                        soft_limit_in_bytes, failcnt, events, events.local, stat
                        (the accounting keys), oom.policy, cgroup.stat
                          e.g. cgmalloc stat 4242 /workers
    --json              one JSON object per group, keys named as the files
                          e.g. cgmalloc stat 4242 --json | jq '.[].group'
    --prometheus        Prometheus text format, cgmalloc_<file>_bytes{pid,comm,group};
                        counters end in _total, no limit is +Inf
                          e.g. cgmalloc stat 4242 --prometheus > node/cgmalloc.prom
  top [PID...]          a live view of the groups of PID... (default: every process
                        ps lists), one row per group as a tree: current with a
                        bar against max (or high), peak, max, high, change per
                        second, memory.events since start and since the last
                        refresh; keys: q quit, s next sort key, t tree
                          e.g. cgmalloc top 4242
    -n N, --once        print N frames (--once: 1) as plain text and exit
                          e.g. cgmalloc top --once
    -d SECONDS          refresh every SECONDS (default 1)
                          e.g. cgmalloc top -d 0.1
    -s KEY              sort by tree (default), current, peak, rate or events
                          e.g. cgmalloc top -s rate
  set PID GROUP FILE VALUE
                        write memory.max, memory.high, memory.low, memory.min,
                        memory.soft_limit_in_bytes (SIZE), memory.oom.policy
                        (fail|abort|force) or memory.enforce (on|warn|off) of GROUP; the process applies it at its
                        next allocation that needs a charge
                          e.g. cgmalloc set 4242 /workers memory.max 512M
  Nothing runs in the process for this: its memory is read (and a request written)
  with process_vm_readv/writev, which needs the same user (and, under
  kernel.yama.ptrace_scope=1, root or an ancestor). Errors: one line, exit 2.

Every option takes its value as `--opt VALUE` or `--opt=VALUE` (only `--stats=FILE`
or `--stats=json` for --stats).

Environment:
  CGMALLOC_MAX, CGMALLOC_HIGH, CGMALLOC_LOW, CGMALLOC_MIN
                        the root group's limits (set by --max, --high, --low, --min)
  CGMALLOC_GROUPS       PATH:key=value,...;PATH:...  (set by --group)
  CGMALLOC_THREADS      GLOB=PATH;GLOB=PATH  (set by --thread)
  CGMALLOC_ATTACH       the group the first thread starts in  (set by --attach)
  CGMALLOC_OOM          the root's memory.oom.policy  (set by --oom)
  CGMALLOC_STATS        stderr or a file: each process's own table at exit (not
                        with --stats, which removes it for one report per run)
  CGMALLOC_REPORT       set by --stats: the directory each process of the run
                        leaves its record in for the report
  CGMALLOC_CGROUP       auto (default), off (set by --no-cgroup), or a directory to
                        read the cgroup files below instead of /
  CGMALLOC_LIB          read by the launcher: the library, when --lib is not given
  LD_PRELOAD            the library is put first (once) in front of the inherited value

Exit status of `run`:
  COMMAND's status, or 128+N if it died of signal N;
  2    a usage error, or the library cannot be found or read (COMMAND not started);
  126  COMMAND was found but could not be executed;
  127  COMMAND was not found.
While COMMAND runs, cgmalloc ignores SIGINT and SIGQUIT (COMMAND gets them from the
terminal) and forwards SIGTERM and SIGHUP to it.
";
