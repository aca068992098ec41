#!/usr/bin/env bash
# Boots a real systemd as PID 1 in namespaces of its own, for tests that need
# a service manager (the systemd tier, tests/systemd/run.sh). Root only.
#
#   scripts/systemd-sandbox.sh start DIR   boot; DIR keeps the sandbox's pid and log
#   scripts/systemd-sandbox.sh run DIR CMD [ARG...]   run CMD inside (stdin, exit status kept)
#   scripts/systemd-sandbox.sh stop DIR    systemctl poweroff, then wait (kill if it hangs)
#   scripts/systemd-sandbox.sh check       can this machine boot one? (exit 0 / 1 with why)
#
# How it is isolated: `unshare --fork --pid --mount --net --uts --ipc
# --cgroup`; inside, `/` becomes an overlayfs whose lower layer is the
# machine's `/` and whose upper layer lives on a fresh tmpfs, so nothing
# written inside (a package install included) reaches the machine; fresh tmpfs on
# /run and /tmp, a cgroup2 hierarchy of the sandbox's own cgroup namespace,
# and a network namespace with only `lo`. What it shares with the machine is
# read-only: /sys (but for its cgroup2) and /proc/sys; /dev is a tmpfs with
# null, zero, full, random, urandom and tty bound in. `pivot_root` (not chroot: the
# kernel refuses a user namespace to a chrooted process, and PrivateUsers=
# needs one), then systemd boots a target of its own that requires only
# basic.target. The machine's own enablement (/etc/systemd/system/*.wants) is
# hidden, so no unrelated service starts, and /usr/sbin/policy-rc.d (which
# container images use to forbid starting services) is removed inside.
#
# Environment: SANDBOX_BOOT_TIMEOUT (s, default 60): how long `start` waits
# for `systemctl is-system-running` to say running or degraded.
set -euo pipefail

SYSTEMD=/lib/systemd/systemd
TARGET=wispanel-sandbox.target
NAME=wispanel-sandbox

die() { printf 'systemd-sandbox: %s\n' "$*" >&2; exit 1; }

# Why this machine cannot boot a sandbox, or nothing.
why_not() {
	[ "$(id -u)" = 0 ] || { echo "not root (namespaces, mounts and pivot_root need root)"; return; }
	[ -x "$SYSTEMD" ] || { echo "no $SYSTEMD (apt-get install systemd)"; return; }
	local tool
	for tool in unshare nsenter ip mount pivot_root; do
		command -v "$tool" >/dev/null || { echo "no $tool on PATH"; return; }
	done
	grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
		{ echo "the kernel has no overlayfs"; return; }
	grep -qw overlay /proc/filesystems || { echo "the kernel has no overlayfs"; return; }
	grep -qw cgroup2 /proc/filesystems || { echo "the kernel has no cgroup2"; return; }
	unshare --fork --pid --mount --net --uts --ipc --cgroup true 2>/dev/null ||
		{ echo "cannot create pid, mount, net, uts, ipc and cgroup namespaces (unshare failed: a container without CAP_SYS_ADMIN?)"; return; }
}

# The sandbox's PID 1 as seen from here: the child of the unshare process.
sandbox_pid() {
	local dir=$1 unshare_pid child
	[ -s "$dir/unshare.pid" ] || return 1
	unshare_pid=$(cat "$dir/unshare.pid")
	child=$(cat "/proc/$unshare_pid/task/$unshare_pid/children" 2>/dev/null) || return 1
	child=${child%% *}
	[ -n "$child" ] || return 1
	echo "$child"
}

# Runs as PID 1 of the new namespaces: builds the root and becomes systemd.
inner() {
	set -euo pipefail
	mount --make-rprivate /
	# $SANDBOX_DIR/fs: the mount is private, so the machine sees an empty directory.
	local base=$SANDBOX_DIR/fs root
	mount -t tmpfs -o mode=0755 sandbox "$base"
	mkdir "$base/upper" "$base/work" "$base/root"
	mount -t overlay overlay -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$base/root"
	root=$base/root
	mount -t proc proc "$root/proc"
	# Kernel settings are the machine's: read-only, so that systemd-sysctl
	# and friends skip them (as in systemd-nspawn).
	mount --bind "$root/proc/sys" "$root/proc/sys"
	mount -o remount,bind,ro "$root/proc/sys"
	mount --rbind /sys "$root/sys"
	mount --make-rslave "$root/sys"
	# A cgroup hierarchy of this cgroup namespace only: systemd creates its
	# slices in it, never in the machine's.
	umount -R "$root/sys/fs/cgroup" 2>/dev/null || umount -l "$root/sys/fs/cgroup"
	mount -o remount,bind,ro "$root/sys"
	mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup"
	# A /dev of its own with the usual nodes bound from the machine's.
	mount -t tmpfs -o mode=0755,nosuid sandbox-dev "$root/dev"
	local node
	for node in null zero full random urandom tty; do
		touch "$root/dev/$node"
		mount --bind "/dev/$node" "$root/dev/$node"
	done
	mkdir -m 0755 "$root/dev/pts"
	mkdir -m 1777 "$root/dev/shm"
	mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
	ln -s pts/ptmx "$root/dev/ptmx"
	mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm"
	ln -s /proc/self/fd "$root/dev/fd"
	ln -s /proc/self/fd/0 "$root/dev/stdin"
	ln -s /proc/self/fd/1 "$root/dev/stdout"
	ln -s /proc/self/fd/2 "$root/dev/stderr"
	mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$root/run"
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
	ip link set lo up

	# The machine's enablement and its ban on starting services.
	rm -rf "$root"/etc/systemd/system/*.wants
	rm -f "$root/usr/sbin/policy-rc.d"
	cat >"$root/etc/systemd/system/$TARGET" <<-UNIT
		[Unit]
		Description=wispanel test sandbox
		Requires=basic.target
		After=basic.target
		AllowIsolate=yes
	UNIT
	# No console, no login prompts, no hostname from the machine.
	echo "$NAME" >"$root/etc/hostname"
	hostname "$NAME"

	mkdir -p "$root/.old-root"
	cd "$root"
	pivot_root . .old-root
	cd /
	umount -l /.old-root
	rmdir /.old-root
	# systemd makes / shared only when it is not in a container; a container
	# manager is expected to. Services' credentials (LoadCredential=) and
	# other per-unit mounts are made in a child namespace and reach PID 1's
	# by propagation. Nothing propagates to the machine: the mounts here are
	# new, and /sys stays a slave of the machine's.
	mount --make-rshared /
	exec "$SYSTEMD" --system --unit="$TARGET" --show-status=no </dev/null
}

start() {
	local dir=$1
	local timeout=${SANDBOX_BOOT_TIMEOUT:-60}
	local why
	why=$(why_not)
	[ -z "$why" ] || die "cannot boot systemd here: $why"
	mkdir -p "$dir"
	rm -f "$dir/unshare.pid" "$dir/pid"
	mkdir -p "$dir/fs"
	# --kill-child: should unshare be killed, the whole sandbox goes with it.
	container=$NAME SANDBOX_INNER=1 SANDBOX_DIR=$(cd "$dir" && pwd) unshare --fork --pid --mount --net --uts --ipc --cgroup \
		--kill-child "$0" __inner >"$dir/boot.log" 2>&1 </dev/null &
	echo $! >"$dir/unshare.pid"
	local pid="" state="" i
	for ((i = 0; i < timeout * 10; i++)); do
		if ! kill -0 "$(cat "$dir/unshare.pid")" 2>/dev/null; then
			die "systemd exited while booting; its log ($dir/boot.log):
$(tail -n 30 "$dir/boot.log")"
		fi
		if [ -z "$pid" ]; then
			pid=$(sandbox_pid "$dir" || true)
		fi
		if [ -n "$pid" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$SYSTEMD")" ]; then
			state=$(nsenter -t "$pid" -a -r -w systemctl is-system-running 2>/dev/null || true)
			case $state in
			running | degraded)
				echo "$pid" >"$dir/pid"
				echo "systemd-sandbox: systemd is $state (pid $pid here) after $((i / 10)).$((i % 10)) s"
				if [ "$state" = degraded ]; then
					nsenter -t "$pid" -a -r -w systemctl --no-pager --failed || true
				fi
				return 0
				;;
			esac
		fi
		sleep 0.1
	done
	stop "$dir" >/dev/null 2>&1 || true
	die "systemd did not reach running within $timeout s (last state: ${state:-none}); its log:
$(tail -n 30 "$dir/boot.log")"
}

run() {
	local dir=$1
	shift
	local pid
	pid=$(cat "$dir/pid" 2>/dev/null) || die "no sandbox in $dir (start it first)"
	exec nsenter -t "$pid" -a -r -w "$@"
}

stop() {
	local dir=$1 unshare_pid pid i
	unshare_pid=$(cat "$dir/unshare.pid" 2>/dev/null) || return 0
	pid=$(cat "$dir/pid" 2>/dev/null || sandbox_pid "$dir" || true)
	if [ -n "$pid" ] && kill -0 "$unshare_pid" 2>/dev/null; then
		nsenter -t "$pid" -a -r -w systemctl --no-block poweroff >/dev/null 2>&1 || true
		for ((i = 0; i < 300; i++)); do
			kill -0 "$unshare_pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	if kill -0 "$unshare_pid" 2>/dev/null; then
		echo "systemd-sandbox: poweroff did not finish in 30 s; killing the sandbox" >&2
		# Killing a pid namespace's PID 1 kills everything in it.
		[ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null || true
		kill -KILL "$unshare_pid" 2>/dev/null || true
	fi
	for ((i = 0; i < 100; i++)); do
		kill -0 "$unshare_pid" 2>/dev/null || break
		sleep 0.1
	done
	rm -f "$dir/unshare.pid" "$dir/pid"
}

case ${1:-} in
__inner)
	[ -n "${SANDBOX_INNER:-}" ] || die "internal command"
	inner
	;;
check)
	why=$(why_not)
	[ -z "$why" ] || die "cannot boot systemd here: $why"
	echo "systemd-sandbox: this machine can boot systemd in a sandbox"
	;;
start) start "${2:?usage: $0 start DIR}" ;;
run)
	[ $# -ge 3 ] || die "usage: $0 run DIR CMD [ARG...]"
	dir=$2
	shift 2
	run "$dir" "$@"
	;;
stop) stop "${2:?usage: $0 stop DIR}" ;;
*)
	sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
